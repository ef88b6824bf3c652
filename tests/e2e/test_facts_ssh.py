"""``gpuprov facts`` over real SSH against an 8-host lab: every host's GPUs, MIG state and NUMA topology, as the
simulator holds them, come back through sshd, the stand-ins and gpuprov's parsers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpuprov.testing import Lab, lab_hosts, require_lab

RACK = (lab_hosts(3, preset="dgx-h100", groups=["h100"]) + lab_hosts(3, preset="dgx-a100", groups=["a100"])
        + lab_hosts(2, gpu="NVIDIA A30", count=2, numa_nodes=2, groups=["a30"]))


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    require_lab()
    with Lab(RACK) as lab:
        yield lab


@pytest.mark.lab
def test_facts_over_ssh_match_each_machine(lab: Lab, tmp_path: Path) -> None:
    # some MIG state to find: an A100 host with two instances on GPU 0, an A30 host with MIG on but empty
    for command in ("nvidia-smi -i 0 -mig 1", "nvidia-smi mig -i 0 -cgi 9:4,14:0 -C"):
        r = lab.run("host4", command)
        assert r.exit_code == 0, r.stdout + r.stderr
    assert lab.run("host7", "nvidia-smi -i 1 -mig 1").exit_code == 0

    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "gpuprov", "facts", "-i", str(lab.inventory), "--json", "all"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    facts = {e["host"]: e["facts"] for e in map(json.loads, proc.stdout.splitlines()) if e["event"] == "facts"}
    assert sorted(facts) == sorted(lab.names)

    for host in lab:
        machine = host.machine
        got = facts[host.name]
        gpus = sorted(machine.gpus, key=lambda g: g.index)
        assert [(g["index"], g["name"], g["uuid"], g["bus_id"]) for g in got["gpus"]] == \
            [(g.index, g.product, g.uuid, g.bus_id) for g in gpus], host.name
        assert [g["mig_current"] for g in got["gpus"]] == [g.mig_current for g in gpus], host.name
        expected_devices = sorted((g.index, gi.id, ci.id, ci.uuid) for g in gpus for gi in g.gpu_instances
                                  for ci in gi.compute_instances)
        assert sorted((d["gpu"], d["gi"], d["ci"], d["uuid"]) for d in got["mig_devices"]) == expected_devices
        assert [(n["id"], list(n["cpus"])) for n in got["numa_nodes"]] == \
            [(n.id, n.cpus) for n in machine.numa_nodes], host.name
        placed = {g["index"]: g["node"] for g in got["numa"]["gpus"]}
        assert placed == {g.index: g.numa_node for g in gpus}, host.name  # each GPU's own NUMA node

    a100 = facts["host4"]
    assert len(a100["mig_devices"]) == 2 and {d["profile"] for d in a100["mig_devices"]} == {"3g.40gb", "2g.20gb"}
    assert len(facts["host1"]["numa_nodes"]) == 2 and len(a100["numa_nodes"]) == 8
