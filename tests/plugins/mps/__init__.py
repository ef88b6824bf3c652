"""MPS plugin tests (a package, so module names such as test_plan do not collide with other plugins' tests)."""
