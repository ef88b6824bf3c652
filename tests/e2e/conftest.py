"""End-to-end tests over real SSH against the lab (``gpuprov.testing``).

Tests marked ``lab`` need root, iproute2, util-linux and openssh-server: without them they skip, naming what
is missing, and under ``CI=true`` they fail instead (``require_lab``), so CI cannot pass by skipping them.
"""

from __future__ import annotations

import pytest

# The fixture comes from the ``gpuprov`` pytest plugin once gpuprov is pip-installed; importing it here
# makes it available when the tests run straight from a checkout too.
from gpuprov.testing import gpuprov_lab, require_lab  # noqa: F401


@pytest.fixture(autouse=True)
def _lab_parts(request: pytest.FixtureRequest) -> None:
    """Check the lab's parts before any ``lab`` test runs, so the skip (or CI failure) names what is
    missing."""
    if request.node.get_closest_marker("lab") is not None:
        require_lab()
