"""The ``sim`` connection: an in-process simulated GPU server, for the example rack, tests and users' dry runs.

The host is described by inventory variables (``sim_preset`` or ``sim_gpu``/``sim_gpu_count``, ``sim_driver``...;
see :func:`gpuprov.sim.presets.machine_from_vars`) and keeps its state in a directory (``sim_state_dir``), so an
``apply`` followed by a ``plan`` in a later run sees the converged host. Commands run through the simulator's small
in-process shell; files live under the state directory's ``root/``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from .base import Connection, Result

if TYPE_CHECKING:
    from ..inventory import Host
    from ..sim.host import SimHost


def sim_host_for(host: Host) -> SimHost:
    """The simulated machine behind an inventory host, created on first use from its host variables."""
    from ..errors import GpuprovError
    from ..sim.host import SimHost
    from ..sim.presets import machine_from_vars, state_dir_for

    state_dir = state_dir_for(host.name, host.vars)
    sim = SimHost(state_dir)
    if not sim.exists:
        try:
            machine = machine_from_vars(host.name, host.vars)
        except ValueError as exc:
            raise GpuprovError(f"{host.name}: {exc}") from None
        sim.save(machine)
        from ..sim.sysfs import ensure_sysfs

        ensure_sysfs(sim)
    return sim


def login_env(sim: SimHost) -> dict[str, str]:
    """root's login environment on a simulated host, as sshd would give it, plus where the host's state lives."""
    return {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/root",
        "USER": "root",
        "GPUPROV_SIM_STATE": str(sim.state_dir),
        "GPUPROV_SIM_ROOT": str(sim.root),
    }


class SimConnection(Connection):
    def __init__(self, host: Host) -> None:
        self.host_name = host.name
        self.sim = sim_host_for(host)
        self.env = login_env(self.sim)

    def run(self, command: str, *, stdin: str | None = None, timeout: float | None = None) -> Result:
        from ..sim.shell import run_line

        r = run_line(self.sim, command, stdin=stdin or "", env=self.env)
        return Result(r.stdout, r.stderr, r.exit_code)

    def run_batch(self, commands: Mapping[str, str], *, timeout: float | None = None) -> dict[str, Result]:
        # In process there is no round trip to save: run each probe on its own.
        return {name: self.run(command) for name, command in commands.items()}

    def put(self, path: str, content: bytes, *, mode: int = 0o644, owner: str | None = None,
            group: str | None = None) -> None:
        target = self.sim.path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.gpuprov-tmp")
        tmp.write_bytes(content)
        os.chmod(tmp, mode)
        os.replace(tmp, target)

    def get(self, path: str) -> bytes | None:
        target = self.sim.path(path)
        try:
            return target.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
