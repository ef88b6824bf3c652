"""Planning NUMA placement on simulated machines, checked by running what the plan installs.

Each wrapper is executed on the simulated host around ``numactl --show`` (the simulator's numactl stand-in keeps the
policy across ``exec`` as the kernel does), so a test sees the binding a job would really get, not the text of a
file. The expected nodes come from the machine the simulator was given, never from the plugin's own facts.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from gpuprov_numa import _check
from gpuprov_numa import facts as nf
from gpuprov_numa.plan import SYSTEMD_NUMA

from gpuprov.connection.base import Result
from gpuprov.errors import GpuprovError
from gpuprov.sim.machine import Machine
from gpuprov.sim.numa import machine_from_topology
from gpuprov.sim.presets import new_machine

from .simhost import NumaHost
from .test_templates import MPS_UNIT

MakeHost = Callable[[Machine], NumaHost]


def _shown(host: NumaHost, wrapper: str) -> nf.Shown:
    r = host.run(f"{wrapper} numactl --show")
    assert r.ok, r.stderr
    return nf.parse_numactl_show(r.stdout)


def _converges(host: NumaHost, settings: dict, **plan_args: object) -> list:
    changes, _ = host.plan(settings, **plan_args)  # type: ignore[arg-type]
    host.apply(changes)
    again, _ = host.plan(settings, **plan_args)  # type: ignore[arg-type]
    assert again == [], [c.id for c in again]
    return changes


@pytest.mark.parametrize("preset,nodes", [("dgx-a100", 8), ("dgx-h100", 2)])
def test_every_wrapper_binds_to_its_gpus_own_node(numa_host: MakeHost, preset: str, nodes: int) -> None:
    machine = new_machine(preset=preset, hostname="node01")
    assert len(machine.numa_nodes) == nodes
    host = numa_host(machine)
    changes = _converges(host, host.settings())
    assert sorted(c.id for c in changes) == sorted(f"numa/wrapper/gpu{g.index}-run" for g in machine.gpus)
    node_cpus = {n.id: n.cpus for n in machine.numa_nodes}
    for gpu in machine.gpus:
        shown = _shown(host, f"gpu{gpu.index}-run")
        assert shown.policy == "bind"
        assert list(shown.membind) == [gpu.numa_node]
        assert list(shown.physcpubind) == sorted(node_cpus[gpu.numa_node])
        assert list(shown.nodebind) == [gpu.numa_node]
        env = host.run(f"gpu{gpu.index}-run printenv CUDA_VISIBLE_DEVICES")
        assert env.stdout.strip() == gpu.uuid


def test_gpu_order_that_does_not_follow_node_order_is_kept(numa_host: MakeHost) -> None:
    """DGX A100: GPUs 0-1 sit on node 3 and 2-3 on node 1 (reference/numa.md §3) — the wrapper follows the GPU."""
    host = numa_host(new_machine(preset="dgx-a100", hostname="infer01"))
    _converges(host, host.settings())
    assert [_shown(host, f"gpu{i}-run").membind for i in range(4)] == [(3,), (3,), (1,), (1,)]


def test_policies_and_cpu_settings(numa_host: MakeHost) -> None:
    host = numa_host(new_machine(preset="dgx-h100", hostname="train01"))
    _converges(host, host.settings(memory_policy="preferred", cpu_binding="none"))
    shown = _shown(host, "gpu5-run")
    assert shown.policy == "preferred" and shown.preferred == "1"
    assert len(shown.physcpubind) == 224  # every CPU: not bound

    _converges(host, host.settings(memory_policy="interleave", cpu_binding="0-3"))
    shown = _shown(host, "gpu5-run")
    assert shown.policy == "interleave" and list(shown.physcpubind) == [0, 1, 2, 3]

    _converges(host, host.settings(memory_policy="local"))
    assert _shown(host, "gpu0-run").policy == "local"


def test_unknown_cpus_are_refused_with_the_host_and_device(numa_host: MakeHost) -> None:
    host = numa_host(new_machine(preset="dgx-h100", hostname="train01"))
    with pytest.raises(GpuprovError, match=r"train01: GPU 0: numa.cpu_binding names CPUs 224-230, which the host "
                                           r"does not have \(online CPUs: 0-223\)"):
        host.plan(host.settings(cpu_binding="220-230"))


def test_numa_node_minus_one_asks_topo_m(numa_host: MakeHost, fixtures_dir: Path) -> None:
    """Firmware without PCIe affinity: sysfs says -1 (and local_cpulist every CPU). ``nvidia-smi topo -m`` (a real
    capture of an 8x H100 host with the same CPU numbering) gives the node; without it the GPU is not pinned."""
    machine = new_machine(preset="dgx-h100", hostname="train01")
    for g in machine.gpus:
        g.numa_node = -1
    host = numa_host(machine)
    settings = host.settings()
    pci = nf.parse_pci(host.run(nf.probes(settings)["numa.pci"]).stdout)
    assert {p.numa_node for p in pci} == {-1} and all(len(p.local_cpus) == 224 for p in pci)

    facts = host.detect(settings)
    assert {g["node"] for g in facts["numa"]["gpus"]} == {None}
    changes, _ = host.plan(settings, facts=facts)
    assert all("does not pin (its NUMA node is unknown)" in " ".join(c.warnings) for c in changes)

    topo = (fixtures_dir / "nvidia-smi-xml/topo/h100-x8_topo-m_tabs-expanded_no-legend.txt").read_text()
    facts = host.detect(settings, replace={"numa.topo": Result(topo, "", 0)})
    assert [g["node"] for g in facts["numa"]["gpus"]] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert facts["numa"]["gpus"][0]["source"] == "nvidia-smi topo -m (sysfs numa_node is -1)"
    assert [g["numa_node"] for g in facts["gpus"]] == [0, 0, 0, 0, 1, 1, 1, 1]
    changes, _ = host.plan(settings, facts=facts)
    host.apply(changes)
    assert _shown(host, "gpu6-run").membind == (1,)


def test_single_node_host_with_minus_one(numa_host: MakeHost) -> None:
    machine = new_machine(gpu="NVIDIA A30", count=2, numa_nodes=1, hostname="a30")
    machine.gpus[1].numa_node = -1
    host = numa_host(machine)
    facts = host.detect(host.settings())
    assert [(g["node"], g["source"]) for g in facts["numa"]["gpus"]] == [(0, "sysfs numa_node"),
                                                                        (0, "the only node")]
    _converges(host, host.settings())
    assert _shown(host, "gpu1-run").membind == (0,)


def _capture_machine(fixtures_dir: Path, name: str, gpu_nodes: list[int]) -> Machine:
    """A machine whose NUMA layout is a real ``numactl -H`` capture's, with GPUs on the given nodes."""
    nodes = nf.parse_numactl_hardware((fixtures_dir / "numa" / name).read_text())
    ids = [n.id for n in nodes]
    return machine_from_topology({
        "hostname": "capture",
        "nodes": [{"id": n.id, "cpus": list(n.cpus), "memory_mb": n.memory_mb, "free_mb": n.free_mb} for n in nodes],
        "distances": [[n.distances[o] for o in ids] for n in nodes],
        "gpus": [{"numa_node": node, "bus_id": f"00000000:{0x17 + 0x20 * i:02X}:00.0"}
                 for i, node in enumerate(gpu_nodes)],
    })


def test_memory_less_node_binds_memory_to_the_nearest_node(numa_host: MakeHost, fixtures_dir: Path) -> None:
    """Threadripper 3960X NPS4: nodes 0 and 3 have CPUs but 0 MB. ``--membind=0`` would fail there."""
    host = numa_host(_capture_machine(fixtures_dir, "threadripper-3960x-nps4_memoryless-nodes_numactl_-H.txt",
                                      [0, 3]))
    changes = _converges(host, host.settings())
    assert "node 0 has no memory; memory goes to the nearest node 1" in changes[0].warnings
    shown = _shown(host, "gpu0-run")
    assert shown.membind == (1,) and list(shown.physcpubind) == [0, 1, 2, 3, 4, 5, 24, 25, 26, 27, 28, 29]
    shown = _shown(host, "gpu1-run")
    assert shown.membind == (1,) and list(shown.physcpubind)[:6] == [18, 19, 20, 21, 22, 23]


def test_cpu_less_node_never_gets_cpus_bound(numa_host: MakeHost, fixtures_dir: Path) -> None:
    """The 4-node capture: nodes 0, 1 and 3 have memory but no CPUs, node 2 has every CPU and 0 MB."""
    host = numa_host(_capture_machine(fixtures_dir, "4-node_cpuless-and-memoryless-nodes_numactl_-H.txt", [3]))
    changes = _converges(host, host.settings())
    assert changes[0].warnings == ("node 3 has no CPUs; CPUs of the nearest node 2 are used",
                                   "node 2 has no memory; memory goes to the nearest node 3")
    shown = _shown(host, "gpu0-run")
    assert list(shown.physcpubind) == list(range(8))
    assert shown.membind == (3,)  # node 2 has no memory; 0, 1 and 3 are equally far from it: the GPU's own node


def test_aurora_hbm_nodes_interleave_over_dram_nodes(numa_host: MakeHost, fixtures_dir: Path) -> None:
    host = numa_host(_capture_machine(fixtures_dir, "aurora-node_2x-xeon-max-52c_hbm-flat-mode_numactl_-H.txt",
                                      [0, 1]))
    _converges(host, host.settings(memory_policy="interleave"))
    shown = _shown(host, "gpu1-run")
    assert shown.policy == "interleave" and shown.interleave == (0, 1)  # the DRAM nodes, not HBM nodes 2 and 3


def test_mig_devices_planned_by_an_earlier_plugin_get_wrappers(numa_host: MakeHost) -> None:
    """Devices the MIG plugin is about to create (no GI id, no UUID yet) are in ``planned``; their wrappers name
    them by placement and inherit the GPU's node."""
    host = numa_host(new_machine(preset="dgx-h100", hostname="train01"))
    settings = host.settings()
    planned_mig = {"mig_devices": [
        {"gpu": 4, "gi": None, "ci": 0, "profile": "3g.40gb", "uuid": None, "placement": [4, 4]},
        {"gpu": 4, "gi": None, "ci": 0, "profile": "1c.3g.40gb", "uuid": None, "placement": [0, 4]},
        {"gpu": 4, "gi": None, "ci": 1, "profile": "2c.3g.40gb", "uuid": None, "placement": [0, 4]},
    ]}
    changes = _converges(host, settings, planned_extra=planned_mig)
    ids = [c.id for c in changes]
    assert {"numa/wrapper/gpu4-mig0-ci0-run", "numa/wrapper/gpu4-mig0-ci1-run", "numa/wrapper/gpu4-mig4-run"} <= \
        set(ids)
    text = host.sim.path("/usr/local/bin/gpu4-mig0-ci1-run").read_text()
    assert "$(mig_device_uuid 4 0 1)" in text  # GPU 4, the GI at slice 0, its second compute instance
    assert "--membind=1" in text
    # once the devices are gone, their wrappers go too
    changes, _ = host.plan(settings)
    assert sorted(c.id for c in changes) == ["numa/remove/usr/local/bin/gpu4-mig0-ci0-run",
                                             "numa/remove/usr/local/bin/gpu4-mig0-ci1-run",
                                             "numa/remove/usr/local/bin/gpu4-mig4-run"]
    host.apply(changes)
    assert host.plan(settings)[0] == []


def _install_mps_unit(host: NumaHost, unit: str = MPS_UNIT) -> None:
    """The template unit as the MPS plugin installs it (this plugin only adds drop-ins to it)."""
    path = host.sim.path("/etc/systemd/system/nvidia-mps@.service")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(unit)
    assert host.run("systemctl daemon-reload").ok


def test_mps_units_get_drop_ins(numa_host: MakeHost) -> None:
    host = numa_host(new_machine(preset="dgx-a100", hostname="infer01"))
    _install_mps_unit(host)
    settings = host.settings(wrappers=False)
    # the shape the MPS plugin leaves in planned: one record per unit instance
    mps = {"mps": {"devices": [{"name": "gpu2", "instance": "gpu2", "unit": "nvidia-mps@gpu2.service", "gpu": 2},
                               {"name": "gpu0/mig@4", "instance": "gpu0-mig4", "unit": "nvidia-mps@gpu0-mig4.service",
                                "gpu": 0}]}}
    planned = {**mps, "mig_devices": [
        {"gpu": 0, "gi": 1, "ci": 0, "profile": "3g.40gb", "uuid": "MIG-a", "placement": [0, 4]},
        {"gpu": 0, "gi": 2, "ci": 0, "profile": "3g.40gb", "uuid": "MIG-b", "placement": [4, 4]}]}
    changes = _converges(host, settings, planned_extra=planned)
    assert [c.id for c in changes] == ["numa/mps/gpu2", "numa/mps/gpu0-mig4"]
    dropin = host.sim.path("/etc/systemd/system/nvidia-mps@gpu2.service.d/50-gpuprov-numa.conf").read_text()
    assert {"CPUAffinity=16-31,144-159", "NUMAPolicy=bind", "NUMAMask=1"} <= set(dropin.splitlines())
    dropin = host.sim.path("/etc/systemd/system/nvidia-mps@gpu0-mig4.service.d/50-gpuprov-numa.conf").read_text()
    assert "NUMAMask=3" in dropin.splitlines()


def test_mps_drop_ins_on_systemd_before_243_wrap_the_command(numa_host: MakeHost) -> None:
    machine = new_machine(preset="dgx-h100", hostname="train01")
    machine.systemd_version = 239
    host = numa_host(machine)
    _install_mps_unit(host)
    path = host.sim.path("/etc/systemd/system/nvidia-mps@.service")
    settings = host.settings(wrappers=False)
    _converges(host, settings, planned_extra={"mps": {"devices": [{"instance": "gpu7"}]}})
    dropin = host.sim.path("/etc/systemd/system/nvidia-mps@gpu7.service.d/50-gpuprov-numa.conf").read_text()
    lines = dropin.splitlines()
    assert "ExecStart=" in lines and not any(line.startswith("NUMAPolicy") for line in lines)
    assert ("ExecStart=/usr/bin/numactl --physcpubind=56-111,168-223 --membind=1 -- "
            "/usr/local/libexec/gpuprov/mps-start %i") in lines
    assert SYSTEMD_NUMA == 243

    path.unlink()
    with pytest.raises(GpuprovError, match=r"train01: systemd 239 is older than 243"):
        host.plan(settings, planned_extra={"mps": {"devices": [{"instance": "gpu7"}]}})


def test_numa_balancing(numa_host: MakeHost) -> None:
    host = numa_host(new_machine(preset="dgx-h100", hostname="train01"))
    settings = host.settings(wrappers=False, numa_balancing=False)
    changes = _converges(host, settings)
    assert [c.id for c in changes] == ["numa/balancing"]
    assert host.run("cat /proc/sys/kernel/numa_balancing").stdout == "0\n"
    assert "kernel.numa_balancing = 0" in host.sim.path("/etc/sysctl.d/60-gpuprov-numa.conf").read_text()
    assert host.plan(host.settings(wrappers=False))[0] == []  # unchanged: left as it is


def test_wrapper_names_and_directory(numa_host: MakeHost) -> None:
    host = numa_host(new_machine(preset="dgx-h100", hostname="train01"))
    _converges(host, host.settings(wrapper_dir="/opt/gpu/bin", wrapper_name="run-on-gpu{gpu}"))
    assert host.run("/opt/gpu/bin/run-on-gpu3 numactl --show").ok
    assert host.run("/opt/gpu/bin/run-on-gpu3").exit_code == 2  # no command: usage
    # switching wrappers off removes what the plugin wrote, and nothing else
    host.sim.path("/opt/gpu/bin/someone-elses").write_text("#!/bin/sh\n")
    changes = _converges(host, host.settings(wrapper_dir="/opt/gpu/bin", wrappers=False))
    assert len(changes) == 8 and all(re.fullmatch(r"numa/remove/opt/gpu/bin/run-on-gpu\d", c.id) for c in changes)
    assert host.sim.path("/opt/gpu/bin/someone-elses").exists()


def test_numactl_missing_is_an_error_naming_the_fix(numa_host: MakeHost) -> None:
    host = numa_host(new_machine(preset="dgx-h100", hostname="train01"))
    facts = host.detect(host.settings(), replace={"numa.numactl_path": Result("", "", 1)})
    with pytest.raises(GpuprovError, match=r"train01: numactl is not installed.*numa.wrappers: false"):
        host.plan(host.settings(), facts=facts)


@pytest.mark.parametrize("values,problem", [
    ({"cpu_binding": "0-3,x"}, "expected node, none or a CPU list like 0-7,64-71, got '0-3,x' (a CPU list: 'x' is "
                               "not a number or a range like 0-3)"),
    ({"cpu_binding": "socket"}, "expected node, none or a CPU list like 0-7,64-71, got 'socket'"),
    ({"cpu_binding": "7-3"}, "range '7-3' runs backwards"),
    ({"wrapper_name": "gpu-run"}, "must contain {gpu}"),
    ({"mig_wrapper_name": "gpu{gpu}-mig-run"}, "must contain {device}"),
    ({"wrapper_name": "bin/gpu{gpu}"}, "no '/'"),
    ({"wrapper_name": "gpu{index}"}, "unknown field(s) index"),
    ({"wrapper_dir": "usr/local/bin"}, "an absolute directory"),
])
def test_settings_checks(values: dict, problem: str) -> None:
    problems = _check(values)
    assert problems and problem in problems[0][1], problems


def test_a_running_daemon_is_restarted_and_one_with_clients_blocks(numa_host: MakeHost) -> None:
    """A drop-in only takes effect when the daemon starts again; cutting off connected clients needs --force."""
    host = numa_host(new_machine(preset="dgx-a100", hostname="infer01"))
    _install_mps_unit(host)
    settings = host.settings(wrappers=False)
    planned = {"mps": {"devices": [{"instance": "gpu2"}, {"instance": "gpu3"}]}}
    earlier = {**host.earlier_facts(), "mps": {"daemons": [
        {"instance": "gpu2", "unit": {"active": "active"}, "servers": [4242]},
        {"instance": "gpu3", "unit": {"active": "active"}, "servers": []}]}}
    changes, _ = host.plan(settings, facts=host.detect(settings, earlier=earlier), planned_extra=planned)
    by_id = {c.id: c for c in changes}
    assert by_id["numa/mps/gpu2"].disruption.value == "gpu-idle"
    assert "server PIDs 4242" in (by_id["numa/mps/gpu2"].blocked or "")
    assert by_id["numa/mps/gpu3"].blocked is None and by_id["numa/mps/gpu3"].disruption.value == "gpu-idle"
    assert [s.command for s in by_id["numa/mps/gpu3"].steps[1:]] == [
        "systemctl daemon-reload", "systemctl try-restart nvidia-mps@gpu3.service"]


def test_gpu_memory_node_of_a_coherent_platform(numa_host: MakeHost) -> None:
    """AC922-style node ids (0, 8, 252-255; the last four are GPU memory without CPUs, princeton-traverse lscpu):
    a GPU reported on its own memory node gets the nearest CPU node's CPUs and memory, never CPUs of 252."""
    ids = [0, 8, 252, 253, 254, 255]
    near = {252: 0, 253: 0, 254: 8, 255: 8}

    def distance(a: int, b: int) -> int:
        if a == b:
            return 10
        if {a, b} == {0, 8}:
            return 40
        return 80 if near.get(a, a) == near.get(b, b) else 120

    machine = machine_from_topology({
        "hostname": "ac922",
        "nodes": [{"id": 0, "cpus": "0-63", "memory_mb": 256000}, {"id": 8, "cpus": "64-127", "memory_mb": 256000}]
        + [{"id": n, "cpus": [], "memory_mb": 16128} for n in ids[2:]],
        "distances": [[distance(a, b) for b in ids] for a in ids],
        "gpus": [{"numa_node": 252, "bus_id": "00000004:04:00.0"}, {"numa_node": 255, "bus_id": "00000035:03:00.0"}],
    })
    host = numa_host(machine)
    changes = _converges(host, host.settings())
    assert "node 252 has no CPUs; CPUs of the nearest node 0 are used" in changes[0].warnings
    shown = _shown(host, "gpu0-run")
    assert (list(shown.physcpubind), shown.membind) == (list(range(64)), (0,))
    shown = _shown(host, "gpu1-run")
    assert (list(shown.physcpubind), shown.membind) == (list(range(64, 128)), (8,))


def test_topo_m_disagreeing_with_sysfs_is_shown(numa_host: MakeHost, fixtures_dir: Path) -> None:
    """Both sources answer and differ (here: the DGX A100's sysfs and an 8x H100 host's topo -m capture): the
    kernel's view wins and the plan says so."""
    host = numa_host(new_machine(preset="dgx-a100", hostname="infer01"))
    topo = (fixtures_dir / "nvidia-smi-xml/topo/h100-x8_topo-m_tabs-expanded_no-legend.txt").read_text()
    settings = host.settings()
    facts = host.detect(settings, replace={"numa.topo": Result(topo, "", 0)})
    assert [g["node"] for g in facts["numa"]["gpus"]] == [3, 3, 1, 1, 7, 7, 5, 5]
    changes, _ = host.plan(settings, facts=facts)
    assert changes[0].warnings == ("GPU 0: sysfs says NUMA node 3, nvidia-smi topo -m says 0; placed by sysfs (the "
                                   "kernel's view)",)
    real = (fixtures_dir / "nvidia-smi-xml/topo/dgx-a100_topo-m.txt").read_text()  # the same machine's own view
    facts = host.detect(settings, replace={"numa.topo": Result(real, "", 0)})
    assert not any(g["disagree"] for g in facts["numa"]["gpus"])
