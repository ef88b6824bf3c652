"""Helpers shared by the test modules (importable as ``helpers``: pytest puts ``tests/`` on ``sys.path``)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("GPUPROV_FIXTURES", ROOT.parent / "shared" / "fixtures"))

Gpuprov = Callable[..., subprocess.CompletedProcess[str]]


def require_tool(name: str) -> str:
    """The path of a real tool a test needs; under CI a missing tool fails the test, elsewhere it skips."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed; the README's test command installs it"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path
