"""Shared test helpers: where the real captures live, and the rule that CI never skips a test for a missing part."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import FIXTURES, Gpuprov


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():
        pytest.fail(f"the real captures are missing: {FIXTURES} (set GPUPROV_FIXTURES)")
    return FIXTURES


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
