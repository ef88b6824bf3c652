"""A simulated host driven through the NUMA plugin's own hooks: probes run by the simulator's shell against its sysfs
tree and stand-ins, facts parsed, a plan made and its steps applied to the host's file tree, as the runner does.

Why not only the CLI: these tests vary one input at a time (a capture's topology, a sysfs ``numa_node`` of -1, a
``topo -m`` capture as the second source, what an earlier plugin planned), which the runner cannot inject.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gpuprov_numa
from gpuprov_numa import facts as nf
from gpuprov_numa import plan as np_

from gpuprov.connection.base import Result
from gpuprov.connection.sim import login_env
from gpuprov.plan import Change
from gpuprov.render import Templates
from gpuprov.sim.host import SimHost
from gpuprov.sim.machine import Machine
from gpuprov.sim.shell import run_line
from gpuprov.sim.sysfs import ensure_sysfs

# The GPU list comes from earlier_facts (the MIG plugin's part); nvidia-smi's own answers are given by the tests
# that need them (real captures through ``replace``), so these cases do not depend on the nvidia-smi stand-in.
SMI_PROBES = ("numa.gpus", "numa.topo")


class NumaHost:
    """One simulated machine and the NUMA plugin's detect -> plan -> apply on it."""

    def __init__(self, state: Path, machine: Machine) -> None:
        self.sim = SimHost(state)
        self.sim.save(machine)
        ensure_sysfs(self.sim)
        self.env = login_env(self.sim)
        self.name = machine.hostname
        self.templates = Templates(list(gpuprov_numa.gpuprov_template_dirs()))

    @property
    def machine(self) -> Machine:
        return self.sim.load()

    def run(self, command: str) -> Result:
        r = run_line(self.sim, command, env=self.env)
        return Result(r.stdout, r.stderr, r.exit_code)

    def settings(self, **values: Any) -> dict[str, Any]:
        return {**gpuprov_numa.SCHEMA.defaults(), **values}

    def earlier_facts(self) -> dict[str, Any]:
        """What the MIG plugin detects before this plugin runs: the GPUs (index, UUID, bus id), as nvidia-smi
        reports them from the same machine."""
        return {"gpus": [{"index": g.index, "name": g.product, "uuid": g.uuid, "bus_id": g.bus_id,
                          "numa_node": None} for g in self.machine.gpus], "mig_devices": []}

    def detect(self, settings: Mapping[str, Any], replace: Mapping[str, Result] | None = None,
               earlier: Mapping[str, Any] | None = None) -> dict[str, Any]:
        outputs = {name: self.run(command) if name not in SMI_PROBES else
                   Result("", "bash: line 1: nvidia-smi: command not found\n", 127)
                   for name, command in nf.probes(settings).items()}
        outputs.update(replace or {})
        before = dict(self.earlier_facts() if earlier is None else earlier)
        return {**before, **nf.gather(outputs, before)}

    def plan(self, settings: Mapping[str, Any], facts: Mapping[str, Any] | None = None,
             planned_extra: Mapping[str, Any] | None = None) -> tuple[list[Change], dict[str, Any]]:
        facts = self.detect(settings) if facts is None else facts
        planned = copy.deepcopy(dict(facts))
        planned.update(copy.deepcopy(dict(planned_extra or {})))
        return np_.plan_host(self.name, facts, settings, planned, self.templates), planned

    def apply(self, changes: list[Change]) -> None:
        for change in changes:
            for step in change.steps:
                if step.kind == "write":
                    assert step.path is not None and step.content is not None
                    path = self.sim.path(step.path)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(step.content)
                    os.chmod(path, step.mode)
                elif step.kind == "remove":
                    assert step.path is not None
                    self.sim.path(step.path).unlink()
                else:
                    assert step.command is not None
                    r = self.run(step.command)
                    assert r.ok, f"{step.command}: {r.stderr}"
