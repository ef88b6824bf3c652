"""Simulated machines: presets of common servers and machines described by inventory variables.

Identifiers (UUIDs, serials, bus ids) are derived from the host name and a seed, so a host keeps them across runs
and two hosts never share them. NUMA layouts of the presets follow the machines' real topologies
(``shared/reference/numa.md``): a DGX A100 has 8 nodes (2x EPYC 7742 in NPS4) with GPUs 0-1 on node 3, 2-3 on node
1, 4-5 on node 7 and 6-7 on node 5; a DGX H100 / HGX H200 has 2 nodes (2x Xeon 8480C) with GPUs 0-3 on node 0.
"""

from __future__ import annotations

import hashlib
import os
import uuid as uuidlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .machine import Gpu, Machine, NumaNode, Process

DEFAULT_DRIVER = "580.126.09"
DEFAULT_CUDA = "13.0"

# product -> (memory MiB as nvidia-smi prints it on the default driver, MIG capable)
PRODUCTS: dict[str, tuple[int, bool]] = {
    "NVIDIA A100-SXM4-40GB": (40960, True),
    "NVIDIA A100-PCIE-40GB": (40960, True),
    "NVIDIA A100-SXM4-80GB": (81920, True),
    "NVIDIA A100 80GB PCIe": (81920, True),
    "NVIDIA A30": (24576, True),
    "NVIDIA H100 PCIe": (81559, True),
    "NVIDIA H100 80GB HBM3": (81559, True),
    "NVIDIA H100 NVL": (95830, True),
    "NVIDIA H200": (143771, True),
    "NVIDIA GH200 480GB": (97871, True),
    "NVIDIA L40S": (46068, False),
    "Tesla T4": (15360, False),
    # boards of the nvidia-smi report captures (fixtures/nvidia-smi-xml)
    "NVIDIA GH200 120GB": (97871, True),
    "Tesla P100-PCIE-16GB": (16384, False),
    "NVIDIA RTX PRO 6000 Blackwell Max-Q Workstation Edition": (97887, False),
}


@dataclass(frozen=True)
class Preset:
    product: str
    count: int
    cpu_model: str
    sockets: int
    cores_per_socket: int
    nodes_per_socket: int
    gpu_nodes: tuple[int, ...]  # NUMA node of each GPU, by index
    bus_ids: tuple[str, ...]
    memory_per_node_mb: int
    near: int  # distance between nodes of one socket
    remote: int


PRESETS: dict[str, Preset] = {
    "dgx-a100": Preset("NVIDIA A100-SXM4-80GB", 8, "AMD EPYC 7742 64-Core Processor", 2, 64, 4,
                       (3, 3, 1, 1, 7, 7, 5, 5),
                       ("07:00.0", "0F:00.0", "47:00.0", "4E:00.0", "87:00.0", "90:00.0", "B7:00.0", "BD:00.0"),
                       128784, 12, 32),
    "dgx-a100-40gb": Preset("NVIDIA A100-SXM4-40GB", 8, "AMD EPYC 7742 64-Core Processor", 2, 64, 4,
                            (3, 3, 1, 1, 7, 7, 5, 5),
                            ("07:00.0", "0F:00.0", "47:00.0", "4E:00.0", "87:00.0", "90:00.0", "B7:00.0",
                             "BD:00.0"), 128784, 12, 32),
    "dgx-h100": Preset("NVIDIA H100 80GB HBM3", 8, "Intel(R) Xeon(R) Platinum 8480C", 2, 56, 1,
                       (0, 0, 0, 0, 1, 1, 1, 1),
                       ("18:00.0", "2A:00.0", "3A:00.0", "5D:00.0", "9A:00.0", "AB:00.0", "BA:00.0", "DB:00.0"),
                       1031530, 21, 21),
    "hgx-h200": Preset("NVIDIA H200", 8, "Intel(R) Xeon(R) Platinum 8480C", 2, 56, 1,
                       (0, 0, 0, 0, 1, 1, 1, 1),
                       ("19:00.0", "3B:00.0", "4C:00.0", "5D:00.0", "9B:00.0", "BB:00.0", "CB:00.0", "DB:00.0"),
                       1031530, 21, 21),
}


def _digest(*parts: str) -> bytes:
    return hashlib.sha256("\0".join(parts).encode()).digest()


def _uuid(prefix: str, *parts: str) -> str:
    return f"{prefix}-{uuidlib.UUID(bytes=_digest(*parts)[:16])}"


def _numa(sockets: int, cores: int, nodes_per_socket: int, memory_mb: int, near: int,
          remote: int) -> list[NumaNode]:
    """Nodes of ``sockets`` CPUs with SMT: the sibling of CPU c is c + sockets*cores, as Linux numbers them."""
    total = sockets * cores
    per_node = cores // nodes_per_socket
    count = sockets * nodes_per_socket
    nodes = []
    for n in range(count):
        first = n * per_node
        cpus = list(range(first, first + per_node)) + list(range(total + first, total + first + per_node))
        socket = n // nodes_per_socket
        distances = [10 if m == n else near if m // nodes_per_socket == socket else remote for m in range(count)]
        nodes.append(NumaNode(id=n, cpus=cpus, memory_mb=memory_mb, distances=distances))
    return nodes


def new_machine(preset: str | None = None, gpu: str | None = None, count: int | None = None,
                numa_nodes: int | None = None, driver: str | None = None, hostname: str = "sim",
                seed: str | int | None = None, numa_topology: Mapping[str, Any] | None = None) -> Machine:
    """A simulated machine: a ``preset`` server, or ``count`` GPUs of product ``gpu`` over ``numa_nodes`` nodes."""
    seed = "" if seed is None else str(seed)
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(f"unknown sim_preset {preset!r}; choose one of {', '.join(PRESETS)}")
        p = PRESETS[preset]
        product, gpu_count = gpu or p.product, count or p.count
        nodes = _numa(p.sockets, p.cores_per_socket, p.nodes_per_socket, p.memory_per_node_mb, p.near, p.remote)
        gpu_nodes = [p.gpu_nodes[i % len(p.gpu_nodes)] for i in range(gpu_count)]
        bus = [p.bus_ids[i % len(p.bus_ids)] for i in range(gpu_count)]
        cpu_model, sockets = p.cpu_model, p.sockets
    else:
        product = gpu or ""
        gpu_count = (count if count is not None else 1) if gpu else 0
        n_nodes = numa_nodes or 1
        if n_nodes < 1:
            raise ValueError(f"sim_numa_nodes must be at least 1, got {n_nodes}")
        sockets = 2 if n_nodes % 2 == 0 else 1
        cores = 32 if n_nodes <= 2 else 16 * n_nodes // sockets
        nodes = _numa(sockets, cores, n_nodes // sockets, 257000 // n_nodes * sockets, 12, 32)
        gpu_nodes = [i * n_nodes // max(gpu_count, 1) for i in range(gpu_count)]
        bus = [f"{0x17 + 0x20 * i:02X}:00.0" for i in range(gpu_count)]
        cpu_model, sockets = "", 0  # derived by the stand-ins from the CPU count
    if product and product not in PRODUCTS:
        raise ValueError(f"unknown sim_gpu {product!r}; write the product as `nvidia-smi -L` prints it, one of "
                         f"{', '.join(PRODUCTS)}")
    gpus = []
    for i in range(gpu_count):
        memory, _ = PRODUCTS[product]
        serial = str(int.from_bytes(_digest("serial", hostname, seed, str(i))[:6], "big") % 10**13).zfill(13)
        gpus.append(Gpu(index=i, product=product, uuid=_uuid("GPU", "gpu", hostname, seed, str(i)), serial=serial,
                        bus_id=f"00000000:{bus[i]}", numa_node=gpu_nodes[i], memory_mib=memory))
    machine = Machine(hostname=hostname, driver_version=driver or DEFAULT_DRIVER, cuda_version=_cuda_for(driver),
                      gpus=gpus, numa_nodes=nodes, preset=preset)
    machine.cpu_model, machine.cpu_sockets = cpu_model, sockets
    if numa_topology:
        from .numa import apply_topology

        apply_topology(machine, numa_topology)
    return machine


def _cuda_for(driver: str | None) -> str:
    """The CUDA version the driver's branch reports (510.47.03: 11.6, 590.48.01: 13.1)."""
    from .nvidia_smi_report import cuda_version

    return (cuda_version(driver) if driver else None) or DEFAULT_CUDA


def mig_capable(product: str) -> bool:
    return PRODUCTS.get(product, (0, False))[1]


def _int_var(hostvars: Mapping[str, Any], name: str) -> int | None:
    value = hostvars.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a whole number, got {value!r}") from None


def machine_from_vars(hostname: str, hostvars: Mapping[str, Any]) -> Machine:
    """The machine inventory variables describe (``sim_preset`` or ``sim_gpu``/``sim_gpu_count``/...)."""
    preset = hostvars.get("sim_preset")
    gpu = hostvars.get("sim_gpu")
    if preset is None and gpu is None:
        raise ValueError("a sim host needs sim_preset (one of " + ", ".join(PRESETS) + ") or sim_gpu (the product "
                         "as `nvidia-smi -L` prints it, e.g. \"NVIDIA A30\")")
    machine = new_machine(preset=str(preset) if preset else None, gpu=str(gpu) if gpu else None,
                          count=_int_var(hostvars, "sim_gpu_count"), numa_nodes=_int_var(hostvars, "sim_numa_nodes"),
                          driver=str(hostvars["sim_driver"]) if hostvars.get("sim_driver") else None,
                          hostname=hostname)
    machine.passthrough_vm = str(hostvars.get("sim_mig_passthrough", "")).lower() in ("1", "true", "yes")
    for spec in hostvars.get("sim_processes") or []:
        if not isinstance(spec, Mapping) or "gpu" not in spec:
            raise ValueError(f"sim_processes entries are mappings like {{gpu: 0, name: python}}, got {spec!r}")
        machine.processes.append(Process(pid=int(spec.get("pid") or machine.allocate_pid()),
                                         name=str(spec.get("name", "python")), gpu=int(spec["gpu"]),
                                         gi=spec.get("gi"), ci=spec.get("ci"), type=str(spec.get("type", "C")),
                                         used_memory_mib=int(spec.get("used_memory_mib", 1024))))
    return machine


def state_dir_for(hostname: str, hostvars: Mapping[str, Any]) -> Path:
    """Where a sim host keeps its state: ``sim_state_dir`` or ``$XDG_STATE_HOME/gpuprov/sim/<host>``."""
    if hostvars.get("sim_state_dir"):
        return Path(os.path.expanduser(str(hostvars["sim_state_dir"])))
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(base) / "gpuprov" / "sim" / hostname
