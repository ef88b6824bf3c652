"""The ``nvidia-smi`` stand-in's full reports: ``-q`` (text and ``-x`` XML), ``--query-gpu``/``--query-compute-apps``
CSV, the default table and ``topo -m``, computed from the simulated machine.

Why: gpuprov detects a host by parsing ``nvidia-smi -q -x`` (and a person reads ``nvidia-smi`` or ``-q`` while
provisioning), so on a simulated host these reports must carry the state — product, UUID, serial, bus id, driver,
MIG mode current/pending, MIG devices, compute mode, persistence, processes — in the layout the real tool of that
driver generation prints (``shared/fixtures/nvidia-smi-xml/``, ``fixtures/nvidia-smi/``, ``fixtures/mps/``).
Telemetry (temperatures, clocks, power, ECC counters) is a plausible constant per board (:data:`BOARDS`).

The MIG engineer's ``nvidia_smi`` dispatch calls :func:`report` for ``-q``, ``-x``, ``-d``, ``--query-gpu``,
``--query-compute-apps``, ``--format``, ``topo`` and for ``nvidia-smi`` with no arguments (or only ``-i``).

Driver generations (the major version of ``Machine.driver_version``):

- XML: DTD ``nvsmi_device_v11.dtd`` and its element set before R525 (captures 510.47.03, 515.105.01),
  ``v12`` for R525-R555, ``v13`` (with ``addressing_mode``, ``clocks_event_reasons``, ``gpu_power_readings``...)
  from R560 (capture 590.44.01; public parsers date v13 to R560 and show it on 580.65.06).
- ``-q`` text: keys padded to 42 columns before R580 (capture 565.57.01), 55 from R580 (captures 590.48.01,
  595.80).
- the default table: 79 columns before R525 (capture 460.32.03), 89 for R525-R545 (processes part captured),
  91 from R550 (captures 580.126.09, 590.48.01).

MIG devices are numbered per GPU from 0 in ascending (GI ID, CI ID) order, as ``nvidia-smi -L`` numbers them
(``reference/mig.md`` §3.2); a device's SM count is its compute instance's, its engines and memory are its GPU
instance's (the A100 580 capture: two ``1c.2g.10gb`` CIs of one GI show 14 SMs and the GI's 2 CEs each).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .host import Result, SimHost
from .machine import Gpu, Machine, Process

__all__ = [
    "BOARDS",
    "Board",
    "GpuReport",
    "MigDevice",
    "ReportError",
    "build",
    "cuda_version",
    "report",
    "select_gpus",
]


@dataclass(frozen=True)
class Board:
    """What a product's board reports that the machine model does not hold: identity strings and telemetry."""

    brand: str
    architecture: str
    compute_cap: str
    vbios: str
    board_part: str
    gpu_part: str
    subsystem_id: int
    pcie_gen: int
    bar1_mib: int
    reserved_mib: int
    power_limit: float
    power_min: float
    power_idle: float
    max_graphics: int
    max_memory: int
    max_video: int
    idle_graphics: int
    temp: int
    memory_temp: int | None
    fan: str = "N/A"
    ecc: bool = True
    nvlinks: int = 0  # NVLinks between two GPUs of a board family (``NV12`` on a DGX A100); 0: PCIe only
    pci_sub_class: int = 2  # 0x0302 3D controller; workstation boards are 0x0300 VGA


# Per-product constants. Identity strings and limits are the captured boards' (fixtures/nvidia-smi-xml and
# fixtures/nvidia-smi); products without a capture carry their data-sheet limits and a sibling's strings.
BOARDS: dict[str, Board] = {
    "NVIDIA A100-SXM4-40GB": Board("NVIDIA", "Ampere", "8.0", "92.00.45.00.03", "692-2G506-0200-003", "20B0-884-A1",
                                   0x134F10DE, 4, 65536, 605, 400.0, 100.0, 43.0, 1410, 1215, 1290, 1410, 36, 44,
                                   nvlinks=12),
    "NVIDIA A100-PCIE-40GB": Board("NVIDIA", "Ampere", "8.0", "92.00.25.00.08", "900-21001-0000-000", "20F1-875-A1",
                                   0x145F10DE, 4, 65536, 605, 250.0, 150.0, 35.0, 1410, 1215, 1290, 1410, 34, 40),
    "NVIDIA A100-SXM4-80GB": Board("NVIDIA", "Ampere", "8.0", "92.00.36.00.02", "692-2G506-0210-002", "20B2-895-A1",
                                   0x147F10DE, 4, 131072, 640, 400.0, 100.0, 61.0, 1410, 1593, 1290, 1410, 32, 38,
                                   nvlinks=12),
    "NVIDIA A100 80GB PCIe": Board("NVIDIA", "Ampere", "8.0", "92.00.90.00.04", "900-21001-0020-000", "20B5-893-A1",
                                   0x153310DE, 4, 131072, 640, 300.0, 150.0, 45.0, 1410, 1512, 1290, 1410, 35, 41),
    "NVIDIA A30": Board("NVIDIA", "Ampere", "8.0", "92.00.66.00.04", "900-21001-0040-100", "20B7-890-A1",
                        0x153210DE, 4, 32768, 587, 165.0, 90.0, 31.0, 1440, 1215, 1305, 1440, 33, 35),
    "NVIDIA H100 PCIe": Board("NVIDIA", "Hopper", "9.0", "96.00.30.00.01", "900-21010-0000-000", "2331-880-A1",
                              0x162610DE, 5, 131072, 479, 350.0, 200.0, 48.0, 1755, 1593, 1665, 1755, 35, 40),
    "NVIDIA H100 80GB HBM3": Board("NVIDIA", "Hopper", "9.0", "96.00.A5.00.01", "692-2G520-0200-000", "2330-885-A1",
                                   0x16C110DE, 5, 131072, 479, 700.0, 200.0, 72.0, 1980, 2619, 1545, 1980, 33, 40,
                                   nvlinks=18),
    "NVIDIA H100 NVL": Board("NVIDIA", "Hopper", "9.0", "96.00.61.00.01", "900-21010-0020-000", "2321-886-A1",
                             0x183910DE, 5, 131072, 559, 400.0, 200.0, 61.0, 1785, 2619, 1650, 1785, 36, 42),
    "NVIDIA H200": Board("NVIDIA", "Hopper", "9.0", "96.00.A5.00.03", "695-2G520-0280-001", "2335-895-A1",
                         0x18BE10DE, 5, 262144, 614, 700.0, 200.0, 77.7, 1980, 3201, 1545, 345, 28, 32, nvlinks=18),
    "NVIDIA GH200 480GB": Board("NVIDIA", "Hopper", "9.0", "96.00.74.00.1C", "692-2G530-0205-000", "2342-895-A1",
                                0x16EB10DE, 5, 131072, 605, 900.0, 200.0, 92.0, 1980, 2619, 1545, 1980, 23, 30),
    "NVIDIA GH200 120GB": Board("NVIDIA", "Hopper", "9.0", "96.00.74.00.1C", "692-2G530-0205-000", "2342-895-A1",
                                0x16EB10DE, 5, 131072, 605, 900.0, 200.0, 92.0, 1980, 2619, 1545, 1980, 23, 30),
    "NVIDIA L40S": Board("NVIDIA", "Ada Lovelace", "8.9", "95.02.66.00.02", "900-2G133-0080-000", "26B9-896-A1",
                         0x185110DE, 4, 65536, 609, 350.0, 100.0, 34.0, 2520, 9001, 1965, 210, 30, None, fan="0 %"),
    "Tesla T4": Board("NVIDIA", "Turing", "7.5", "90.04.84.00.06", "900-2G183-0000-001", "1EB8-895-A1",
                      0x12A210DE, 3, 256, 388, 70.0, 60.0, 26.0, 1590, 5001, 1470, 585, 31, None),
    "Tesla P100-PCIE-16GB": Board("Tesla", "Pascal", "6.0", "86.00.52.00.02", "900-2H400-6300-031", "15F8-875-A1",
                                  0x118F10DE, 3, 16384, 103, 250.0, 125.0, 28.2, 1328, 715, 1189, 405, 37, None),
    "NVIDIA RTX PRO 6000 Blackwell Max-Q Workstation Edition": Board(
        "NVIDIA RTX", "Blackwell", "12.0", "98.02.6A.00.03", "900-5G153-2200-000", "2BB4-865-A1", 0x204C10DE, 5,
        131072, 637, 300.0, 250.0, 4.0, 3090, 14001, 3090, 180, 24, None, fan="30 %", ecc=False, pci_sub_class=0),
}

# The CUDA version each driver branch reports (``CUDA Version`` of nvidia-smi): the captures' pairs (460.32.03
# 11.2, 510.47.03 11.6, 515.105.01 11.7, 565.57.01 12.7, 580.126.09 13.0, 590.48.01 13.1, 595.80 13.2) and
# NVIDIA's release notes for the branches between.
CUDA_BY_BRANCH: dict[int, str] = {
    450: "11.0", 455: "11.1", 460: "11.2", 465: "11.3", 470: "11.4", 495: "11.5", 510: "11.6", 515: "11.7",
    520: "11.8", 525: "12.0", 530: "12.1", 535: "12.2", 545: "12.3", 550: "12.4", 555: "12.5", 560: "12.6",
    565: "12.7", 570: "12.8", 575: "12.9", 580: "13.0", 590: "13.1", 595: "13.2",
}


def cuda_version(driver: str) -> str | None:
    """The CUDA version a driver of this branch reports, ``None`` for a branch not in :data:`CUDA_BY_BRANCH`."""
    major = driver_major(driver)
    best = [b for b in CUDA_BY_BRANCH if b <= major]
    return CUDA_BY_BRANCH[max(best)] if best else None


def driver_major(driver: str) -> int:
    head = driver.split(".", 1)[0]
    return int(head) if head.isdigit() else 0


def board(product: str) -> Board:
    """The board constants of ``product``; an unknown product gets neutral values (``N/A`` identity strings)."""
    if product in BOARDS:
        return BOARDS[product]
    return Board("NVIDIA", "N/A", "N/A", "N/A", "N/A", "N/A", 0, 4, 65536, 512, 300.0, 100.0, 40.0, 1500, 1500,
                 1400, 1500, 35, None)


# ------------------------------------------------------------------------------------------------ the view


@dataclass(frozen=True)
class MigDevice:
    """One MIG device (a compute instance) as the reports show it."""

    index: int  # per-GPU number, ascending (GI, CI)
    gi: int
    ci: int
    name: str  # "3g.40gb", or "1c.3g.71gb" for a CI smaller than its GI (``-L``'s name)
    sm_count: int
    ce: int
    enc: int
    dec: int
    ofa: int
    jpg: int
    memory_mib: int  # the GI's memory, shared by its CIs
    used_mib: int  # used in the GI (its CIs share the figure)
    bar1_mib: int
    uuid: str


@dataclass(frozen=True)
class GpuReport:
    """One GPU with everything the reports print, derived from the machine once."""

    gpu: Gpu
    board: Board
    mig_capable: bool
    mig_devices: tuple[MigDevice, ...]
    processes: tuple[Process, ...]  # on this GPU, in nvidia-smi's order
    used_mib: int
    reserved_mib: int
    bar1_used_mib: int
    minor: int

    @property
    def free_mib(self) -> int:
        return max(self.gpu.memory_mib - self.reserved_mib - self.used_mib, 0)

    @property
    def mig_on(self) -> bool:
        return self.mig_capable and self.gpu.mig_current


@dataclass(frozen=True)
class Report:
    """The whole machine as the reports see it; ``gpus`` is the ``-i`` selection."""

    machine: Machine
    gpus: tuple[GpuReport, ...]
    all_gpus: tuple[GpuReport, ...] = field(default=())
    timestamp: float = 0.0

    @property
    def major(self) -> int:
        return driver_major(self.machine.driver_version)


class ReportError(Exception):
    """nvidia-smi refused the command line: ``message`` goes to stdout (as nvidia-smi prints it), exit ``code``."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def _mig_capable(product: str) -> bool:
    from .presets import mig_capable

    return mig_capable(product)


def _empty_gi_used(slices: int, major: int) -> int:
    """What an empty GPU instance shows as used (driver context); captures: R580 A100 36/71/142 MiB for 1/2/4
    memory slices, R590 H100 9/17 MiB for 1/2."""
    return int((35.5 if major < 590 else 8.5) * slices + 0.5)


def _mig_devices(machine: Machine, gpu: Gpu, processes: Sequence[Process]) -> tuple[MigDevice, ...]:
    if not gpu.mig_current or not gpu.gpu_instances:
        return ()
    from . import migprofiles

    major = driver_major(machine.driver_version)
    bar1 = board(gpu.product).bar1_mib
    rows = []
    for gi in gpu.gpu_instances:
        prof = migprofiles.gi_profile(gpu.product, machine.driver_version, gi.profile_id)
        if prof is None:  # a state this driver cannot hold; show what is known rather than fail the report
            continue
        used = _empty_gi_used(gi.size, major) + sum(p.used_memory_mib for p in processes if p.gi == gi.id)
        for ci in gi.compute_instances:
            cip = migprofiles.ci_profile(prof, ci.profile_id)
            sm = cip.sm_count if cip is not None else prof.sm_count
            name = migprofiles.mig_device_name(prof, cip) if cip is not None else prof.name
            rows.append((gi.id, ci.id, name, sm, prof, used, ci.uuid))
    rows.sort(key=lambda r: (r[0], r[1]))
    out = []
    for n, (gi_id, ci_id, name, sm, prof, used, uuid) in enumerate(rows):
        out.append(MigDevice(index=n, gi=gi_id, ci=ci_id, name=name, sm_count=sm, ce=prof.ce, enc=prof.enc,
                             dec=prof.dec, ofa=prof.ofa, jpg=prof.jpeg,
                             memory_mib=migprofiles.mig_device_memory_mib(prof),
                             used_mib=min(used, prof.memory_mib),
                             bar1_mib=bar1 * 3 * prof.size // 64,
                             uuid=uuid))
    return tuple(out)


def _gpu_report(machine: Machine, gpu: Gpu, minor: int) -> GpuReport:
    capable = _mig_capable(gpu.product)
    procs = [p for p in machine.processes if p.gpu == gpu.index]
    devices = _mig_devices(machine, gpu, procs) if capable else ()
    if devices:
        order: dict[tuple[int | None, int | None], int] = {(d.gi, d.ci): d.index for d in devices}
        procs.sort(key=lambda p: (order.get((p.gi, p.ci), len(order)), p.pid))
        used = sum({d.gi: d.used_mib for d in devices}.values())
    else:
        procs.sort(key=lambda p: p.pid)
        used = sum(p.used_memory_mib for p in procs)
    b = board(gpu.product)
    used = min(used, max(gpu.memory_mib - b.reserved_mib, 0))
    return GpuReport(gpu=gpu, board=b, mig_capable=capable, mig_devices=devices, processes=tuple(procs),
                     used_mib=used, reserved_mib=b.reserved_mib, bar1_used_mib=1 + used // 64, minor=minor)


def build(machine: Machine, selection: Sequence[int] | None = None, timestamp: float | None = None) -> Report:
    """The report view of ``machine``; ``selection`` are GPU indexes (``-i``), all GPUs when ``None``."""
    gpus = sorted(machine.gpus, key=lambda g: g.index)
    all_reports = tuple(_gpu_report(machine, g, minor) for minor, g in enumerate(gpus))
    chosen = all_reports if selection is None else tuple(r for r in all_reports if r.gpu.index in selection)
    return Report(machine=machine, gpus=chosen, all_gpus=all_reports,
                  timestamp=time.time() if timestamp is None else timestamp)


# ------------------------------------------------------------------------------------------------ -i selection


def select_gpus(machine: Machine, spec: str | None) -> list[int]:
    """GPU indexes named by ``-i`` (see :meth:`Machine.select_gpus`).

    No GPU matching: ``No devices were found`` (exit 6, NVML_ERROR_NOT_FOUND), as nvidia-smi says for an id
    that names nothing.
    """
    try:
        return [g.index for g in machine.select_gpus(spec)]
    except KeyError:
        raise ReportError("No devices were found\n", 6) from None


# ------------------------------------------------------------------------------------------------ dispatch

_USAGE_HINT = "Please run 'nvidia-smi -h' for help.\n"

DISPLAY_SECTIONS = ("MEMORY", "UTILIZATION", "ECC", "TEMPERATURE", "POWER", "CLOCK", "COMPUTE", "PIDS",
                    "PERFORMANCE", "SUPPORTED_CLOCKS", "PAGE_RETIREMENT", "ACCOUNTING", "ENCODER_STATS",
                    "SUPPORTED_GPU_TARGET_TEMP", "VOLTAGE", "FBC_STATS", "ROW_REMAPPER", "RESET_STATUS",
                    "GSP_FIRMWARE_VERSION", "POWER_SMOOTHING", "POWER_PROFILES")


@dataclass
class _Args:
    ids: str | None = None
    query: bool = False
    xml: bool = False
    dtd: bool = False
    display: list[str] = field(default_factory=list)
    query_gpu: str | None = None
    query_apps: str | None = None
    format: str | None = None
    topo: list[str] | None = None
    filename: str | None = None


def _invalid() -> ReportError:
    return ReportError("Invalid combination of input arguments. " + _USAGE_HINT, 2)


def _parse(argv: Sequence[str]) -> _Args:
    args = _Args()
    rest = list(argv[1:])
    if rest and rest[0] == "topo":
        args.topo = []
        rest = rest[1:]
    i = 0

    def value(name: str) -> str:
        nonlocal i
        item = rest[i]
        if "=" in item and item.startswith("--"):
            return item.split("=", 1)[1]
        i += 1
        if i >= len(rest):
            raise ReportError(f'Option "{name}" is missing a value. ' + _USAGE_HINT, 2)
        return rest[i]

    while i < len(rest):
        item = rest[i]
        key = item.split("=", 1)[0] if item.startswith("--") else item
        if args.topo is not None and key not in ("-i", "--id"):
            args.topo.append(item)
        elif key in ("-i", "--id"):
            args.ids = value(key)
        elif key in ("-q", "--query"):
            args.query = True
        elif key in ("-x", "--xml-format"):
            args.xml = True
        elif key == "--dtd":
            args.dtd = True
        elif key in ("-d", "--display"):
            args.display = [s.strip().upper() for s in value(key).split(",") if s.strip()]
        elif key == "--query-gpu":
            args.query_gpu = value(key)
        elif key == "--query-compute-apps":
            args.query_apps = value(key)
        elif key == "--format":
            args.format = value(key)
        elif key in ("-f", "--filename"):
            args.filename = value(key)
        else:
            raise _invalid()
        i += 1
    return args


def report(host: SimHost, argv: list[str], env: Mapping[str, str]) -> Result:
    """Print the report ``argv`` asks for, from ``host.machine`` (``argv[0] == "nvidia-smi"``)."""
    try:
        result = _report(host.machine, argv)
    except ReportError as exc:
        return Result(stdout=exc.message, exit_code=exc.code)
    target = _parse(argv).filename
    if target is not None and result.exit_code == 0:  # -f FILE: the report goes to the host's file instead
        path = host.path(target if target.startswith("/") else os.path.join(env.get("PWD", "/"), target))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(result.stdout)
        except OSError as exc:
            return Result(stdout=f"Failed to open file {target}: {exc.strerror}\n", exit_code=2)
        return Result(exit_code=0)
    return result


def _report(machine: Machine, argv: Sequence[str]) -> Result:
    args = _parse(argv)
    if not machine.gpus:  # a driver without a GPU (a sim host described without sim_gpu): NVML finds nothing
        raise ReportError("No devices were found\n", 6)
    if args.topo is not None:
        from .nvidia_smi_table import topo

        chosen = select_gpus(machine, args.ids) if args.ids is not None else None
        return topo(build(machine, chosen), args.topo, args.ids)
    selection = select_gpus(machine, args.ids)
    view = build(machine, selection)
    if args.query_gpu is not None or args.query_apps is not None:
        from .nvidia_smi_query import query

        if args.query_gpu is not None and args.query_apps is not None:
            raise _invalid()
        if args.query or args.xml:
            raise _invalid()
        return query(view, args.query_gpu, args.query_apps, args.format)
    if args.format is not None:
        raise ReportError('Option "--format" must be used with --query-* options. ' + _USAGE_HINT, 2)
    for section in args.display:
        if section not in DISPLAY_SECTIONS:
            raise ReportError(f'"{section}" is not a valid display section. ' + _USAGE_HINT, 2)
    if args.dtd:  # embedding NVIDIA's DTD text would mean inventing it: refuse rather than pretend
        return Result(stderr="gpuprov sim: nvidia-smi --dtd is not simulated (use -q -x)\n", exit_code=2)
    if args.xml:
        if not args.query:
            raise _invalid()
        from .nvidia_smi_xml import xml_report

        return Result(stdout=xml_report(view))
    if args.query:
        from .nvidia_smi_text import text_report

        return Result(stdout=text_report(view, args.display))
    if args.display:
        raise _invalid()
    from .nvidia_smi_table import table

    return Result(stdout=table(view))
