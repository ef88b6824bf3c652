"""MIG plugin tests (a package, so module names such as test_parsers do not collide with other plugins' tests)."""
