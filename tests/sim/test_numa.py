"""The NUMA face of the simulator: numactl/lscpu against the real captures, the sysfs tree, policy runs.

The captures' machines (a 4-node box with CPU-less nodes, Aurora's HBM nodes, a threadripper with
memory-less nodes...) are not presets, so the cases under ``cases/numa/`` describe them with
``host: {numa_topology: ...}`` and this module runs them with
:func:`gpuprov.sim.numa.machine_from_topology`, comparing exactly as the generic golden runner does
(``test_golden.py``), so they do not wait for the presets.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import require_tool

from gpuprov.sim.commands import load_all
from gpuprov.sim.host import Result, SimHost
from gpuprov.sim.machine import Gpu, Machine, NumaNode
from gpuprov.sim.numa import (
    POLICY_ENV,
    Topology,
    apply_topology,
    lscpu_list,
    machine_from_topology,
    real_numactl,
)
from gpuprov.sim.sysfs import (
    bdf_from_sysfs,
    bdf_to_sysfs,
    bind_mounts,
    ensure_sysfs,
    format_cpumask,
    format_list,
    parse_list,
    write_sysfs,
)

CASES = Path(__file__).parent / "cases" / "numa"
ROOT = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------------------------------- helpers


def build(host: dict[str, Any]) -> Machine:
    """The machine a case describes: its own topology, or a preset (with a topology on top)."""
    spec = dict(host)
    topology = spec.pop("numa_topology", None)
    if spec:
        presets = pytest.importorskip("gpuprov.sim.presets")
        machine = presets.new_machine(**spec)
        return apply_topology(machine, topology) if topology else machine
    return machine_from_topology(topology or {})


def run(host: SimHost, command: str | list[str], stdin: str = "",
        env: dict[str, str] | None = None) -> Result:
    argv = shlex.split(command) if isinstance(command, str) else list(command)
    return load_all()[argv[0]](host, argv, stdin, env or {})


def new_host(tmp_path: Path, machine: Machine) -> SimHost:
    host = SimHost(tmp_path / "host")
    host.save(machine)
    return host


def dgx_a100() -> Machine:
    """A DGX A100-like machine: 2x EPYC 7742 in NPS4 (8 nodes), GPUs 0-1 on node 3, 2-3 on 1, 4-5 on 7, 6-7
    on 5 (NVIDIA/nccl#1505)."""
    nodes = []
    for n in range(8):
        distances = [10 if m == n else 12 if m // 4 == n // 4 else 32 for m in range(8)]
        cpus = list(range(16 * n, 16 * n + 16)) + list(range(128 + 16 * n, 128 + 16 * n + 16))
        nodes.append(NumaNode(n, cpus, 128700, distances))
    buses = ["07", "0F", "47", "4E", "87", "90", "B7", "BD"]
    gpu_nodes = [3, 3, 1, 1, 7, 7, 5, 5]
    gpus = [
        Gpu(i, "NVIDIA A100-SXM4-40GB", f"GPU-{i:08x}-1111-2222-3333-444444444444", f"14210000{i:05d}",
            f"00000000:{bus}:00.0", gpu_nodes[i], 40960)
        for i, bus in enumerate(buses)
    ]
    return Machine("dgx", "580.126.09", "13.0", gpus, nodes, cpu_model="AMD EPYC 7742 64-Core Processor")


AURORA = {
    "cpu_model": "Intel(R) Xeon(R) CPU Max 9470C",
    "nodes": [
        {"id": 0, "cpus": "0-51,104-155", "memory_mb": 515524},
        {"id": 1, "cpus": "52-103,156-207", "memory_mb": 514994},
        {"id": 2, "cpus": "", "memory_mb": 65536},
        {"id": 3, "cpus": "", "memory_mb": 65536},
    ],
    "distances": [[10, 21, 13, 23], [21, 10, 23, 13], [13, 23, 10, 23], [23, 13, 23, 10]],
}
THREADRIPPER = {
    "cpu_model": "AMD Ryzen Threadripper 3960X 24-Core Processor",
    "nodes": [
        {"id": 0, "cpus": "0-5,24-29", "memory_mb": 0},
        {"id": 1, "cpus": "6-11,30-35", "memory_mb": 64307},
        {"id": 2, "cpus": "12-17,36-41", "memory_mb": 64472},
        {"id": 3, "cpus": "18-23,42-47", "memory_mb": 0},
    ],
    "distances": {"local": 10, "remote": 12},
}


# ----------------------------------------------------------------------------------------------- captures


@pytest.mark.parametrize("on_preset", [False, True], ids=["bare", "over-a-preset"])
@pytest.mark.parametrize("case_file", sorted(CASES.glob("*.yaml")), ids=lambda p: p.name)
def test_capture(case_file: Path, on_preset: bool, fixtures_dir: Path, tmp_path: Path) -> None:
    """``over-a-preset``: the topology applied to a full 8-GPU machine, as ``new_machine(numa_topology=...)``
    does for the generic golden runner, must print the same."""
    case = yaml.safe_load(case_file.read_text())
    expected = (fixtures_dir / case["fixture"]).read_text()
    host_spec = case.get("host", {})
    if on_preset:
        machine = apply_topology(dgx_a100(), host_spec["numa_topology"])
    else:
        machine = build(host_spec)
    host = new_host(tmp_path, machine)
    for step in case.get("setup", []):
        assert run(host, step).exit_code == 0, step
    result = run(host, case["command"], case.get("stdin", ""))
    stream = case.get("stream", "stdout")
    actual = {"stdout": result.stdout, "stderr": result.stderr, "both": result.stdout + result.stderr}[stream]
    assert result.exit_code == case.get("exit_code", 0), result.stderr
    if case.get("compare", "exact") == "lines":
        patterns = [re.compile(p) for p in case["lines"]]

        def keep(text: str) -> list[str]:
            return [line.rstrip() for line in text.splitlines() if any(p.search(line) for p in patterns)]

        assert keep(expected), "the line patterns match nothing in the fixture"
        assert keep(actual) == keep(expected)
    else:
        assert actual == expected


def test_every_numactl_and_lscpu_capture_has_a_case(fixtures_dir: Path) -> None:
    covered = {yaml.safe_load(p.read_text())["fixture"] for p in CASES.glob("*.yaml")}
    wanted = {
        f"numa/{p.name}" for p in (fixtures_dir / "numa").iterdir()
        if p.name.split("_")[2:3] and re.search(r"_(numactl|lscpu)_", p.name)
    }
    assert wanted <= covered, sorted(wanted - covered)


# ----------------------------------------------------------------------------------------------- sysfs


def test_formats() -> None:
    assert format_list([0, 1]) == "0-1"
    assert format_list([0, 8, 252, 253, 254, 255]) == "0,8,252-255"
    assert format_list([]) == ""
    assert parse_list("0-3,8\n") == [0, 1, 2, 3, 8]
    assert lscpu_list([0, 1]) == "0,1" and lscpu_list([0, 1, 2]) == "0-2"
    assert format_cpumask([0, 1], 2) == "3"
    assert format_cpumask(range(48), 48) == "ffff,ffffffff"
    assert format_cpumask([0, 255], 256) == "80000000," + ",".join(["00000000"] * 6) + ",00000001"


def test_bus_ids_convert_by_fields() -> None:
    assert bdf_to_sysfs("00000000:C1:00.0") == "0000:c1:00.0"
    assert bdf_to_sysfs("00000009:01:00.0") == "0009:01:00.0"  # GH200: non-zero domain
    assert bdf_to_sysfs("0000:C1:00.0") == "0000:c1:00.0"  # NVML's busIdLegacy
    assert bdf_from_sysfs("0000:c1:00.0") == "00000000:C1:00.0"
    assert bdf_from_sysfs(bdf_to_sysfs("00000009:BD:1F.7")) == "00000009:BD:1F.7"
    with pytest.raises(ValueError):
        bdf_to_sysfs("C1:00.0")


def test_sysfs_tree_of_an_eight_node_dgx_a100(tmp_path: Path) -> None:
    machine = dgx_a100()
    write_sysfs(machine, tmp_path)
    node = tmp_path / "sys/devices/system/node"
    for name in ("possible", "online", "has_cpu", "has_memory", "has_normal_memory"):
        assert (node / name).read_text() == "0-7\n"
    assert (node / "node3/cpulist").read_text() == "48-63,176-191\n"
    mask = (node / "node3/cpumap").read_text()
    assert mask == "00000000,00000000,ffff0000,00000000,00000000,00000000,ffff0000,00000000\n"
    assert (node / "node3/distance").read_text() == "12 12 12 10 32 32 32 32\n"
    meminfo = (node / "node3/meminfo").read_text().splitlines()
    assert meminfo[0] == "Node 3 MemTotal:       131788800 kB"
    assert re.fullmatch(r"Node 3 MemFree: +\d+ kB", meminfo[1])
    assert meminfo[-1] == "Node 3 HugePages_Surp:      0"
    pci = tmp_path / "sys/bus/pci/devices"
    assert sorted(p.name for p in pci.iterdir())[:2] == ["0000:07:00.0", "0000:0f:00.0"]
    gpu0 = pci / "0000:07:00.0"
    assert (gpu0 / "numa_node").read_text() == "3\n"
    assert (gpu0 / "local_cpulist").read_text() == "48-63,176-191\n"
    assert (gpu0 / "local_cpus").read_text() == mask
    assert (gpu0 / "vendor").read_text() == "0x10de\n"
    assert (gpu0 / "device").read_text() == "0x20b0\n"
    assert (gpu0 / "class").read_text() == "0x030200\n"
    assert (pci / "0000:47:00.0/numa_node").read_text() == "1\n"  # GPU2: node 1, not node 2
    assert (pci / "0000:bd:00.0/local_cpulist").read_text() == "80-95,208-223\n"
    assert (tmp_path / "sys/devices/system/cpu/online").read_text() == "0-255\n"
    assert (tmp_path / "proc/sys/kernel/numa_balancing").read_text() == "1\n"


def test_sysfs_gpu_without_a_node_lists_every_online_cpu(tmp_path: Path) -> None:
    machine = dgx_a100()
    machine.gpus[5].numa_node = -1
    write_sysfs(machine, tmp_path)
    gpu = tmp_path / "sys/bus/pci/devices/0000:90:00.0"
    assert (gpu / "numa_node").read_text() == "-1\n"
    assert (gpu / "local_cpulist").read_text() == "0-255\n"
    assert (gpu / "local_cpus").read_text() == ",".join(["ffffffff"] * 8) + "\n"


def test_sysfs_memoryless_and_cpuless_nodes(tmp_path: Path) -> None:
    write_sysfs(machine_from_topology(THREADRIPPER), tmp_path / "tr")
    node = tmp_path / "tr/sys/devices/system/node"
    assert (node / "has_cpu").read_text() == "0-3\n"
    assert (node / "has_memory").read_text() == "1-2\n"
    assert (node / "node0/meminfo").read_text().startswith("Node 0 MemTotal:              0 kB\n")
    write_sysfs(machine_from_topology(AURORA), tmp_path / "aurora")
    node = tmp_path / "aurora/sys/devices/system/node"
    assert (node / "has_cpu").read_text() == "0-1\n"
    assert (node / "has_memory").read_text() == "0-3\n"
    assert (node / "node2/cpulist").read_text() == "\n"
    assert (node / "node2/cpumap").read_text() == "0000," + ",".join(["00000000"] * 6) + "\n"
    assert (node / "node2/distance").read_text() == "13 23 10 23\n"
    power = machine_from_topology({"nodes": [{"id": 0, "cpus": "0-3", "memory_mb": 10},
                                             {"id": 8, "cpus": "4-7", "memory_mb": 10},
                                             {"id": 252, "memory_mb": 5}]})
    write_sysfs(power, tmp_path / "p9")
    assert (tmp_path / "p9/sys/devices/system/node/online").read_text() == "0,8,252\n"
    assert (tmp_path / "p9/sys/devices/system/node/has_cpu").read_text() == "0,8\n"


def test_sysfs_writing_is_idempotent_and_follows_changes(tmp_path: Path) -> None:
    machine = dgx_a100()
    write_sysfs(machine, tmp_path)
    cpulist = tmp_path / "sys/devices/system/node/node3/cpulist"
    os.utime(cpulist, (1, 1))
    write_sysfs(machine, tmp_path)
    assert cpulist.stat().st_mtime == 1  # unchanged content is not rewritten
    machine.numa_nodes = machine.numa_nodes[:2]
    for n in machine.numa_nodes:
        n.distances = n.distances[:2]
    machine.gpus = machine.gpus[2:4]
    write_sysfs(machine, tmp_path)
    assert not (tmp_path / "sys/devices/system/node/node3").exists()
    left = sorted(p.name for p in (tmp_path / "sys/bus/pci/devices").iterdir())
    assert left == ["0000:47:00.0", "0000:4e:00.0"]
    with pytest.raises(ValueError):
        write_sysfs(machine, Path("/"))


def test_ensure_sysfs_in_process_and_for_the_lab(tmp_path: Path) -> None:
    host = new_host(tmp_path, dgx_a100())
    root = ensure_sysfs(host)
    assert root == host.path("/")
    assert host.path("/sys/devices/system/node/online").read_text() == "0-7\n"
    from gpuprov.sim.shell import run_line

    result = run_line(host, "cat /sys/bus/pci/devices/0000:07:00.0/numa_node "
                            "/sys/devices/system/node/has_cpu")
    assert (result.exit_code, result.stdout) == (0, "3\n0-7\n")
    assert ensure_sysfs(host) == root  # unchanged: the stamp short-cuts
    with host.locked() as machine:
        machine.kernel_numa_balancing = 0
    ensure_sysfs(host)
    assert host.path("/proc/sys/kernel/numa_balancing").read_text() == "0\n"
    lab = SimHost(host.state_dir, root="/")  # the lab: never over the real /sys
    staged = ensure_sysfs(lab)
    assert staged == host.state_dir / "sysfs"
    mounts = dict((target, source) for source, target in bind_mounts(staged))
    assert mounts["/sys/devices/system/node"] == staged / "sys/devices/system/node"
    assert (mounts["/sys/devices/system/node"] / "node7/cpulist").is_file()


# ----------------------------------------------------------------------------------------------- numactl


def test_numactl_show_follows_the_policy_into_the_command(tmp_path: Path) -> None:
    host = new_host(tmp_path, dgx_a100())
    result = run(host, "numactl --cpunodebind=3 --membind=3 -- numactl --show")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [
        "policy: bind",
        "preferred node: 3",
        "physcpubind: " + " ".join(str(c) for c in [*range(48, 64), *range(176, 192)]) + " ",
        "cpubind: 3 ",
        "nodebind: 3 ",
        "membind: 3 ",
        "preferred: 3 ",
    ]
    shown = run(host, "numactl -i 0-1 -C 0-3 -s").stdout.splitlines()
    assert shown[:4] == ["policy: interleave", "preferred node: 0 (interleave next)", "interleavemask: 0 1 ",
                         "interleavenode: 0"]
    assert shown[4:6] == ["physcpubind: 0 1 2 3 ", "cpubind: 0 "]
    assert run(host, "numactl -l -s").stdout.startswith("policy: local\npreferred node: physcpubind: 0 1 ")
    assert run(host, "numactl -p 5 numactl -s").stdout.splitlines()[:2] == ["policy: preferred",
                                                                            "preferred node: 5"]
    # --balancing with --membind: get_mempolicy reports MPOL_BIND|MPOL_F_NUMA_BALANCING, a number to numactl
    balanced = run(host, "numactl -b -m 2 numactl -s").stdout.splitlines()
    assert balanced[:2] == ["policy: [8194]", "preferred node: physcpubind: " + " ".join(map(str, range(256))) + " "]
    assert balanced[-2:] == ["membind: 0 1 2 3 4 5 6 7 ", "preferred: 2 "]


def test_numactl_policy_run_executes_the_command_in_process(tmp_path: Path) -> None:
    host = new_host(tmp_path, dgx_a100())
    script = host.path("/usr/local/bin/where")
    script.parent.mkdir(parents=True)
    script.write_text(f'#!/bin/sh\necho "args=$*"\necho "policy=${POLICY_ENV}"\ncat\nexit 3\n')
    script.chmod(0o755)
    result = run(host, ["numactl", "-N", "7", "-m", "7", "--", "where", "a b", "c"], stdin="from stdin\n",
                 env={"PATH": "/usr/local/bin:/usr/bin:/bin"})
    assert result.exit_code == 3
    lines = result.stdout.splitlines()
    assert lines[0] == "args=a b c"
    policy = json.loads(lines[1].partition("=")[2])
    assert policy["mode"] == "bind" and policy["nodes"] == [7] and policy["cpus"][0] == 112
    assert lines[2] == "from stdin"
    echoed = run(host, "numactl -N 0 -- echo hello")
    assert (echoed.exit_code, echoed.stdout) == (0, "hello\n")


def test_a_wrapper_script_reaches_numactl_through_the_shims(tmp_path: Path) -> None:
    """A rendered wrapper runs under the real /bin/sh with the stand-ins' shims on PATH: its ``exec numactl``
    is the stand-in in another process, which still hands piped stdin to the command and runs it on the
    simulated host."""
    from gpuprov.sim.shell import run_line

    host = new_host(tmp_path, dgx_a100())
    wrapper = host.path("/usr/local/bin/gpu0-run")
    wrapper.parent.mkdir(parents=True)
    wrapper.write_text('#!/bin/sh\nexec numactl --cpunodebind=3 --membind=3 -- "$@"\n')
    wrapper.chmod(0o755)
    result = run_line(host, "echo piped | gpu0-run sh -c 'read x; echo got $x; numactl -s | head -2'")
    assert (result.exit_code, result.stdout) == (0, "got piped\npolicy: bind\npreferred node: 3\n")
    status = run_line(host, "gpu0-run true; echo $?", env={"PATH": "/usr/local/bin:/usr/bin:/bin"})
    assert status.stdout == "0\n"


def _usage_head(result: Result) -> str:
    return result.stderr.split("usage:")[0]


def test_numactl_refuses_nodes_it_cannot_use(tmp_path: Path) -> None:
    tr = new_host(tmp_path / "tr", machine_from_topology(THREADRIPPER))
    # numactl#165: a memory-less node is "out of range" even for CPU binding; -C with its CPUs works
    result = run(tr, "numactl -N 0 -- numactl -s")
    assert result.exit_code == 1
    assert result.stdout == "<0> is invalid\n"
    assert _usage_head(result) == "libnuma: Warning: node argument 0 is out of range\n\n"
    assert "usage: numactl [--all | -a]" in result.stderr
    assert run(tr, "numactl -m 3 true").stdout == "<3> is invalid\n"
    ranged = run(tr, "numactl -m 1-3 true")
    assert ranged.stderr.startswith("libnuma: Warning: node argument 3 out of range\n")
    # with --all the node parses, and the kernel refuses the policy
    forced = run(tr, "numactl -a -m 0 true")
    assert (forced.exit_code, forced.stdout) == (1, "")
    assert forced.stderr == "set_mempolicy: Invalid argument\nsetting membind: Invalid argument\n"
    assert run(tr, "numactl -a -N 0 numactl -s").stdout.splitlines()[2] == (
        "physcpubind: 0 1 2 3 4 5 24 25 26 27 28 29 "
    )
    assert run(tr, "numactl -N 1 -a true").stdout == "\n"
    assert "--all/-a option must be before" in run(tr, "numactl -N 1 -a true").stderr
    # an unknown node, a CPU outside the affinity
    assert run(tr, "numactl -N 9 true").stderr.startswith("libnuma: Warning: node argument 9 is out of range")
    nested = run(tr, "numactl -C 6-11 -- numactl -C 12 true")
    assert nested.stdout == "<12> is invalid\n"
    assert nested.stderr.startswith("libnuma: Warning: cpu argument 12 is out of range\n\n")
    assert run(tr, "numactl -N 1 -- numactl -N 2 numactl -s").stdout.splitlines()[3] == "cpubind: 2 "

    aurora = new_host(tmp_path / "aurora", machine_from_topology(AURORA))
    # numactl#127: CPU binding to a memory-only node
    cpuless = run(aurora, "numactl --cpunodebind=2 true")
    assert cpuless.exit_code == 1
    assert cpuless.stderr == ("numa_sched_setaffinity_v2_int() failed: Invalid argument\n"
                              "sched_setaffinity: Invalid argument\n")
    hbm = run(aurora, "numactl -N 0 -m 2 numactl -s")  # the HBM node is fine for memory
    assert hbm.exit_code == 0 and "membind: 2 " in hbm.stdout


def test_numactl_usage_errors(tmp_path: Path) -> None:
    host = new_host(tmp_path, dgx_a100())
    conflict = run(host, "numactl -m 0 -p 1 true")
    assert (conflict.exit_code, conflict.stdout) == (1, "\n")
    assert conflict.stderr.startswith("numactl: Conflicting policiesusage: numactl")
    assert run(host, "numactl -p 0,1 true").stderr.startswith("usage: numactl")
    assert run(host, "numactl -x").stderr.startswith("numactl: invalid option -- 'x'\nusage:")
    assert run(host, "numactl -m").stderr.startswith("numactl: option requires an argument -- 'm'\n")
    assert run(host, "numactl --membind").stderr.startswith(
        "numactl: option '--membind' requires an argument\n")
    assert run(host, "numactl --version").stderr.startswith("numactl: unrecognized option '--version'\n")
    assert run(host, "numactl --p=0 true").stderr.startswith(
        "numactl: option '--p=0' is ambiguous; possibilities: '--preferred' '--preferred-many' "
        "'--physcpubind'\n")
    assert run(host, "numactl --mem=0 numactl -s").stdout.startswith("policy: bind\n")  # a unique prefix
    assert run(host, "numactl").exit_code == 1
    missing = run(host, "numactl -N 0 -- no-such-command")
    assert (missing.exit_code, missing.stdout) == (1, "\n")
    assert missing.stderr == "numactl: execution of `no-such-command': No such file or directory\n"
    after = run(host, "numactl -H -m 0")  # -m after -H: the policy is set, then the hardware shown
    assert after.exit_code == 0 and after.stdout.startswith("available: 8 nodes (0-7)\n")
    assert run(host, "numactl -m 0 -H").stderr.startswith("numactl: specify policy after --shm/--file")
    assert run(host, "numactl -i pci:07:00.0 true").stderr.startswith(
        "libnuma: Warning: Cannot read node mask for  device `07:00.0'\nusage:")  # GPUs sit behind bridges


def test_numactl_versions_change_the_output(tmp_path: Path) -> None:
    machine = machine_from_topology({
        "numactl_version": "2.0.19",
        "nodes": [{"id": 4, "cpus": "0-3", "memory_mb": 100, "free_mb": 50},
                  {"id": 5, "cpus": "4-7", "memory_mb": 100, "free_mb": 60}],
        "distances": {"local": 10, "remote": 20},
    })
    host = new_host(tmp_path, machine)
    hardware = run(host, "numactl -H").stdout.splitlines()
    assert hardware[0] == "available: 2 nodes (4-5)"
    assert hardware[-3:] == ["node     4    5 ", "   4:   10   20 ", "   5:   20   10 "]
    assert run(host, "numactl --version").stdout == "2.0.19\n"
    assert run(host, "numactl -H --cpu-compress").stdout.splitlines()[1] == "node 4 cpus: 0-3 (4)"
    weighted = run(host, "numactl -w 4,5 numactl -s").stdout.splitlines()
    assert weighted[:5] == ["policy: [6]", "preferred node: 4 (interleave next)", "interleavemask: 4 5 ",
                            "interleaveweights: 1 1", "interleavenode: 4"]
    assert run(host, "numactl -x").stderr.splitlines()[1] == "usage: numactl [--all | -a] [--balancing | -b]"
    machine.numactl_version = "2.0.16"
    host.save(machine)
    assert run(host, "numactl -w 4 true").stderr.startswith("numactl: invalid option -- 'w'")


def test_numactl_runs_the_real_numactl_in_the_lab(tmp_path: Path) -> None:
    """Root "/" (a stand-in running for real): node 0 goes through this machine's numactl, which really binds;
    a node this machine lacks (3) only passes the simulated checks and runs the command directly."""
    if real_numactl() is None:
        require_tool("numactl")
        pytest.skip("numactl is not at /usr/bin/numactl")
    state = tmp_path / "state"
    SimHost(state).save(dgx_a100())
    lab = SimHost(state, root="/")
    status = ["/bin/sh", "-c", "grep -E '^(Cpus|Mems)_allowed_list' /proc/self/status; numactl -s | head -1"]
    env = dict(os.environ)
    real_cpus = parse_list(Path("/sys/devices/system/node/node0/cpulist").read_text())
    bound = run(lab, ["numactl", f"--physcpubind={real_cpus[-1]}", "--membind=0", "--", *status], env=env)
    assert bound.exit_code == 0, bound.stderr
    assert f"Cpus_allowed_list:\t{real_cpus[-1]}\n" in bound.stdout  # the real binding happened
    assert bound.stdout.endswith("policy: bind\n")  # the real numactl's policy, seen by the real numactl -s
    direct = run(lab, ["numactl", "-N", "3", "-m", "3", "--", *status], env=env)
    assert direct.exit_code == 0, direct.stderr
    assert "Cpus_allowed_list:\t" + format_list(parse_list(
        Path("/proc/self/status").read_text().split("Cpus_allowed_list:")[1].split("\n")[0])) in direct.stdout
    refused = run(lab, ["numactl", "-N", "9", "true"], env=env)
    assert refused.stdout == "<9> is invalid\n"  # the simulated topology decides, not this machine's


def test_numactl_execs_when_it_owns_the_process(tmp_path: Path) -> None:
    """``python -m gpuprov.sim numactl`` (the lab's shim) becomes the command, stdin and exit code too."""
    if real_numactl() is None:
        require_tool("numactl")
        pytest.skip("numactl is not at /usr/bin/numactl")
    state = tmp_path / "state"
    SimHost(state).save(dgx_a100())
    env = dict(os.environ, GPUPROV_SIM_STATE=str(state), GPUPROV_SIM_ROOT="/",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, "-m", "gpuprov.sim", "numactl", "-N", "0", "--", "/bin/sh", "-c",
         'read line; echo "got $line"; echo "$GPUPROV_SIM_NUMA_POLICY"; exit 4'],
        input=b"ping\n", capture_output=True, env=env, timeout=60, check=False,
    )
    assert proc.returncode == 4, proc.stderr
    out = proc.stdout.decode().splitlines()
    assert out[0] == "got ping"
    assert json.loads(out[1])["cpus"][:2] == [0, 1]


# Command lines whose whole output (both streams, exit code) does not depend on the machine's memory use.
DIFFERENTIAL = [
    "numactl -s", "numactl -C 0 -s", "numactl -m 0 numactl -s", "numactl -i all numactl -s",
    "numactl -p 0 numactl -s", "numactl -l numactl -s", "numactl -b -m 0 numactl -s", "numactl -N 5 true",
    "numactl -C 4095 true", "numactl -m 0 -p 0 true", "numactl -x", "numactl", "numactl -N abc true",
    "numactl -N 0- true", "numactl -C 0,, true", "numactl -m 0-3 true", "numactl --membind", "numactl -m",
    "numactl --version", "numactl --p=0 true", "numactl -N 0 -- no-such-command", "numactl -a -N 0 numactl -s",
    "numactl -N 0 -a true", "numactl -m 0 -H", "numactl -t true", "numactl -L 10 true", "numactl -d",
    "numactl -N '' true", "numactl -N 0x0 numactl -s", "numactl -N +0 numactl -s", "numactl -N '!0' true",
    "numactl -C 0a true", "numactl --interleave=0 --show", "numactl -m 0 -b true", "numactl -P 0 numactl -s",
    "numactl -C all numactl -s", "numactl -N all numactl -s", "numactl --hardware=x", "numactl -sH",
    "numactl -C0 numactl -s", "numactl -N 0 -N 0 numactl -s", "numactl -p 0-0 numactl -s",
]


@pytest.mark.parametrize("command", DIFFERENTIAL)
def test_numactl_matches_the_real_numactl_here(command: str, tmp_path: Path) -> None:
    """This machine's own topology, simulated, must answer exactly as its real numactl does (when the real
    one is the Debian 12 release the simulator defaults to)."""
    real = real_numactl()
    if real is None:
        require_tool("numactl")
        pytest.skip("numactl is not at /usr/bin/numactl")
    try:
        version = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "numactl"], capture_output=True,
                                 text=True, check=True, timeout=30).stdout.split("-")[0]
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("cannot tell the installed numactl's version")
    node_dir = Path("/sys/devices/system/node")
    nodes = sorted(int(p.name[4:]) for p in node_dir.glob("node[0-9]*"))
    if nodes != [0]:
        pytest.skip("the differential test expects a single-node machine")
    meminfo = (node_dir / "node0/meminfo").read_text().split()
    machine = machine_from_topology({
        "numactl_version": version,
        "nodes": [{"id": 0, "cpus": (node_dir / "node0/cpulist").read_text().strip(),
                   "memory_mb": int(meminfo[3]) // 1024}],
        "distances": [[int((node_dir / "node0/distance").read_text())]],
    })
    host = new_host(tmp_path, machine)
    argv = shlex.split(command)
    expected = subprocess.run(argv, executable=real, capture_output=True, text=True, timeout=30, check=False)
    actual = run(host, argv)
    assert (actual.stdout, actual.stderr, actual.exit_code) == (
        expected.stdout, expected.stderr, expected.returncode)


# ----------------------------------------------------------------------------------------------- lscpu


LSCPU_DIFFERENTIAL = [
    "lscpu -p=CPU,NODE", "lscpu -e=CPU,NODE,ONLINE", "lscpu -J -e=CPU,NODE,ONLINE", "lscpu -z", "lscpu --foo",
    "lscpu -a", "lscpu operand", "lscpu -e -p", "lscpu -e=CPU,BOGUS",
]


@pytest.mark.parametrize("command", LSCPU_DIFFERENTIAL)
def test_lscpu_matches_the_real_lscpu_here(command: str, tmp_path: Path) -> None:
    """Outputs that depend only on the NUMA layout and on lscpu itself, against this machine's lscpu."""
    real = require_tool("lscpu")
    version = subprocess.run([real, "-V"], capture_output=True, text=True, timeout=30, check=False).stdout
    node_dir = Path("/sys/devices/system/node")
    nodes = [{"id": int(p.name[4:]), "cpus": (p / "cpulist").read_text().strip(), "memory_mb": 1}
             for p in sorted(node_dir.glob("node[0-9]*"), key=lambda p: int(p.name[4:]))]
    if not nodes:
        pytest.skip("no NUMA information on this machine")
    machine = machine_from_topology({"nodes": nodes, "util_linux_version": version.split()[-1]})
    host = new_host(tmp_path, machine)
    argv = shlex.split(command)
    expected = subprocess.run(argv, executable=real, capture_output=True, text=True, timeout=30, check=False)
    actual = run(host, argv)
    assert (actual.stdout, actual.stderr, actual.exit_code) == (
        expected.stdout, expected.stderr, expected.returncode)


def test_lscpu_fields_from_the_topology(tmp_path: Path) -> None:
    host = new_host(tmp_path, dgx_a100())
    fields = dict(line.split(":", 1) for line in run(host, "lscpu").stdout.splitlines())
    fields = {k: v.strip() for k, v in fields.items()}
    assert fields["CPU(s)"] == "256"
    assert fields["On-line CPU(s) list"] == "0-255"
    assert fields["Thread(s) per core"] == "2"
    assert (fields["Core(s) per socket"], fields["Socket(s)"]) == ("64", "2")
    assert fields["NUMA node(s)"] == "8"
    assert fields["NUMA node3 CPU(s)"] == "48-63,176-191"
    assert fields["L3 cache"] == "512 MiB (32 instances)"
    parsable = run(host, "lscpu -p=CPU,CORE,SOCKET,NODE").stdout.splitlines()
    assert parsable[3] == "# CPU,Core,Socket,Node"
    assert parsable[4] == "0,0,0,0" and parsable[4 + 176] == "176,48,0,3"
    assert parsable[4 + 255] == "255,127,1,7"
    compatible = run(host, "lscpu -p").stdout.splitlines()
    assert compatible[3] == "# CPU,Core,Socket,Node,,L1d,L1i,L2,L3"
    assert compatible[4] == "0,0,0,0,,0,0,0,0"
    table = run(host, "lscpu -e=CPU,NODE,SOCKET,CORE").stdout.splitlines()
    assert table[0] == "CPU NODE SOCKET CORE" and table[200] == "199    4      1   71"
    assert run(host, "lscpu -e -p").exit_code == 1
    assert run(host, "lscpu -a").stderr.startswith("lscpu: options --all, --online and --offline")
    assert run(host, "lscpu --hierarchic").exit_code == 1  # util-linux 2.38 has no --hierarchic


def test_lscpu_json_cpuless_nodes_are_null(tmp_path: Path) -> None:
    host = new_host(tmp_path, machine_from_topology(AURORA))
    data = json.loads(run(host, "lscpu -J").stdout)["lscpu"]
    fields = {item["field"]: item["data"] for item in data}
    assert fields["NUMA node(s):"] == "4"
    assert fields["NUMA node2 CPU(s):"] is None
    assert fields["NUMA node0 CPU(s):"] == "0-51,104-155"
    assert fields["Socket(s):"] == "2" and fields["Core(s) per socket:"] == "52"
    machine = host.machine
    machine.util_linux_version = "2.39.3"
    host.save(machine)
    tree = json.loads(run(host, "lscpu -J --hierarchic=always").stdout)["lscpu"]
    numa = next(item for item in tree if item["field"] == "NUMA:")
    assert numa["data"] is None
    assert [c["field"] for c in numa["children"]][:2] == ["NUMA node(s):", "NUMA node0 CPU(s):"]
    cpus = json.loads(run(host, "lscpu -J -e=CPU,NODE,ONLINE").stdout)["cpus"]
    assert cpus[0] == {"cpu": 0, "node": 0, "online": True}


def test_topology_derives_the_cpu_layout() -> None:
    topo = Topology(dgx_a100())
    assert (topo.sockets, topo.cores_per_socket, topo.threads_per_core) == (2, 64, 2)
    assert topo.places[128].core == 0 and topo.places[200].socket == 1  # SMT siblings 128 apart
    assert topo.memory_nodes == list(range(8))
    power = Topology(machine_from_topology({"cpu_model": "POWER9, altivec supported",
                                            "nodes": [{"id": 0, "cpus": "0-63", "memory_mb": 1},
                                                      {"id": 8, "cpus": "64-127", "memory_mb": 1}]}))
    assert power.places[3].core == 0 and power.places[4].core == 1 and power.places[64].socket == 1


def test_machine_json_round_trip_keeps_the_numa_fields() -> None:
    machine = machine_from_topology({
        "cpu_model": "NVIDIA Grace", "util_linux_version": "2.37.2", "numactl_version": "2.0.19",
        "nodes": [{"id": 0, "cpus": "0-71", "memory_mb": 100, "free_mb": 7}, {"id": 4, "memory_mb": 0}],
        "cpu_mhz": {3: 3000.5},
    })
    again = Machine.from_json(json.loads(json.dumps(machine.to_json())))
    assert again == machine
    assert again.numa_nodes[0].memory_free_mb == 7 and again.cpu_mhz == {"3": 3000.5}
