"""Stand-ins for ``numactl`` and ``lscpu``, computed from the simulated machine's NUMA topology.

Why: the NUMA plugin reads the topology (``numactl -H``, ``lscpu``) and wraps commands in ``numactl``; both
must meet the text, messages and exit codes of the real tools (captures: ``fixtures/numa/``; behaviour: the
numactl 2.0.16-2.0.19 and util-linux 2.32-2.39 sources, ``reference/numa.md`` §4-5) on topologies this
machine does not have: eight nodes, memory-less nodes, CPU-less HBM or GPU-memory nodes, ids 0,8,252-255.

``numactl``
    ``-H``/``--hardware`` [``--cpu-compress``], ``-s``/``--show``, ``--version`` (2.0.17+), and policy runs
    ``numactl [-a] [-b] [-N|--cpunodebind NODES] [-C|--physcpubind CPUS] [-m|--membind NODES]
    [-p|--preferred NODE] [-P|--preferred-many NODES] [-i|--interleave NODES]
    [-w|--weighted-interleave NODES] [-l|--localalloc] [--] COMMAND ARGS``. Options are processed in order,
    as numactl's getopt loop does, so ``-C 0-5 -s`` shows the binding just made. Node arguments are checked
    against the nodes *with memory* (the cpuset's ``Mems_allowed``) unless ``-a`` comes first, CPU arguments
    against the current CPU affinity. The errors are numactl's and libnuma's own: ``libnuma: Warning: node
    argument 0 is out of range`` (+ an empty line) on stderr, ``<0> is invalid`` on stdout, the usage text,
    exit 1; ``-N`` on a CPU-less node: ``numa_sched_setaffinity_v2_int() failed: Invalid argument`` and
    ``sched_setaffinity: Invalid argument``; ``-a -m`` on a memory-less node: ``set_mempolicy: Invalid
    argument`` and ``setting membind: Invalid argument``; ``Conflicting policies``; an unknown command:
    ``numactl: execution of `X': No such file or directory``. Shared-memory options (``--shm``, ``--file``,
    ``--dump``...) are not simulated.

    The policy a run sets is what ``numactl --show`` in the command (or any child) prints: it travels in the
    environment variable ``GPUPROV_SIM_NUMA_POLICY``, as the kernel keeps a real policy across ``exec``.

    How the command of a policy run is executed:

    - **in-process simulated host** (the host's root is a directory: the ``sim`` connection, the golden
      tests): through :func:`gpuprov.sim.shell.run_argv` — as ``execve`` would, no shell — so stand-ins and
      the host's scripts run on the simulated host;
    - **a real process** (the host's root is ``/``: the SSH lab, where ``numactl`` on PATH is a shim running
      this stand-in): when every node the options name is in this machine's ``Mems_allowed`` (read from
      ``/proc/self/status``, which a bind-mounted simulated sysfs cannot hide), every ``-C`` CPU is in its
      ``Cpus_allowed`` and every ``-N`` node has an allowed CPU, the REAL numactl runs with the same
      arguments, so the binding really happens (node 0 in the lab); otherwise the command runs directly (the
      simulated validation passed; this machine just lacks the node). The real binary is found by absolute
      path (``/usr/bin/numactl``, ``/bin/numactl``) and must be an ELF file, so a shim bind-mounted there can
      never recurse. Run by ``python -m gpuprov.sim`` the stand-in ``exec``s (stdin, signals and forking
      daemons behave as under the real numactl); called as a function it waits and captures the output.

``lscpu``
    The summary in util-linux's layouts: before 2.37 flat (``NUMA node(s):`` after ``Socket(s):``; caches per
    instance, ``32K``, before 2.34); from 2.37 sectioned: hierarchical (``NUMA:``, ``Caches (sum of all):``)
    when stdout is a terminal or with ``--hierarchic=always`` (2.39+), flat through a pipe (``L1d cache:``,
    ``Vulnerability X:``); ``-J`` the same as JSON (CPU-less nodes ``"data": null``); ``-e``/``-p`` the
    per-CPU tables; ``-C`` the cache table. Processor facts come from :data:`CPU_MODELS` by
    ``Machine.cpu_model``; where each CPU sits (socket, core, caches) is derived from the model (SMT siblings
    after all first threads on x86, consecutive on POWER; L3 domains in the firmware's order).

Topologies the presets cannot express (the captured machines) are built with :func:`machine_from_topology`
or :func:`apply_topology` from a small dict (see there).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .commands import stand_in
from .host import ROOT_ENV, Result, SimHost
from .machine import Gpu, Machine, NumaNode
from .sysfs import format_list, node_free_mb, parse_list, runs

__all__ = [
    "CPU_MODELS",
    "POLICY_ENV",
    "CpuModel",
    "Policy",
    "Topology",
    "apply_topology",
    "lscpu",
    "lscpu_list",
    "machine_from_topology",
    "numactl",
]

POLICY_ENV = "GPUPROV_SIM_NUMA_POLICY"
REAL_NUMACTL = ("/usr/bin/numactl", "/bin/numactl")


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


# ----------------------------------------------------------------------------------------------- CPU models


@dataclass(frozen=True)
class Cache:
    """One cache level of a core. ``shared`` is ``core`` (private), ``l3`` (an L3 domain: CCX/CCD) or
    ``socket``."""

    name: str  # as lscpu names it: L1d, L1i, L2, L3
    size_kib: int
    shared: str = "core"
    level: int = 1
    type: str = "Unified"


@dataclass(frozen=True)
class CpuModel:
    """What lscpu shows about one processor model: facts of the silicon, not of the machine.

    ``model_name`` is what lscpu prints as ``Model name``; ``model_name_since`` the util-linux release that
    first decodes it (ARM part numbers); None = known to every release (x86 ``/proc/cpuinfo``)."""

    architecture: str = "x86_64"
    op_modes: str | None = "32-bit, 64-bit"
    address_sizes: str | None = None
    vendor: str | None = "GenuineIntel"
    model_name: str | None = None
    model_name_since: str | None = None
    family: str | None = None
    model: str | None = None
    stepping: str | None = None
    cores_per_socket: int = 0  # 0: any (derived from the CPU count)
    threads_per_core: int = 1  # the usual SMT setting
    siblings: str = "offset"  # offset: thread k of core c is CPU c + k*cores (x86); consecutive: POWER
    freq_boost: bool | None = None
    max_mhz: float | None = None
    min_mhz: float | None = None
    bogomips: float | None = None
    flags: str | None = None
    virtualization: str | None = None  # AMD-V | VT-x
    caches: tuple[Cache, ...] = ()
    cores_per_l3: int = 0  # cores sharing one L3 (a CCX); 0: one L3 per socket
    l3_order: tuple[int, ...] = ()  # order in which the firmware enumerates a socket's L3 domains
    vulnerabilities: tuple[tuple[str, str], ...] = ()


_NA = "Not affected"
_SSB = "Mitigation; Speculative Store Bypass disabled via prctl"
_EPYC_GENOA_FLAGS = (
    "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ht "
    "syscall nx mmxext fxsr_opt pdpe1gb rdtscp lm constant_tsc rep_good amd_lbr_v2 nopl nonstop_tsc cpuid "
    "extd_apicid aperfmperf rapl pni pclmulqdq monitor ssse3 fma cx16 pcid sse4_1 sse4_2 movbe popcnt aes "
    "xsave avx f16c rdrand lahf_lm cmp_legacy svm extapic cr8_legacy abm sse4a misalignsse 3dnowprefetch "
    "osvw ibs skinit wdt tce topoext perfctr_core perfctr_nb bpext perfctr_llc mwaitx cpb cat_l3 cdp_l3 "
    "hw_pstate ssbd mba perfmon_v2 ibrs ibpb stibp ibrs_enhanced vmmcall fsgsbase bmi1 avx2 smep bmi2 "
    "erms invpcid cqm rdt_a avx512f avx512dq rdseed adx smap avx512ifma clflushopt clwb avx512cd sha_ni "
    "avx512bw avx512vl xsaveopt xsavec xgetbv1 xsaves cqm_llc cqm_occup_llc cqm_mbm_total cqm_mbm_local "
    "user_shstk avx512_bf16 clzero irperf xsaveerptr rdpru wbnoinvd amd_ppin cppc amd_ibpb_ret arat npt "
    "lbrv svm_lock nrip_save tsc_scale vmcb_clean flushbyasid decodeassists pausefilter pfthreshold avic "
    "v_vmsave_vmload vgif x2avic v_spec_ctrl vnmi avx512vbmi umip pku ospke avx512_vbmi2 gfni vaes "
    "vpclmulqdq avx512_vnni avx512_bitalg avx512_vpopcntdq la57 rdpid overflow_recov succor smca fsrm "
    "flush_l1d debug_swap"
)
_GRACE_FLAGS = (
    "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm jscvt fcma lrcpc dcpop "
    "sha3 sm3 sm4 asimddp sha512 sve asimdfhm dit uscat ilrcpc flagm ssbs sb paca pacg dcpodp sve2 sveaes "
    "svepmull svebitperm svesha3 svesm4 flagm2 frint svei8mm svebf16 i8mm bf16 dgh bti"
)


def _zen_caches(l2_kib: int, l3_kib: int) -> tuple[Cache, ...]:
    return (
        Cache("L1d", 32, "core", 1, "Data"),
        Cache("L1i", 32, "core", 1, "Instruction"),
        Cache("L2", l2_kib, "core", 2),
        Cache("L3", l3_kib, "l3", 3),
    )


def _sapphire_rapids_caches() -> tuple[Cache, ...]:
    return (
        Cache("L1d", 48, "core", 1, "Data"),
        Cache("L1i", 32, "core", 1, "Instruction"),
        Cache("L2", 2048, "core", 2),
        Cache("L3", 107520, "socket", 3),
    )


# Keyed by Machine.cpu_model. Values seen in captures are marked; the rest are the vendors' published figures.
CPU_MODELS: dict[str, CpuModel] = {
    # fixtures/numa asus-esc8000a-e12 (lscpu, lscpu -e): every value below, incl. the L3 enumeration order
    "AMD EPYC 9374F 32-Core Processor": CpuModel(
        address_sizes="52 bits physical, 57 bits virtual", vendor="AuthenticAMD",
        model_name="AMD EPYC 9374F 32-Core Processor", family="25", model="17", stepping="1",
        cores_per_socket=32, threads_per_core=2, freq_boost=True, max_mhz=3850.0, min_mhz=1500.0,
        bogomips=7687.93, flags=_EPYC_GENOA_FLAGS, virtualization="AMD-V", caches=_zen_caches(1024, 32768),
        cores_per_l3=4, l3_order=(0, 4, 2, 6, 3, 7, 1, 5),
        vulnerabilities=(
            ("Gather data sampling", _NA), ("Itlb multihit", _NA), ("L1tf", _NA), ("Mds", _NA),
            ("Meltdown", _NA), ("Mmio stale data", _NA), ("Reg file data sampling", _NA), ("Retbleed", _NA),
            ("Spec rstack overflow", "Mitigation; Safe RET"), ("Spec store bypass", _SSB),
            ("Spectre v1", "Mitigation; usercopy/swapgs barriers and __user pointer sanitization"),
            ("Spectre v2", "Mitigation; Enhanced / Automatic IBRS; IBPB conditional; STIBP disabled; RSB "
             "filling; PBRSB-eIBRS Not affected; BHI Not affected"),
            ("Srbds", _NA), ("Tsx async abort", _NA),
        ),
    ),
    # DGX A100 / the MI210 capture's CPU (NPS4: 4 nodes per socket)
    "AMD EPYC 7742 64-Core Processor": CpuModel(
        address_sizes="43 bits physical, 48 bits virtual", vendor="AuthenticAMD",
        model_name="AMD EPYC 7742 64-Core Processor", family="23", model="49", stepping="0",
        cores_per_socket=64, threads_per_core=2, freq_boost=True, max_mhz=2250.0, min_mhz=1500.0,
        virtualization="AMD-V", caches=_zen_caches(512, 16384), cores_per_l3=4,
    ),
    # fixtures/numa threadripper-3960x (NPS4, nodes 0 and 3 without memory)
    "AMD Ryzen Threadripper 3960X 24-Core Processor": CpuModel(
        address_sizes="43 bits physical, 48 bits virtual", vendor="AuthenticAMD",
        model_name="AMD Ryzen Threadripper 3960X 24-Core Processor", family="23", model="49", stepping="0",
        cores_per_socket=24, threads_per_core=2, freq_boost=True, max_mhz=3800.0, min_mhz=2200.0,
        virtualization="AMD-V", caches=_zen_caches(512, 16384), cores_per_l3=3,
    ),
    # DGX H100
    "Intel(R) Xeon(R) Platinum 8480C": CpuModel(
        address_sizes="46 bits physical, 57 bits virtual", model_name="Intel(R) Xeon(R) Platinum 8480C",
        family="6", model="143", stepping="8", cores_per_socket=56, threads_per_core=2, max_mhz=3800.0,
        min_mhz=800.0, virtualization="VT-x", caches=_sapphire_rapids_caches(),
    ),
    # fixtures/numa aurora-node (HBM flat mode: nodes 2 and 3 are CPU-less)
    "Intel(R) Xeon(R) CPU Max 9470C": CpuModel(
        address_sizes="46 bits physical, 57 bits virtual", model_name="Intel(R) Xeon(R) CPU Max 9470C",
        family="6", model="143", stepping="8", cores_per_socket=52, threads_per_core=2, max_mhz=3500.0,
        min_mhz=800.0, virtualization="VT-x", caches=_sapphire_rapids_caches(),
    ),
    # fixtures/numa grace-4x72c (DCGM's lscpu --json): every value below; util-linux decodes the part as
    # Neoverse-V2 from 2.39 on, so older releases print no model name (2.37) or "-" (2.38)
    "NVIDIA Grace": CpuModel(
        architecture="aarch64", op_modes="64-bit", vendor="ARM", model_name="Neoverse-V2",
        model_name_since="2.39", model="0", stepping="r0p0", cores_per_socket=72, threads_per_core=1,
        freq_boost=False, max_mhz=3420.0, min_mhz=81.0, bogomips=2000.0, flags=_GRACE_FLAGS,
        caches=(
            Cache("L1d", 64, "core", 1, "Data"), Cache("L1i", 64, "core", 1, "Instruction"),
            Cache("L2", 1024, "core", 2), Cache("L3", 116736, "socket", 3),
        ),
        vulnerabilities=(
            ("Itlb multihit", _NA), ("L1tf", _NA), ("Mds", _NA), ("Meltdown", _NA), ("Mmio stale data", _NA),
            ("Retbleed", _NA), ("Spec store bypass", _SSB),
            ("Spectre v1", "Mitigation; __user pointer sanitization"), ("Spectre v2", _NA), ("Srbds", _NA),
            ("Tsx async abort", _NA),
        ),
    ),
    # fixtures/numa princeton-traverse (AC922: SMT4, GPU memory as nodes 252-255)
    "POWER9, altivec supported": CpuModel(
        architecture="ppc64le", op_modes=None, vendor=None, model_name="POWER9, altivec supported",
        model="2.3 (pvr 004e 1203)", cores_per_socket=16, threads_per_core=4, siblings="consecutive",
        max_mhz=3800.0, min_mhz=2300.0,
        caches=(
            Cache("L1d", 32, "core", 1, "Data"), Cache("L1i", 32, "core", 1, "Instruction"),
            Cache("L2", 512, "l3", 2), Cache("L3", 10240, "l3", 3),
        ),
        cores_per_l3=2,
    ),
}
GENERIC_CPU = CpuModel()  # Machine.cpu_model "" or unknown: lscpu prints "Model name: -"


# ----------------------------------------------------------------------------------------------- topology


@dataclass(frozen=True)
class CpuPlace:
    """Where one logical CPU sits."""

    cpu: int
    node: int | None
    socket: int
    core: int
    caches: dict[str, int]
    mhz: float | None


class Topology:
    """A read-only view of a machine's NUMA and CPU layout, shared by numactl, lscpu and the tests."""

    def __init__(self, machine: Machine) -> None:
        self.machine = machine
        self.nodes: list[NumaNode] = sorted(machine.numa_nodes, key=lambda n: n.id)
        self._order = {n.id: i for i, n in enumerate(machine.numa_nodes)}
        self.by_id = {n.id: n for n in self.nodes}
        self.cpus: list[int] = sorted({c for n in self.nodes for c in n.cpus})
        self.node_of = {c: n.id for n in self.nodes for c in n.cpus}
        self.model = CPU_MODELS.get(machine.cpu_model, GENERIC_CPU)
        self._layout()

    @property
    def node_ids(self) -> list[int]:
        return [n.id for n in self.nodes]

    @property
    def memory_nodes(self) -> list[int]:
        """Nodes with memory: the cpuset's ``Mems_allowed``, what numactl accepts without ``--all``."""
        return [n.id for n in self.nodes if n.memory_mb > 0]

    @property
    def max_node(self) -> int:
        return self.nodes[-1].id if self.nodes else 0

    def distance(self, a: int, b: int) -> int:
        row = self.by_id[a].distances
        index = self._order[b]
        return row[index] if index < len(row) else 0

    def _layout(self) -> None:
        total = len(self.cpus)
        model, machine = self.model, self.machine
        threads = machine.cpu_threads_per_core or model.threads_per_core or 1
        if total % threads:
            threads = 1
        sockets = machine.cpu_sockets
        if not sockets and model.cores_per_socket:
            per_socket = model.cores_per_socket * threads
            if total >= per_socket and total % per_socket == 0:
                sockets = total // per_socket
        if not sockets:
            cpu_nodes = [n for n in self.nodes if n.cpus]
            even = len(cpu_nodes) >= 2 and len(cpu_nodes) % 2 == 0
            sockets = 2 if even and total % (2 * threads) == 0 else 1
        if total % (sockets * threads):
            sockets, threads = 1, 1
        self.sockets, self.threads_per_core = sockets, threads
        self.cores_per_socket = total // (sockets * threads) if total else 0
        cores = self.cores_per_socket
        per_l3 = model.cores_per_l3 if model.cores_per_l3 and cores % model.cores_per_l3 == 0 else 0
        domains = cores // per_l3 if per_l3 else 1
        order = model.l3_order if len(model.l3_order) == domains else tuple(range(domains))
        self.places: dict[int, CpuPlace] = {}
        for index, cpu in enumerate(self.cpus):
            if model.siblings == "consecutive":
                phys = index // threads
            else:
                phys = index % (sockets * cores) if cores else 0
            socket = phys // cores if cores else 0
            local = phys % cores if cores else 0
            if per_l3:
                l3 = socket * domains + order[local // per_l3]
                core_id = l3 * per_l3 + local % per_l3
            else:
                l3, core_id = socket, phys
            caches = {}
            for cache in model.caches:
                caches[cache.name] = {"core": core_id, "l3": l3, "socket": socket}[cache.shared]
            mhz = machine.cpu_mhz.get(str(cpu), model.min_mhz) if model.max_mhz else None
            self.places[cpu] = CpuPlace(cpu, self.node_of.get(cpu), socket, phys, caches, mhz)

    def cache_instances(self, name: str) -> int:
        return len({p.caches[name] for p in self.places.values() if name in p.caches})


def node_run_mask(topo: Topology, cpus: Iterable[int]) -> list[int]:
    """numa_get_run_node_mask: nodes *with memory* that hold one of ``cpus`` (why the threadripper capture's
    ``cpubind:`` is empty for CPUs of a memory-less node)."""
    wanted = set(cpus)
    return [n.id for n in topo.nodes if n.memory_mb > 0 and wanted & set(n.cpus)]


# ---------------------------------------------------------------------------------------- topology dicts


def _distance_matrix(spec: Any, ids: list[int]) -> list[list[int]]:
    """``spec`` is a full matrix (rows in node order), or ``{local, remote, near, groups}``: ``near`` between
    nodes of one group (a socket of an NPS4 EPYC), ``remote`` otherwise."""
    count = len(ids)
    if spec is None:
        spec = {}
    if isinstance(spec, list):
        rows = [[int(v) for v in (row.split() if isinstance(row, str) else row)] for row in spec]
        if len(rows) != count or any(len(r) != count for r in rows):
            raise ValueError(f"distance matrix must be {count}x{count}")
        return rows
    local, remote = int(spec.get("local", 10)), int(spec.get("remote", 20))
    near = int(spec.get("near", remote))
    group_of: dict[int, int] = {}
    for g, members in enumerate(spec.get("groups", [])):
        for member in parse_list(str(members)) if isinstance(members, str) else members:
            group_of[int(member)] = g
    out = []
    for a in ids:
        row = []
        for b in ids:
            if a == b:
                row.append(local)
            elif a in group_of and group_of.get(a) == group_of.get(b):
                row.append(near)
            else:
                row.append(remote)
        out.append(row)
    return out


def _cpus(value: Any) -> list[int]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return parse_list(value)
    return [int(v) for v in value]


_TOPOLOGY_KEYS = {
    "cpu_model": "cpu_model", "sockets": "cpu_sockets", "threads_per_core": "cpu_threads_per_core",
    "numactl_version": "numactl_version", "util_linux_version": "util_linux_version",
    "numa_balancing": "kernel_numa_balancing", "hostname": "hostname",
}


def apply_topology(machine: Machine, topology: Mapping[str, Any]) -> Machine:
    """Give ``machine`` the NUMA/CPU layout ``topology`` describes (in place; returns it). Keys::

        nodes:            [{id, cpus: "0-15,128-143" | [..], memory_mb, free_mb}, ...]
        distances:        [[10, 12, ...], ...] | {local: 10, near: 12, remote: 32, groups: ["0-3", "4-7"]}
        cpu_model, sockets, threads_per_core, numactl_version, util_linux_version, numa_balancing
        cpu_mhz:          {cpu: MHz} for CPUs not idling at the model's minimum
        gpus:             [{numa_node, bus_id?}, ...] per GPU index (GPUs beyond the machine's are ignored)

    Used by cases whose machine is one particular capture's (a 4-node box with CPU-less nodes, Aurora's HBM
    nodes, the threadripper's memory-less nodes), which the presets do not describe."""
    nodes_spec = topology.get("nodes")
    if nodes_spec is not None:
        ids = [int(n["id"]) for n in nodes_spec]
        matrix = _distance_matrix(topology.get("distances"), ids)
        machine.numa_nodes = [
            NumaNode(
                id=int(n["id"]),
                cpus=_cpus(n.get("cpus")),
                memory_mb=int(n.get("memory_mb", 0)),
                distances=matrix[i],
                memory_free_mb=None if n.get("free_mb") is None else int(n["free_mb"]),
            )
            for i, n in enumerate(nodes_spec)
        ]
    for key, attr in _TOPOLOGY_KEYS.items():
        if key in topology:
            setattr(machine, attr, type(getattr(machine, attr))(topology[key]))
    if "cpu_mhz" in topology:
        machine.cpu_mhz = {str(k): float(v) for k, v in dict(topology["cpu_mhz"]).items()}
    for index, spec in enumerate(topology.get("gpus", [])):
        if index < len(machine.gpus):
            gpu = machine.gpus[index]
            if "numa_node" in spec:
                gpu.numa_node = int(spec["numa_node"])
            if "bus_id" in spec:
                gpu.bus_id = str(spec["bus_id"])
    return machine


def machine_from_topology(topology: Mapping[str, Any], **overrides: Any) -> Machine:
    """A machine with only the given topology (GPUs as ``topology["gpus"]`` lists them, each needing
    ``product`` and ``bus_id``), for tests that must not depend on the presets."""
    gpus = []
    for index, spec in enumerate(topology.get("gpus", [])):
        gpus.append(Gpu(
            index=index, product=str(spec.get("product", "NVIDIA H100 80GB HBM3")),
            uuid=f"GPU-{index:08x}-0000-0000-0000-000000000000", serial=f"{1650000000000 + index}",
            bus_id=str(spec.get("bus_id", f"00000000:{index + 1:02X}:00.0")),
            numa_node=int(spec.get("numa_node", -1)), memory_mib=int(spec.get("memory_mib", 81559)),
        ))
    machine = Machine(
        hostname=str(topology.get("hostname", "sim")), driver_version="580.126.09", cuda_version="13.0",
        gpus=gpus, numa_nodes=[],
    )
    for key, value in overrides.items():
        setattr(machine, key, value)
    return apply_topology(machine, {k: v for k, v in topology.items() if k != "gpus"})


# ----------------------------------------------------------------------------------------------- numactl


@dataclass
class Policy:
    """A process's NUMA state as ``numactl --show`` reads it: memory policy, its nodes, CPU affinity."""

    mode: str = "default"  # default preferred bind interleave local preferred-many weighted-interleave
    nodes: list[int] = field(default_factory=list)
    cpus: list[int] | None = None  # None: every online CPU
    balancing: bool = False  # --balancing with --membind: MPOL_F_NUMA_BALANCING (kernel 5.12+)

    def to_env(self) -> str:
        data = {"mode": self.mode, "nodes": self.nodes, "cpus": self.cpus, "balancing": self.balancing}
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Policy:
        raw = env.get(POLICY_ENV)
        if not raw:
            return cls()
        try:
            data = json.loads(raw)
            return cls(str(data.get("mode", "default")), [int(n) for n in data.get("nodes", [])],
                       None if data.get("cpus") is None else [int(c) for c in data["cpus"]],
                       bool(data.get("balancing", False)))
        except (ValueError, TypeError, AttributeError):
            return cls()


# name, takes an argument, short letter (None: long only), first numactl version that has it
_NUMACTL_OPTIONS: list[tuple[str, bool, str | None, str]] = [
    ("all", False, "a", "2.0.0"), ("interleave", True, "i", "2.0.0"),
    ("weighted-interleave", True, "w", "2.0.19"), ("preferred", True, "p", "2.0.0"),
    ("preferred-many", True, "P", "2.0.15"), ("cpubind", True, "c", "2.0.0"),
    ("cpunodebind", True, "N", "2.0.0"), ("physcpubind", True, "C", "2.0.0"), ("membind", True, "m", "2.0.0"),
    ("show", False, "s", "2.0.0"), ("localalloc", False, "l", "2.0.0"), ("balancing", False, "b", "2.0.15"),
    ("hardware", False, "H", "2.0.0"), ("shm", True, "S", "2.0.0"), ("file", True, "f", "2.0.0"),
    ("offset", True, "o", "2.0.0"), ("length", True, "L", "2.0.0"), ("strict", False, "t", "2.0.0"),
    ("shmmode", True, "M", "2.0.0"), ("dump", False, "d", "2.0.0"), ("dump-nodes", False, "D", "2.0.0"),
    ("shmid", True, "I", "2.0.0"), ("huge", False, "u", "2.0.0"), ("touch", False, "T", "2.0.0"),
    ("cpu-compress", False, None, "2.0.17"), ("verify", False, "V", "2.0.0"),
    ("version", False, None, "2.0.17"),
]


def _numactl_usage(version: tuple[int, ...]) -> str:
    """numactl's usage text as each release prints it (numactl.c ``usage()``; three variants since 2.0.15)."""
    if version >= (2, 0, 19):
        head = (
            "usage: numactl [--all | -a] [--balancing | -b]\n"
            "               [--interleave= | -i <nodes>] [--weighted-interleave= | -w <nodes>]\n"
            "               [--preferred= | -p <node>] [--preferred-many= | -P <nodes>]\n"
        )
        policy = (
            "memory policy is --preferred | -p, --membind | -m, --localalloc | -l,\n"
            "                 --interleave | -i, --weighted-interleave | -w\n"
        )
    else:
        head = (
            "usage: numactl [--all | -a] [--balancing | -b] [--interleave= | -i <nodes>]\n"
            "\t\t[--preferred= | -p <node>] [--preferred-many= | -P <nodes>]\n"
        )
        policy = "memory policy is --interleave | -i, --preferred | -p, --membind | -m, --localalloc | -l\n"
    hardware = (
        "       numactl [--hardware | -H] [--cpu-compress]\n       numactl [--version]\n"
        if version >= (2, 0, 17) else "       numactl [--hardware | -H]\n"
    )
    return (
        head
        + "               [--physcpubind= | -C <cpus>] [--cpunodebind= | -N <nodes>]\n"
        "               [--membind= | -m <nodes>] [--localalloc | -l] command args ...\n"
        "               [--localalloc | -l] command args ...\n"
        "       numactl [--show | -s]\n"
        + hardware
        + "       numactl [--length | -L <length>] [--offset | -o <offset>] [--shmmode | -M <shmmode>]\n"
        "               [--strict | -t]\n"
        "               [--shmid | -I <id>] --shm | -S <shmkeyfile>\n"
        "               [--shmid | -I <id>] --file | -f <tmpfsfile>\n"
        "               [--huge | -u] [--touch | -T] \n"
        "               memory policy [--dump | -d] [--dump-nodes | -D]\n"
        "\n"
        + policy
        + "<nodes> is a comma delimited list of node numbers or A-B ranges or all.\n"
        "Instead of a number a node can also be:\n"
        "  netdev:DEV the node connected to network device DEV\n"
        "  file:PATH  the node the block device of path is connected to\n"
        "  ip:HOST    the node of the network device host routes through\n"
        "  block:PATH the node of block device path\n"
        "  pci:[seg:]bus:dev[:func] The node of a PCI device\n"
        "<cpus> is a comma delimited list of cpu numbers or A-B ranges or all\n"
        "all ranges can be inverted with !\n"
        "all numbers and ranges can be made cpuset-relative with +\n"
        "the old --cpubind argument is deprecated.\n"
        "use --cpunodebind or --physcpubind instead\n"
        "use --balancing | -b to enable Linux kernel NUMA balancing\n"
        "for the process if it is supported by kernel\n"
        "<length> can have g (GB), m (MB) or k (KB) suffixes\n"
    )


class _Exit(Exception):  # noqa: N818 - control flow: numactl calls exit()
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class _Out:
    """numactl's two streams; everything ends as one Result."""

    def __init__(self) -> None:
        self.out: list[str] = []
        self.err: list[str] = []

    def result(self, code: int) -> Result:
        return Result("".join(self.out), "".join(self.err), code)


_NUMBER = re.compile(r"0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*")


def _strtoul(text: str, pos: int) -> tuple[int | None, int]:
    """C's strtoul(s, &end, 0) on ``text[pos:]``: (value, end) or (None, pos) when no digits."""
    m = _NUMBER.match(text, pos)
    if not m:
        return None, pos
    return int(m.group(0), 0), m.end()


def _parse_mask(text: str, allowed: list[int], conf_count: int, kind: str,
                warn: Callable[[str], None]) -> list[int] | None:
    """libnuma's ``__numa_parse_nodestring`` / ``__numa_parse_cpustring``: the set, or None after printing its
    warning (some failures print none, e.g. trailing garbage)."""
    allowed_set = set(allowed)
    if text == "":
        return []
    pos, invert, relative = 0, False, False
    if text.startswith("!"):
        invert, pos = True, 1
    if text[pos:pos + 1] == "+":
        relative, pos = True, pos + 1
    mask: set[int] = set()

    def get_nr(at: int) -> tuple[int | None, int]:
        value, end = _strtoul(text, at)
        if value is None or not relative:
            return value, end
        ordered = sorted(allowed_set)
        return (ordered[value] if value < len(ordered) else 1 << 30), end

    while True:
        rest = text[pos:]
        if rest[:1].isalpha() or rest.startswith("all"):
            if rest == "all":
                mask |= allowed_set
                pos = len(text) + 1
                break
            if kind == "node" and rest.startswith("pci:"):
                # numactl reads /sys/devices/pciDDDD:BB/DDDD:BB:dd.f/numa_node: only devices on a root bus.
                # The simulated GPUs sit behind PCIe switches, as on real servers (numa.md §5).
                device = rest[4:]
                if not re.match(r"[0-9a-fA-F]+:[0-9a-fA-F]+", device):
                    warn(f"Cannot parse PCI device `{device}'")
                else:
                    warn(f"Cannot read node mask for  device `{device}'")  # sic: an empty class name
                return None
        arg, end = get_nr(pos)
        if arg is None:
            warn(f"unparseable {kind} description `{rest}'\n")
            return None
        if arg not in allowed_set:
            warn(f"{kind} argument {arg} is out of range\n" if kind == "node"
                 else f"cpu argument {rest} is out of range\n")
            return None
        mask.add(arg)
        pos = end
        if text[pos:pos + 1] == "-":
            arg2, end2 = get_nr(pos + 1)
            if arg2 is None:
                warn(f"missing {kind} argument {text[pos + 1:]}\n")
                return None
            if arg2 not in allowed_set:
                warn(f"node argument {arg2} out of range\n" if kind == "node"
                     else f"cpu argument {text[pos + 1:]} out of range\n")
                return None
            mask |= {i for i in range(arg, arg2 + 1) if i in allowed_set}
            pos = end2
        if text[pos:pos + 1] == ",":
            pos += 1
            continue
        pos += 1  # C's do { } while (*s++ == ','): s now points one past the stopping character
        break
    if pos - 1 < len(text):  # s[-1] != '\0': something follows the list
        return None
    if invert:
        mask = {i for i in range(conf_count) if i not in mask}
    return sorted(mask)


@dataclass
class _Run:
    """What a numactl invocation asked for, for the decision to run the real numactl (lab)."""

    nodes: set[int] = field(default_factory=set)
    cpus: set[int] = field(default_factory=set)
    cpu_nodes: set[int] = field(default_factory=set)


class _Numactl:
    def __init__(self, host: SimHost, argv: list[str], stdin: str, env: Mapping[str, str]) -> None:
        self.host, self.argv, self.stdin, self.env = host, argv, stdin, env
        self.prog = argv[0] if argv else "numactl"
        self.topo = Topology(host.machine)
        self.version = _version(host.machine.numactl_version)
        self.policy = Policy.from_env(env)
        self.io = _Out()
        self.run = _Run()
        self.warned: set[str] = set()
        self.command: list[str] = []  # what follows the options
        self.cpu_compress = False

    # -- output helpers, each as numactl/libnuma prints

    def usage(self) -> None:
        self.io.err.append(_numactl_usage(self.version))
        raise _Exit(1)

    def usage_msg(self, message: str) -> None:
        self.io.err.append(f"numactl: {message}")
        self.io.out.append("\n")  # usage_msg's putchar('\n') goes to stdout
        self.usage()

    def complain(self, message: str) -> None:
        self.io.err.append(f"numactl: {message}")
        self.io.out.append("\n")
        raise _Exit(1)

    def warn(self, kind: str) -> Callable[[str], None]:
        def emit(message: str) -> None:
            if kind in self.warned:  # numa_warn prints each kind of warning once per process
                return
            self.warned.add(kind)
            self.io.err.append(f"libnuma: Warning: {message}\n")

        return emit

    def perror(self, where: str, message: str = "Invalid argument") -> None:
        self.io.err.append(f"{where}: {message}\n")

    # -- state

    @property
    def affinity(self) -> list[int]:
        return self.topo.cpus if self.policy.cpus is None else self.policy.cpus

    def allowed_nodes(self, parse_all: bool) -> list[int]:
        return list(range(self.topo.max_node + 1)) if parse_all else self.topo.memory_nodes

    def parse_nodes(self, arg: str, parse_all: bool) -> list[int]:
        mask = _parse_mask(arg, self.allowed_nodes(parse_all), len(self.topo.memory_nodes), "node",
                           self.warn("nodeparse"))
        if mask is None:
            self.io.out.append(f"<{arg}> is invalid\n")
            self.usage()
        assert mask is not None
        self.run.nodes |= set(mask)
        return mask

    # -- the option loop (getopt_long with "+": options end at the first non-option)

    def options(self) -> list[tuple[str, str | None]]:
        known = [o for o in _NUMACTL_OPTIONS if self.version >= _version(o[3])]
        shorts = {o[2]: o for o in known if o[2]}
        parsed: list[tuple[str, str | None]] = []
        args = self.argv[1:]
        i = 0
        while i < len(args):
            arg = args[i]
            if arg == "--":
                i += 1
                break
            if not arg.startswith("-") or arg == "-":
                break
            if arg.startswith("--"):
                name, eq, value = arg[2:].partition("=")
                exact = [o for o in known if o[0] == name]
                matches = exact or [o for o in known if o[0].startswith(name)]
                if not matches:
                    self.io.err.append(f"{self.prog}: unrecognized option '{arg}'\n")
                    self.usage()
                if len(matches) > 1:
                    names = "".join(f" '--{o[0]}'" for o in matches)
                    self.io.err.append(f"{self.prog}: option '{arg}' is ambiguous; possibilities:{names}\n")
                    self.usage()
                opt = matches[0]
                if opt[1]:
                    if not eq:
                        if i + 1 >= len(args):
                            self.io.err.append(f"{self.prog}: option '--{opt[0]}' requires an argument\n")
                            self.usage()
                        i += 1
                        value = args[i]
                    parsed.append((opt[0], value))
                else:
                    if eq:
                        self.io.err.append(f"{self.prog}: option '--{opt[0]}' doesn't allow an argument\n")
                        self.usage()
                    parsed.append((opt[0], None))
                i += 1
                continue
            j = 1
            while j < len(arg):
                letter = arg[j]
                short = shorts.get(letter)
                if short is None:
                    self.io.err.append(f"{self.prog}: invalid option -- '{letter}'\n")
                    self.usage()
                assert short is not None
                opt = short
                if opt[1]:
                    value = arg[j + 1:]
                    if not value:
                        if i + 1 >= len(args):
                            self.io.err.append(f"{self.prog}: option requires an argument -- '{letter}'\n")
                            self.usage()
                        i += 1
                        value = args[i]
                    parsed.append((opt[0], value))
                    break
                parsed.append((opt[0], None))
                j += 1
            i += 1
        self.command = args[i:]
        return parsed

    def main(self) -> Result:
        try:
            self.execute()
        except _Exit as exc:
            return self.io.result(exc.code)
        raise AssertionError("numactl ends with exec or exit")  # pragma: no cover

    def execute(self) -> None:
        topo = self.topo
        policy_set: str | None = None
        parse_all = did_parse = do_hardware = strict = balancing = False
        shmoption: str | None = None
        self.cpu_compress = False

        def setpolicy(mode: str) -> None:
            nonlocal policy_set
            if policy_set is not None:
                self.usage_msg("Conflicting policies")
            policy_set = mode

        def nopolicy() -> None:
            if policy_set is not None:
                self.usage_msg("specify policy after --shm/--file")

        for name, value in self.options():
            if name == "show":
                self.show()
                raise _Exit(0)
            if name == "hardware":
                nopolicy()
                do_hardware = True
            elif name == "balancing":
                nopolicy()
                balancing = True
            elif name in ("interleave", "weighted-interleave"):
                assert value is not None
                mask = self.parse_nodes(value, parse_all)
                did_parse = True
                setpolicy(name)
                if not set(mask) & set(topo.memory_nodes):
                    self.perror("set_mempolicy")
                    self.perror("setting interleave mask")
                    raise _Exit(1)
                self.policy.mode, self.policy.nodes = name, [n for n in mask if n in topo.memory_nodes]
            elif name in ("cpunodebind", "cpubind"):
                if shmoption:
                    self.usage_msg(f"{shmoption} shm option is not allowed before -c/--cpubind/--cpunodebind")
                assert value is not None
                mask = self.parse_nodes(value, parse_all)
                did_parse = True
                self.run.cpu_nodes |= set(mask)
                cpus: set[int] = set()
                for node in mask:
                    if node not in topo.by_id:
                        self.warn("noderunmask")("Cannot read node cpumask from sysfs")
                        continue
                    cpus |= set(topo.by_id[node].cpus)
                if not cpus:
                    self.perror("numa_sched_setaffinity_v2_int() failed")
                    self.perror("sched_setaffinity")
                    raise _Exit(1)
                self.policy.cpus = sorted(cpus)
            elif name == "physcpubind":
                if shmoption:
                    self.usage_msg(f"{shmoption} shm option is not allowed before -C/--physcpubind")
                assert value is not None
                allowed = list(range(topo.cpus[-1] + 1)) if parse_all and topo.cpus else self.affinity
                cpumask = _parse_mask(value, allowed, len(topo.cpus), "cpu", self.warn("cpuparse"))
                if cpumask is None:
                    self.io.out.append(f"<{value}> is invalid\n")
                    self.usage()
                assert cpumask is not None
                did_parse = True
                online = [c for c in cpumask if c in topo.node_of]
                if not online:
                    self.perror("sched_setaffinity")
                    raise _Exit(1)
                self.run.cpus |= set(cpumask)
                self.policy.cpus = online
            elif name == "membind":
                setpolicy("bind")
                assert value is not None
                mask = self.parse_nodes(value, parse_all)
                did_parse = True
                if not set(mask) & set(topo.memory_nodes):
                    self.perror("set_mempolicy")
                    self.perror("setting membind")
                    raise _Exit(1)
                self.policy.mode, self.policy.nodes = "bind", [n for n in mask if n in topo.memory_nodes]
                self.policy.balancing = balancing
            elif name in ("preferred", "preferred-many"):
                assert value is not None
                mask = self.parse_nodes(value, parse_all)
                did_parse = True
                if name == "preferred" and len(mask) != 1:
                    self.usage()
                setpolicy(name)
                chosen = mask[:1] if name == "preferred" else mask
                if not set(chosen) & set(topo.memory_nodes):
                    self.perror("set_mempolicy")
                    self.perror("setting preferred node")
                    raise _Exit(1)
                self.policy.mode, self.policy.nodes = name, [n for n in chosen if n in topo.memory_nodes]
            elif name == "localalloc":
                setpolicy("local")
                self.policy.mode, self.policy.nodes = "local", []
            elif name == "all":
                if did_parse:
                    self.usage_msg("--all/-a option must be before all cpu/node specifications")
                parse_all = True
            elif name == "cpu-compress":
                self.cpu_compress = True
            elif name == "version":
                nopolicy()
                self.io.out.append(self.host.machine.numactl_version + "\n")
                raise _Exit(0)
            elif name == "strict":
                strict = True
            elif name in ("length", "offset", "shmmode", "huge"):
                shmoption = f"--{name}"
            elif name == "shmid":
                pass
            elif name in ("dump", "dump-nodes"):
                self.complain(f"Cannot do --{name} without shared memory.\n")
            elif name in ("touch", "verify"):
                self.usage_msg(f"--{name} must be after shared memory specification")
            elif name in ("shm", "file"):
                self.io.err.append(f"numactl: --{name}: shared-memory policies are not simulated\n")
                raise _Exit(1)
        if do_hardware:
            self.hardware()
            raise _Exit(0)
        if strict:
            self.io.err.append("numactl: warning. Strict flag for process ignored.\n")
        if shmoption:
            self.usage_msg(f"shm related option {shmoption} for process")
        if not self.command:
            self.usage()
        result = self.exec_command()
        self.io.out.append(result.stdout)
        self.io.err.append(result.stderr)
        raise _Exit(result.exit_code)

    # -- --show and --hardware

    def show(self) -> None:
        topo, policy, out = self.topo, self.policy, self.io.out
        mode = policy.mode
        if mode == "bind" and policy.balancing:
            mode = "bind|balancing"  # get_mempolicy returns MPOL_BIND | MPOL_F_NUMA_BALANCING
        names = {
            "default": "default", "preferred": "preferred", "bind": "bind", "interleave": "interleave",
            "local": "local", "preferred-many": "preferred-many",
            # policy_names[] stops at preferred-many: later modes and flags print as numbers
            "weighted-interleave": "[6]", "bind|balancing": "[8194]",
        }
        out.append(f"policy: {names.get(mode, mode)}\n")
        first = policy.nodes[0] if policy.nodes else 0
        out.append("preferred node: ")
        if mode == "preferred":
            out.append(f"{first}\n")
        elif mode == "default":
            out.append("current\n")
        elif mode in ("interleave", "weighted-interleave"):
            out.append(f"{first} (interleave next)\n")
        elif mode == "bind":
            out.append(f"{first}\n")
        elif mode == "preferred-many":
            out.append("0 (preferred-many)\n")
        # local (and bind|balancing): numactl's switch has no case, so nothing, not even a newline

        def mask(name: str, values: Iterable[int]) -> None:
            out.append(f"{name}: " + "".join(f"{v} " for v in values) + "\n")

        if mode == "interleave" or (mode == "weighted-interleave" and self.version >= (2, 0, 19)):
            mask("interleavemask", policy.nodes)
            if mode == "weighted-interleave":
                out.append("interleaveweights:" + "".join(" 1" for _ in policy.nodes) + "\n")
            out.append(f"interleavenode: {first}\n")
        mask("physcpubind", self.affinity)
        run_nodes = node_run_mask(topo, self.affinity)
        mask("cpubind", run_nodes)
        mask("nodebind", run_nodes)
        mask("membind", policy.nodes if mode == "bind" else topo.memory_nodes)  # numa_get_membind
        # __numa_preferred returns the policy's node mask whatever the policy (default and local have none)
        mask("preferred", policy.nodes)

    def hardware(self) -> None:
        topo, out = self.topo, self.io.out
        if not topo.nodes:
            out.append("No NUMA available on this system\n")
            raise _Exit(1)
        ids = topo.node_ids
        out.append(f"available: {len(ids)} nodes ({format_list(ids)})\n")
        for node in topo.nodes:
            out.append(f"node {node.id} cpus:")
            if self.cpu_compress:
                runs = format_list(node.cpus).split(",") if node.cpus else []
                out.append(",".join(f" {r}" for r in runs) + f" ({len(node.cpus)})\n")
            else:
                out.append("".join(f" {c}" for c in sorted(node.cpus)) + "\n")
            out.append(f"node {node.id} size: {node.memory_mb} MB\n")
            out.append(f"node {node.id} free: {node_free_mb(node)} MB\n")
        if topo.distance(topo.max_node, ids[0]) == 0:
            out.append("No distance information available.\n")
            return
        wide = self.version >= (2, 0, 19)  # numactl commit 81c9a37: 4-character cells
        cell, head = ("{:>4} ", "node  ") if wide else ("{:>3} ", "node ")
        out.append("node distances:\n")
        out.append(head + "".join(cell.format(i) for i in ids) + "\n")
        for a in ids:
            row = "".join(cell.format(topo.distance(a, b)) for b in ids)
            out.append(cell.format(a)[:-1] + ": " + row + "\n")

    # -- running the command

    def exec_command(self) -> Result:
        env = dict(self.env)
        env[POLICY_ENV] = self.policy.to_env()
        command = list(self.command)
        if str(self.host.root) != "/":
            try:
                from . import shell
            except ImportError:  # no in-process shell in this build: run it for real below
                shell = None  # type: ignore[assignment]
            if shell is not None:
                if shell.which(self.host, command[0], env) is None:
                    self.complain(f"execution of `{command[0]}': No such file or directory\n")
                return shell.run_argv(self.host, command, stdin=self.stdin, env=env)
        real = real_numactl()
        argv = [real, *self.argv[1:]] if real and self.fits_real_machine() else command
        if _owns_process():
            sys.stdout.flush()
            sys.stderr.flush()
            try:
                os.execvpe(argv[0], argv, env)
            except OSError as exc:
                self.complain(f"execution of `{command[0]}': {exc.strerror}\n")
        try:
            proc = subprocess.run(argv, input=self.stdin.encode("utf-8", "surrogateescape"),
                                  capture_output=True, env=env, check=False)
        except OSError as exc:
            self.complain(f"execution of `{command[0]}': {exc.strerror}\n")
            raise  # pragma: no cover - complain raised
        return Result(proc.stdout.decode("utf-8", "surrogateescape"),
                      proc.stderr.decode("utf-8", "surrogateescape"),
                      proc.returncode if proc.returncode >= 0 else 128 - proc.returncode)

    def fits_real_machine(self) -> bool:
        """Would the real numactl accept these arguments on this machine? (see the module docstring)"""
        cpus, mems = _real_allowed()
        if not self.run.nodes <= mems or not self.run.cpus <= cpus:
            return False
        for node in self.run.cpu_nodes:
            try:
                with open(f"/sys/devices/system/node/node{node}/cpulist", encoding="ascii") as f:
                    node_cpus = set(parse_list(f.read()))
            except (OSError, ValueError):
                return False
            if not node_cpus & cpus:
                return False
        return True


def real_numactl() -> str | None:
    """This machine's numactl binary, by absolute path and only if it is an ELF executable (never a shim)."""
    for path in REAL_NUMACTL:
        try:
            with open(path, "rb") as f:
                if f.read(4) != b"\x7fELF":
                    continue
        except OSError:
            continue
        if os.access(path, os.X_OK):
            return path
    return None


def _real_allowed() -> tuple[set[int], set[int]]:
    """(Cpus_allowed_list, Mems_allowed_list) of this process, from the kernel (not from sysfs)."""
    cpus: set[int] = set()
    mems: set[int] = set()
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key == "Cpus_allowed_list":
                    cpus = set(parse_list(value.strip()))
                elif key == "Mems_allowed_list":
                    mems = set(parse_list(value.strip()))
    except OSError:
        pass
    return cpus, mems


def _owns_process() -> bool:
    """True when this process runs only this stand-in (``python -m gpuprov.sim NAME``) and may become the
    command, as numactl itself does with execvp."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    return getattr(spec, "name", None) == "gpuprov.sim.__main__"


def _is_policy_run(argv: list[str]) -> bool:
    """Does this numactl command line end in a command (rather than -H, -s, --version or an error)?"""
    takes = {f"-{o[2]}" for o in _NUMACTL_OPTIONS if o[1] and o[2]}
    takes |= {f"--{o[0]}" for o in _NUMACTL_OPTIONS if o[1]}
    args = argv[1:]
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            return i + 1 < len(args)
        if not arg.startswith("-") or arg == "-":
            return True
        if arg in ("-s", "--show", "-H", "--hardware", "--version"):
            return False
        if arg in takes:
            i += 1
        i += 1
    return False


def _reads_stdin(argv: list[str]) -> bool:
    """Whether ``python -m gpuprov.sim`` must hand this run its standard input: a policy run's command reads
    it (``echo quit | numactl -N 0 nvidia-cuda-mps-control``). Not when the stand-in will ``exec`` (the
    host's root is ``/``: the command inherits the real stdin) nor from a terminal (it would wait for EOF)."""
    if os.environ.get(ROOT_ENV, "/") in ("", "/"):
        return False
    if sys.stdin is None or sys.stdin.isatty():
        return False
    return _is_policy_run(argv)


@stand_in("numactl")
def numactl(host: SimHost, argv: list[str], stdin: str, env: Mapping[str, str]) -> Result:
    """``numactl``: see the module docstring."""
    return _Numactl(host, argv, stdin, env).main()


numactl.reads_stdin = _reads_stdin  # type: ignore[attr-defined]


# ----------------------------------------------------------------------------------------------- lscpu


def lscpu_list(ids: Iterable[int]) -> str:
    """util-linux's ``cpulist_create``: ranges of three or more (``0-63``), a pair as ``0,1``."""
    parts: list[str] = []
    for a, b in runs(ids):
        parts += [str(a)] if a == b else [str(a), str(b)] if b == a + 1 else [f"{a}-{b}"]
    return ",".join(parts)


def _human_size(size: int) -> str:
    """util-linux ``size_to_human_string(SIZE_SUFFIX_3LETTER | SIZE_SUFFIX_SPACE)``: ``2 MiB``, ``1.5 GiB``.
    """
    exp = 0
    for shift in range(10, 70, 10):
        if size < (1 << shift):
            exp = shift - 10
            break
    letter = "BKMGTPE"[exp // 10 if exp else 0]
    dec = size >> exp if exp else size
    frac = size % (1 << exp) if exp else 0
    suffix = f" {letter}" + ("iB" if letter != "B" else "")
    if frac:
        frac = (frac * 1000) // (1 << exp)
        frac = (frac + 50) // 100
        if frac > 9:
            dec, frac = dec + 1, 0
    return f"{dec}.{frac}{suffix}" if frac else f"{dec}{suffix}"


@dataclass
class _Line:
    key: str
    data: str | None  # None: a section header (printed only in the hierarchical layout)
    children: list[_Line] = field(default_factory=list)


def _summary(topo: Topology, version: tuple[int, ...], hierarchic: bool) -> list[_Line]:
    """lscpu's summary (util-linux >= 2.37 ``print_summary``) as a tree of lines."""
    model = topo.model
    top: list[_Line] = []

    def add(parent: _Line | None, name: str, data: str | None) -> _Line | None:
        if data is None and not hierarchic:
            return None  # "Don't print section lines without data on non-terminal output"
        line = _Line(name, data)
        (parent.children if parent is not None else top).append(line)
        return line

    sec = add(None, "Architecture:", model.architecture)
    if model.op_modes:
        add(sec, "CPU op-mode(s):", model.op_modes)
    if model.address_sizes:
        add(sec, "Address sizes:", model.address_sizes)
    add(sec, "Byte Order:", "Little Endian")
    sec = add(None, "CPU(s):", str(len(topo.cpus)))
    add(sec, "On-line CPU(s) list:", lscpu_list(topo.cpus))
    sec = add(None, "Vendor ID:", model.vendor) if model.vendor else None
    name = model.model_name
    if name is not None and model.model_name_since and version < _version(model.model_name_since):
        name = None
    if name is not None or version >= (2, 38):
        sec = add(sec, "Model name:", name if name is not None else "-")
    if model.family:
        add(sec, "CPU family:", model.family)
    if model.model:
        add(sec, "Model:", model.model)
    add(sec, "Thread(s) per core:", str(topo.threads_per_core))
    add(sec, "Core(s) per socket:", str(topo.cores_per_socket))
    add(sec, "Socket(s):", str(topo.sockets))
    if model.stepping:
        add(sec, "Stepping:", model.stepping)
    if model.freq_boost is not None:
        add(sec, "Frequency boost:", "enabled" if model.freq_boost else "disabled")
    if model.max_mhz and model.min_mhz is not None:
        places = [p for p in topo.places.values() if p.mhz]
        if version >= (2, 38) and places:
            scaling = sum(p.mhz or 0.0 for p in places) / (model.max_mhz * len(places)) * 100
            add(sec, "CPU(s) scaling MHz:", f"{scaling:.0f}%")
        add(sec, "CPU max MHz:", f"{model.max_mhz:.4f}")
        add(sec, "CPU min MHz:", f"{model.min_mhz:.4f}")
    if model.bogomips:
        add(sec, "BogoMIPS:", f"{model.bogomips:.2f}")
    if model.flags:
        add(sec, "Flags:", model.flags)
    if model.virtualization:
        sec = add(None, "Virtualization features:", None)
        add(sec, "Virtualization:", model.virtualization)
    if model.caches:
        sec = add(None, "Caches (sum of all):", None)
        for cache in sorted(model.caches, key=lambda c: c.name):
            count = topo.cache_instances(cache.name)
            if not count:
                continue
            label = f"{cache.name}:" if hierarchic else f"{cache.name} cache:"
            plural = "instance" if count == 1 else "instances"
            add(sec, label, f"{_human_size(cache.size_kib * 1024 * count)} ({count} {plural})")
    if topo.nodes:
        sec = add(None, "NUMA:", None)
        add(sec, "NUMA node(s):", str(len(topo.nodes)))
        for node in topo.nodes:
            add(sec, f"NUMA node{node.id} CPU(s):", lscpu_list(node.cpus))
    if model.vulnerabilities:
        sec = add(None, "Vulnerabilities:", None)
        for vname, text in model.vulnerabilities:
            add(sec, f"{vname}:" if hierarchic else f"Vulnerability {vname}:", text)
    return top


def _summary_old(topo: Topology, version: tuple[int, ...]) -> list[_Line]:
    """lscpu's flat summary before util-linux 2.37 (the princeton-traverse capture is 2.32's)."""
    model = topo.model
    lines: list[_Line] = []

    def add(name: str, data: str) -> None:
        lines.append(_Line(name, data))

    add("Architecture:", model.architecture)
    if model.op_modes:
        add("CPU op-mode(s):", model.op_modes)
    add("Byte Order:", "Little Endian")
    if model.address_sizes and version >= (2, 36):
        add("Address sizes:", model.address_sizes)
    add("CPU(s):", str(len(topo.cpus)))
    add("On-line CPU(s) list:", lscpu_list(topo.cpus))
    add("Thread(s) per core:", str(topo.threads_per_core))
    add("Core(s) per socket:", str(topo.cores_per_socket))
    add("Socket(s):", str(topo.sockets))
    if topo.nodes:
        add("NUMA node(s):", str(len(topo.nodes)))
    if model.vendor:
        add("Vendor ID:", model.vendor)
    if model.family:
        add("CPU family:", model.family)
    if model.model:
        add("Model:", model.model)
    if model.model_name and not (model.model_name_since and version < _version(model.model_name_since)):
        add("Model name:", model.model_name)
    if model.stepping:
        add("Stepping:", model.stepping)
    if model.freq_boost is not None and version >= (2, 36):
        add("Frequency boost:", "enabled" if model.freq_boost else "disabled")
    first = topo.places.get(topo.cpus[0]) if topo.cpus else None
    if model.architecture == "x86_64" and first is not None and first.mhz:
        add("CPU MHz:", f"{first.mhz:.3f}")
    if model.max_mhz and model.min_mhz is not None:
        add("CPU max MHz:", f"{model.max_mhz:.4f}")
        add("CPU min MHz:", f"{model.min_mhz:.4f}")
    if model.bogomips:
        add("BogoMIPS:", f"{model.bogomips:.2f}")
    if model.virtualization:
        add("Virtualization:", model.virtualization)
    for cache in sorted(model.caches, key=lambda c: c.name):
        count = topo.cache_instances(cache.name)
        if version >= (2, 34):
            add(f"{cache.name} cache:", _human_size(cache.size_kib * 1024 * count))
        else:
            add(f"{cache.name} cache:", f"{cache.size_kib}K")
    for node in topo.nodes:
        add(f"NUMA node{node.id} CPU(s):", lscpu_list(node.cpus))
    if version >= (2, 34):
        for vname, text in model.vulnerabilities:
            add(f"Vulnerability {vname}:", text)
    if model.flags:
        add("Flags:", model.flags)
    return lines


def _render_text(lines: list[_Line], tree: bool = False) -> str:
    """libsmartcols without headings: the field column padded to its widest cell (in a tree with the indent,
    two spaces per level), one space, the data. Without a tree the lines are printed in order, unindented."""
    flat: list[tuple[str, str]] = []

    def walk(items: list[_Line], depth: int) -> None:
        for line in items:
            flat.append(("  " * depth * tree + line.key, line.data or ""))
            walk(line.children, depth + 1)

    walk(lines, 0)
    width = max((len(f) for f, _ in flat), default=0)
    return "".join(f"{f:<{width}} {d}\n" for f, d in flat)


def _json_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _render_json(name: str, rows: list[list[tuple[str, str | None, bool]]]) -> str:
    """A libsmartcols table as JSON the way util-linux's ``ul_jsonwrt`` writes it: 3-space indents, ``},{``
    between objects, empty cells as ``null``. Each row is ``[(key, value, raw)]``; raw values (numbers,
    booleans) are written unquoted."""

    def obj(row: list[tuple[str, str | None, bool]]) -> str:
        body = ",\n".join(
            f'         "{key}": ' + ("null" if not value else value if raw else _json_string(value))
            for key, value, raw in row
        )
        return "      {\n" + body + "\n      }"

    text = ",".join(obj(row) if i == 0 else obj(row).lstrip() for i, row in enumerate(rows))
    return "{\n" + f'   "{name}": [\n' + text + "\n   ]\n}\n"


def _summary_json(lines: list[_Line], tree: bool = False) -> str:
    """The summary as JSON: flat (one object per line) unless ``tree``, then nested under ``children``."""
    if not tree:
        flat: list[_Line] = []

        def walk(items: list[_Line]) -> None:
            for line in items:
                flat.append(_Line(line.key, line.data))
                walk(line.children)

        walk(lines)
        lines = flat

    def convert(items: list[_Line]) -> tuple[list[Any], list[Any]]:
        rows, kids = [], []
        for line in items:
            rows.append([("field", line.key, False), ("data", line.data, False)])
            sub_rows, sub_kids = convert(line.children)
            kids.append(list(zip(sub_rows, sub_kids, strict=True)))
        return rows, kids

    def obj(row: list[tuple[str, str | None, bool]], kids: list[Any], depth: int) -> str:
        pad = "   " * depth
        body = ",\n".join(
            f'{pad}   "{key}": ' + ("null" if not value else _json_string(value)) for key, value, _ in row
        )
        if kids:
            inner = obj(kids[0][0], kids[0][1], depth + 2)
            for kid in kids[1:]:
                inner += "," + obj(kid[0], kid[1], depth + 2).lstrip()
            body += f',\n{pad}   "children": [\n{inner}\n{pad}   ]'
        return f"{pad}{{\n{body}\n{pad}}}"

    rows, kids = convert(lines)
    parts = [obj(r, k, 2) for r, k in zip(rows, kids, strict=True)]
    text = parts[0] if parts else ""
    for part in parts[1:]:
        text += "," + part.lstrip()
    return '{\n   "lscpu": [\n' + text + "\n   ]\n}\n"


# -e / -p columns: name, right-aligned, JSON type
_LSCPU_COLUMNS: dict[str, tuple[bool, str]] = {
    "BOGOMIPS": (True, "number"), "CPU": (True, "number"), "CORE": (True, "number"),
    "SOCKET": (True, "number"), "CLUSTER": (True, "number"), "NODE": (True, "number"),
    "BOOK": (True, "number"),
    "DRAWER": (True, "number"), "CACHE": (False, "string"), "POLARIZATION": (False, "string"),
    "ADDRESS": (False, "string"), "CONFIGURED": (False, "boolean"), "ONLINE": (True, "boolean"),
    "MHZ": (True, "number"), "SCALMHZ%": (True, "number"), "MAXMHZ": (True, "number"),
    "MINMHZ": (True, "number"),
}
_LSCPU_HELP = {
    "BOGOMIPS": "crude measurement of CPU speed", "CPU": "logical CPU number", "CORE": "logical core number",
    "SOCKET": "logical socket number", "CLUSTER": "logical cluster number",
    "NODE": "logical NUMA node number",
    "BOOK": "logical book number", "DRAWER": "logical drawer number",
    "CACHE": "shows how caches are shared between CPUs",
    "POLARIZATION": "CPU dispatching mode on virtual hardware", "ADDRESS": "physical address of a CPU",
    "CONFIGURED": "shows if the hypervisor has allocated the CPU",
    "ONLINE": "shows if Linux currently makes use of the CPU", "MHZ": "shows the currently MHz of the CPU",
    "SCALMHZ%": "shows scaling percentage of the CPU frequency", "MAXMHZ": "shows the maximum MHz of the CPU",
    "MINMHZ": "shows the minimum MHz of the CPU",
}
_CACHE_HELP = {
    "ALL-SIZE": "size of all system caches", "LEVEL": "cache level", "NAME": "cache name",
    "ONE-SIZE": "size of one cache", "TYPE": "cache type", "WAYS": "ways of associativity",
    "ALLOC-POLICY": "allocation policy", "WRITE-POLICY": "write policy",
    "PHY-LINE": "number of physical cache line per cache t",
    "SETS": "number of sets in the cache; set lines has the same cache index",
    "COHERENCY-SIZE": "minimum amount of data in bytes transferred from memory to cache",
}


def _cell(topo: Topology, place: CpuPlace, column: str, separator: str) -> str:
    model = topo.model
    if column == "CPU":
        return str(place.cpu)
    if column == "NODE":
        return "" if place.node is None else str(place.node)
    if column == "SOCKET":
        return str(place.socket)
    if column == "CORE":
        return str(place.core)
    if column == "CACHE":
        return separator.join(str(place.caches[c.name]) for c in sorted(model.caches, key=lambda c: c.name))
    if column == "ONLINE":
        return "yes"
    if column == "MAXMHZ" and model.max_mhz:
        return f"{model.max_mhz:.4f}"
    if column == "MINMHZ" and model.min_mhz is not None and model.max_mhz:
        return f"{model.min_mhz:.4f}"
    if column == "MHZ" and place.mhz:
        return f"{place.mhz:.4f}"
    if column == "SCALMHZ%" and place.mhz and model.max_mhz:
        return f"{place.mhz / model.max_mhz * 100:.0f}%"
    if column == "BOGOMIPS" and model.bogomips:
        return f"{model.bogomips:.2f}"
    return ""


def _cache_header(topo: Topology, separator: str) -> str:
    return separator.join(c.name for c in sorted(topo.model.caches, key=lambda c: c.name))


class _LscpuError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _columns(spec: str | None, default: list[str]) -> list[str]:
    if not spec:
        return default
    names = [n.strip().upper() for n in spec.split(",") if n.strip()]
    for name in names:
        if name not in _LSCPU_COLUMNS:
            raise _LscpuError(f"lscpu: unknown column: {name}\n")
    return names


def _table(headers: list[str], right: list[bool], rows: list[list[str]]) -> str:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        parts = []
        for i, cell in enumerate(cells):
            last = i == len(cells) - 1
            if right[i]:
                parts.append(cell.rjust(widths[i]))
            else:
                parts.append(cell if last else cell.ljust(widths[i]))
        return " ".join(parts).rstrip() if not right[-1] and not cells[-1] else " ".join(parts)

    return "".join(line(r) + "\n" for r in [headers, *rows])


def _lscpu_usage(version: tuple[int, ...]) -> str:
    lines = [
        "", "Usage:", " lscpu [options]", "", "Display information about the CPU architecture.", "",
        "Options:",
        " -a, --all               print both online and offline CPUs (default for -e)",
        " -b, --online            print online CPUs only (default for -p)",
        " -B, --bytes             print sizes in bytes rather than in human readable format",
        " -C, --caches[=<list>]   info about caches in extended readable format",
        " -c, --offline           print offline CPUs only",
        " -J, --json              use JSON for default or extended format",
        " -e, --extended[=<list>] print out an extended readable format",
        " -p, --parse[=<list>]    print out a parsable format",
        " -s, --sysroot <dir>     use specified directory as system root",
        " -x, --hex               print hexadecimal masks rather than lists of CPUs",
        " -y, --physical          print physical instead of logical IDs",
        "     --output-all        print all available columns for -e, -p or -C",
    ]
    if version >= (2, 39):
        lines.append("     --hierarchic[=when] use subsections in summary (auto, never, always)")
    lines += ["", f"{' -h, --help':<25}display this help", f"{' -V, --version':<25}display version", "",
              "Available output columns for -e or -p:"]
    lines += [f" {name:>13}  {text}" for name, text in _LSCPU_HELP.items()]
    lines += ["", "Available output columns for -C:"]
    lines += [f" {name:>13}  {text}" for name, text in _CACHE_HELP.items()]
    lines += ["", "For more details see lscpu(1)."]
    return "\n".join(lines) + "\n"


@stand_in("lscpu")
def lscpu(host: SimHost, argv: list[str], stdin: str, env: Mapping[str, str]) -> Result:
    """``lscpu`` [``-J``] [``-e``[=list] | ``-p``[=list] | ``-C``] [``-a|-b|-c``] [``--hierarchic``]."""
    machine = host.machine
    version = _version(machine.util_linux_version)
    topo = Topology(machine)
    longs: dict[str, tuple[str, str]] = {  # name -> (short key, argument: no|optional|required)
        "all": ("a", "no"), "online": ("b", "no"), "bytes": ("B", "no"), "caches": ("C", "optional"),
        "offline": ("c", "no"), "help": ("h", "no"), "extended": ("e", "optional"), "json": ("J", "no"),
        "parse": ("p", "optional"), "sysroot": ("s", "required"), "physical": ("y", "no"), "hex": ("x", "no"),
        "version": ("V", "no"), "output-all": ("output-all", "no"),
    }
    if version >= (2, 39):
        longs["hierarchic"] = ("hierarchic", "optional")
    shorts = {"a": "no", "B": "no", "b": "no", "C": "optional", "c": "no", "e": "optional", "h": "no",
              "J": "no", "p": "optional", "s": "required", "x": "no", "y": "no", "V": "no"}
    try_help = "Try 'lscpu --help' for more information.\n"
    opts: list[tuple[str, str | None]] = []
    args = argv[1:]
    i = 0
    operands: list[str] = []
    while i < len(args):
        arg = args[i]
        if arg == "--":
            operands += args[i + 1:]
            break
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            matches = [n for n in longs if n == name] or [n for n in longs if n.startswith(name)]
            if len(matches) != 1:
                message = (f"lscpu: option '{arg}' is ambiguous\n" if matches
                           else f"lscpu: unrecognized option '{arg}'\n")
                return Result("", message + try_help, 1)
            key, kind = longs[matches[0]]
            if kind == "required" and not eq:
                if i + 1 >= len(args):
                    return Result("", f"lscpu: option '--{matches[0]}' requires an argument\n" + try_help, 1)
                i += 1
                value, eq = args[i], "="
            if kind == "no" and eq:
                return Result("", f"lscpu: option '--{matches[0]}' doesn't allow an argument\n" + try_help, 1)
            opts.append((key, value if eq else None))
        elif arg.startswith("-") and arg != "-":
            j = 1
            while j < len(arg):
                letter = arg[j]
                short_kind = shorts.get(letter)
                if short_kind is None:
                    return Result("", f"lscpu: invalid option -- '{letter}'\n" + try_help, 1)
                kind = short_kind
                if kind == "no":
                    opts.append((letter, None))
                    j += 1
                    continue
                value = arg[j + 1:]
                if kind == "required" and not value:
                    if i + 1 >= len(args):
                        return Result("", f"lscpu: option requires an argument -- '{letter}'\n" + try_help, 1)
                    i += 1
                    value = args[i]
                opts.append((letter, value or None))
                break
        else:
            operands.append(arg)
        i += 1
    mode, outarg, json_out, hierarchic_opt = "summary", None, False, "auto"
    online_wanted = offline_only = False
    modifier = False
    seen_excl: list[str] = []
    for key, optarg in opts:
        if key in ("C", "e", "p"):
            if seen_excl and seen_excl[-1] != key:
                # err_exclusive_options() exits without the "Try --help" line
                return Result("", "lscpu: mutually exclusive arguments: --caches --extended --parse\n", 1)
            seen_excl.append(key)
            mode = {"C": "caches", "e": "readable", "p": "parsable"}[key]
            outarg = optarg[1:] if optarg and optarg.startswith("=") else optarg
        elif key == "J":
            json_out = True
        elif key in ("a", "b", "c"):
            modifier = True  # every simulated CPU is online: -a/-b list them all, -c alone none
            online_wanted = online_wanted or key in ("a", "b")
            offline_only = not online_wanted
        elif key == "h":
            return Result(_lscpu_usage(version), "", 0)
        elif key == "V":
            return Result(f"lscpu from util-linux {machine.util_linux_version}\n", "", 0)
        elif key == "hierarchic":
            choice = (optarg or "always").lower()
            if choice not in ("auto", "never", "always"):
                return Result("", f"lscpu: unsupported argument: {optarg}\n" + try_help, 1)
            hierarchic_opt = choice
    if modifier and mode == "summary":
        return Result("", "lscpu: options --all, --online and --offline may only be used with options "
                      "--extended or --parse.\n", 1)
    if operands:
        return Result("", "lscpu: bad usage\n" + try_help, 1)
    is_term = _owns_process() and sys.stdout.isatty()
    try:
        if mode == "summary":
            if version < (2, 37):
                lines = _summary_old(topo, version)
                text = _summary_json(lines) if json_out else _render_text(lines)
            else:
                hierarchic = {"always": True, "never": False, "auto": is_term}[hierarchic_opt]
                lines = _summary(topo, version, hierarchic)
                text = _summary_json(lines, hierarchic) if json_out else _render_text(lines, hierarchic)
            return Result(text, "", 0)
        if mode == "caches":
            return Result(_lscpu_caches(topo, outarg, json_out), "", 0)
        return Result(_lscpu_cpus(topo, version, mode, outarg, json_out, offline_only), "", 0)
    except _LscpuError as exc:
        return Result("", exc.message, 1)


def _lscpu_cpus(topo: Topology, version: tuple[int, ...], mode: str, outarg: str | None,
                json_out: bool, offline_only: bool = False) -> str:
    model = topo.model
    places = [] if offline_only else [topo.places[c] for c in topo.cpus]
    if mode == "readable":
        default = ["CPU"]
        if topo.nodes:
            default.append("NODE")
        default += ["SOCKET", "CORE"]
        if model.caches:
            default.append("CACHE")
        default.append("ONLINE")
        if model.max_mhz:
            default += ["MAXMHZ", "MINMHZ"] + (["MHZ"] if version >= (2, 38) else [])
        columns = _columns(outarg, default)
        headers = [_cache_header(topo, ":") if c == "CACHE" else c for c in columns]
        rows = [[_cell(topo, p, c, ":") or ("" if json_out else "-") for c in columns] for p in places]
        if json_out:
            json_rows: list[list[tuple[str, str | None, bool]]] = []
            for row in rows:
                cells: list[tuple[str, str | None, bool]] = []
                for column, header, value in zip(columns, headers, row, strict=True):
                    kind = _LSCPU_COLUMNS[column][1]
                    if kind == "boolean":
                        cells.append((header.lower(), "true" if value == "yes" else "false", True))
                    else:
                        cells.append((header.lower(), value, kind == "number"))
                json_rows.append(cells)
            return _render_json("cpus", json_rows)
        return _table(headers, [_LSCPU_COLUMNS[c][0] for c in columns], rows)
    compatible = not outarg
    columns = _columns(outarg, ["CPU", "CORE", "SOCKET", "NODE", "CACHE"])
    out = [
        "# The following is the parsable format, which can be fed to other\n",
        "# programs. Each different item in every column has an unique ID\n",
        "# starting usually from zero.\n" if version >= (2, 38) else "# starting from zero.\n",
    ]
    head = []
    for index, column in enumerate(columns):
        if column == "CACHE":
            if compatible and not model.caches:
                continue
            name = _cache_header(topo, "," if compatible else ":") or "Cache"
            head.append(("," if compatible and index else "") + name)
        else:
            head.append(column if column in ("CPU", "BOGOMIPS") else column[0] + column[1:].lower())
    out.append("# " + ",".join(head) + "\n")
    for place in places:
        fields: list[str] = []
        for index, column in enumerate(columns):
            if column == "CACHE":
                if compatible and not model.caches:
                    continue
                separator = "," if compatible else ":"
                fields.append(("," if compatible and index else "") + _cell(topo, place, column, separator))
            else:
                fields.append(_cell(topo, place, column, ":"))
        out.append(",".join(fields) + "\n")
    return "".join(out)


def _lscpu_caches(topo: Topology, outarg: str | None, json_out: bool) -> str:
    columns = ["NAME", "ONE-SIZE", "ALL-SIZE", "WAYS", "TYPE", "LEVEL", "SETS", "PHY-LINE", "COHERENCY-SIZE"]
    if outarg:
        columns = [c.strip().upper() for c in outarg.split(",") if c.strip()]
        for column in columns:
            if column not in _CACHE_HELP:
                raise _LscpuError(f"lscpu: unknown column: {column}\n")
    right = {"ALL-SIZE", "LEVEL", "ONE-SIZE", "WAYS", "PHY-LINE", "SETS", "COHERENCY-SIZE"}
    rows = []
    for cache in sorted(topo.model.caches, key=lambda c: c.name):
        count = topo.cache_instances(cache.name)
        one = cache.size_kib * 1024
        values = {
            "NAME": cache.name, "ONE-SIZE": _short_size(one), "ALL-SIZE": _short_size(one * count),
            "TYPE": cache.type, "LEVEL": str(cache.level),
        }
        rows.append([values.get(c, "") for c in columns])
    if json_out:
        numbers = {"LEVEL", "WAYS", "PHY-LINE", "SETS", "COHERENCY-SIZE"}
        json_rows: list[list[tuple[str, str | None, bool]]] = [
            [(c.lower(), v, c in numbers) for c, v in zip(columns, row, strict=True)] for row in rows
        ]
        return _render_json("caches", json_rows)
    return _table(columns, [c in right for c in columns], rows)


def _short_size(size: int) -> str:
    """``size_to_human_string(SIZE_SUFFIX_1LETTER)``: ``32K``, ``1M``, ``1.5M``."""
    return _human_size(size).replace(" ", "").replace("iB", "")
