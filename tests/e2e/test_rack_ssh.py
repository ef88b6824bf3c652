"""A mixed rack of eight lab hosts provisioned over real SSH from an inventory with groups and group_vars, the
way an operator runs a change window: ``plan`` (exit 2, a readable diff), ``apply``, ``plan`` again (exit 0),
``gpuprov verify`` (passes, checked with testinfra over SSH), then a playbook change that plans changes for the
affected hosts only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpuprov.testing import Lab, lab_hosts, require_lab

# DGX topologies (2 and 8 NUMA nodes, GPUs on their real nodes) with two GPUs each: every path of a full node is
# taken, at a quarter of the simulated commands
RACK = (lab_hosts(3, preset="dgx-h100", count=2, groups=["train"])
        + lab_hosts(3, preset="dgx-a100", count=2, groups=["infer"])
        + lab_hosts(2, gpu="NVIDIA A30", count=2, numa_nodes=2, groups=["small"]))

PLAYBOOK = """\
- name: partitioned nodes
  hosts: infer:small
  forks: 8
  mig:
    layout: "{{ mig_layout }}"
  numa:
    memory_policy: bind
- name: training nodes share their whole GPUs through MPS, each daemon on its GPU's NUMA node
  hosts: train
  mig:
    layout: "{{ mig_layout }}"
  numa:
    memory_policy: bind
  mps:
    devices: gpus
    active_thread_percentage: 50
    compute_mode: exclusive
"""

@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, Path]]:
    require_lab()
    where = tmp_path_factory.mktemp("rack")
    with Lab(RACK, groups={"gpu": [f"host{i}" for i in range(1, 9)]}) as lab:
        inventory = lab.write_inventory(where / "hosts")
        group_vars = where / "group_vars"
        group_vars.mkdir()
        (group_vars / "train.yml").write_text("mig_layout: all-disabled\n")
        (group_vars / "infer.yml").write_text("mig_layout: all-balanced\n")
        (group_vars / "small").mkdir()
        (group_vars / "small" / "mig.yml").write_text("mig_layout: all-1g\n")
        yield lab, inventory


def gpuprov(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_STATE_HOME": str(cwd / "state")}
    return subprocess.run([sys.executable, "-m", "gpuprov", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=600)


@pytest.mark.lab
def test_rack_over_ssh_plan_apply_plan_verify_then_change(lab: tuple[Lab, Path]) -> None:
    rack, inventory = lab
    where = inventory.parent
    site = where / "site.yml"
    site.write_text(PLAYBOOK)

    r = gpuprov("plan", "-i", str(inventory), str(site), cwd=where)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "3 hosts: host4, host5, host6" in r.stdout  # identical DGX A100s fold into one block
    assert "layout to all-balanced" in r.stdout and "layout to all-1g" in r.stdout
    assert all(not h.machine.gpus[0].gpu_instances for h in rack)  # plan changed nothing

    r = gpuprov("apply", "-i", str(inventory), str(site), cwd=where)
    assert r.returncode == 0, r.stdout + r.stderr
    r = gpuprov("plan", "-i", str(inventory), str(site), cwd=where)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Plan: 0 change(s)" in r.stdout

    # the hosts hold what was planned, as their own tools tell
    assert len(rack.host("host5").machine.gpu(1).gpu_instances) == 4
    assert len(rack.host("host8").machine.gpu(1).gpu_instances) == 4
    assert not rack.host("host2").machine.gpu(0).mig_current
    wrapper = rack.run("host5", "cat /usr/local/bin/gpu0-mig4-run")
    assert wrapper.exit_code == 0 and "numactl" in wrapper.stdout, wrapper.stdout + wrapper.stderr

    daemons = rack.run("host1", "systemctl is-active nvidia-mps@gpu0.service nvidia-mps@gpu1.service")
    assert daemons.stdout == "active\nactive\n", daemons.stdout + daemons.stderr
    percentage = rack.run("host1", "echo get_default_active_thread_percentage | "
                                   "CUDA_MPS_PIPE_DIRECTORY=/run/nvidia-mps/gpu1 nvidia-cuda-mps-control")
    assert percentage.stdout == "50.0\n", percentage.stdout + percentage.stderr
    assert [g.compute_mode for g in rack.host("host2").machine.gpus] == ["Exclusive_Process"] * 2
    dropin = rack.run("host1", "cat /etc/systemd/system/nvidia-mps@gpu1.service.d/*.conf")
    assert dropin.exit_code == 0 and "NUMAPolicy=bind" in dropin.stdout, dropin.stdout + dropin.stderr

    r = gpuprov("verify", "-i", str(inventory), str(site), cwd=where)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "PASS mig: MIG layout as planned" in r.stdout and "FAIL" not in r.stdout
    assert "PASS mps: MPS daemons run for the selected devices" in r.stdout

    # the A30 boxes change layout; nothing else is touched
    (where / "group_vars" / "small" / "mig.yml").write_text("mig_layout: [2g.12gb, 2 x 1g.6gb]\n")
    r = gpuprov("plan", "-i", str(inventory), str(site), "--json", cwd=where)
    assert r.returncode == 2, r.stdout + r.stderr
    plan = next(e for e in map(json.loads, r.stdout.splitlines()) if e.get("event") == "plan")
    changed = sorted(h["host"] for h in plan["plan"]["hosts"] if h["changes"])
    assert changed == ["host7", "host8"], changed
