"""Shared test helpers: where the real captures live, and the rule that CI never skips a test for a missing part."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import FIXTURES


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():
        pytest.fail(f"the real captures are missing: {FIXTURES} (set GPUPROV_FIXTURES)")
    return FIXTURES
