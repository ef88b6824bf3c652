"""The NUMA plugin through the ``gpuprov`` command on a simulated rack: detect (nvidia-smi, sysfs and numactl
stand-ins), plan, apply, a second plan that is empty, and ``gpuprov facts``' topology table.

What each wrapper does is checked by running it on the host (``gpuprov sim run``) around ``numactl --show`` and
against the topology the simulator was given, never against the plugin's own facts.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

from gpuprov_numa import facts as nf

from gpuprov.connection.sim import login_env
from gpuprov.sim.host import SimHost
from gpuprov.sim.presets import new_machine
from gpuprov.sim.shell import run_line
from gpuprov.sim.sysfs import ensure_sysfs

Cli = Callable[..., subprocess.CompletedProcess[str]]

INVENTORY = """\
[a100]
infer01 sim_preset=dgx-a100
[h100]
train01 sim_preset=dgx-h100
[all:vars]
ansible_connection=sim
"""


def _sim(tmp_path: Path, host: str) -> SimHost:
    return SimHost(tmp_path / "state" / "gpuprov" / "sim" / host)


def _run(tmp_path: Path, host: str, command: str) -> str:
    """A command on the simulated host, in its root's login environment (what ``gpuprov sim run`` does)."""
    sim = _sim(tmp_path, host)
    r = run_line(sim, command, env=login_env(sim))
    assert r.exit_code == 0, r.stdout + r.stderr
    return r.stdout


def test_rack_wrappers_bind_each_gpu_to_its_node_and_converge(gpuprov_cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "hosts").write_text(INVENTORY)
    (tmp_path / "numa.yml").write_text("- hosts: all\n  numa: {memory_policy: bind}\n")
    r = gpuprov_cli("plan", "-i", "hosts", "numa.yml")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Plan: 16 change(s) on 2 of 2 host(s)." in r.stdout
    r = gpuprov_cli("apply", "-i", "hosts", "numa.yml")
    assert r.returncode == 0, r.stdout + r.stderr
    r = gpuprov_cli("plan", "-i", "hosts", "numa.yml")
    assert r.returncode == 0 and "no changes: infer01, train01" in r.stdout, r.stdout + r.stderr
    r = gpuprov_cli("verify", "-i", "hosts", "numa.yml")
    assert r.returncode == 0 and "PASS numa: wrappers bind each device to its NUMA node" in r.stdout, r.stdout

    for host, nodes in (("infer01", 8), ("train01", 2)):
        machine = _sim(tmp_path, host).load()
        assert len(machine.numa_nodes) == nodes
        cpus_of = {n.id: n.cpus for n in machine.numa_nodes}
        for gpu in machine.gpus:
            out = _run(tmp_path, host, f"gpu{gpu.index}-run sh -c 'printenv CUDA_VISIBLE_DEVICES && numactl -s'")
            uuid, shown_text = out.split("\n", 1)
            shown = nf.parse_numactl_show(shown_text)
            assert (shown.policy, shown.membind) == ("bind", (gpu.numa_node,)), (host, gpu.index)
            assert list(shown.physcpubind) == sorted(cpus_of[gpu.numa_node]), (host, gpu.index)
            assert uuid == gpu.uuid

    # someone edits a wrapper by hand: verify names it and what it does instead
    wrapper = _sim(tmp_path, "train01").path("/usr/local/bin/gpu5-run")
    wrapper.write_text(wrapper.read_text().replace("--membind=1", "--membind=0"))
    r = gpuprov_cli("verify", "-i", "hosts", "numa.yml")
    assert r.returncode == 1 and "FAIL numa: wrappers bind each device to its NUMA node" in r.stdout, r.stdout
    assert "/usr/local/bin/gpu5-run runs with memory policy bind (membind 0), planned CPUs 56-111,168-223 (node 1)" \
        ", memory bind 1" in r.stdout


def test_mig_devices_created_in_the_same_run_get_wrappers_that_find_them(gpuprov_cli: Cli, tmp_path: Path) -> None:
    """MIG plans the instances, NUMA plans their wrappers from ``planned`` in the same run; after apply each
    wrapper finds its device's UUID (which the driver assigned during apply) and binds to the GPU's node."""
    (tmp_path / "hosts").write_text(INVENTORY)
    (tmp_path / "site.yml").write_text(
        "- hosts: infer01\n  mig: {layout: [3g.40gb, 2g.20gb, 1g.10gb, 1g.10gb]}\n  numa: {}\n")
    r = gpuprov_cli("plan", "-i", "hosts", "site.yml")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "+ numa/wrapper/gpu2-mig4-run: MIG device gpu2/mig@4 (3g.40gb)" in r.stdout
    assert "numa/wrapper/gpu2-run" not in r.stdout  # a GPU in MIG mode is used through its MIG devices only
    r = gpuprov_cli("apply", "-i", "hosts", "site.yml")
    assert r.returncode == 0, r.stdout + r.stderr
    r = gpuprov_cli("plan", "-i", "hosts", "site.yml")
    assert r.returncode == 0, r.stdout + r.stderr

    machine = _sim(tmp_path, "infer01").load()
    assert all(len(gpu.gpu_instances) == 4 for gpu in machine.gpus)
    for gpu in (machine.gpu(0), machine.gpu(2)):  # one GPU of node 3 and one of node 1: each wrapper runs ~4 tools
        for gi in gpu.gpu_instances:
            (ci,) = gi.compute_instances
            wrapper = f"gpu{gpu.index}-mig{gi.start}-run"
            out = _run(tmp_path, "infer01", f"{wrapper} sh -c 'printenv CUDA_VISIBLE_DEVICES && numactl -s'")
            uuid, shown_text = out.split("\n", 1)
            assert uuid == ci.uuid, (wrapper, gi)
            assert nf.parse_numactl_show(shown_text).membind == (gpu.numa_node,), wrapper


def test_facts_show_the_topology_table(gpuprov_cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "hosts").write_text(INVENTORY)
    r = gpuprov_cli("facts", "-i", "hosts", "infer01")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "NUMA topology (8 node(s) from sysfs, systemd 252, numa_balancing 1)" in r.stdout
    rows = [line.split() for line in r.stdout.splitlines() if line.startswith("GPU ") and "(0000" in line]
    assert [(row[2], row[3], row[4]) for row in rows] == [
        ("(00000000:07:00.0)", "3", "48-63,176-191"), ("(00000000:0F:00.0)", "3", "48-63,176-191"),
        ("(00000000:47:00.0)", "1", "16-31,144-159"), ("(00000000:4E:00.0)", "1", "16-31,144-159"),
        ("(00000000:87:00.0)", "7", "112-127,240-255"), ("(00000000:90:00.0)", "7", "112-127,240-255"),
        ("(00000000:B7:00.0)", "5", "80-95,208-223"), ("(00000000:BD:00.0)", "5", "80-95,208-223")]
    r = gpuprov_cli("facts", "-i", "hosts", "--json", "train01")
    facts = next(e["facts"] for e in map(json.loads, r.stdout.splitlines()) if e["event"] == "facts")
    assert [g["numa_node"] for g in facts["gpus"]] == [0, 0, 0, 0, 1, 1, 1, 1]


def test_mps_daemons_get_placed_by_drop_ins(gpuprov_cli: Cli, tmp_path: Path) -> None:
    """The MPS plugin plans its units first; the drop-ins follow in the same run and restart the daemons it just
    started, so they run placed. systemd (the stand-in) merges the drop-in into each instance."""
    (tmp_path / "hosts").write_text(INVENTORY)
    (tmp_path / "mps.yml").write_text("- hosts: train01\n  mps: {devices: [1, 6]}\n"
                                      "  numa: {wrappers: false}\n")
    r = gpuprov_cli("plan", "-i", "hosts", "mps.yml")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "+ numa/mps/gpu1: GPU 1: MPS unit nvidia-mps@gpu1.service placed (CPUs 0-55,112-167 (node 0), memory " \
           "bind 0)" in r.stdout
    r = gpuprov_cli("apply", "-i", "hosts", "mps.yml")
    assert r.returncode == 0, r.stdout + r.stderr
    r = gpuprov_cli("plan", "-i", "hosts", "mps.yml")
    assert r.returncode == 0, r.stdout + r.stderr
    for index, node, cpus in ((1, 0, "0-55,112-167"), (6, 1, "56-111,168-223")):
        unit = f"nvidia-mps@gpu{index}.service"
        shown = _run(tmp_path, "train01", f"systemctl cat {unit}")
        assert f"# /etc/systemd/system/{unit}.d/50-gpuprov-numa.conf" in shown
        assert {f"CPUAffinity={cpus}", "NUMAPolicy=bind", f"NUMAMask={node}"} <= set(shown.splitlines())
        assert _run(tmp_path, "train01", f"systemctl is-active {unit}").strip() == "active"


def test_example_playbook_places_every_device_of_the_example_rack(gpuprov_cli: Cli, tmp_path: Path) -> None:
    """``playbooks/site.yml`` on ``inventory.example``: a wrapper per whole GPU on the training nodes, per MIG device
    on the partitioned ones, each on its GPU's node as the presets place them."""
    root = Path(__file__).resolve().parents[3]
    r = gpuprov_cli("plan", "-i", str(root / "inventory.example"), str(root / "playbooks/site.yml"), "--json")
    assert r.returncode == 2, r.stdout + r.stderr
    plan = next(e["plan"] for e in map(json.loads, r.stdout.splitlines()) if e["event"] == "plan")
    a100_nodes = (3, 3, 1, 1, 7, 7, 5, 5)  # DGX A100: reference/numa.md §3
    for host in plan["hosts"]:
        wrappers = {c["id"].removeprefix("numa/wrapper/"): c["after"]["node"] for c in host["changes"]
                    if c["id"].startswith("numa/wrapper/")}
        if host["host"].startswith("train"):
            assert wrappers == {f"gpu{i}-run": i // 4 for i in range(8)}, host["host"]
        elif host["host"].startswith("infer"):
            assert wrappers and all(k.split("-")[1].startswith("mig") for k in wrappers), host["host"]
            assert wrappers == {k: a100_nodes[int(k[3])] for k in wrappers}
        else:
            assert len(wrappers) == 16, host["host"]  # 4 A30s x all-1g (four 1g.6gb devices each)


def test_bad_settings_are_reported_at_their_line(gpuprov_cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "hosts").write_text(INVENTORY)
    (tmp_path / "bad.yml").write_text("- hosts: train01\n  numa:\n    memory_policy: node\n")
    r = gpuprov_cli("plan", "-i", "hosts", "bad.yml")
    assert r.returncode == 1 and "Traceback" not in r.stdout + r.stderr
    assert "bad.yml:3:5: numa.memory_policy: expected one of bind, preferred, interleave, local, got 'node'" in \
        r.stdout + r.stderr
    (tmp_path / "bad.yml").write_text("- hosts: train01\n  numa:\n    cpu_binding: socket\n")
    r = gpuprov_cli("plan", "-i", "hosts", "bad.yml")
    assert r.returncode == 1 and "Traceback" not in r.stdout + r.stderr
    assert "bad.yml:3:5: numa.cpu_binding" in r.stdout + r.stderr
    assert "expected node, none or a CPU list like 0-7,64-71, got 'socket'" in r.stdout + r.stderr


def test_systemd_before_243_starts_the_mps_daemon_through_numactl(gpuprov_cli: Cli, tmp_path: Path) -> None:
    """RHEL 8's systemd 239 has no NUMAPolicy=: the drop-in resets ExecStart= and runs the MPS unit's own command
    under numactl; the systemctl stand-in really starts it that way (its journal names numactl as the process)."""
    machine = new_machine(preset="dgx-h100", hostname="old01")
    machine.systemd_version = 239
    sim = SimHost(tmp_path / "old01")
    sim.save(machine)
    ensure_sysfs(sim)
    (tmp_path / "hosts").write_text(f"old01 ansible_connection=sim sim_preset=dgx-h100 sim_state_dir={sim.state_dir}\n")
    (tmp_path / "mps.yml").write_text("- hosts: all\n  mps: {devices: [5]}\n  numa: {wrappers: false}\n")
    # the MPS unit first (where the MPS plugin does not hand its unit to later plugins, the drop-in needs it
    # installed to know the command it wraps)
    (tmp_path / "first.yml").write_text("- hosts: all\n  mps: {devices: [5]}\n  numa: {wrappers: false, "
                                        "place_mps: false}\n")
    assert gpuprov_cli("apply", "-i", "hosts", "first.yml").returncode == 0
    r = gpuprov_cli("apply", "-i", "hosts", "mps.yml")
    assert r.returncode == 0, r.stdout + r.stderr
    r = gpuprov_cli("plan", "-i", "hosts", "mps.yml")
    assert r.returncode == 0, r.stdout + r.stderr
    dropin = sim.path("/etc/systemd/system/nvidia-mps@gpu5.service.d/50-gpuprov-numa.conf").read_text().splitlines()
    assert not any(line.startswith("NUMAPolicy") for line in dropin)
    start = dropin.index("ExecStart=")
    assert dropin[start + 1].startswith("ExecStart=/usr/bin/numactl --physcpubind=56-111,168-223 --membind=1 -- ")
    status = run_line(sim, "systemctl status nvidia-mps@gpu5.service", env=login_env(sim)).stdout
    assert "Active: active (running)" in status
    assert re.search(r"old01 numactl\[\d+\]: gpuprov-mps: gpu5: starting the MPS control daemon", status), status
