"""Detecting a host's NUMA topology and where each GPU sits in it: the probe commands and their parsers.

Why so many sources: the kernel's sysfs is the stable truth (``reference/numa.md`` §1) and is read first, but real
machines defeat any single source. A GPU's PCI ``numa_node`` is -1 on firmware without PCIe affinity and in VMs
(then ``local_cpulist`` lists every CPU: that is *no* locality, not a node), so ``nvidia-smi topo -m`` answers as a
second source; a host without ``/sys/devices/system/node`` (a kernel without NUMA) still has ``numactl -H`` or
``lscpu -J`` to say what its one node holds. NVML's bus ids (``00000000:07:00.0``, 8-digit domain, upper case)
are converted to sysfs names (``0000:07:00.0``) by parsing the fields, never by slicing.

Facts written (plain JSON):

``facts["numa_nodes"]``  the shared :class:`gpuprov.facts.NumaNode` records (id, CPUs, MB, distances)
``facts["gpus"]``        the shared GPU records with ``numa_node`` filled in (created from ``nvidia-smi
                         --query-gpu`` when no earlier plugin wrote them)
``facts["numa"]``        this plugin's own view: the source used, every node with ``has_cpu``/``has_memory``
                         and free MB, each GPU's node with the source that said so (and what every source said),
                         the MIG devices with their GPU's node, the host's systemd version, whether ``numactl``
                         is installed, ``kernel.numa_balancing``, and the files this plugin manages as they are.

Parsers raise ``ValueError`` naming the command and the unexpected text, as the hook contract asks; a tool that is
missing (exit 127) or a host without NUMA support is an absent source, not an error.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

MARKER = "# gpuprov-numa:"  # first line (after a #! line) of every file this plugin writes: how detect finds them
DROPIN_NAME = "50-gpuprov-numa.conf"
MPS_UNIT_DIR = "/etc/systemd/system"
SYSCTL_PATH = "/etc/sysctl.d/60-gpuprov-numa.conf"
BALANCING_PATH = "/proc/sys/kernel/numa_balancing"

_NODE_PROBE = r"""cd /sys/devices/system/node 2>/dev/null || exit 0
for f in online possible has_cpu has_memory; do
  [ -f "$f" ] && printf '%s: %s\n' "$f" "$(cat "$f")"
done
for d in node[0-9]*; do
  [ -d "$d" ] || continue
  n=${d#node}
  printf 'node %s cpulist: %s\n' "$n" "$(cat "$d/cpulist")"
  printf 'node %s distance: %s\n' "$n" "$(cat "$d/distance")"
  printf 'node %s meminfo: %s\n' "$n" "$(grep MemTotal "$d/meminfo")"
  printf 'node %s meminfo: %s\n' "$n" "$(grep MemFree "$d/meminfo")"
done"""

# NVIDIA display controllers (class 0x03xxxx: VGA and 3D) only; NVSwitches are bridges (0x0680) and not GPUs. One
# grep finds NVIDIA's devices among the host's hundreds, so the loop forks only for those.
_PCI_PROBE = r"""for v in $(grep -l '^0x10de$' /sys/bus/pci/devices/*/vendor 2>/dev/null); do
  d=${v%/vendor}
  case $(cat "$d/class" 2>/dev/null) in 0x03*) ;; *) continue ;; esac
  printf '%s %s %s\n' "${d##*/}" "$(cat "$d/numa_node" 2>/dev/null || echo ?)" "$(cat "$d/local_cpulist" 2>/dev/null)"
done"""

GPU_QUERY = "nvidia-smi --query-gpu=index,uuid,pci.bus_id,name --format=csv,noheader"


def files_probe(globs: Sequence[str]) -> str:
    """Every file matching ``globs`` with :data:`MARKER` in its first two lines, as ``PATH MODE:OWNER:GROUP BASE64``
    lines: the plan compares content and mode with what it renders, and removes those no device needs."""
    words = " ".join(_glob_word(g) for g in globs)
    return (f"for f in {words}; do [ -f \"$f\" ] || continue; "
            f"head -n 2 \"$f\" | grep -q '^{MARKER}' || continue; "
            "printf '%s %s %s\\n' \"$f\" \"$(stat -c '%a:%U:%G' \"$f\")\" \"$(base64 -w 0 \"$f\")\"; done")


def _glob_word(pattern: str) -> str:
    """A glob with its fixed leading directories quoted: ``/usr/local/bin/*`` -> ``'/usr/local/bin'/*``."""
    parts = pattern.split("/")
    first = next((i for i, p in enumerate(parts) if "*" in p), len(parts))
    head, tail = "/".join(parts[:first]), "/".join(parts[first:])
    if re.search(r"[^*A-Za-z0-9@._/-]", tail):
        raise ValueError(f"unexpected character in a managed-file pattern: {pattern!r}")
    if not tail:
        return shlex.quote(head)
    return f"{shlex.quote(head)}/{tail}" if head else f"/{tail}"


def managed_globs(settings: Mapping[str, Any]) -> list[str]:
    wrapper_dir = str(settings.get("wrapper_dir") or "/usr/local/bin").rstrip("/") or "/"
    return [f"{wrapper_dir}/*", f"{MPS_UNIT_DIR}/nvidia-mps@*.service.d/{DROPIN_NAME}", SYSCTL_PATH]


def probes(settings: Mapping[str, Any]) -> dict[str, str]:
    """The detect commands, all read-only and each harmless when its tool or file is missing."""
    return {
        "numa.nodes": _NODE_PROBE,
        "numa.pci": _PCI_PROBE,
        "numa.numactl": "numactl -H",
        "numa.numactl_path": "command -v numactl",
        "numa.lscpu": "lscpu -J",
        "numa.gpus": GPU_QUERY,
        "numa.topo": "nvidia-smi topo -m",
        "numa.systemd": "systemctl --version",
        "numa.balancing": f"cat {BALANCING_PATH}",
        "numa.files": files_probe(managed_globs(settings)),
        "numa.mps_unit": f"cat {MPS_UNIT_DIR}/nvidia-mps@.service",
    }


# -- lists and bus ids -------------------------------------------------------------------------------------------

def parse_cpulist(text: str, what: str = "a CPU list") -> list[int]:
    """A kernel/numactl range list (``0-3,8,252-255``; blanks also separate) -> sorted ids; empty -> ``[]``."""
    out: set[int] = set()
    for part in re.split(r"[,\s]+", text.strip()):
        if not part:
            continue
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise ValueError(f"{what}: {part!r} is not a number or a range like 0-3")
        first, last = int(m.group(1)), int(m.group(2) or m.group(1))
        if last < first:
            raise ValueError(f"{what}: range {part!r} runs backwards")
        out.update(range(first, last + 1))
    return sorted(out)


def format_cpulist(ids: Sequence[int]) -> str:
    """The inverse of :func:`parse_cpulist`, as the kernel prints it: ``0-3,8``."""
    values = sorted(set(ids))
    runs: list[list[int]] = []
    for v in values:
        if runs and v == runs[-1][1] + 1:
            runs[-1][1] = v
        else:
            runs.append([v, v])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


_BDF = re.compile(r"^([0-9A-Fa-f]{1,8}):([0-9A-Fa-f]{1,2}):([0-9A-Fa-f]{1,2})\.([0-7])$")


def sysfs_bus_id(bus_id: str) -> str:
    """NVML's ``00000000:C1:00.0`` (or the legacy 4-digit form) -> sysfs's ``0000:c1:00.0``, by the fields."""
    m = _BDF.match(bus_id.strip())
    if not m:
        raise ValueError(f"not a PCI bus id (domain:bus:device.function): {bus_id!r}")
    return f"{int(m.group(1), 16):04x}:{int(m.group(2), 16):02x}:{int(m.group(3), 16):02x}.{m.group(4)}"


def nvml_bus_id(name: str) -> str:
    """sysfs's ``0000:c1:00.0`` -> NVML's ``00000000:C1:00.0``."""
    m = _BDF.match(name.strip())
    if not m:
        raise ValueError(f"not a PCI bus id (domain:bus:device.function): {name!r}")
    return f"{int(m.group(1), 16):08X}:{int(m.group(2), 16):02X}:{int(m.group(3), 16):02X}.{m.group(4)}"


# -- records -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Node:
    """One NUMA node as a source describes it; ``memory_mb``/``free_mb`` ``None`` when the source does not say."""

    id: int
    cpus: tuple[int, ...] = ()
    memory_mb: int | None = None
    free_mb: int | None = None
    distances: Mapping[int, int] = field(default_factory=dict)  # by node id


@dataclass(frozen=True)
class PciGpu:
    """An NVIDIA GPU's PCI device in sysfs: ``numa_node`` -1 means the firmware gave none."""

    bus_id: str  # sysfs form
    numa_node: int | None  # None: unreadable
    local_cpus: tuple[int, ...]


@dataclass(frozen=True)
class TopoGpu:
    """One GPU row of ``nvidia-smi topo -m``: its CPU and NUMA affinity (``None`` where the driver prints none)."""

    index: int
    cpus: tuple[int, ...] | None
    numa_nodes: tuple[int, ...] | None
    gpu_numa_id: int | None = None


@dataclass(frozen=True)
class SmiGpu:
    index: int
    uuid: str
    bus_id: str
    name: str


@dataclass(frozen=True)
class Shown:
    """What ``numactl --show`` (``-s``) prints: the policy a process runs under."""

    policy: str
    preferred: str
    physcpubind: tuple[int, ...]
    cpubind: tuple[int, ...]
    nodebind: tuple[int, ...]
    membind: tuple[int, ...]
    preferred_nodes: tuple[int, ...] = ()
    interleave: tuple[int, ...] = ()  # interleavemask: (only under an interleave policy)


# -- parsers -----------------------------------------------------------------------------------------------------

def parse_sysfs_nodes(text: str) -> list[Node] | None:
    """The node probe's output (sysfs values with the probe's labels) -> nodes; ``None`` when sysfs had none.

    Only nodes listed in ``online`` count (a possible-but-offline node has a directory on some kernels).
    """
    if not text.strip():
        return None
    lists: dict[str, list[int]] = {}
    per_node: dict[int, dict[str, Any]] = {}
    for raw in text.splitlines():
        line = raw.rstrip()
        if not line:
            continue
        m = re.fullmatch(r"(online|possible|has_cpu|has_memory): ?(.*)", line)
        if m:
            lists[m.group(1)] = parse_cpulist(m.group(2), f"sysfs node/{m.group(1)}")
            continue
        m = re.fullmatch(r"node (\d+) (cpulist|distance|meminfo): ?(.*)", line)
        if not m:
            raise ValueError(f"sysfs node probe: unexpected line {line!r}")
        node = per_node.setdefault(int(m.group(1)), {})
        key, value = m.group(2), m.group(3)
        if key == "cpulist":
            node["cpus"] = parse_cpulist(value, f"sysfs node{m.group(1)}/cpulist")
        elif key == "distance":
            node["distance"] = [int(v) for v in value.split()]
        else:
            mm = re.fullmatch(r"Node \d+ (MemTotal|MemFree):\s+(\d+) kB", value.strip())
            if mm:
                node[mm.group(1)] = int(mm.group(2)) >> 10
            elif value.strip():
                raise ValueError(f"sysfs node{m.group(1)}/meminfo: unexpected line {value!r}")
    online = lists.get("online", sorted(per_node))
    nodes = []
    for nid in online:
        info = per_node.get(nid)
        if info is None:
            raise ValueError(f"sysfs: node {nid} is online but has no node{nid} directory")
        row = info.get("distance", [])
        if row and len(row) != len(online):
            raise ValueError(f"sysfs node{nid}/distance: {len(row)} distances for {len(online)} online nodes")
        nodes.append(Node(nid, tuple(info.get("cpus", ())), info.get("MemTotal"), info.get("MemFree"),
                          dict(zip(online, row, strict=False))))
    return nodes


def parse_pci(text: str) -> list[PciGpu]:
    """The PCI probe's lines ``0000:07:00.0 3 48-63,176-191`` -> records (``numa_node`` ``?``: unreadable)."""
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.split(None, 2)
        if len(parts) < 2:
            raise ValueError(f"sysfs PCI probe: unexpected line {line!r}")
        node = None if parts[1] == "?" else int(parts[1])
        cpus = parse_cpulist(parts[2], f"sysfs {parts[0]}/local_cpulist") if len(parts) > 2 else []
        out.append(PciGpu(sysfs_bus_id(parts[0]), node, tuple(cpus)))
    return out


def parse_numactl_hardware(text: str) -> list[Node]:
    """``numactl -H`` / ``--hardware`` -> nodes. Cells of the distance table are split on blanks, never by column
    (numactl 2.0.19 widened them and copies lose trailing spaces); CPU-less nodes print nothing after the colon.
    ``No NUMA available on this system`` -> ``[]``."""
    if "No NUMA available" in text:
        return []
    cpus: dict[int, list[int]] = {}
    size: dict[int, int | None] = {}
    free: dict[int, int | None] = {}
    order: list[int] = []
    header: list[int] | None = None
    rows: dict[int, list[int]] = {}
    listed: list[int] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        m = re.fullmatch(r"available: (\d+) nodes \(([^)]*)\)", line)
        if m:
            listed = parse_cpulist(m.group(2), "numactl -H: available nodes")
            continue
        m = re.fullmatch(r"node (\d+) cpus:(.*)", line)
        if m:
            nid = int(m.group(1))
            order.append(nid)
            cpus[nid] = parse_cpulist(m.group(2), f"numactl -H: node {nid} cpus")
            continue
        m = re.fullmatch(r"node (\d+) (size|free): (?:(\d+) MB|<not available>)", line)
        if m:
            (size if m.group(2) == "size" else free)[int(m.group(1))] = int(m.group(3)) if m.group(3) else None
            continue
        if line == "node distances:":
            continue
        m = re.fullmatch(r"node((?:\s+\d+)+)", line)
        if m:
            header = [int(v) for v in m.group(1).split()]
            continue
        m = re.fullmatch(r"(\d+):((?:\s+\d+)+)", line)
        if m and header is not None:
            rows[int(m.group(1))] = [int(v) for v in m.group(2).split()]
            continue
        raise ValueError(f"numactl -H: unexpected line {raw!r}")
    if listed is None:
        raise ValueError("numactl -H: no 'available: N nodes (...)' line")
    if sorted(order) != listed:
        raise ValueError(f"numactl -H: nodes {format_cpulist(listed)} are available but {order} are described")
    nodes = []
    for nid in order:
        row = rows.get(nid, [])
        if header is not None and row and len(row) != len(header):
            raise ValueError(f"numactl -H: distance row {nid} has {len(row)} cells for {len(header)} nodes")
        nodes.append(Node(nid, tuple(cpus[nid]), size.get(nid), free.get(nid),
                          dict(zip(header or [], row, strict=False))))
    return nodes


def parse_numactl_show(text: str) -> Shown:
    """``numactl --show``: the policy and bindings of the calling process (lists with trailing blanks)."""
    values: dict[str, str] = {}
    for raw in text.splitlines():
        if not raw.strip():
            continue
        key, sep, value = raw.partition(":")
        if not sep:
            raise ValueError(f"numactl --show: unexpected line {raw!r}")
        values[key.strip()] = value.strip()
    if "policy" not in values:
        raise ValueError("numactl --show: no 'policy:' line")

    def ids(key: str) -> tuple[int, ...]:
        return tuple(parse_cpulist(values.get(key, ""), f"numactl --show: {key}"))

    return Shown(values["policy"], values.get("preferred node", ""), ids("physcpubind"), ids("cpubind"),
                 ids("nodebind"), ids("membind"), ids("preferred"), ids("interleavemask"))


def _lscpu_fields(entries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Flatten lscpu's JSON: the flat list (no TTY) and the nested ``children`` form (TTY, util-linux 2.37+)."""
    out: dict[str, Any] = {}
    for e in entries:
        out[str(e.get("field", "")).strip().rstrip(":").strip()] = e.get("data")
        if e.get("children"):
            out.update(_lscpu_fields(e["children"]))
    return out


def _lscpu_summary(fields: Mapping[str, Any], what: str) -> dict[str, Any]:
    nodes: dict[int, list[int]] = {}
    for key, value in fields.items():
        m = re.fullmatch(r"NUMA node(\d+) CPU\(s\)", key)
        if m:
            nodes[int(m.group(1))] = parse_cpulist(value or "", f"{what}: {key}")
    count = fields.get("NUMA node(s)")

    def num(key: str) -> int | None:
        value = fields.get(key)
        return int(value) if isinstance(value, str) and value.strip().isdigit() else None

    if count is not None and str(count).strip().isdigit() and int(count) != len(nodes):
        raise ValueError(f"{what}: NUMA node(s) says {count} but {len(nodes)} nodes are listed")
    online = fields.get("On-line CPU(s) list")
    return {
        "architecture": fields.get("Architecture"),
        "model": fields.get("Model name") if fields.get("Model name") not in (None, "-") else None,
        "sockets": num("Socket(s)"),
        "cores_per_socket": num("Core(s) per socket"),
        "threads_per_core": num("Thread(s) per core"),
        "online": parse_cpulist(online, f"{what}: On-line CPU(s) list") if isinstance(online, str) else None,
        "nodes": {str(k): v for k, v in sorted(nodes.items())},
    }


def parse_lscpu_json(text: str) -> dict[str, Any]:
    """``lscpu -J`` (flat or nested) -> model, sockets, online CPUs and each node's CPUs (``[]``: CPU-less)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"lscpu -J: not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict) or not isinstance(data.get("lscpu"), list):
        raise ValueError("lscpu -J: no 'lscpu' list")
    return _lscpu_summary(_lscpu_fields(data["lscpu"]), "lscpu -J")


def parse_lscpu(text: str) -> dict[str, Any]:
    """Plain ``lscpu``, flat (before 2.37, or through a pipe) or in sections (a terminal, 2.37+); CRLF tolerated.
    Continuation lines (a wrapped ``Flags:`` value) have no key and are skipped."""
    fields: dict[str, str] = {}
    for raw in text.replace("\r\n", "\n").splitlines():
        m = re.match(r"^\s*([^:]+?):(?:\s+(.*?))?\s*$", raw)
        if m:  # a section heading ("NUMA:") gets an empty value, as a CPU-less node's line does
            fields[m.group(1).strip()] = m.group(2) or ""
    if "Architecture" not in fields:
        raise ValueError("lscpu: no 'Architecture:' line")
    return _lscpu_summary(fields, "lscpu")


def parse_lscpu_extended(text: str) -> dict[int, int | None]:
    """``lscpu -e`` -> NUMA node of every CPU (``-``: none), from the ``CPU`` and ``NODE`` columns."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise ValueError("lscpu -e: no output")
    header = lines[0].split()
    if "CPU" not in header or "NODE" not in header:
        raise ValueError(f"lscpu -e: header without CPU and NODE columns: {lines[0]!r}")
    ci, ni = header.index("CPU"), header.index("NODE")
    out: dict[int, int | None] = {}
    for line in lines[1:]:
        cells = line.split()
        if len(cells) != len(header):
            raise ValueError(f"lscpu -e: {len(cells)} cells for {len(header)} columns: {line!r}")
        out[int(cells[ci])] = None if cells[ni] == "-" else int(cells[ni])
    return out


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def parse_topo_matrix(text: str) -> list[TopoGpu]:
    """``nvidia-smi topo -m`` -> each GPU's CPU and NUMA affinity.

    Raw output is TAB-separated with empty trailing cells; published copies often have the TABs expanded to spaces.
    Both are split into non-empty cells (runs of two or more spaces separate cells once TABs are gone, because no
    cell holds two spaces in a row). The header may carry ANSI underline escapes. The link matrix has one cell per
    GPU and NIC column (the diagonal is ``X``); the affinity cells follow in header order. ``N/A`` is no value.
    """
    lines = [_ANSI.sub("", line) for line in text.splitlines()]
    header_at = next((i for i, line in enumerate(lines) if "CPU Affinity" in line), None)
    if header_at is None:
        raise ValueError("nvidia-smi topo -m: no header with 'CPU Affinity'")

    def cells(line: str) -> list[str]:
        parts = line.split("\t") if "\t" in line else re.split(r" {2,}", line)
        return [p.strip() for p in parts if p.strip()]

    header = cells(lines[header_at])
    links = [h for h in header if h not in ("CPU Affinity", "NUMA Affinity", "GPU NUMA ID")]
    extra = header[len(links):]
    out: list[TopoGpu] = []
    for line in lines[header_at + 1:]:
        if not line.strip():
            break  # the legend follows an empty line
        row = cells(line)
        m = re.fullmatch(r"GPU(\d+)", row[0])
        if not m:
            continue  # NIC rows (NICk, mlx5_k) have no affinity cells
        values = row[1 + len(links):]
        if len(row) < 1 + len(links) or len(values) > len(extra):
            raise ValueError(f"nvidia-smi topo -m: row {row[0]} has {len(row) - 1} cells for {len(header)} "
                             "columns")
        got = dict(zip(extra, values, strict=False))
        gpu_numa = got.get("GPU NUMA ID")
        out.append(TopoGpu(int(m.group(1)), _topo_list(got, "CPU Affinity", row[0]),
                           _topo_list(got, "NUMA Affinity", row[0]),
                           None if gpu_numa in (None, "N/A") else int(gpu_numa)))
    return out


def _topo_list(cells: Mapping[str, str], key: str, row: str) -> tuple[int, ...] | None:
    value = cells.get(key)
    if value in (None, "N/A"):
        return None
    return tuple(parse_cpulist(value, f"nvidia-smi topo -m: {row} {key}"))


def parse_topo_cpu(text: str) -> list[int]:
    """``nvidia-smi topo -c CPU`` -> the indexes of the GPUs near that CPU."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines or not re.fullmatch(r"The GPUs that have an affinity with CPU \d+ are:", lines[0]):
        raise ValueError(f"nvidia-smi topo -c: unexpected first line {lines[0] if lines else ''!r}")
    return [int(v) for line in lines[1:] for v in re.split(r"[,\s]+", line) if v]


def parse_lspci_numa(text: str) -> tuple[str, int | None]:
    """``lspci -vvv -s BUS`` -> (the device's short bus id, lower case; its ``NUMA node:`` or ``None``)."""
    lines = text.splitlines()
    m = re.match(r"^([0-9a-fA-F:.]+) ", lines[0] if lines else "")
    if not m:
        raise ValueError(f"lspci -vvv: unexpected first line {lines[0] if lines else ''!r}")
    node = next((int(mm.group(1)) for line in lines if (mm := re.fullmatch(r"\s*NUMA node: (-?\d+)", line))),
                None)
    return m.group(1).lower(), node


def parse_smi_table_bus_ids(text: str) -> dict[int, str]:
    """The ``nvidia-smi`` summary table -> GPU index -> Bus-Id (NVML form), from each GPU's first row."""
    out: dict[int, str] = {}
    for line in text.splitlines():
        m = re.match(r"^\|\s+(\d+)\s+.*\|\s+([0-9A-Fa-f]{8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.\d)\s", line)
        if m:
            out[int(m.group(1))] = m.group(2).upper()
    return out


def parse_gpu_query(text: str) -> list[SmiGpu]:
    """:data:`GPU_QUERY`'s CSV -> GPUs; the product name comes last so a comma in it cannot shift the fields."""
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = [p.strip() for p in line.split(",", 3)]
        if len(parts) != 4 or not parts[0].isdigit():
            raise ValueError(f"`{GPU_QUERY}`: unexpected line {line!r}")
        out.append(SmiGpu(int(parts[0]), parts[1], parts[2].upper(), parts[3]))
    return out


def parse_systemd_version(text: str) -> int:
    """``systemctl --version`` -> the major version (``systemd 252 (252.38-1~deb12u1)`` -> 252)."""
    m = re.match(r"systemd (\d+)", text.strip())
    if not m:
        raise ValueError(f"systemctl --version: unexpected first line {text.strip().splitlines()[:1]!r}")
    return int(m.group(1))


def parse_files(text: str) -> dict[str, dict[str, Any]]:
    """The managed-files probe -> path -> content, mode and owner."""
    out: dict[str, dict[str, Any]] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.split(" ")
        if len(parts) != 3 or parts[1].count(":") != 2:
            raise ValueError(f"managed-files probe: unexpected line {line[:120]!r}")
        mode, owner, group = parts[1].split(":")
        try:
            content = base64.b64decode(parts[2], validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise ValueError(f"managed-files probe: {parts[0]} is not base64 text") from None
        out[parts[0]] = {"content": content, "mode": int(mode, 8), "owner": owner, "group": group}
    return out


# -- joining the sources -----------------------------------------------------------------------------------------

def _ok(outputs: Mapping[str, Any], name: str) -> str | None:
    r = outputs.get(name)
    if r is None or r.exit_code != 0:
        return None
    return str(r.stdout)


def _nodes_from(outputs: Mapping[str, Any]) -> tuple[list[Node], str | None]:
    text = _ok(outputs, "numa.nodes")
    nodes = parse_sysfs_nodes(text) if text is not None else None
    if nodes:
        return nodes, "sysfs"
    text = _ok(outputs, "numa.numactl")
    if text is not None:
        found = parse_numactl_hardware(text)
        if found:
            return found, "numactl -H"
    text = _ok(outputs, "numa.lscpu")
    if text is not None:
        summary = parse_lscpu_json(text)
        if summary["nodes"]:
            return [Node(int(k), tuple(v)) for k, v in summary["nodes"].items()], "lscpu -J"
        if summary["online"]:
            return [Node(0, tuple(summary["online"]))], "lscpu -J"  # no NUMA: one node holds every CPU
    return [], None


def _smi_gpus(outputs: Mapping[str, Any], facts: Mapping[str, Any]) -> tuple[list[dict[str, Any]], bool]:
    """The GPU list: an earlier plugin's ``facts["gpus"]`` when it has one, else nvidia-smi's query.
    The flag says whether the records came from here (then this plugin writes ``facts["gpus"]``)."""
    if facts.get("gpus"):
        return [dict(g) for g in facts["gpus"]], False
    text = _ok(outputs, "numa.gpus")
    if text is None:
        return [], False
    return [{"index": g.index, "name": g.name, "uuid": g.uuid, "bus_id": g.bus_id, "mig_capable": False,
             "mig_current": False, "mig_pending": False, "compute_mode": "Default", "memory_mib": 0,
             "numa_node": None} for g in parse_gpu_query(text)], True


def locate(gpu_index: int, pci: PciGpu | None, topo: TopoGpu | None, nodes: Sequence[Node]) -> dict[str, Any]:
    """Which node a GPU is local to, and which source said so (``reference/numa.md`` §3's decision rule).

    sysfs ``numa_node`` >= 0 wins; -1 (or no PCI record) asks ``nvidia-smi topo -m``'s NUMA Affinity (one node);
    a host with a single node needs no source; otherwise the GPU has no known locality and is not pinned.
    """
    ids = {n.id for n in nodes}
    said = {"sysfs": pci.numa_node if pci else None,
            "topo": list(topo.numa_nodes) if topo and topo.numa_nodes is not None else None}
    if pci is not None and pci.numa_node is not None and pci.numa_node >= 0 and pci.numa_node in ids:
        found: dict[str, Any] = {"node": pci.numa_node, "source": "sysfs numa_node", "said": said}
        if topo is not None and topo.numa_nodes is not None and pci.numa_node not in topo.numa_nodes:
            found["disagree"] = (f"GPU {gpu_index}: sysfs says NUMA node {pci.numa_node}, nvidia-smi topo -m says "
                                 f"{format_cpulist(topo.numa_nodes)}; placed by sysfs (the kernel's view)")
        return found
    if topo is not None and topo.numa_nodes is not None and len(topo.numa_nodes) == 1 and topo.numa_nodes[0] in ids:
        why = "sysfs numa_node is -1" if pci is not None and pci.numa_node == -1 else "no sysfs record"
        return {"node": topo.numa_nodes[0], "source": f"nvidia-smi topo -m ({why})", "said": said}
    if len(ids) == 1:
        return {"node": next(iter(ids)), "source": "the only node", "said": said}
    return {"node": None, "source": None, "said": said}


def gather(outputs: Mapping[str, Any], facts: Mapping[str, Any]) -> dict[str, Any]:
    """All of this plugin's facts from the probe outputs (and the GPUs an earlier plugin found)."""
    nodes, source = _nodes_from(outputs)
    has_cpu = [n.id for n in nodes if n.cpus]
    has_memory = [n.id for n in nodes if n.memory_mb is None or n.memory_mb > 0]
    pci_text = _ok(outputs, "numa.pci")
    pci = {p.bus_id: p for p in parse_pci(pci_text)} if pci_text else {}
    topo_text = _ok(outputs, "numa.topo")
    topo = {t.index: t for t in parse_topo_matrix(topo_text)} if topo_text else {}
    gpus, own_gpus = _smi_gpus(outputs, facts)
    numa_gpus = []
    for g in gpus:
        sysfs = sysfs_bus_id(g["bus_id"])
        where = locate(g["index"], pci.get(sysfs), topo.get(g["index"]), nodes)
        g["numa_node"] = where["node"]
        record = pci.get(sysfs)
        numa_gpus.append({"index": g["index"], "bus_id": g["bus_id"], "sysfs": sysfs, "uuid": g.get("uuid"),
                          "node": where["node"], "source": where["source"], "said": where["said"],
                          "disagree": where.get("disagree"),
                          "local_cpus": list(record.local_cpus) if record else None})
    node_of = {g["index"]: g["node"] for g in numa_gpus}
    devices = [{"gpu": d["gpu"], "gi": d["gi"], "ci": d["ci"], "profile": d["profile"],
                "placement": list(d.get("placement") or ()), "node": node_of.get(d["gpu"])}
               for d in facts.get("mig_devices") or ()]
    systemd_text = _ok(outputs, "numa.systemd")
    balancing_text = _ok(outputs, "numa.balancing")
    files_text = _ok(outputs, "numa.files")
    mps_unit = _ok(outputs, "numa.mps_unit")
    numa: dict[str, Any] = {
        "source": source,
        "nodes": [{"id": n.id, "cpus": list(n.cpus), "memory_mb": n.memory_mb, "_free_mb": n.free_mb,
                   "distances": {str(k): v for k, v in sorted(n.distances.items())},
                   "has_cpu": n.id in has_cpu, "has_memory": n.id in has_memory} for n in nodes],
        "gpus": numa_gpus,
        "mig_devices": devices,
        "systemd": parse_systemd_version(systemd_text) if systemd_text else None,
        "numactl": (_ok(outputs, "numa.numactl_path") or "").strip() or None,
        "balancing": int(balancing_text.strip()) if balancing_text and balancing_text.strip().isdigit() else None,
        "files": parse_files(files_text) if files_text else {},
        "mps_unit": mps_unit,
    }
    ids = [n.id for n in nodes]
    result: dict[str, Any] = {
        "numa": numa,
        "numa_nodes": [{"id": n.id, "cpus": list(n.cpus), "memory_mb": n.memory_mb or 0,
                        "distances": [n.distances.get(o, 0) for o in ids]} for n in nodes],
    }
    if gpus and (own_gpus or facts.get("gpus")):
        result["gpus"] = gpus
    return result


def view(facts: Mapping[str, Any]) -> list[list[str]]:
    """Rows of the ``gpuprov facts`` topology table: device -> node -> CPUs -> memory (and how the node was found)."""
    numa = facts.get("numa") or {}
    by_id = {n["id"]: n for n in numa.get("nodes") or ()}
    rows: list[list[str]] = []

    def memory(node: Mapping[str, Any] | None) -> str:
        if node is None:
            return "-"
        if node["memory_mb"] is None:
            return "?"
        if node["memory_mb"] == 0:
            return "0 MB (memory-less)"
        free = f", {node['_free_mb']} MB free" if node.get("_free_mb") is not None else ""
        return f"{node['memory_mb']} MB{free}"

    for g in numa.get("gpus") or ():
        node = by_id.get(g["node"]) if g["node"] is not None else None
        cpus = format_cpulist(node["cpus"]) if node and node["cpus"] else ("none (CPU-less)" if node else "-")
        rows.append([f"GPU {g['index']} ({g['bus_id']})", "-" if g["node"] is None else str(g["node"]), cpus,
                     memory(node), g["source"] or "unknown: not pinned"])
        for d in numa.get("mig_devices") or ():
            if d["gpu"] == g["index"]:
                rows.append([f"  MIG gpu{d['gpu']}/gi{d['gi']}/ci{d['ci']} {d['profile']}",
                             "-" if d["node"] is None else str(d["node"]), cpus, memory(node), "its GPU's node"])
    for n in numa.get("nodes") or ():
        if not any(g["node"] == n["id"] for g in numa.get("gpus") or ()):
            rows.append(["(no GPU)", str(n["id"]), format_cpulist(n["cpus"]) or "none (CPU-less)", memory(n), ""])
    return rows


def to_data(value: Any) -> Any:
    """Parser results as plain JSON (dataclasses to objects, tuples to lists, int keys to strings)."""
    if hasattr(value, "__dataclass_fields__") and not isinstance(value, type):
        return to_data(asdict(value))
    if isinstance(value, dict):
        return {str(k): to_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_data(v) for v in value]
    return value
