"""``gpuprov sim``: a person creates a simulated host, runs the stand-ins against it and places processes on it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from gpuprov.sim.host import SimHost


def gpuprov(*args: str, stdin: str = "", cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gpuprov", *args], input=stdin, capture_output=True, text=True,
                          timeout=60, cwd=cwd)


def test_new_run_and_process(tmp_path: Path) -> None:
    host_dir = tmp_path / "a30"
    made = gpuprov("sim", "new", str(host_dir), "--gpu", "NVIDIA A30", "--count", "2", "--numa-nodes", "2")
    assert made.returncode == 0, made.stderr
    assert "2 x NVIDIA A30, 2 NUMA node(s), driver 580.126.09" in made.stdout
    machine = SimHost(host_dir).load()
    assert [g.product for g in machine.gpus] == ["NVIDIA A30", "NVIDIA A30"]

    # the stand-in's own output and exit code come through unchanged
    numa = gpuprov("sim", "run", str(host_dir), "--", "numactl", "--hardware")
    assert numa.returncode == 0, numa.stderr
    assert numa.stdout.startswith("available: 2 nodes (0-1)\n")
    inactive = gpuprov("sim", "run", str(host_dir), "--", "systemctl", "is-active", "nvidia-mps@gpu0.service")
    assert (inactive.returncode, inactive.stdout) == (3, "inactive\n")
    # standard input reaches a stand-in that reads it
    mps = gpuprov("sim", "run", str(host_dir), "--", "nvidia-cuda-mps-control", stdin="get_server_list\n")
    assert mps.returncode == 1 and "Cannot find MPS control daemon process" in mps.stdout + mps.stderr

    started = gpuprov("sim", "process", str(host_dir), "--gpu", "1", "--name", "train.py")
    assert started.returncode == 0, started.stderr
    pid = SimHost(host_dir).load().processes[0].pid
    assert SimHost(host_dir).load().processes[0].gpu == 1
    ended = gpuprov("sim", "process", str(host_dir), "--gpu", "1", "--remove", str(pid))
    assert ended.returncode == 0 and SimHost(host_dir).load().processes == []


def test_mistakes_are_named(tmp_path: Path) -> None:
    missing = gpuprov("sim", "run", str(tmp_path / "nothing"), "--", "nvidia-smi", "-L")
    assert missing.returncode == 1 and "no simulated host here" in missing.stderr
    assert "Traceback" not in missing.stderr
    unknown = gpuprov("sim", "new", str(tmp_path / "x"), "--gpu", "NVIDIA Z100")
    assert unknown.returncode == 1 and "unknown sim_gpu 'NVIDIA Z100'" in unknown.stderr
    both = gpuprov("sim", "new", str(tmp_path / "x"), "--gpu", "NVIDIA A30", "--preset", "dgx-h100")
    assert both.returncode == 1 and "exactly one of --preset NAME or --gpu PRODUCT" in both.stderr
    assert gpuprov("sim", "new", str(tmp_path / "y"), "--preset", "dgx-h100").returncode == 0
    again = gpuprov("sim", "new", str(tmp_path / "y"), "--preset", "dgx-h100")
    assert again.returncode == 1 and "--force" in again.stderr


def test_run_on_an_inventory_host(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts"
    inventory.write_text(f"box sim_gpu='NVIDIA H100 80GB HBM3' sim_numa_nodes=2 sim_state_dir={tmp_path / 'box'}\n"
                         "real ansible_host=192.0.2.1\n[all:vars]\n")
    inventory.write_text(inventory.read_text().replace("box ", "box ansible_connection=sim "))
    numa = gpuprov("sim", "run", "-i", str(inventory), "box", "--", "numactl", "-H")
    assert numa.returncode == 0, numa.stderr
    assert "available: 2 nodes (0-1)" in numa.stdout
    assert SimHost(tmp_path / "box").exists
    real = gpuprov("sim", "run", "-i", str(inventory), "real", "--", "numactl", "-H")
    assert real.returncode == 1 and "not a simulated host" in real.stderr
