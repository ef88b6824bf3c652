"""Detecting a host's MIG state: the probe commands, their parsers, and the NVML reader that yields the same facts.

Why both: over SSH the only view of a GPU is what ``nvidia-smi`` prints, so every table it prints is parsed here
(and tested as data against real captures of several driver generations, whose column widths differ). On the
control node itself (``ansible_connection=local``) NVML answers the same questions without text, and the plan must
not care which was used: both paths fill the same intermediate records and one :func:`assemble` turns them into
facts.

Facts written (plain JSON):

``facts["gpus"]``         the shared :class:`gpuprov.facts.Gpu` records (one per GPU, nvidia-smi's index order)
``facts["mig_devices"]``  the shared :class:`gpuprov.facts.MigDevice` records (one per compute instance)
``facts["mig"]``          this plugin's own view: driver, per GPU the product, architecture, virtualization, MIG
                          mode (current/pending), the host's own profile table (``-lgip`` + ``-lgipp``), GPU
                          instances with placement and compute instances, processes (with GI/CI), plus the
                          systemd state of the services that hold GPUs and the installed boot unit.

A command that fails the normal way ("No MIG-enabled devices found." when no GPU is in MIG mode, "No GPU instances
found" on a GPU without instances) is an empty listing, not an error. Anything else unexpected raises
``ValueError`` naming the command, as the hook contract asks.
"""

from __future__ import annotations

import re
import shlex
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# -- what detect runs --------------------------------------------------------------------------------------------

UNIT_NAME = "gpuprov-mig.service"
UNIT_PATH = f"/etc/systemd/system/{UNIT_NAME}"
SCRIPT_PATH = "/usr/local/libexec/gpuprov/mig-apply"

# Units known to hold GPU handles and so block a GPU reset (mig-parted's hooks stop the same family; the MIG user
# guide names nvsm and DCGM). nvidia-fabricmanager is left out on purpose: it hands the GPU over for a reset by
# itself and NVSwitch systems lose their GPUs while it is down. Only units that exist and run are ever stopped.
DEFAULT_SERVICES = ("nvidia-persistenced.service", "nvidia-dcgm.service", "dcgm.service", "dcgm-exporter.service",
                    "nvsm.service")

SMI_PROBES = {
    "mig.query": "nvidia-smi -q -x",
    "mig.list": "nvidia-smi -L",
    "mig.lgip": "nvidia-smi mig -lgip",
    "mig.lgipp": "nvidia-smi mig -lgipp",
    "mig.lgi": "nvidia-smi mig -lgi",
    "mig.lci": "nvidia-smi mig -lci",
}


def unit_name(service: str) -> str:
    """``nvidia-dcgm`` -> ``nvidia-dcgm.service``: settings may omit the suffix, systemd output never does."""
    return service if "." in service else f"{service}.service"


def service_units(settings: Mapping[str, Any]) -> list[str]:
    configured = settings.get("services")
    return [unit_name(str(s)) for s in (DEFAULT_SERVICES if configured is None else configured)]


def probes(settings: Mapping[str, Any], with_smi: bool = True) -> dict[str, str]:
    """The detect commands: nvidia-smi's views (unless NVML answers locally), unit states, the installed boot files."""
    commands = dict(SMI_PROBES) if with_smi else {}
    units = [*service_units(settings), UNIT_NAME]
    commands["mig.units"] = ("systemctl show -p Id,LoadState,ActiveState,UnitFileState "
                             + " ".join(shlex.quote(u) for u in dict.fromkeys(units)))
    commands["mig.boot_unit"] = f"cat {shlex.quote(UNIT_PATH)}"
    commands["mig.boot_script"] = f"cat {shlex.quote(SCRIPT_PATH)}"
    return commands


# -- intermediate records (both detect paths fill these) ---------------------------------------------------------


@dataclass(frozen=True)
class Process:
    pid: int
    name: str
    type: str
    used_memory_mib: int | None
    gi: int | None  # None: the process holds the whole GPU (MIG off)
    ci: int | None


@dataclass(frozen=True)
class GpuRecord:
    """One GPU as ``nvidia-smi -q -x`` (or NVML) describes it, before the MIG listings are joined in."""

    index: int
    product: str
    architecture: str | None
    uuid: str
    bus_id: str
    pci_device_id: str | None  # "0x20B010DE", the form mig-parted's device-filter uses
    virtualization: str  # "None", "Pass-Through", "VGPU", ... as nvidia-smi prints it
    mig_capable: bool
    mig_current: bool
    mig_pending: bool
    memory_mib: int
    compute_mode: str
    mig_device_ids: tuple[tuple[int, int, int], ...] = ()  # (MIG device index, GI, CI) when the XML lists them
    processes: tuple[Process, ...] = ()


@dataclass(frozen=True)
class QueryRecord:
    driver: str | None
    cuda: str | None
    gpus: tuple[GpuRecord, ...] = ()


@dataclass(frozen=True)
class ProfileRow:
    gpu: int
    id: int
    name: str
    free: int
    total: int
    memory_mib: int
    sm: int
    dec: int
    enc: int
    ce: int
    jpeg: int
    ofa: int


@dataclass(frozen=True)
class GiRow:
    gpu: int
    name: str
    profile_id: int
    gi: int
    start: int
    size: int


@dataclass(frozen=True)
class CiRow:
    gpu: int
    gi: int
    name: str
    profile_id: int
    ci: int
    start: int | None  # None in the older table without a Placement column
    size: int | None


@dataclass(frozen=True)
class ListedDevice:
    gpu: int
    device: int  # the per-GPU MIG device number nvidia-smi prints
    name: str
    uuid: str


@dataclass(frozen=True)
class Listings:
    """What the MIG listing commands said, joined per GPU by :func:`assemble`."""

    profiles: tuple[ProfileRow, ...] = ()
    placements: Mapping[tuple[int, int], tuple[tuple[int, int], ...]] = field(default_factory=dict)
    gis: tuple[GiRow, ...] = ()
    cis: tuple[CiRow, ...] = ()
    devices: tuple[ListedDevice, ...] = ()


# -- parsers -----------------------------------------------------------------------------------------------------

_NO_MIG = ("No MIG-enabled devices found", "No MIG-supported devices found")
_NONE_FOUND = ("No GPU instances found", "No compute instances found")


def mig_listing(command: str, stdout: str, stderr: str = "", exit_code: int = 0) -> str:
    """The table a ``nvidia-smi mig`` listing printed, ``""`` for the normal "nothing to list" answers.

    Raises ``ValueError`` for anything else that failed (permissions, a missing driver), quoting the tool.
    """
    text = f"{stdout}\n{stderr}"
    if any(m in text for m in _NO_MIG) or any(m in text for m in _NONE_FOUND):
        return ""
    if exit_code != 0 or "Failed to" in stdout or "Unable to" in stdout:
        message = (stderr.strip() or stdout.strip() or "(no output)").splitlines()[0]
        hint = " (MIG listings need root: set ansible_become)" if "Permission" in text else ""
        status = f"exited {exit_code}" if exit_code else "failed"
        raise ValueError(f"`{command}` {status}: {message}{hint}")
    return stdout


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    text = text.strip()
    return int(text) if text.isdigit() else None


def _mib(text: str | None) -> int | None:
    """``"40960 MiB"`` -> 40960; ``"N/A"`` -> None."""
    if text is None:
        return None
    m = re.match(r"\s*(\d+)\s*MiB", text)
    return int(m.group(1)) if m else None


def _flag(text: str | None) -> bool | None:
    if text is None:
        return None
    value = text.strip()
    if value == "Enabled":
        return True
    if value == "Disabled":
        return False
    return None  # "N/A": not a MIG-capable GPU


# The children of each <gpu> that detect reads (see _read_query); the rest, nine tenths of the document (clock
# tables, ECC counters, power and temperature readings), is cut before parsing.
READ_SECTIONS = frozenset({"product_name", "product_architecture", "uuid", "pci", "gpu_virtualization_mode",
                           "mig_mode", "fb_memory_usage", "compute_mode", "mig_devices", "processes"})


def _skim(text: str) -> str:
    """``text`` with each ``<gpu>`` holding only its :data:`READ_SECTIONS` children, cut as text before parsing.

    ElementTree builds an object per element: a DGX's 160 kB document took 5 ms to parse, most of a sim host's
    detect. A tag cannot occur unescaped in XML text content, and no child of ``<gpu>`` holds an element of its
    own name, so ``<name>`` ... ``</name>`` bounds a child exactly. Anything else (a comment, a document cut
    short) leaves ``text`` as it is; should a cut ever leave broken XML, the caller parses the whole text."""
    kept: list[str] = []
    find = text.find
    pos = 0
    while (gpu := find("<gpu ", pos)) >= 0:
        at = find(">", gpu) + 1
        if at == 0:
            return text
        kept.append(text[pos:at])
        while True:
            lt = find("<", at)
            gt = find(">", lt)
            if lt < 0 or gt < 0:
                return text
            head = text[lt + 1:gt]
            if head[:1] in ("!", "?", ""):  # a comment or declaration: not what nvidia-smi prints
                return text
            if head[0] == "/":  # </gpu>
                break
            if head[-1] == "/":
                end = gt + 1
                name = head[:-1].split(None, 1)[0]
            else:
                name = head.split(None, 1)[0] if " " in head or "\n" in head or "\t" in head else head
                close = find(f"</{name}>", gt)
                if close < 0:
                    return text
                end = close + len(name) + 3
            if name in READ_SECTIONS:
                kept.append(text[lt:end])
            at = end
        pos = lt
    kept.append(text[pos:])
    return "".join(kept)


def parse_query_xml(text: str) -> QueryRecord:
    """``nvidia-smi -q -x``: the driver and, per GPU, identity, MIG mode, MIG device ids and processes.

    GPUs appear in nvidia-smi's index order, which is how the index is known (the XML has no index element).
    """
    try:
        root = ET.fromstring(_skim(text.strip()))
    except ET.ParseError:
        try:
            root = ET.fromstring(text.strip())  # what _skim cut was not what it looked like: read it all
        except ET.ParseError as exc:
            raise ValueError(f"`nvidia-smi -q -x` printed no readable XML ({exc})") from None
    return _read_query(root)


def _read_query(root: ET.Element) -> QueryRecord:
    if root.tag != "nvidia_smi_log":
        raise ValueError(f"`nvidia-smi -q -x` printed <{root.tag}>, expected <nvidia_smi_log>")
    gpus = []
    for index, g in enumerate(root.findall("gpu")):
        current = _flag(g.findtext("mig_mode/current_mig"))
        pending = _flag(g.findtext("mig_mode/pending_mig"))
        devices = []
        for d in g.findall("mig_devices/mig_device"):
            ids = (_int(d.findtext("index")), _int(d.findtext("gpu_instance_id")),
                   _int(d.findtext("compute_instance_id")))
            if None not in ids:
                devices.append((ids[0], ids[1], ids[2]))
        processes = []
        for p in g.findall("processes/process_info"):
            pid = _int(p.findtext("pid"))
            if pid is None:
                continue
            processes.append(Process(
                pid=pid, name=(p.findtext("process_name") or "").strip(), type=(p.findtext("type") or "").strip(),
                used_memory_mib=_mib(p.findtext("used_memory")), gi=_int(p.findtext("gpu_instance_id")),
                ci=_int(p.findtext("compute_instance_id")),
            ))
        device_id = (g.findtext("pci/pci_device_id") or "").strip()
        arch = (g.findtext("product_architecture") or "").strip()
        gpus.append(GpuRecord(
            index=index,
            product=(g.findtext("product_name") or "").strip(),
            architecture=arch if arch and arch != "N/A" else None,
            uuid=(g.findtext("uuid") or "").strip(),
            bus_id=(g.get("id") or g.findtext("pci/pci_bus_id") or "").strip().upper(),
            pci_device_id=f"0x{device_id.upper()}" if device_id else None,
            virtualization=(g.findtext("gpu_virtualization_mode/virtualization_mode") or "None").strip(),
            mig_capable=current is not None,
            mig_current=bool(current),
            mig_pending=bool(current if pending is None else pending),
            memory_mib=_mib(g.findtext("fb_memory_usage/total")) or 0,
            compute_mode=(g.findtext("compute_mode") or "Default").strip(),
            mig_device_ids=tuple(devices),
            processes=tuple(processes),
        ))
    return QueryRecord(driver=(root.findtext("driver_version") or "").strip() or None,
                       cuda=(root.findtext("cuda_version") or "").strip() or None, gpus=tuple(gpus))


_L_GPU = re.compile(r"^GPU (\d+): (.+) \(UUID: (GPU-[^)]+)\)\s*$")
_L_MIG = re.compile(r"^\s+MIG\s+(\S+)\s+Device\s+(\d+):\s+\(UUID:\s+(MIG-[^)]+)\)\s*$")


def parse_gpu_list(text: str) -> tuple[ListedDevice, ...]:
    """``nvidia-smi -L``: the MIG device UUIDs (``-q -x`` of older drivers does not print them)."""
    devices: list[ListedDevice] = []
    gpu: int | None = None
    for line in text.splitlines():
        if m := _L_GPU.match(line):
            gpu = int(m.group(1))
        elif m := _L_MIG.match(line):
            if gpu is None:
                raise ValueError(f"`nvidia-smi -L`: a MIG device before any GPU: {line.strip()!r}")
            devices.append(ListedDevice(gpu, int(m.group(2)), m.group(1), m.group(3)))
        elif line.strip():
            raise ValueError(f"`nvidia-smi -L`: unexpected line {line.strip()!r}")
    return tuple(devices)


_LGIP_1 = re.compile(r"^\|\s+(\d+)\s+MIG\s+(\S+)\s+(\d+)\s+(\d+)/(\d+)\s+([\d.]+)\s+\S+\s+(\d+)\s+(\d+)\s+(\d+)\s+\|$")
_LGIP_2 = re.compile(r"^\|\s+(\d+)\s+(\d+)\s+(\d+)\s+\|$")


def _gib_to_mib(gib: str) -> int:
    """Printed GiB back to MiB: 19.62 -> 20096, 5.81 -> 5952.

    Profile sizes are multiples of 1/16 GiB in every capture (A30's 5.81 is 5.8125) and ``%.2f`` is off by at most
    0.005, so rounding to 1/16 recovers the exact value NVML reports (which :func:`round_mib` rounds the same way).
    """
    return round(float(gib) * 16) * 64


def round_mib(mib: int) -> int:
    """NVML's MiB on the same 64 MiB grid as :func:`_gib_to_mib`, so both detect paths report equal sizes."""
    return round(mib / 64) * 64


def parse_lgip(text: str) -> tuple[ProfileRow, ...]:
    """``nvidia-smi mig -lgip``: two rows per profile; the 79- and 81-column layouts parse alike."""
    rows: list[ProfileRow] = []
    first: re.Match[str] | None = None
    for line in text.splitlines():
        line = line.rstrip()
        if m := _LGIP_1.match(line):
            first = m
        elif first is not None and (m := _LGIP_2.match(line)):
            g = first.groups()
            rows.append(ProfileRow(
                gpu=int(g[0]), name=g[1], id=int(g[2]), free=int(g[3]), total=int(g[4]),
                memory_mib=_gib_to_mib(g[5]), sm=int(g[6]), dec=int(g[7]), enc=int(g[8]),
                ce=int(m.group(1)), jpeg=int(m.group(2)), ofa=int(m.group(3)),
            ))
            first = None
        elif line.startswith("|") and "MIG" in line:
            raise ValueError(f"`nvidia-smi mig -lgip`: unexpected row {line.strip()!r}")
    return tuple(rows)


_LGIPP = re.compile(r"^GPU\s+(\d+)\s+Profile ID\s+(\d+)\s+Placements?\s*:\s*\{([\d,]*)\}:(\d+)\s*$")


def parse_lgipp(text: str) -> dict[tuple[int, int], tuple[tuple[int, int], ...]]:
    """``nvidia-smi mig -lgipp``: (GPU, profile id) -> possible placements ``(start, size)``."""
    out: dict[tuple[int, int], tuple[tuple[int, int], ...]] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        m = _LGIPP.match(line)
        if not m:
            raise ValueError(f"`nvidia-smi mig -lgipp`: unexpected line {line.strip()!r}")
        size = int(m.group(4))
        out[(int(m.group(1)), int(m.group(2)))] = tuple((int(s), size) for s in m.group(3).split(",") if s)
    return out


_LGI = re.compile(r"^\|\s+(\d+)\s+MIG\s+(\S+)\s+(\d+)\s+(\d+)\s+(\d+):(\d+)\s+\|$")


def parse_lgi(text: str) -> tuple[GiRow, ...]:
    """``nvidia-smi mig -lgi``: one row per GPU instance (54-, 57- and 59-column layouts)."""
    rows = []
    for line in text.splitlines():
        line = line.rstrip()
        if m := _LGI.match(line):
            g = m.groups()
            rows.append(GiRow(int(g[0]), g[1], int(g[2]), int(g[3]), int(g[4]), int(g[5])))
        elif line.startswith("|") and "MIG" in line:
            raise ValueError(f"`nvidia-smi mig -lgi`: unexpected row {line.strip()!r}")
    return tuple(rows)


_LCI = re.compile(r"^\|\s+(\d+)\s+(\d+)\s+MIG\s+(\S+)\s+(\d+)\s+(\d+)(?:\s+(\d+):(\d+))?\s+\|$")


def parse_lci(text: str) -> tuple[CiRow, ...]:
    """``nvidia-smi mig -lci``: one row per compute instance; older drivers print no Placement column."""
    rows = []
    for line in text.splitlines():
        line = line.rstrip()
        if m := _LCI.match(line):
            g = m.groups()
            rows.append(CiRow(int(g[0]), int(g[1]), g[2], int(g[3]), int(g[4]), _int(g[5]), _int(g[6])))
        elif line.startswith("|") and "MIG" in line:
            raise ValueError(f"`nvidia-smi mig -lci`: unexpected row {line.strip()!r}")
    return tuple(rows)


def parse_units(text: str) -> dict[str, dict[str, str]]:
    """``systemctl show -p Id,LoadState,ActiveState,UnitFileState U...``: per unit its load/active/enabled state."""
    units: dict[str, dict[str, str]] = {}
    for block in re.split(r"\n\s*\n", text.strip()):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if props.get("Id"):
            units[props["Id"]] = {"load": props.get("LoadState", ""), "active": props.get("ActiveState", ""),
                                  "enabled": props.get("UnitFileState", "")}
    return units


# -- facts -------------------------------------------------------------------------------------------------------


def assemble(query: QueryRecord, listings: Listings) -> dict[str, Any]:
    """Join the GPU records and the MIG listings into ``gpus``, ``mig_devices`` and ``mig`` facts.

    MIG device UUIDs are matched to (GI, CI) by the device number: ``-q -x`` gives number -> (GI, CI) where it lists
    MIG devices; otherwise nvidia-smi numbers a GPU's MIG devices in ascending (GI, CI) order.
    """
    shared_gpus: list[dict[str, Any]] = []
    shared_devices: list[dict[str, Any]] = []
    mig_gpus: list[dict[str, Any]] = []
    for g in query.gpus:
        cis_by_gi: dict[int, list[CiRow]] = {}
        for c in listings.cis:
            if c.gpu == g.index:
                cis_by_gi.setdefault(c.gi, []).append(c)
        numbering = {n: (gi, ci) for n, gi, ci in g.mig_device_ids}
        if not numbering:
            ordered = sorted((c.gi, c.ci) for cs in cis_by_gi.values() for c in cs)
            numbering = dict(enumerate(ordered))
        uuid_of = {numbering[d.device]: d.uuid for d in listings.devices
                   if d.gpu == g.index and d.device in numbering}
        instances = []
        for row in sorted((r for r in listings.gis if r.gpu == g.index), key=lambda r: (r.start, r.gi)):
            cis = []
            for c in sorted(cis_by_gi.get(row.gi, ()), key=lambda c: c.ci):
                uuid = uuid_of.get((c.gi, c.ci))
                cis.append({"ci": c.ci, "profile_id": c.profile_id, "profile": c.name,
                            "placement": None if c.start is None else [c.start, c.size], "uuid": uuid})
                shared_devices.append({"gpu": g.index, "gi": c.gi, "ci": c.ci, "profile": c.name, "uuid": uuid,
                                       "placement": [row.start, row.size]})
            instances.append({"gi": row.gi, "profile_id": row.profile_id, "profile": row.name,
                              "placement": [row.start, row.size], "cis": cis})
        profiles = [
            {"id": p.id, "name": p.name, "memory_mib": p.memory_mib, "free": p.free, "total": p.total, "sm": p.sm,
             "ce": p.ce, "dec": p.dec, "enc": p.enc, "jpeg": p.jpeg, "ofa": p.ofa,
             "placements": [list(x) for x in listings.placements[(g.index, p.id)]]
             if (g.index, p.id) in listings.placements else None}
            for p in listings.profiles if p.gpu == g.index
        ]
        shared_gpus.append({
            "index": g.index, "name": g.product, "uuid": g.uuid, "bus_id": g.bus_id, "mig_capable": g.mig_capable,
            "mig_current": g.mig_current, "mig_pending": g.mig_pending, "compute_mode": g.compute_mode,
            "memory_mib": g.memory_mib, "numa_node": None,
        })
        mig_gpus.append({
            "index": g.index, "product": g.product, "architecture": g.architecture or architecture_of(g.product),
            "uuid": g.uuid, "bus_id": g.bus_id, "pci_device_id": g.pci_device_id,
            "virtualization": g.virtualization, "mig_capable": g.mig_capable, "mig_current": g.mig_current,
            "mig_pending": g.mig_pending, "memory_mib": g.memory_mib,
            "profiles": profiles or None,  # None: unknown here (listings need MIG mode); the catalogue fills in
            "instances": instances,
            "processes": [{"pid": p.pid, "name": p.name, "type": p.type, "used_memory_mib": p.used_memory_mib,
                           "gi": p.gi, "ci": p.ci} for p in sorted(g.processes, key=lambda p: p.pid)],
        })
    shared_devices.sort(key=lambda d: (d["gpu"], d["gi"], d["ci"]))
    return {"gpus": shared_gpus, "mig_devices": shared_devices,
            "mig": {"driver": query.driver, "cuda": query.cuda, "gpus": mig_gpus}}


_ARCH_BY_NAME = (("GH200", "Hopper"), ("GB200", "Blackwell"), ("GB300", "Blackwell"), ("B200", "Blackwell"),
                 ("B300", "Blackwell"), ("RTX PRO", "Blackwell"), ("H100", "Hopper"), ("H200", "Hopper"),
                 ("H800", "Hopper"), ("H20", "Hopper"), ("A100", "Ampere"), ("A800", "Ampere"), ("A30", "Ampere"))


def architecture_of(product: str) -> str | None:
    """The architecture of a MIG product, for drivers whose XML has no ``product_architecture``."""
    for key, arch in _ARCH_BY_NAME:
        if key in product:
            return arch
    return None


def _result_fields(result: Any) -> tuple[str, str, int]:
    return result.stdout, result.stderr, result.exit_code


def facts_from_smi(outputs: Mapping[str, Any]) -> dict[str, Any]:
    """Facts from the nvidia-smi probes (the remote path, and the local fallback)."""
    stdout, stderr, code = _result_fields(outputs["mig.query"])
    if code == 127:
        return assemble(QueryRecord(None, None), Listings())  # no NVIDIA driver on this host: no GPUs
    if code != 0:
        message = (stderr.strip() or stdout.strip() or "(no output)").splitlines()[0]
        raise ValueError(f"`nvidia-smi -q -x` exited {code}: {message}")
    query = parse_query_xml(stdout)

    def listing(name: str, parse: Callable[[str], Any]) -> Any:
        out, err, rc = _result_fields(outputs[name])
        return parse(mig_listing(SMI_PROBES[name], out, err, rc))

    devices = parse_gpu_list(outputs["mig.list"].stdout) if outputs["mig.list"].exit_code == 0 else ()
    listings = Listings(profiles=listing("mig.lgip", parse_lgip), placements=listing("mig.lgipp", parse_lgipp),
                        gis=listing("mig.lgi", parse_lgi), cis=listing("mig.lci", parse_lci), devices=devices)
    return assemble(query, listings)


def host_state(outputs: Mapping[str, Any]) -> dict[str, Any]:
    """The systemd side: the services that may hold GPUs and the boot unit gpuprov installed (if any)."""
    units = outputs.get("mig.units")
    unit_states = parse_units(units.stdout) if units is not None and units.exit_code == 0 else {}
    boot_unit = outputs.get("mig.boot_unit")
    boot_script = outputs.get("mig.boot_script")
    return {
        "units": unit_states,
        "boot": {
            "unit": boot_unit.stdout if boot_unit is not None and boot_unit.exit_code == 0 else None,
            "script": boot_script.stdout if boot_script is not None and boot_script.exit_code == 0 else None,
            "enabled": unit_states.get(UNIT_NAME, {}).get("enabled") or None,
        },
    }


# -- NVML --------------------------------------------------------------------------------------------------------

_NVML_ARCH = {2: "Kepler", 3: "Maxwell", 4: "Pascal", 5: "Volta", 6: "Turing", 7: "Ampere", 8: "Ada Lovelace",
              9: "Hopper", 10: "Blackwell"}
_NVML_VIRT = {0: "None", 1: "Pass-Through", 2: "VGPU", 3: "Host VGPU", 4: "Host VSGA"}
_NVML_COMPUTE = {0: "Default", 1: "Exclusive_Thread", 2: "Prohibited", 3: "Exclusive_Process"}
_NVML_NO_ID = 0xFFFFFFFF


def load_nvml() -> Any | None:
    """The real ``pynvml`` when the NVIDIA library loads on this machine, else ``None`` (then nvidia-smi is used)."""
    try:
        import pynvml  # type: ignore[import-untyped]

        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
    except Exception:  # no libnvidia-ml.so, no driver, no GPU: the nvidia-smi path decides what is there
        return None
    return pynvml


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def facts_from_nvml(nvml: Any) -> dict[str, Any]:
    """Facts read through a pynvml-shaped module (the real one, or the simulator's ``SimNvml`` in tests).

    Reads the same things the nvidia-smi probes print and hands them to :func:`assemble`, so both paths agree.
    """
    error = nvml.NVMLError
    nvml.nvmlInit()
    try:
        driver = _text(nvml.nvmlSystemGetDriverVersion())
        try:
            cuda_int = int(nvml.nvmlSystemGetCudaDriverVersion_v2())
            cuda: str | None = f"{cuda_int // 1000}.{cuda_int % 1000 // 10}"
        except error:
            cuda = None
        gpus: list[GpuRecord] = []
        profiles: list[ProfileRow] = []
        placements: dict[tuple[int, int], tuple[tuple[int, int], ...]] = {}
        gis: list[GiRow] = []
        cis: list[CiRow] = []
        devices: list[ListedDevice] = []
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            record = _nvml_gpu(nvml, index, handle)
            gpus.append(record)
            if record.mig_current:
                _nvml_mig(nvml, index, handle, profiles, placements, gis, cis, devices)
    finally:
        nvml.nvmlShutdown()
    return assemble(QueryRecord(driver, cuda, tuple(gpus)),
                    Listings(tuple(profiles), placements, tuple(gis), tuple(cis), tuple(devices)))


def _nvml_gpu(nvml: Any, index: int, handle: Any) -> GpuRecord:
    error = nvml.NVMLError
    pci = nvml.nvmlDeviceGetPciInfo(handle)
    try:
        current, pending = nvml.nvmlDeviceGetMigMode(handle)
        capable = True
    except error:
        current = pending = 0
        capable = False
    try:
        arch: str | None = _NVML_ARCH.get(int(nvml.nvmlDeviceGetArchitecture(handle)))
    except error:
        arch = None
    try:
        virtualization = _NVML_VIRT.get(int(nvml.nvmlDeviceGetVirtualizationMode(handle)), "None")
    except error:
        virtualization = "None"
    try:
        compute_mode = _NVML_COMPUTE.get(int(nvml.nvmlDeviceGetComputeMode(handle)), "Default")
    except error:
        compute_mode = "Default"
    processes: dict[int, Process] = {}
    # MPS clients are listed apart from other compute processes; nvidia-smi shows them as "M+C"
    for getter, kind in ((nvml.nvmlDeviceGetComputeRunningProcesses, "C"),
                         (nvml.nvmlDeviceGetGraphicsRunningProcesses, "G"),
                         (getattr(nvml, "nvmlDeviceGetMPSComputeRunningProcesses", None), "M+C")):
        if getter is None:
            continue
        try:
            found = getter(handle)
        except error:
            continue
        for p in found:
            pid = int(p.pid)
            if pid in processes:
                processes[pid] = Process(pid, processes[pid].name, "C+G", processes[pid].used_memory_mib,
                                         processes[pid].gi, processes[pid].ci)
                continue
            try:
                name = _text(nvml.nvmlSystemGetProcessName(pid))
            except error:
                name = ""
            used = getattr(p, "usedGpuMemory", None)
            gi = getattr(p, "gpuInstanceId", _NVML_NO_ID)
            ci = getattr(p, "computeInstanceId", _NVML_NO_ID)
            processes[pid] = Process(pid, name, kind, None if used is None else int(used) // (1024 * 1024),
                                     None if gi in (None, _NVML_NO_ID) else int(gi),
                                     None if ci in (None, _NVML_NO_ID) else int(ci))
    device_id = int(pci.pciDeviceId)
    return GpuRecord(
        index=index, product=_text(nvml.nvmlDeviceGetName(handle)), architecture=arch,
        uuid=_text(nvml.nvmlDeviceGetUUID(handle)), bus_id=_text(pci.busId).upper(),
        pci_device_id=f"0x{device_id:08X}", virtualization=virtualization, mig_capable=capable,
        mig_current=bool(current), mig_pending=bool(pending),
        memory_mib=int(nvml.nvmlDeviceGetMemoryInfo(handle).total) // (1024 * 1024), compute_mode=compute_mode,
        processes=tuple(processes.values()),
    )


def _listed(nvml: Any, func: Any, handle: Any, key: Any, ctype: str, capacity: int) -> list[Any]:
    """Call one of NVML's list functions the way pynvml exposes them: into a caller-made array plus a count."""
    import ctypes

    array = (getattr(nvml, ctype) * max(capacity, 1))()
    count = ctypes.c_uint(0)
    func(handle, key, array, ctypes.byref(count))
    return [array[i] for i in range(count.value)]


def _profile_name(info: Any) -> str:
    return _text(getattr(info, "name", "")).removeprefix("MIG ").strip()


def _nvml_mig(nvml: Any, index: int, handle: Any, profiles: list[ProfileRow],
              placements: dict[tuple[int, int], tuple[tuple[int, int], ...]], gis: list[GiRow], cis: list[CiRow],
              devices: list[ListedDevice]) -> None:
    """The MIG listings of one GPU in MIG mode, as ``-lgip``/``-lgipp``/``-lgi``/``-lci``/``-L`` would print them."""
    error = nvml.NVMLError
    gi_count = getattr(nvml, "NVML_GPU_INSTANCE_PROFILE_COUNT", 18)
    ci_count = getattr(nvml, "NVML_COMPUTE_INSTANCE_PROFILE_COUNT", 9)
    seen: set[int] = set()
    found: list[tuple[Any, ...]] = []
    for slot in range(gi_count):
        try:
            info = nvml.nvmlDeviceGetGpuInstanceProfileInfoV(handle, slot)
        except error:
            continue
        if info.id in seen:
            continue
        seen.add(info.id)
        free = int(nvml.nvmlDeviceGetGpuInstanceRemainingCapacity(handle, info.id))
        name = _profile_name(info)
        found.append((info, name, free))
        try:
            possible = _listed(nvml, nvml.nvmlDeviceGetGpuInstancePossiblePlacements, handle, info.id,
                               "c_nvmlGpuInstancePlacement_t", 16)
            placements[(index, int(info.id))] = tuple((int(p.start), int(p.size)) for p in possible)
        except error:
            pass
        for gi_handle in _listed(nvml, nvml.nvmlDeviceGetGpuInstances, handle, info.id, "c_nvmlGpuInstance_t",
                                 int(info.instanceCount)):
            gi_info = nvml.nvmlGpuInstanceGetInfo(gi_handle)
            gis.append(GiRow(index, name, int(info.id), int(gi_info.id), int(gi_info.placement.start),
                             int(gi_info.placement.size)))
            seen_ci: set[int] = set()
            for ci_slot in range(ci_count):
                try:
                    ci_profile = nvml.nvmlGpuInstanceGetComputeInstanceProfileInfoV(gi_handle, ci_slot, 0)
                except error:
                    continue
                if int(ci_profile.id) in seen_ci:
                    continue
                seen_ci.add(int(ci_profile.id))
                for ci_handle in _listed(nvml, nvml.nvmlGpuInstanceGetComputeInstances, gi_handle, ci_profile.id,
                                         "c_nvmlComputeInstance_t", int(ci_profile.instanceCount)):
                    ci_info = nvml.nvmlComputeInstanceGetInfo(ci_handle)
                    cis.append(CiRow(index, int(gi_info.id), _profile_name(ci_profile), int(ci_profile.id),
                                     int(ci_info.id), int(ci_info.placement.start), int(ci_info.placement.size)))
    # -lgip lists profiles by size (compute slices, then memory), a +me variant after its plain profile
    # (19, 20, 15, 14, 9, 5, 0 on 8-slice parts; 14, 21, 5, 0 on an A30); keep that order so both paths agree
    for info, name, free in sorted(found, key=lambda f: (int(f[0].sliceCount), int(f[0].memorySizeMB),
                                                         int(f[0].id))):
        profiles.append(ProfileRow(
            gpu=index, id=int(info.id), name=name, free=free, total=int(info.instanceCount),
            memory_mib=round_mib(int(info.memorySizeMB)), sm=int(info.multiprocessorCount), dec=int(info.decoderCount),
            enc=int(info.encoderCount), ce=int(info.copyEngineCount), jpeg=int(info.jpegCount),
            ofa=int(info.ofaCount),
        ))
    for number in range(int(nvml.nvmlDeviceGetMaxMigDeviceCount(handle))):
        try:
            mig = nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, number)
        except error:
            continue
        gi = int(nvml.nvmlDeviceGetGpuInstanceId(mig))
        ci = int(nvml.nvmlDeviceGetComputeInstanceId(mig))
        name = next((c.name for c in cis if c.gpu == index and c.gi == gi and c.ci == ci), "")
        devices.append(ListedDevice(index, number, name, _text(nvml.nvmlDeviceGetUUID(mig))))


def gather(outputs: Mapping[str, Any], nvml: Any | None = None) -> dict[str, Any]:
    """All of this plugin's facts: from NVML when given (local hosts), else from the nvidia-smi probes."""
    facts = facts_from_nvml(nvml) if nvml is not None else facts_from_smi(outputs)
    facts["mig"].update(host_state(outputs))
    return facts


def gpu_view(facts: Mapping[str, Any]) -> list[list[str]]:
    """Rows of the ``gpuprov facts`` table: GPU, product, MIG mode (pending), instances."""
    rows = []
    for g in facts.get("mig", {}).get("gpus", []):
        if not g["mig_capable"]:
            mode = "n/a"
        else:
            mode = "on" if g["mig_current"] else "off"
            if g["mig_pending"] != g["mig_current"]:
                mode += f" (pending {'on' if g['mig_pending'] else 'off'})"
        rows.append([str(g["index"]), g["product"], mode, describe_instances(g["instances"])])
    return rows


def describe_instances(instances: Sequence[Mapping[str, Any]]) -> str:
    """``3g.40gb@4:4 [2 x 1c.3g.40gb], 1g.10gb@0:1`` — a GPU's instances, largest placement first."""
    if not instances:
        return "-"
    parts = []
    for inst in sorted(instances, key=lambda i: (-i["placement"][1], i["placement"][0])):
        text = f"{inst['profile']}@{inst['placement'][0]}:{inst['placement'][1]}"
        cis = inst.get("cis") or []
        if not cis:
            text += " [no CI]"
        elif not (len(cis) == 1 and cis[0]["profile"] == inst["profile"]):
            counts: dict[str, int] = {}
            for c in cis:
                counts[c["profile"]] = counts.get(c["profile"], 0) + 1
            text += " [" + ", ".join(f"{n} x {p}" if n > 1 else p for p, n in counts.items()) + "]"
        parts.append(text)
    return ", ".join(parts)
