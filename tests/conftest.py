"""Shared test helpers: where the real captures live, and the rule that CI never skips a test for a missing part."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("GPUPROV_FIXTURES", ROOT.parent / "shared" / "fixtures"))


def require_tool(name: str) -> str:
    """The path of a real tool a test needs; under CI a missing tool fails the test, elsewhere it skips."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed; the README's test command installs it"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():
        pytest.fail(f"the real captures are missing: {FIXTURES} (set GPUPROV_FIXTURES)")
    return FIXTURES
