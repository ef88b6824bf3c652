"""Fixtures of the NUMA plugin tests: simulated hosts driven through the plugin's hooks (see :mod:`.simhost`)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from gpuprov.sim.machine import Machine

from .simhost import NumaHost


@pytest.fixture
def numa_host(tmp_path: Path) -> Callable[[Machine], NumaHost]:
    made = iter(range(1000))

    def make(machine: Machine) -> NumaHost:
        return NumaHost(tmp_path / f"host{next(made)}", machine)

    return make


@pytest.fixture
def gpuprov_cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run ``gpuprov ARGS`` as a user would (a subprocess in ``tmp_path``), sim state under ``tmp_path/state``."""

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
        return subprocess.run([sys.executable, "-m", "gpuprov", *args], capture_output=True, text=True,
                              cwd=tmp_path, env=env, timeout=600)

    return run
