"""Helpers for core tests: run the real ``gpuprov`` command, and a third-party plugin installed for real."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import Gpuprov

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


@pytest.fixture
def gpuprov(tmp_path: Path) -> Gpuprov:
    """Run ``gpuprov ARGS`` in a subprocess (as a user would), with sim state kept under ``tmp_path``."""

    def run(*args: str, site: Path | None = None, input: str | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        environ = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state"), **(env or {})}
        environ.pop("CI_NO_COLOR", None)
        if site is not None:
            environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), environ.get("PYTHONPATH", "")]))
        return subprocess.run([sys.executable, "-m", "gpuprov", *args], capture_output=True, text=True,
                              cwd=tmp_path, input=input, env=environ, timeout=300)

    return run
