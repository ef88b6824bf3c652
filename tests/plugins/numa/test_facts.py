"""Detection from every source agrees: sysfs, ``numactl -H`` (both distance-table widths) and ``lscpu -J`` describe
the same nodes of a simulated machine, and the fallbacks take over when sysfs is missing. Bus ids and range lists
convert both ways for any value (hypothesis)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest
from gpuprov_numa import facts as nf
from helpers import require_tool
from hypothesis import given, settings
from hypothesis import strategies as st

from gpuprov.connection.base import Result
from gpuprov.sim.machine import Machine
from gpuprov.sim.presets import new_machine

from .simhost import NumaHost

MakeHost = Callable[[Machine], NumaHost]


@pytest.mark.parametrize("numactl", ["2.0.16", "2.0.19"])  # 3- and 4-character distance cells
def test_sources_agree_on_a_dgx_a100(numa_host: MakeHost, numactl: str) -> None:
    machine = new_machine(preset="dgx-a100", hostname="infer01")
    machine.numactl_version = numactl
    host = numa_host(machine)
    probes = nf.probes(host.settings())
    sysfs = nf.parse_sysfs_nodes(host.run(probes["numa.nodes"]).stdout)
    hardware = nf.parse_numactl_hardware(host.run(probes["numa.numactl"]).stdout)
    lscpu = nf.parse_lscpu_json(host.run(probes["numa.lscpu"]).stdout)
    assert sysfs is not None and len(sysfs) == 8
    assert [(n.id, n.cpus, n.memory_mb, dict(n.distances)) for n in sysfs] == \
        [(n.id, n.cpus, n.memory_mb, dict(n.distances)) for n in hardware]
    assert {str(n.id): list(n.cpus) for n in sysfs} == lscpu["nodes"]
    expected = {n.id: (tuple(n.cpus), n.memory_mb) for n in machine.numa_nodes}
    assert {n.id: (n.cpus, n.memory_mb) for n in sysfs} == expected
    assert sysfs[3].distances == {0: 12, 1: 12, 2: 12, 3: 10, 4: 32, 5: 32, 6: 32, 7: 32}


def test_without_sysfs_numactl_then_lscpu_answer(numa_host: MakeHost) -> None:
    host = numa_host(new_machine(preset="dgx-h100", hostname="train01"))
    settings = host.settings()
    facts = host.detect(settings, replace={"numa.nodes": Result("", "", 0)})
    assert facts["numa"]["source"] == "numactl -H"
    assert [n["id"] for n in facts["numa_nodes"]] == [0, 1]
    facts = host.detect(settings, replace={"numa.nodes": Result("", "", 0),
                                           "numa.numactl": Result("No NUMA available on this system\n", "", 1)})
    assert facts["numa"]["source"] == "lscpu -J"
    assert [len(n["cpus"]) for n in facts["numa_nodes"]] == [112, 112]
    assert [g["node"] for g in facts["numa"]["gpus"]] == [0, 0, 0, 0, 1, 1, 1, 1]  # sysfs PCI still answers


def test_mig_devices_inherit_their_gpus_node(numa_host: MakeHost) -> None:
    host = numa_host(new_machine(preset="dgx-a100", hostname="infer01"))
    earlier = {**host.earlier_facts(), "mig_devices": [
        {"gpu": 2, "gi": 1, "ci": 0, "profile": "3g.40gb", "uuid": "MIG-x", "placement": [4, 4]},
        {"gpu": 6, "gi": 2, "ci": 0, "profile": "1g.10gb", "uuid": "MIG-y", "placement": [0, 1]}]}
    facts = host.detect(host.settings(), earlier=earlier)
    assert [(d["gpu"], d["node"]) for d in facts["numa"]["mig_devices"]] == [(2, 1), (6, 5)]
    rows = nf.view(facts)
    assert ["  MIG gpu2/gi1/ci0 3g.40gb", "1", "16-31,144-159"] == rows[3][:3]


def test_gpus_are_found_without_an_earlier_plugin(numa_host: MakeHost) -> None:
    """No MIG plugin in the run: the GPU list comes from this plugin's own nvidia-smi query."""
    host = numa_host(new_machine(preset="dgx-h100", hostname="train01"))
    machine = host.machine
    query = "".join(f"{g.index}, {g.uuid}, {g.bus_id}, {g.product}\n" for g in machine.gpus)
    facts = host.detect(host.settings(), replace={"numa.gpus": Result(query, "", 0)}, earlier={})
    assert [(g["index"], g["uuid"], g["numa_node"]) for g in facts["gpus"]] == \
        [(g.index, g.uuid, g.numa_node) for g in machine.gpus]


@settings(deadline=None)  # the suite shares the machine: timing is not the property
@given(st.integers(0, 0xFFFF), st.integers(0, 0xFF), st.integers(0, 0x1F), st.integers(0, 7))
def test_bus_ids_convert_by_fields(domain: int, bus: int, device: int, function: int) -> None:
    nvml = f"{domain:08X}:{bus:02X}:{device:02X}.{function}"
    sysfs = nf.sysfs_bus_id(nvml)
    assert sysfs == f"{domain:04x}:{bus:02x}:{device:02x}.{function}"
    assert nf.nvml_bus_id(sysfs) == nvml
    assert nf.sysfs_bus_id(f"{domain:04X}:{bus:02X}:{device:02X}.{function}") == sysfs  # the legacy 4-digit form


@settings(deadline=None)
@given(st.sets(st.integers(0, 300), max_size=60))
def test_range_lists_round_trip(cpus: set[int]) -> None:
    text = nf.format_cpulist(sorted(cpus))
    assert nf.parse_cpulist(text) == sorted(cpus)
    assert nf.parse_cpulist(" ".join(map(str, cpus))) == sorted(cpus)  # numactl's blank-separated form


def test_probes_on_this_machine_agree_with_its_real_numactl() -> None:
    """The probes are shell text: run them with the real bash against this machine's own sysfs (what a local host
    or an SSH login does) and compare with the real ``numactl -H`` and ``lscpu -J``."""
    require_tool("numactl")
    require_tool("lscpu")
    outputs = {}
    for name, command in nf.probes({}).items():
        r = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60)
        outputs[name] = Result(r.stdout, r.stderr, r.returncode)
    facts = nf.gather(outputs, {})
    assert facts["numa"]["source"] == "sysfs"
    hardware = nf.parse_numactl_hardware(outputs["numa.numactl"].stdout)
    assert [(n["id"], tuple(n["cpus"]), n["memory_mb"]) for n in facts["numa_nodes"]] == \
        [(n.id, n.cpus, n.memory_mb) for n in hardware]
    lscpu = nf.parse_lscpu_json(outputs["numa.lscpu"].stdout)
    assert {str(n["id"]): n["cpus"] for n in facts["numa_nodes"]} == lscpu["nodes"]
    assert facts["numa"]["systemd"] is not None and facts["numa"]["numactl"]
