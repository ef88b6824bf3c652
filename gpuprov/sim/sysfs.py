"""The simulated host's NUMA view of ``/sys`` and ``/proc``, formatted exactly as the kernel prints it.

Why a file tree and not only the :class:`~gpuprov.sim.machine.Machine`: detection reads sysfs first (the
stable kernel ABI, ``reference/numa.md`` §1) with ``cat``/``read`` over a connection, so the simulated host
must hold the files a real one does — in-process under ``SimHost.path("/")`` (``<state>/root``), and in the
SSH lab as directories the lab bind-mounts over the real paths (:func:`bind_mounts`). Written, per §2:

- ``sys/devices/system/node/{possible,online,has_cpu,has_memory,has_normal_memory,has_generic_initiator}``:
  node lists (``0-1``, ``0,8,252-255``; an empty line when no node qualifies);
- ``sys/devices/system/node/nodeN/{cpulist,cpumap,meminfo,distance}``: the node's online CPUs as a list and
  as a hex mask, ``Node N MemTotal:  <kB> kB`` lines, one distance per online node;
- ``sys/devices/system/cpu/{online,possible,present}``;
- ``sys/bus/pci/devices/<0000:c1:00.0>/{numa_node,local_cpulist,local_cpus,vendor,device,class}`` per GPU
  (plain directories, not the kernel's symlinks into ``/sys/devices/pci…``, so a bind mount works in the
  lab); ``numa_node`` -1 makes ``local_cpulist`` every online CPU, as ``pci-sysfs.c`` does;
- ``proc/sys/kernel/numa_balancing``.

Writing is idempotent (a file is rewritten only when its content changes; node and GPU directories the
machine no longer has are removed), so :func:`ensure_sysfs` may be called after every topology change.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Iterable
from pathlib import Path

from .host import SimHost
from .machine import Machine, NumaNode

__all__ = [
    "bdf_from_sysfs",
    "bdf_to_sysfs",
    "bind_mounts",
    "ensure_sysfs",
    "format_cpumask",
    "format_list",
    "node_meminfo",
    "parse_list",
    "pci_device_id",
    "sysfs_files",
    "write_sysfs",
]

NVIDIA_VENDOR = 0x10DE

# PCI device ids by the product name nvidia-smi prints: reference/mig-profiles.json (pci_device_id) and the
# ``Device Id`` / ``<pci_device_id>`` fields of the nvidia-smi captures (H100 80GB HBM3, H200, L40S, T4, P100,
# RTX PRO 6000 Max-Q). A product missing here gets 0x0000 rather than an invented id.
PCI_DEVICE_IDS: dict[str, int] = {
    "NVIDIA A100-SXM4-40GB": 0x20B0,
    "NVIDIA A100-PCIE-40GB": 0x20F1,
    "NVIDIA A100-SXM4-80GB": 0x20B2,
    "NVIDIA A30": 0x20B7,
    "NVIDIA H100 80GB HBM3": 0x2330,
    "NVIDIA H100 NVL": 0x2321,
    "NVIDIA H200": 0x2335,
    "NVIDIA L40S": 0x26B9,
    "NVIDIA RTX PRO 6000 Blackwell Server Edition": 0x2BB5,
    "NVIDIA RTX PRO 6000 Blackwell Max-Q Workstation Edition": 0x2BB4,
    "Tesla T4": 0x1EB8,
    "Tesla P100-PCIE-16GB": 0x15F8,
}

# The lines of ``nodeN/meminfo`` after MemTotal/MemFree/MemUsed, in the order of drivers/base/node.c
# (node_read_meminfo, kernel 6.x without HIGHMEM); the simulator has no page-cache model, so they read 0.
_MEMINFO_REST = (
    "SwapCached", "Active", "Inactive", "Active(anon)", "Inactive(anon)", "Active(file)",
    "Inactive(file)", "Unevictable", "Mlocked", "Dirty", "Writeback", "FilePages", "Mapped", "AnonPages",
    "Shmem", "KernelStack", "PageTables", "SecPageTables", "NFS_Unstable", "Bounce", "WritebackTmp",
    "KReclaimable", "Slab", "SReclaimable", "SUnreclaim", "AnonHugePages", "ShmemHugePages",
    "ShmemPmdMapped", "FileHugePages", "FilePmdMapped",
)

_NODE_DIR = "sys/devices/system/node"
_CPU_DIR = "sys/devices/system/cpu"
_PCI_DIR = "sys/bus/pci/devices"
_BALANCING = "proc/sys/kernel/numa_balancing"
_STAMP = "sysfs.stamp"


# ----------------------------------------------------------------------------------------------- formats


def runs(ids: Iterable[int]) -> list[tuple[int, int]]:
    """Consecutive runs ``(first, last)`` of a set of ids, in order: what every range-list printer starts from."""
    values = sorted(set(ids))
    result: list[tuple[int, int]] = []
    for value in values:
        if result and value == result[-1][1] + 1:
            result[-1] = (result[-1][0], value)
        else:
            result.append((value, value))
    return result


def format_list(ids: Iterable[int]) -> str:
    """A kernel range list (``bitmap_print_to_pagebuf(true, …)``): ``0-3,8,252-255``; every run of two or more
    is a range (``0-1``), unlike lscpu, which prints a pair as ``0,1``."""
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs(ids))


def parse_list(text: str) -> list[int]:
    """The inverse of :func:`format_list` (``0-3,8`` -> ``[0, 1, 2, 3, 8]``); an empty string is no ids."""
    out: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        first, _, last = part.partition("-")
        out.extend(range(int(first), int(last or first) + 1))
    return out


def format_cpumask(cpus: Iterable[int], nbits: int) -> str:
    """A kernel bitmap mask (``%*pb``): 32-bit groups as hex, most significant first, separated by commas; the
    leading group is only as wide as the bits it holds (2 CPUs -> ``3``, 48 -> ``ffff,ffffffff``)."""
    nbits = max(nbits, 1)
    value = 0
    for cpu in cpus:
        value |= 1 << cpu
    groups: list[str] = []
    first_bits = nbits % 32 or 32
    top = ((nbits + 31) // 32 - 1) * 32
    for start in range(top, -1, -32):
        chunk = (value >> start) & 0xFFFFFFFF
        width = (first_bits + 3) // 4 if start == top else 8
        groups.append(f"{chunk:0{width}x}")
    return ",".join(groups)


def node_meminfo(node: NumaNode, free_mb: int) -> str:
    """``nodeN/meminfo`` as drivers/base/node.c prints it; numactl's ``size``/``free`` are these kB >> 10."""
    total = node.memory_mb * 1024
    free = min(free_mb * 1024, total)
    lines = [
        f"Node {node.id} {'MemTotal:':<16}{total:>8} kB",
        f"Node {node.id} {'MemFree:':<16}{free:>8} kB",
        f"Node {node.id} {'MemUsed:':<16}{total - free:>8} kB",
    ]
    lines += [f"Node {node.id} {key + ':':<16}{0:>8} kB" for key in _MEMINFO_REST]
    lines += [f"Node {node.id} HugePages_{key + ':':<7}{0:>5}" for key in ("Total", "Free", "Surp")]
    return "\n".join(lines) + "\n"


_BDF = re.compile(r"^([0-9A-Fa-f]{1,8}):([0-9A-Fa-f]{1,2}):([0-9A-Fa-f]{1,2})\.([0-7])$")


def _bdf_fields(bdf: str) -> tuple[int, int, int, int]:
    m = _BDF.match(bdf.strip())
    if not m:
        raise ValueError(f"not a PCI address (domain:bus:device.function): {bdf!r}")
    return int(m.group(1), 16), int(m.group(2), 16), int(m.group(3), 16), int(m.group(4))


def bdf_to_sysfs(bdf: str) -> str:
    """NVML's bus id (``00000000:C1:00.0``, 8-digit domain, upper case) -> the sysfs name (``0000:c1:00.0``).

    The fields are parsed as hex and re-printed as the kernel does (``%04x:%02x:%02x.%d``), not sliced, so a
    non-zero domain (GH200: ``00000009:01:00.0``) and the 4-digit legacy form both convert (numa.md §3)."""
    domain, bus, dev, fn = _bdf_fields(bdf)
    return f"{domain:04x}:{bus:02x}:{dev:02x}.{fn}"


def bdf_from_sysfs(name: str) -> str:
    """The sysfs name (``0000:c1:00.0``) -> NVML's bus id (``00000000:C1:00.0``)."""
    domain, bus, dev, fn = _bdf_fields(name)
    return f"{domain:08X}:{bus:02X}:{dev:02X}.{fn}"


def pci_device_id(product: str) -> int:
    return PCI_DEVICE_IDS.get(product, 0)


def _pci_class(product: str) -> int:
    """Workstation boards enumerate as a VGA controller (the ASUS capture's RTX 6000 Ada), data-centre
    boards as a 3D controller."""
    if re.search(r"RTX|Quadro|GeForce", product) and "Server Edition" not in product:
        return 0x030000
    return 0x030200


# ----------------------------------------------------------------------------------------------- the tree


def node_free_mb(node: NumaNode) -> int:
    """What ``numactl -H`` prints as free: the recorded value, else 96% of the node (a fresh boot)."""
    if node.memory_free_mb is not None:
        return max(0, min(node.memory_free_mb, node.memory_mb))
    return node.memory_mb * 96 // 100


def sysfs_files(machine: Machine) -> dict[str, str]:
    """Every file of the tree, as ``{relative path: content}`` (relative to the host's ``/``)."""
    nodes = sorted(machine.numa_nodes, key=lambda n: n.id)
    online_cpus = sorted({c for n in nodes for c in n.cpus})
    nbits = (max(online_cpus) + 1) if online_cpus else 1
    ids = [n.id for n in nodes]
    files: dict[str, str] = {}
    node_dir = _NODE_DIR
    files[f"{node_dir}/possible"] = format_list(ids) + "\n"
    files[f"{node_dir}/online"] = format_list(ids) + "\n"
    files[f"{node_dir}/has_cpu"] = format_list(n.id for n in nodes if n.cpus) + "\n"
    files[f"{node_dir}/has_memory"] = format_list(n.id for n in nodes if n.memory_mb > 0) + "\n"
    files[f"{node_dir}/has_normal_memory"] = format_list(n.id for n in nodes if n.memory_mb > 0) + "\n"
    files[f"{node_dir}/has_generic_initiator"] = "\n"
    order = {n.id: i for i, n in enumerate(machine.numa_nodes)}
    for node in nodes:
        base = f"{node_dir}/node{node.id}"
        files[f"{base}/cpulist"] = format_list(node.cpus) + "\n"
        files[f"{base}/cpumap"] = format_cpumask(node.cpus, nbits) + "\n"
        files[f"{base}/meminfo"] = node_meminfo(node, node_free_mb(node))
        # distances are stored in the order of machine.numa_nodes; the file lists them in node-id order
        row = [node.distances[order[other]] if order[other] < len(node.distances) else 0 for other in ids]
        files[f"{base}/distance"] = " ".join(str(d) for d in row) + "\n"
    files[f"{_CPU_DIR}/online"] = format_list(online_cpus) + "\n"
    files[f"{_CPU_DIR}/possible"] = (f"0-{nbits - 1}" if nbits > 1 else "0") + "\n"
    files[f"{_CPU_DIR}/present"] = format_list(online_cpus) + "\n"
    node_cpus = {n.id: n.cpus for n in nodes}
    for gpu in machine.gpus:
        base = f"{_PCI_DIR}/{bdf_to_sysfs(gpu.bus_id)}"
        local = node_cpus.get(gpu.numa_node) if gpu.numa_node >= 0 else None
        if local is None:  # -1, or a node the machine lacks: the kernel falls back to cpu_online_mask
            local = online_cpus
        files[f"{base}/numa_node"] = f"{gpu.numa_node}\n"
        files[f"{base}/local_cpulist"] = format_list(local) + "\n"
        files[f"{base}/local_cpus"] = format_cpumask(local, nbits) + "\n"
        files[f"{base}/vendor"] = f"0x{NVIDIA_VENDOR:04x}\n"
        files[f"{base}/device"] = f"0x{pci_device_id(gpu.product):04x}\n"
        files[f"{base}/class"] = f"0x{_pci_class(gpu.product):06x}\n"
    files[_BALANCING] = f"{machine.kernel_numa_balancing}\n"
    return files


def write_sysfs(machine: Machine, root: Path) -> None:
    """Materialise the tree under ``root`` (the host's ``/``). Idempotent: unchanged files are not rewritten,
    node directories and NVIDIA PCI directories the machine no longer has are removed."""
    root = Path(root)
    if str(root) == "/":
        raise ValueError("refusing to write the simulated sysfs over this machine's /sys: pass a directory")
    files = sysfs_files(machine)
    for rel, content in files.items():
        path = root / rel
        try:
            if path.read_text() == content:
                continue
        except OSError:
            pass
        path.parent.mkdir(parents=True, exist_ok=True)
        # in place, not write-and-rename: the lab bind-mounts single files (numa_balancing), and a bind mount
        # keeps pointing at the inode it was made with
        path.write_text(content)
    wanted_nodes = {f"node{n.id}" for n in machine.numa_nodes}
    node_dir = root / _NODE_DIR
    for entry in node_dir.iterdir():
        if re.fullmatch(r"node\d+", entry.name) and entry.name not in wanted_nodes and entry.is_dir():
            shutil.rmtree(entry)
    wanted_pci = {bdf_to_sysfs(g.bus_id) for g in machine.gpus}
    pci_dir = root / _PCI_DIR
    if pci_dir.is_dir():
        for entry in pci_dir.iterdir():
            if entry.name in wanted_pci or not entry.is_dir() or entry.is_symlink():
                continue
            try:
                vendor = (entry / "vendor").read_text().strip()
            except OSError:
                continue
            if vendor == f"0x{NVIDIA_VENDOR:04x}":
                shutil.rmtree(entry)


def _fingerprint(machine: Machine) -> str:
    data = json.dumps(sysfs_files(machine), sort_keys=True)
    return hashlib.sha256(data.encode()).hexdigest()


def ensure_sysfs(host: SimHost, root: Path | None = None) -> Path:
    """Make sure the host's tree matches its machine; returns the directory that holds it.

    In-process (the host's root is a directory) the tree goes under ``host.path("/")``. When the host's
    root is ``/`` (the SSH lab, a stand-in running for real) nothing is written over the real ``/sys``: the
    tree goes under ``root`` or ``<state>/sysfs``, for the lab to bind-mount (:func:`bind_mounts`). Cheap
    when nothing changed: a fingerprint of the files is kept in ``<state>/sysfs.stamp``."""
    if root is None:
        root = host.state_dir / "sysfs" if str(host.root) == "/" else host.path("/")
    root = Path(root)
    machine = host.machine
    stamp = host.state_dir / _STAMP
    print_ = f"{root}\n{_fingerprint(machine)}"
    try:
        if stamp.read_text() == print_ and (root / _NODE_DIR / "online").is_file():
            return root
    except OSError:
        pass
    write_sysfs(machine, root)
    host.state_dir.mkdir(parents=True, exist_ok=True)
    stamp.write_text(print_)
    return root


def bind_mounts(root: Path) -> list[tuple[Path, str]]:
    """``(source under root, real path)`` pairs for the lab to bind-mount in a host's mount namespace.

    Whole directories, because a bind mount needs an existing mount point and the simulated GPUs' and nodes'
    entries do not exist on this machine: the node directory and ``/sys/bus/pci/devices`` (the simulated GPUs
    replace the real devices in that namespace). And ``numa_balancing``, so a provisioning run's ``sysctl``
    changes the host's file, not this machine's kernel. ``/sys/devices/system/cpu/online`` is written but
    deliberately not bound: glibc's ``get_nprocs()`` reads it, and the lab's real processes (sshd, the real
    numactl) run on this machine's CPUs."""
    root = Path(root)
    return [
        (root / _NODE_DIR, "/" + _NODE_DIR),
        (root / _PCI_DIR, "/" + _PCI_DIR),
        (root / _BALANCING, "/" + _BALANCING),
    ]
