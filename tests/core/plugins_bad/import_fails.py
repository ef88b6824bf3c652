"""A plugin that fails to import."""

import gpuprov_no_such_dependency  # noqa: F401
