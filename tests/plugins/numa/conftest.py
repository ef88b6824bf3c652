"""Fixtures of the NUMA plugin tests: simulated hosts driven through the plugin's hooks (see :mod:`.simhost`)."""

from __future__ import annotations

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
