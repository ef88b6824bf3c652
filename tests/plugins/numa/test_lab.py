"""The NUMA plugin over real SSH (the lab): the wrappers land on every host, a wrapper for node 0
runs its command through the real ``/usr/bin/numactl`` (so the kernel really binds it), and a second plan is empty.

The first host is a machine made for that: two nodes of one CPU each, so node 0's CPU list (``0``) and memory are
what this test machine has, and the lab's numactl shim hands the call to the real numactl (``gpuprov.sim.numa``).
The second is a DGX H100 (two nodes of 112 CPUs), whose bindings the real machine cannot hold: there the stand-in
checks them against the simulated topology and runs the command.

MPS drop-ins and ``numa_balancing`` are not part of this test: the MPS plugin keeps its per-device files in
``/etc/gpuprov/mps`` and ``numa_balancing`` writes ``/etc/sysctl.d``, which the lab does not make private per host
(``gpuprov.testing.PRIVATE_PATHS``), so they would write this machine's ``/etc`` and collide with every other lab
running at the time. ``test_plan`` and ``test_rack`` check both on simulated hosts.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from gpuprov_numa import facts as nf

from gpuprov.sim.numa import machine_from_topology
from gpuprov.testing import Lab, require_lab

PLAYBOOK = """\
- hosts: all
  numa: {memory_policy: bind}
"""

TINY = machine_from_topology({
    "hostname": "tiny",
    "nodes": [{"id": 0, "cpus": [0], "memory_mb": 4096}, {"id": 1, "cpus": [1], "memory_mb": 4096}],
    "distances": [[10, 21], [21, 10]],
    "gpus": [{"numa_node": 0, "bus_id": "00000000:17:00.0"}, {"numa_node": 1, "bus_id": "00000000:37:00.0"}],
})


def _gpuprov(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    return subprocess.run([sys.executable, "-m", "gpuprov", *args], capture_output=True, text=True, cwd=tmp_path,
                          env=env, timeout=1200)


@pytest.mark.lab
@pytest.mark.slow
def test_wrappers_and_drop_ins_over_ssh(tmp_path: Path) -> None:
    require_lab()
    if not os.access("/usr/bin/numactl", os.X_OK):
        pytest.fail("/usr/bin/numactl is missing: scripts/test installs it (apt-get install numactl)")
    with Lab([{"name": "tiny", "machine": TINY}, {"name": "dgx", "preset": "dgx-h100"}]) as lab:
        (tmp_path / "site.yml").write_text(PLAYBOOK)
        inventory = str(lab.inventory)
        r = _gpuprov(tmp_path, "plan", "-i", inventory, "site.yml")
        assert r.returncode == 2, r.stdout + r.stderr
        r = _gpuprov(tmp_path, "apply", "-i", inventory, "site.yml")
        assert r.returncode == 0, r.stdout + r.stderr
        r = _gpuprov(tmp_path, "plan", "-i", inventory, "site.yml")
        assert r.returncode == 0 and "no changes: tiny, dgx" in r.stdout, r.stdout + r.stderr

        for host in ("tiny", "dgx"):
            machine = lab.host(host).machine
            for gpu in machine.gpus:
                assert lab.run(host, f"test -x /usr/local/bin/gpu{gpu.index}-run").ok, (host, gpu.index)

        # node 0 of the tiny host is this machine's node 0: the real numactl binds, the real kernel reports it
        shown = lab.run("tiny", "gpu0-run /usr/bin/numactl --show", check=True).stdout
        parsed = nf.parse_numactl_show(shown)
        assert (parsed.policy, parsed.physcpubind, parsed.membind) == ("bind", (0,), (0,)), shown
        status = lab.run("tiny", "gpu0-run grep -E '^(Cpus|Mems)_allowed_list' /proc/self/status",
                         check=True).stdout
        assert "Cpus_allowed_list:\t0\n" in status, status
        env = lab.run("tiny", "gpu0-run printenv CUDA_VISIBLE_DEVICES", check=True).stdout.strip()
        assert env == TINY.gpus[0].uuid

        # the DGX's nodes are checked by the stand-in against its simulated topology
        for index in (0, 5):
            parsed = nf.parse_numactl_show(lab.run("dgx", f"gpu{index}-run numactl --show", check=True).stdout)
            node = lab.host("dgx").machine.gpu(index).numa_node
            assert parsed.membind == (node,), index
