"""The simulated machine's state: plain dataclasses, saved as JSON in the host's state directory.

Every face of the simulator (the in-process ``sim`` connection, the command-line stand-ins used in the SSH lab and
the pynvml-shaped surface) reads and writes this one model, so they cannot disagree. The model stores what a real
machine would remember (MIG mode, instances, processes, daemons); what the real tools *print* is computed from it by
the stand-ins.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields
from typing import Any


@dataclass
class ComputeInstance:
    """A compute instance inside a GPU instance; ``start``/``size`` are in the GI's compute slices."""

    id: int
    profile_id: int
    start: int
    size: int
    uuid: str  # the MIG device UUID (``MIG-...``); it changes whenever the CI is re-created


@dataclass
class GpuInstance:
    """A GPU instance; ``start``/``size`` are its placement in memory slices."""

    id: int
    profile_id: int
    start: int
    size: int
    compute_instances: list[ComputeInstance] = field(default_factory=list)


@dataclass
class Gpu:
    index: int
    product: str  # exactly as ``nvidia-smi -L`` prints it, e.g. "NVIDIA H100 80GB HBM3"
    uuid: str  # GPU-xxxxxxxx-...
    serial: str
    bus_id: str  # NVML form: 8-digit domain, upper case, e.g. "00000000:07:00.0"
    numa_node: int  # sysfs numa_node of the PCI device; -1 when the firmware gives none
    memory_mib: int
    mig_current: bool = False
    mig_pending: bool = False  # the mode requested with ``-mig``; equals mig_current when nothing is pending
    compute_mode: str = "Default"  # Default | Exclusive_Process | Prohibited (as ``nvidia-smi -q`` prints)
    persistence_mode: bool = True
    gpu_instances: list[GpuInstance] = field(default_factory=list)


@dataclass
class Process:
    """A process holding a GPU (or one MIG device). ``type`` is as nvidia-smi prints it: C, G, C+G, M+C."""

    pid: int
    name: str
    gpu: int
    gi: int | None = None
    ci: int | None = None
    type: str = "C"
    used_memory_mib: int = 0
    user: str = "root"


@dataclass
class NumaNode:
    """One NUMA node. Node ids need not be contiguous (an AC922 has 0, 8 and 252-255)."""

    id: int
    cpus: list[int]  # empty for a CPU-less node (HBM, CXL, a GH200's GPU memory)
    memory_mb: int  # 0 for a memory-less node
    distances: list[int]  # one entry per node, in the order of ``Machine.numa_nodes``
    # what ``numactl -H`` prints as "free" (MB); None: derived from memory_mb (see gpuprov.sim.numa.node_free_mb)
    memory_free_mb: int | None = None


@dataclass
class Machine:
    """One simulated GPU server."""

    hostname: str
    driver_version: str  # e.g. "580.126.09"
    cuda_version: str  # e.g. "13.0"
    gpus: list[Gpu]
    numa_nodes: list[NumaNode]
    processes: list[Process] = field(default_factory=list)
    systemd_version: int = 252
    kernel_numa_balancing: int = 1
    # Tool versions whose output format differs between releases (numactl's distance columns, lscpu's layout).
    numactl_version: str = "2.0.16"  # Debian 12
    util_linux_version: str = "2.38.1"  # Debian 12
    # The processors, for lscpu: a model name known to gpuprov.sim.numa.CPU_MODELS ("" = a generic x86_64 CPU);
    # 0 = derived from the model and the CPU count. cpu_mhz: current MHz of single CPUs ("17": 3850.0), the rest
    # idle at the model's minimum.
    cpu_model: str = ""
    cpu_sockets: int = 0
    cpu_threads_per_core: int = 0
    cpu_mhz: dict[str, float] = field(default_factory=dict)
    passthrough_vm: bool = False  # GPU reset unsupported: a pending MIG mode change needs a reboot
    preset: str | None = None
    next_pid: int = 4000
    boot_count: int = 0
    # Per-concern state owned by other parts of the simulator (systemd units, MPS daemons, ...): each part keeps
    # its own JSON-serialisable dict under its own key so the parts evolve independently.
    services: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        # dataclasses.asdict deep-copies field by field through reflection: 0.8 ms a DGX, paid by every stand-in
        # command that saves. The model is known, so it is spelled out; tests check it against asdict.
        data = {f: getattr(self, f) for f in _MACHINE_FIELDS}
        data["gpus"] = [_gpu_json(g) for g in self.gpus]
        data["numa_nodes"] = [{**vars(n), "cpus": list(n.cpus), "distances": list(n.distances)}
                              for n in self.numa_nodes]
        data["processes"] = [dict(vars(p)) for p in self.processes]
        data["cpu_mhz"] = dict(self.cpu_mhz)
        data["services"] = copy.deepcopy(self.services)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Machine:
        data = dict(data)
        gpus = []
        for g in data.pop("gpus"):
            g = dict(g)
            gis = []
            for gi in g.pop("gpu_instances", []):
                gi = dict(gi)
                cis = [ComputeInstance(**ci) for ci in gi.pop("compute_instances", [])]
                gis.append(GpuInstance(**gi, compute_instances=cis))
            gpus.append(Gpu(**g, gpu_instances=gis))
        nodes = [NumaNode(**n) for n in data.pop("numa_nodes")]
        procs = [Process(**p) for p in data.pop("processes", [])]
        return cls(gpus=gpus, numa_nodes=nodes, processes=procs, **data)

    def gpu(self, index: int) -> Gpu:
        for g in self.gpus:
            if g.index == index:
                return g
        raise KeyError(index)

    def select_gpus(self, spec: str | None) -> list[Gpu]:
        """The GPUs nvidia-smi's ``-i`` names, in the order named: an index, a UUID (``GPU-`` may be left out) or a PCI
        bus id in any of its spellings, or a comma list of them; every GPU without ``-i``. ``KeyError``: an entry
        names no GPU (nvidia-smi: "No devices were found")."""
        gpus = sorted(self.gpus, key=lambda g: g.index)
        if spec is None:
            return gpus
        chosen: list[Gpu] = []
        for entry in (e.strip() for e in spec.split(",")):
            bus = bus_key(entry)
            uuid = entry.upper() if entry.upper().startswith("GPU-") else f"GPU-{entry.upper()}"
            match = next((g for g in gpus if (entry.isdigit() and int(entry) == g.index) or uuid == g.uuid.upper()
                          or (bus is not None and bus == bus_key(g.bus_id))), None)
            if match is None:
                raise KeyError(entry)
            if match not in chosen:
                chosen.append(match)
        return chosen

    def allocate_pid(self) -> int:
        self.next_pid += 1
        return self.next_pid


_MACHINE_FIELDS = tuple(f.name for f in fields(Machine))


def _gpu_json(gpu: Gpu) -> dict[str, Any]:
    data = dict(vars(gpu))
    data["gpu_instances"] = [{**vars(gi), "compute_instances": [dict(vars(ci)) for ci in gi.compute_instances]}
                             for gi in gpu.gpu_instances]
    return data


def bus_key(text: str) -> str | None:
    """A PCI bus id in NVML's form (8-digit domain, upper case) from ``DDDDDDDD:BB:DD.F``, ``DDDD:BB:DD.F`` or
    ``BB:DD.F``; ``None`` when ``text`` is not a bus id."""
    parts = text.strip().upper().split(":")
    try:
        if len(parts) == 2:
            domain, bus, devfn = 0, parts[0], parts[1]
        elif len(parts) == 3:
            domain, bus, devfn = int(parts[0], 16), parts[1], parts[2]
        else:
            return None
        dev, fn = devfn.split(".")
        return f"{domain:08X}:{int(bus, 16):02X}:{int(dev, 16):02X}.{int(fn, 16)}"
    except ValueError:
        return None
