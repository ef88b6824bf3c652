"""Helpers for core tests: a third-party plugin installed for real."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HELLO = Path(__file__).resolve().parents[1] / "data" / "plugins" / "gpuprov-hello"


@pytest.fixture(scope="session")
def hello_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The gpuprov-hello package installed with pip (its entry point included) into a directory of its own."""
    target = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("build")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "--target", str(target), str(HELLO)],
        check=True, cwd=build, capture_output=True,
    )
    return target
