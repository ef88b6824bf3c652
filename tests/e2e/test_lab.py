"""The SSH lab itself: hosts reachable over real SSH with checked host keys, each showing its own simulated
machine and private file tree; a host can be cut off; teardown (and the clean-up after a crash) leaves
nothing.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import paramiko
import pytest

import gpuprov
from gpuprov.testing import (
    Lab,
    LabHost,
    _base_lock,
    cleanup_stale,
    lab_hosts,
    missing_parts,
    require_lab,
)

# Four DGX H100 (2 NUMA nodes), two DGX A100 (8 NUMA nodes) and two generic two-A30 servers.
RACK = (
    lab_hosts(4, preset="dgx-h100", groups=["h100"])
    + lab_hosts(2, preset="dgx-a100", groups=["a100"])
    + lab_hosts(2, gpu="NVIDIA A30", count=2, groups=["a30"])
)


@pytest.fixture(scope="module")
def rack() -> Iterator[Lab]:
    require_lab()
    with Lab(RACK, groups={"dgx": ["host1", "host2", "host3", "host4", "host5", "host6"]}) as lab:
        yield lab


def connect(lab: Lab, host: LabHost, known_hosts: Path, timeout: float = 5.0) -> paramiko.SSHClient:
    """Connect the way gpuprov does: host keys from a known_hosts file, unknown keys refused."""
    client = paramiko.SSHClient()
    client.get_host_keys().load(str(known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        client.connect(host.address, port=22, username="root", key_filename=str(lab.client_key),
                       timeout=timeout, banner_timeout=timeout, auth_timeout=timeout,
                       allow_agent=False, look_for_keys=False)
    except BaseException:
        client.close()
        raise
    return client


def ssh_run(client: paramiko.SSHClient, command: str, timeout: float = 30.0) -> tuple[int, str, str]:
    _, out, err = client.exec_command(command, timeout=timeout)
    status = out.channel.recv_exit_status()
    return status, out.read().decode(), err.read().decode()


def node_list(ids: list[int]) -> str:
    from gpuprov.sim.sysfs import format_list

    return format_list(ids)


# --------------------------------------------------------------------------------------------- the rack


@pytest.mark.lab
def test_rack_starts_within_seconds(rack: Lab) -> None:
    assert len(rack) == 8
    assert rack.start_seconds < 15, f"8 hosts took {rack.start_seconds:.1f}s to start"
    assert len({h.address for h in rack}) == 8
    for h in rack:
        assert h.address.startswith("10.")


@pytest.mark.lab
def test_each_host_over_ssh_shows_its_own_machine(rack: Lab) -> None:
    def check(host: LabHost) -> None:
        machine = host.machine
        with connect(rack, host, rack.known_hosts) as client:
            status, out, err = ssh_run(client, "hostname; echo $GPUPROV_SIM_STATE")
            assert status == 0, err
            assert out.split() == [host.name, str(host.state_dir)]

            status, out, err = ssh_run(client, "nvidia-smi -L")
            assert status == 0, err
            lines = out.splitlines()
            assert len(lines) == len(machine.gpus), out
            for gpu, line in zip(sorted(machine.gpus, key=lambda g: g.index), lines, strict=True):
                assert line == f"GPU {gpu.index}: {gpu.product} (UUID: {gpu.uuid})"

            ids = sorted(n.id for n in machine.numa_nodes)
            status, out, err = ssh_run(client, "numactl --hardware")
            assert status == 0, err
            assert out.splitlines()[0] == f"available: {len(ids)} nodes ({node_list(ids)})"
            for node in machine.numa_nodes:
                if node.cpus:
                    assert f"node {node.id} cpus: {' '.join(map(str, node.cpus))}" in out.splitlines()

            status, out, err = ssh_run(client, "cat /sys/devices/system/node/online")
            assert (status, out) == (0, node_list(ids) + "\n"), err

            gpu = machine.gpus[-1]
            from gpuprov.sim.sysfs import bdf_to_sysfs

            pci = f"/sys/bus/pci/devices/{bdf_to_sysfs(gpu.bus_id)}"
            status, out, err = ssh_run(client, f"cat {pci}/numa_node")
            assert (status, out.strip()) == (0, str(gpu.numa_node)), err

    presets = {h.name: h.machine.gpus[0].product for h in rack}
    assert len(set(presets.values())) == 3, presets  # three kinds of machine in one rack
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(check, rack.hosts))


@pytest.mark.lab
def test_files_written_in_one_host_stay_in_it(rack: Lab) -> None:
    unit = f"/etc/systemd/system/gpuprov-lab-probe-{rack.name}.service"
    one, other = rack.host("host1"), rack.host("host2")
    with connect(rack, one, rack.known_hosts) as client:
        assert ssh_run(client, f"echo '[Service]' > {unit} && cat {unit}")[:2] == (0, "[Service]\n")
        # /etc/default and /var/lib are this machine's, copy-on-write: readable, and written privately
        assert ssh_run(client, "ls /etc/default >/dev/null && touch /etc/default/gpuprov-lab-probe")[0] == 0
        # all of /etc: what plugins write there (/etc/gpuprov, /etc/sysctl.d) is the host's own
        assert ssh_run(client, "mkdir -p /etc/gpuprov-lab-probe && touch /etc/sysctl.d/99-gpuprov-lab-probe.conf")[0] \
            == 0
    with connect(rack, other, rack.known_hosts) as client:
        assert ssh_run(client, f"test -e {unit}")[0] == 1
        assert ssh_run(client, "test -e /etc/default/gpuprov-lab-probe")[0] == 1
        assert ssh_run(client, "test -e /etc/gpuprov-lab-probe")[0] == 1
    assert not Path(unit).exists()
    assert not Path("/etc/default/gpuprov-lab-probe").exists()
    assert not Path("/etc/gpuprov-lab-probe").exists() and not Path("/etc/sysctl.d/99-gpuprov-lab-probe.conf").exists()
    assert one.path(unit).read_text() == "[Service]\n"
    assert rack.run("host1", f"cat {unit}").stdout == "[Service]\n"
    assert rack.run("host3", f"test -e {unit}").exit_code == 1


@pytest.mark.lab
def test_unknown_and_wrong_host_keys_are_refused(rack: Lab, tmp_path: Path) -> None:
    host = rack.host("host1")
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        connect(rack, host, empty)
    # another host's key recorded for this address: a changed key, refused as well
    other_key = rack.host("host2").host_key_line
    wrong = tmp_path / "wrong_known_hosts"
    wrong.write_text(f"{host.address} {other_key}\n")
    with pytest.raises(paramiko.BadHostKeyException):
        connect(rack, host, wrong)


@pytest.mark.lab
def test_inventory_reaches_every_host(rack: Lab) -> None:
    text = rack.inventory.read_text()
    for h in rack:
        line = next(x for x in text.splitlines() if x.startswith(h.name + " "))
        assert f"ansible_host={h.address} " in line
        assert "ansible_user=root" in line
        assert f"ansible_ssh_private_key_file={rack.client_key}" in line
        assert f"-o UserKnownHostsFile={rack.known_hosts} -o StrictHostKeyChecking=yes" in line
    assert "[h100]\nhost1\nhost2\nhost3\nhost4\n" in text
    assert "[a30]\nhost7\nhost8\n" in text
    assert "[dgx]\nhost1\n" in text
    if shutil.which("ansible-inventory"):  # Ansible's own reading of it, where ansible-core is installed
        proc = subprocess.run(["ansible-inventory", "-i", str(rack.inventory), "--list"],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        data = json.loads(proc.stdout)
        assert data["a100"]["hosts"] == ["host5", "host6"]
        assert data["_meta"]["hostvars"]["host8"]["ansible_host"] == rack.host("host8").address


@pytest.mark.lab
def test_a_placed_process_shows_in_nvidia_smi(rack: Lab) -> None:
    pid = rack.add_process("host7", gpu=1, name="python3")
    try:
        assert any(p.pid == pid and p.gpu == 1 for p in rack.host("host7").machine.processes)
        with rack.ssh("host7") as client:
            status, out, err = ssh_run(client, "nvidia-smi --query-compute-apps=pid,process_name "
                                               "--format=csv,noheader")
        assert status == 0, err
        assert f"{pid}, python3" in out
    finally:
        rack.remove_process("host7", pid)
    assert rack.run("host7", "nvidia-smi --query-compute-apps=pid --format=csv,noheader").stdout.strip() == ""


# ------------------------------------------------------------------------------------- cutting a host off


@pytest.mark.lab
def test_link_down_makes_a_host_unreachable_until_link_up(gpuprov_lab) -> None:  # noqa: ANN001
    lab = gpuprov_lab(2, gpu="NVIDIA A30")
    lab.link_down("host1")
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        lab.ssh("host1", timeout=2)
    assert time.monotonic() - t0 < 6
    with lab.ssh("host2") as client:  # the others are untouched
        assert ssh_run(client, "hostname")[1] == "host2\n"
    lab.link_up("host1")
    with lab.ssh("host1") as client:
        assert ssh_run(client, "hostname")[1] == "host1\n"


@pytest.mark.lab
def test_stopped_sshd_refuses_then_serves_again(gpuprov_lab) -> None:  # noqa: ANN001
    lab = gpuprov_lab(1, gpu="NVIDIA A30")
    lab.stop_sshd("host1")
    with pytest.raises(paramiko.ssh_exception.NoValidConnectionsError):
        lab.ssh("host1", timeout=2)
    assert lab.run("host1", "hostname").stdout == "host1\n"  # the host itself is still up
    lab.start_sshd("host1")
    with lab.ssh("host1") as client:
        assert ssh_run(client, "true")[0] == 0


# ------------------------------------------------------------------------------------------- teardown


def leftovers(name: str, directory: Path) -> list[str]:
    """Everything of the lab ``name`` still on this machine: namespaces, mounts, processes, veths, files."""
    found: list[str] = []
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    found += [f"netns {line}" for line in netns.splitlines() if line.startswith(name + "-")]
    mounts = Path("/proc/mounts").read_text()
    found += [f"mount {line}" for line in mounts.splitlines() if str(directory) in line]
    pgrep = subprocess.run(["pgrep", "-a", "-f", f"{directory}/|gpuprov-lab-marker-{name}"],
                           capture_output=True, text=True)
    found += [f"process {line}" for line in pgrep.stdout.splitlines()]
    links = subprocess.run(["ip", "-o", "link", "show", "type", "veth"], capture_output=True, text=True)
    # a lab's veth carries the namespace it leads to as its alias (its name is reused by later labs)
    found += [f"link {line[:60]}" for line in links.stdout.splitlines() if f"gpuprov-lab:{name}-" in line]
    if directory.exists():
        found.append(f"directory {directory}")
    return found


STRAYS = "nohup sh -c 'exec -a gpuprov-lab-marker-{name} sleep 600' >/dev/null 2>&1 &"


@pytest.mark.lab
def test_teardown_leaves_nothing_behind_even_when_the_test_failed() -> None:
    lab = Lab(lab_hosts(2, gpu="NVIDIA A30"))
    with pytest.raises(RuntimeError, match="the test failed"), lab:
        assert lab.hosts and lab.dir.is_dir()
        # processes that outlive their session: left behind by a careless teardown
        with lab.ssh("host1") as client:
            assert ssh_run(client, STRAYS.format(name=lab.name))[0] == 0
        lab.run("host2", STRAYS.format(name=lab.name), check=True)
        lab.link_down("host2")
        raise RuntimeError("the test failed")
    assert lab.closed
    assert leftovers(lab.name, lab.dir) == []


CRASHING = """
import sys, time
from gpuprov.testing import Lab, lab_hosts
lab = Lab(lab_hosts(2, gpu="NVIDIA A30")).start()
lab.run("host1", {strays!r}.format(name=lab.name), check=True)
print(lab.name, flush=True)
time.sleep(120)
"""


@pytest.mark.lab
def test_cleanup_stale_removes_what_a_killed_run_left() -> None:
    path = [str(Path(gpuprov.__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in path if p))
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(CRASHING.format(strays=STRAYS))],
                            stdout=subprocess.PIPE, text=True, env=env)
    base = Path(os.environ.get("GPUPROV_LAB_DIR") or "/var/tmp/gpuprov-lab")
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 60)  # bounded: a hung child fails the test
        name = proc.stdout.readline().strip() if ready else ""
        assert name, "the crashing run did not start its lab"
        # Hold the labs' lock so a lab starting in a parallel run does not clean up before we look.
        with _base_lock(base):
            proc.send_signal(signal.SIGKILL)  # no atexit, no teardown: everything stays behind
            proc.wait(10)
            assert leftovers(name, base / name), "the killed run should have left its lab behind"
            assert name in cleanup_stale(base, _locked=True)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert leftovers(name, base / name) == []


# ------------------------------------------------------------------------------ CI never skips a lab test


def test_missing_parts_skip_locally_and_fail_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    import gpuprov.testing as testing

    monkeypatch.setattr(testing, "missing_parts", lambda: ["/usr/sbin/sshd (apt-get install openssh-server)"])
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"sshd \(apt-get install openssh-server\)"):
        require_lab()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="openssh-server"):
        require_lab()


def test_missing_parts_names_each_part_and_its_package(monkeypatch: pytest.MonkeyPatch) -> None:
    import gpuprov.testing as testing

    real = testing._which
    monkeypatch.setattr(testing, "_which", lambda name: None if name in ("ip", "unshare") else real(name))
    parts = missing_parts()
    assert "ip (apt-get install iproute2)" in parts
    assert "unshare (apt-get install util-linux)" in parts
