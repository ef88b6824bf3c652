"""The MPS plugin end to end on simulated hosts (``ansible_connection=sim``): ``gpuprov apply`` converges, the
``systemctl`` stand-in really runs the rendered unit and helper, and ``nvidia-cuda-mps-control`` shows what they did.

The SSH lab repeats the MIG case over real SSH (``test_lab.py``); these run in process and cover more cases.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpuprov.sim import mps
from gpuprov.sim.host import SimHost
from gpuprov.sim.shell import run_line

H100 = 'sim_gpu="NVIDIA H100 80GB HBM3"'


def gpuprov(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    return subprocess.run([sys.executable, "-m", "gpuprov", *args], capture_output=True, text=True, cwd=tmp_path,
                          env=env, timeout=300)


def write_play(tmp_path: Path, play: dict[str, Any], name: str = "play.yml") -> str:
    (tmp_path / name).write_text(yaml.safe_dump([{"hosts": "all", **play}], sort_keys=False))
    return name


def host(tmp_path: Path, name: str = "node1") -> SimHost:
    return SimHost(tmp_path / "state" / "gpuprov" / "sim" / name)


def sh(sim: SimHost, line: str) -> str:
    """``line`` on the host, through a fresh handle: a handle keeps the machine it last saved, and gpuprov runs in
    another process."""
    result = run_line(SimHost(sim.state_dir), line)
    assert result.exit_code == 0, result
    return result.stdout


def mig_uuids(sim: SimHost, gpu: int = 0) -> dict[int, str]:
    """The simulated GPU's MIG devices now: GPU-instance start slice -> UUID (one compute instance each)."""
    machine = sim.load()
    return {gi.start: gi.compute_instances[0].uuid for gi in machine.gpu(gpu).gpu_instances}


def assert_converged(tmp_path: Path, playbook: str) -> None:
    r = gpuprov(tmp_path, "apply", "-i", "hosts", playbook)
    assert r.returncode == 0, r.stdout + r.stderr
    r = gpuprov(tmp_path, "plan", "-i", "hosts", playbook)
    assert r.returncode == 0 and "no changes: node1" in r.stdout, r.stdout + r.stderr


def test_a_daemon_per_mig_device_rebound_when_the_layout_is_re_created(tmp_path: Path) -> None:
    (tmp_path / "hosts").write_text(f"node1 ansible_connection=sim {H100} sim_gpu_count=1\n")
    play = {"mig": {"layout": ["3g.40gb@0", "2g.20gb@4", "1g.10gb@6"]},
            "mps": {"devices": "mig", "active_thread_percentage": 25, "pinned_mem_limit": "10G"}}
    playbook = write_play(tmp_path, play)
    assert_converged(tmp_path, playbook)
    sim = host(tmp_path)

    def check_daemons() -> dict[int, str]:
        uuids = mig_uuids(sim)
        daemons = mps.daemons(sim)
        assert sorted(daemons) == [f"/run/nvidia-mps/gpu0-mig{start}" for start in sorted(uuids)]
        for start, uuid in uuids.items():
            pipe = f"/run/nvidia-mps/gpu0-mig{start}"
            d = daemons[pipe]
            assert (d["visible_devices"], d["unit"], d["log_dir"]) == (
                uuid, f"nvidia-mps@gpu0-mig{start}.service", f"/var/log/nvidia-mps/gpu0-mig{start}")
            assert sh(sim, f"echo get_default_active_thread_percentage | CUDA_MPS_PIPE_DIRECTORY={pipe} "
                           "nvidia-cuda-mps-control") == "25.0\n"
            assert sh(sim, f"echo get_default_device_pinned_mem_limit 0 | CUDA_MPS_PIPE_DIRECTORY={pipe} "
                           "nvidia-cuda-mps-control") == "10G\n"
            assert sh(sim, f"systemctl is-active nvidia-mps@gpu0-mig{start}.service") == "active\n"
        return uuids

    first = check_daemons()
    assert sorted(first) == [0, 4, 6]

    # A reboot: Hopper forgets MIG mode and every instance; the MIG boot unit re-creates the layout, then each
    # daemon starts and finds its device's new UUID; nothing is left to do.
    r = gpuprov(tmp_path, "sim", "reboot", "-i", "hosts", "node1")
    assert r.returncode == 0, r.stdout + r.stderr
    rebooted = check_daemons()
    assert sorted(rebooted) == [0, 4, 6] and not set(rebooted.values()) & set(first.values())
    r = gpuprov(tmp_path, "plan", "-i", "hosts", playbook)
    assert r.returncode == 0 and "no changes: node1" in r.stdout, r.stdout + r.stderr
    first = rebooted

    # Someone re-creates the layout by hand (same placements, new UUIDs): the daemons are bound to devices that
    # are gone; the next apply finds that out and restarts them on the new UUIDs.
    sh(sim, "nvidia-smi mig -dci && nvidia-smi mig -dgi && nvidia-smi mig -cgi 3g.40gb:0,2g.20gb:4,1g.10gb:6 -C")
    recreated = mig_uuids(sim)
    assert sorted(recreated) == [0, 4, 6] and not set(recreated.values()) & set(first.values())
    r = gpuprov(tmp_path, "plan", "-i", "hosts", playbook)
    assert r.returncode == 2
    assert f"bound to {first[0]}, the device is now {recreated[0]}" in r.stdout
    assert_converged(tmp_path, playbook)
    assert check_daemons() == recreated

    # A new layout splits the 2g at slice 4 into two 1g (at 4 and 5): the device at slice 4 is re-created, so its
    # daemon is stopped before the MIG change and started after, on the new device; slice 5 gets a new daemon;
    # the daemons at 0 and 6 keep running on their devices.
    play["mig"]["layout"] = ["3g.40gb@0", "1g.10gb@4", "1g.10gb@5", "1g.10gb@6"]
    write_play(tmp_path, play)
    r = gpuprov(tmp_path, "plan", "-i", "hosts", playbook)
    order = [line.split(":")[0].strip("+~- ") for line in r.stdout.splitlines() if line.startswith("  ") and
             line.strip()[:1] in "+~-" and "/" in line.split(":")[0]]
    assert order.index("mps/release/gpu0-mig4") < order.index("mig/gpu0") < order.index("mps/daemon/gpu0-mig4")
    assert order.index("mig/gpu0") < order.index("mps/daemon/gpu0-mig5")
    assert "mps/daemon/gpu0-mig0" not in order and "mps/daemon/gpu0-mig6" not in order
    pids = {p: d["pid"] for p, d in mps.daemons(sim).items()}
    assert_converged(tmp_path, playbook)
    final = check_daemons()
    assert sorted(final) == [0, 4, 5, 6]
    assert (final[0], final[6]) == (recreated[0], recreated[6]) and final[4] != recreated[4]
    after = {p: d["pid"] for p, d in mps.daemons(sim).items()}
    for kept in ("/run/nvidia-mps/gpu0-mig0", "/run/nvidia-mps/gpu0-mig6"):
        assert after[kept] == pids[kept]  # untouched
    assert after["/run/nvidia-mps/gpu0-mig4"] != pids["/run/nvidia-mps/gpu0-mig4"]


def compute_modes(sim: SimHost) -> list[str]:
    return sh(sim, "nvidia-smi --query-gpu=compute_mode --format=csv,noheader").split()


def test_whole_gpus_exclusive_then_mps_off_restores_default(tmp_path: Path) -> None:
    (tmp_path / "hosts").write_text(f"node1 ansible_connection=sim {H100} sim_gpu_count=2\n")
    playbook = write_play(tmp_path, {"mps": {"devices": "gpus"}})
    assert_converged(tmp_path, playbook)
    sim = host(tmp_path)
    assert compute_modes(sim) == ["Exclusive_Process", "Exclusive_Process"]
    machine = sim.load()
    daemons = mps.daemons(sim)
    assert {p: d["visible_devices"] for p, d in daemons.items()} == {
        f"/run/nvidia-mps/gpu{g.index}": g.uuid for g in machine.gpus}
    assert sh(sim, "ls /etc/gpuprov/mps") == "gpu0.env\ngpu1.env\n"
    r = gpuprov(tmp_path, "verify", "-i", "hosts", playbook)
    assert r.returncode == 0 and "PASS mps: MPS daemons run for the selected devices" in r.stdout, r.stdout
    # what the host runs, exported as a play, plans nothing on it
    r = gpuprov(tmp_path, "export", "-i", "hosts", "--section", "mps", "node1")
    assert r.returncode == 0, r.stdout + r.stderr
    assert yaml.safe_load(r.stdout)[0]["mps"] == {"devices": "all", "compute_mode": "exclusive"}
    (tmp_path / "exported.yml").write_text(r.stdout)
    r = gpuprov(tmp_path, "plan", "-i", "hosts", "exported.yml")
    assert r.returncode == 0 and "no changes: node1" in r.stdout, r.stdout + r.stderr

    # The compute mode resets at reboot; the unit sets it again when it starts, not a one-off command.
    sh(sim, "nvidia-smi -c DEFAULT")
    r = gpuprov(tmp_path, "plan", "-i", "hosts", playbook)
    assert r.returncode == 2 and "set compute mode EXCLUSIVE_PROCESS on GPU 0 again (was Default)" in r.stdout
    assert_converged(tmp_path, playbook)
    assert compute_modes(sim) == ["Exclusive_Process", "Exclusive_Process"]

    playbook = write_play(tmp_path, {"mps": {"enabled": False}}, "off.yml")
    assert_converged(tmp_path, playbook)
    assert mps.daemons(sim) == {}
    assert compute_modes(sim) == ["Default", "Default"]
    r = gpuprov(tmp_path, "verify", "-i", "hosts", playbook)
    assert r.returncode == 0 and "PASS mps: no MPS daemons left" in r.stdout, r.stdout
    assert run_line(sim, "ls /etc/gpuprov/mps/gpu0.env /etc/systemd/system/nvidia-mps@.service").exit_code != 0
    assert sh(sim, "systemctl is-enabled nvidia-mps@gpu0.service || true").strip() in ("disabled", "not-found", "")


def test_a_restart_with_clients_connected_is_refused_without_force(tmp_path: Path) -> None:
    (tmp_path / "hosts").write_text(f"node1 ansible_connection=sim {H100} sim_gpu_count=1\n")
    playbook = write_play(tmp_path, {"mps": {"devices": [0]}})
    assert_converged(tmp_path, playbook)
    sim = host(tmp_path)
    client = mps.connect_client(sim, pipe_dir="/run/nvidia-mps/gpu0", name="./train.py")
    assert client is not None
    playbook = write_play(tmp_path, {"mps": {"devices": [0], "active_thread_percentage": 50}})
    r = gpuprov(tmp_path, "plan", "-i", "hosts", playbook)
    assert r.returncode == 2
    assert "[gpu-idle]" in r.stdout and f"PID {client} (train.py) are clients of its MPS daemon" in r.stdout
    r = gpuprov(tmp_path, "apply", "-i", "hosts", playbook)
    assert r.returncode == 1 and "refusing to apply without --force" in r.stdout
    assert mps.daemons(sim)["/run/nvidia-mps/gpu0"]["default_active_thread_percentage"] is None
    mps.disconnect_client(sim, client)
    assert_converged(tmp_path, playbook)
    assert mps.daemons(sim)["/run/nvidia-mps/gpu0"]["default_active_thread_percentage"] == 50.0


@pytest.mark.parametrize(("devices", "message"), [
    ([0], "mps.devices: 0: GPU 0 is in MIG mode"),
    (["gpu0/mig@2"], "names no device of this host"),
])
def test_a_device_the_host_will_not_have_is_an_error(tmp_path: Path, devices: list[Any], message: str) -> None:
    (tmp_path / "hosts").write_text(f"node1 ansible_connection=sim {H100} sim_gpu_count=1\n")
    playbook = write_play(tmp_path, {"mig": {"layout": ["3g.40gb", "3g.40gb"]}, "mps": {"devices": devices}})
    r = gpuprov(tmp_path, "plan", "-i", "hosts", playbook)
    assert r.returncode == 1 and message in r.stdout, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
