"""The issue's "done when", over real SSH in the lab: MPS on every MIG device of an H100 host leaves one daemon per
device under the ``systemctl`` stand-in, each started with its device's current UUID, its own pipe directory and
the configured thread percentage; a second plan is empty; re-creating the MIG layout and applying again leaves
every daemon bound to the new UUIDs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gpuprov.sim import mps
from gpuprov.sim.host import SimHost
from gpuprov.testing import Lab, lab_hosts, require_lab

PLAY = [{"name": "MPS on every MIG device", "hosts": "all",
         "mig": {"layout": ["3g.40gb@0", "3g.40gb@4"]},
         "mps": {"devices": "mig", "active_thread_percentage": 25}}]


def gpuprov(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gpuprov", *args], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}, timeout=300)


@pytest.mark.lab
def test_mps_on_every_mig_device_of_an_h100_over_ssh(tmp_path: Path) -> None:
    require_lab()
    (tmp_path / "mps.yml").write_text(yaml.safe_dump(PLAY, sort_keys=False))
    with Lab(lab_hosts(1, gpu="NVIDIA H100 80GB HBM3", count=1)) as lab:
        inventory = str(lab.inventory)
        node = lab.host("host1")

        def daemons_match_devices() -> dict[int, str]:
            sim = SimHost(node.sim.state_dir, node.sim.root)
            uuids = {gi.start: gi.compute_instances[0].uuid for gi in sim.load().gpu(0).gpu_instances}
            assert sorted(uuids) == [0, 4]
            daemons = mps.daemons(sim)
            assert sorted(daemons) == ["/run/nvidia-mps/gpu0-mig0", "/run/nvidia-mps/gpu0-mig4"]
            for start, uuid in uuids.items():
                pipe = f"/run/nvidia-mps/gpu0-mig{start}"
                assert daemons[pipe]["visible_devices"] == uuid
                assert daemons[pipe]["unit"] == f"nvidia-mps@gpu0-mig{start}.service"
                answer = lab.run("host1", f"echo get_default_active_thread_percentage | "
                                          f"CUDA_MPS_PIPE_DIRECTORY={pipe} nvidia-cuda-mps-control")
                assert (answer.exit_code, answer.stdout) == (0, "25.0\n"), answer
                state = lab.run("host1", f"systemctl is-active nvidia-mps@gpu0-mig{start}.service")
                assert state.stdout == "active\n", state
            return uuids

        r = gpuprov(tmp_path, "apply", "-i", inventory, "mps.yml")
        assert r.returncode == 0, r.stdout + r.stderr
        first = daemons_match_devices()
        r = gpuprov(tmp_path, "plan", "-i", inventory, "mps.yml")
        assert r.returncode == 0 and "no changes: host1" in r.stdout, r.stdout + r.stderr

        # the layout re-created by hand, at the same placements: new UUIDs
        r2 = lab.run("host1", "nvidia-smi mig -dci && nvidia-smi mig -dgi && "
                              "nvidia-smi mig -cgi 3g.40gb:0,3g.40gb:4 -C")
        assert r2.exit_code == 0, r2
        r = gpuprov(tmp_path, "apply", "-i", inventory, "mps.yml")
        assert r.returncode == 0, r.stdout + r.stderr
        second = daemons_match_devices()
        assert not set(first.values()) & set(second.values())
        r = gpuprov(tmp_path, "plan", "-i", inventory, "mps.yml")
        assert r.returncode == 0 and "no changes: host1" in r.stdout, r.stdout + r.stderr

        # mps-run gives a job the daemon's pipe directory and the device's current UUID
        job = lab.run("host1", "mps-run gpu0/mig@4 -- sh -c 'echo $CUDA_MPS_PIPE_DIRECTORY $CUDA_VISIBLE_DEVICES'")
        assert (job.exit_code, job.stdout) == (0, f"/run/nvidia-mps/gpu0-mig4 {second[4]}\n"), job
