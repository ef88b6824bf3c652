"""``nvidia-smi --query-gpu=FIELDS`` and ``--query-compute-apps=FIELDS`` with ``--format=csv[,noheader][,nounits]``.

Why: scripts and people read single fields this way (``mig.mode.current``, ``pci.bus_id``, ``memory.used``), so
the fields must be the state's and the CSV the tool's: ``, `` between cells, the header naming each field with its
unit in brackets (``memory.total [MiB]``, kept under ``nounits``), values with units (``81559 MiB``) unless
``nounits``, ``[N/A]`` for what the board cannot tell (captures: ``fixtures/nvidia-smi-xml/query/`` — the 212 fields
of 590.48.01's ``--help-query-gpu`` on an H100 and an H200 — and ``fixtures/nvidia-smi/``). An unknown field
prints ``Field "X" is not a valid field to query.`` and an empty line on stdout, exit 2 (as field reports show).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from .host import Result
from .nvidia_smi_report import GpuReport, Report, ReportError
from .sysfs import pci_device_id

__all__ = ["GPU_FIELDS", "query"]

NA = "[N/A]"
DEPRECATED = "[Requested functionality has been deprecated]"

Getter = Callable[[Report, GpuReport], str]


def _const(value: str) -> Getter:
    return lambda view, g: value


def _flag(on: bool) -> str:
    return "Enabled" if on else "Disabled"


def _stamp(view: Report) -> str:
    t = view.timestamp
    return time.strftime("%Y/%m/%d %H:%M:%S", time.localtime(t)) + f".{int(t * 1000) % 1000:03d}"


def _bus(g: GpuReport) -> tuple[str, str, str]:
    domain, bus, devfn = g.gpu.bus_id.split(":")
    return domain[-4:], bus, devfn.split(".")[0]


def _mib(n: int) -> str:
    return f"{n} MiB"


def _watts(w: float) -> str:
    return f"{w:.2f} W"


def _mhz(n: int) -> str:
    return f"{n} MHz"


def _idle(g: GpuReport) -> bool:
    return not g.processes


def _util(g: GpuReport) -> str:
    if g.mig_on:
        return NA
    return "0 %" if _idle(g) else "100 %"


def _ecc(g: GpuReport) -> str:
    return "0" if g.board.ecc else NA


def _new_gen(view: Report) -> bool:
    return view.major >= 580


# Field -> (unit shown in the header, getter). Order: 590.48.01's ``--help-query-gpu`` (the captures' header).
GPU_FIELDS: dict[str, tuple[str, Getter]] = {
    "timestamp": ("", lambda v, g: _stamp(v)),
    "driver_version": ("", lambda v, g: v.machine.driver_version),
    "vgpu_driver_capability.heterogenous_multivGPU": ("", _const(NA)),
    "count": ("", lambda v, g: str(len(v.all_gpus))),
    "name": ("", lambda v, g: g.gpu.product),
    "serial": ("", lambda v, g: g.gpu.serial),
    "uuid": ("", lambda v, g: g.gpu.uuid),
    "pci.bus_id": ("", lambda v, g: g.gpu.bus_id),
    "pci.domain": ("", lambda v, g: f"0x{_bus(g)[0]}"),
    "pci.bus": ("", lambda v, g: f"0x{_bus(g)[1]}"),
    "pci.device": ("", lambda v, g: f"0x{_bus(g)[2]}"),
    "pci.baseClass": ("", _const("0x3")),
    "pci.subClass": ("", lambda v, g: f"0x{g.board.pci_sub_class}"),
    "pci.device_id": ("", lambda v, g: f"0x{pci_device_id(g.gpu.product):04X}10DE"),
    "pci.sub_device_id": ("", lambda v, g: f"0x{g.board.subsystem_id:08X}"),
    **{f"vgpu_device_capability.{k}": ("", _const(NA)) for k in (
        "fractional_multiVgpu", "heterogeneous_timeSlice_profile", "heterogeneous_timeSlice_sizes",
        "homogeneous_placements", "mig_timeSlicing", "mig_timeSlicing_mode")},
    "pcie.link.gen.current": ("", lambda v, g: str(g.board.pcie_gen)),
    "pcie.link.gen.gpucurrent": ("", lambda v, g: str(g.board.pcie_gen)),
    "pcie.link.gen.max": ("", lambda v, g: str(g.board.pcie_gen)),
    "pcie.link.gen.gpumax": ("", lambda v, g: str(g.board.pcie_gen)),
    "pcie.link.gen.hostmax": ("", _const(NA)),
    "pcie.link.width.current": ("", _const("16")),
    "pcie.link.width.max": ("", _const("16")),
    "index": ("", lambda v, g: str(g.gpu.index)),
    "display_mode": ("", lambda v, g: DEPRECATED if _new_gen(v) else "Enabled"),
    "display_attached": ("", _const("Yes")),
    "display_active": ("", _const("Disabled")),
    "persistence_mode": ("", lambda v, g: _flag(g.gpu.persistence_mode)),
    "addressing_mode": ("", lambda v, g: "None"),
    "accounting.mode": ("", _const("Disabled")),
    "accounting.buffer_size": ("", _const("4000")),
    "driver_model.current": ("", _const(NA)),
    "driver_model.pending": ("", _const(NA)),
    "vbios_version": ("", lambda v, g: g.board.vbios),
    "inforom.img": ("", _const(NA)),
    "inforom.oem": ("", _const("2.1")),
    "inforom.ecc": ("", _const("7.16")),
    "inforom.pwr": ("", _const(NA)),
    "inforom.checksum_validation": ("", _const("valid")),
    "gpu_recovery_action": ("", _const("None")),
    "gom.current": ("", _const(NA)),
    "gom.pending": ("", _const(NA)),
    "fan.speed": ("%", lambda v, g: NA if g.board.fan == "N/A" else g.board.fan),
    "pstate": ("", _const("P0")),
    "clocks_event_reasons.supported": ("", _const("0x00000000000001FF")),
    "clocks_event_reasons.active": ("", lambda v, g: "0x0000000000000001" if _idle(g) and not g.mig_on
                                    else "0x0000000000000000"),
    "clocks_event_reasons.gpu_idle": ("", lambda v, g: "Active" if _idle(g) and not g.mig_on else "Not Active"),
    **{f"clocks_event_reasons.{k}": ("", _const("Not Active")) for k in (
        "applications_clocks_setting", "sw_power_cap", "hw_slowdown", "hw_thermal_slowdown",
        "hw_power_brake_slowdown", "sw_thermal_slowdown", "sync_boost")},
    **{f"clocks_event_reasons_counters.{k}": ("us", _const("0 us")) for k in (
        "sw_power_cap", "sync_boost", "sw_thermal_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown")},
    "memory.total": ("MiB", lambda v, g: _mib(g.gpu.memory_mib)),
    "memory.reserved": ("MiB", lambda v, g: _mib(g.reserved_mib)),
    "memory.used": ("MiB", lambda v, g: _mib(g.used_mib)),
    "memory.free": ("MiB", lambda v, g: _mib(g.free_mib)),
    "compute_mode": ("", lambda v, g: g.gpu.compute_mode),
    "compute_cap": ("", lambda v, g: g.board.compute_cap),
    **{f"utilization.{k}": ("%", lambda v, g: _util(g)) for k in ("gpu", "memory", "encoder", "decoder", "jpeg",
                                                                  "ofa")},
    "encoder.stats.sessionCount": ("", _const("0")),
    "encoder.stats.averageFps": ("", _const("0")),
    "encoder.stats.averageLatency": ("", _const("0")),
    "dramEncryption.mode.current": ("", _const(NA)),
    "dramEncryption.mode.pending": ("", _const(NA)),
    "ecc.mode.current": ("", lambda v, g: _flag(g.board.ecc)),
    "ecc.mode.pending": ("", lambda v, g: _flag(g.board.ecc)),
    **{f"ecc.errors.{kind}.{when}.{what}": ("", (lambda v, g: _ecc(g)) if what in ("device_memory", "dram",
                                                                                   "sram", "total")
                                             else _const(NA))
       for kind in ("corrected", "uncorrected") for when in ("volatile", "aggregate")
       for what in ("device_memory", "dram", "register_file", "l1_cache", "l2_cache", "texture_memory", "cbu",
                    "sram", "total")},
    **{f"ecc.errors.uncorrected.{when}.sram.{what}": ("", lambda v, g: _ecc(g))
       for when, what in (("volatile", "parity"), ("volatile", "secded"), ("aggregate", "parity"),
                          ("aggregate", "secded"))},
    "ecc.errors.uncorrected.aggregate.sram.thresholdExceeded": ("", lambda v, g: "No" if g.board.ecc else NA),
    **{f"ecc.errors.uncorrected.aggregate.sram.{k}": ("", lambda v, g: _ecc(g))
       for k in ("l2", "sm", "mcu", "pcie", "other")},
    "retired_pages.single_bit_ecc.count": ("", _const(NA)),
    "retired_pages.double_bit.count": ("", _const(NA)),
    "retired_pages.pending": ("", _const(NA)),
    "remapped_rows.correctable": ("", lambda v, g: "0" if g.board.ecc else NA),
    "remapped_rows.uncorrectable": ("", lambda v, g: "0" if g.board.ecc else NA),
    "remapped_rows.pending": ("", lambda v, g: "No" if g.board.ecc else NA),
    "remapped_rows.failure": ("", lambda v, g: "No" if g.board.ecc else NA),
    "remapped_rows.histogram.max": ("", lambda v, g: "3072" if "H200" in g.gpu.product else "2560"),
    **{f"remapped_rows.histogram.{k}": ("", _const("0")) for k in ("high", "partial", "low", "none")},
    "temperature.gpu": ("", lambda v, g: str(g.board.temp if _idle(g) else g.board.temp + 20)),
    "temperature.gpu.tlimit": ("", lambda v, g: str(87 - (g.board.temp if _idle(g) else g.board.temp + 20))),
    "temperature.memory": ("", lambda v, g: NA if g.board.memory_temp is None else str(g.board.memory_temp)),
    "power.management": ("", lambda v, g: DEPRECATED if _new_gen(v) else "Supported"),
    "power.draw": ("W", lambda v, g: _watts(_draw(g))),
    "power.draw.average": ("W", lambda v, g: _watts(_draw(g))),
    "power.draw.instant": ("W", lambda v, g: _watts(_draw(g))),
    "power.limit": ("W", lambda v, g: _watts(g.board.power_limit)),
    "enforced.power.limit": ("W", lambda v, g: _watts(g.board.power_limit)),
    "power.default_limit": ("W", lambda v, g: _watts(g.board.power_limit)),
    "power.min_limit": ("W", lambda v, g: _watts(g.board.power_min)),
    "power.max_limit": ("W", lambda v, g: _watts(g.board.power_limit)),
    **{f"module.{k}": ("W", _const(NA)) for k in (
        "power.draw.average", "power.draw.instant", "power.limit", "enforced.power.limit", "power.default_limit",
        "power.min_limit", "power.max_limit")},
    "power_smoothing.delayed_power_smoothing_supported": ("", _const(NA)),
    **{f"power_smoothing.{k}": ("W", _const(NA)) for k in (
        "primary_power_floor", "secondary_power_floor", "min_primary_floor_activation_offset",
        "min_primary_floor_activation_point")},
    "power_smoothing.window_multiplier": ("ms", _const(NA)),
    **{f"power_smoothing.{who}.{k}": ("W" if k.endswith(("floor", "offset")) else "", _const(NA))
       for who in ("curr_profile", "admin_override")
       for k in ("secondary_power_floor", "primary_floor_act_window_multiplier",
                 "primary_floor_tar_window_multiplier", "primary_floor_act_offset")},
    "edpp_multiplier": ("%", _const("100.00 %")),
    "clocks.current.graphics": ("MHz", lambda v, g: _mhz(_clock(g))),
    "clocks.current.sm": ("MHz", lambda v, g: _mhz(_clock(g))),
    "clocks.current.memory": ("MHz", lambda v, g: _mhz(g.board.max_memory)),
    "clocks.current.video": ("MHz", lambda v, g: _mhz(g.board.max_video)),
    "clocks.applications.graphics": ("MHz", lambda v, g: DEPRECATED if _new_gen(v) else _mhz(_app_clock(g))),
    "clocks.applications.memory": ("MHz", lambda v, g: DEPRECATED if _new_gen(v) else _mhz(g.board.max_memory)),
    "clocks.default_applications.graphics": ("MHz", lambda v, g: DEPRECATED if _new_gen(v)
                                             else _mhz(_app_clock(g))),
    "clocks.default_applications.memory": ("MHz", lambda v, g: DEPRECATED if _new_gen(v)
                                           else _mhz(g.board.max_memory)),
    "clocks.max.graphics": ("MHz", lambda v, g: _mhz(g.board.max_graphics)),
    "clocks.max.sm": ("MHz", lambda v, g: _mhz(g.board.max_graphics)),
    "clocks.max.memory": ("MHz", lambda v, g: _mhz(g.board.max_memory)),
    "mig.mode.current": ("", lambda v, g: _flag(g.gpu.mig_current) if g.mig_capable else NA),
    "mig.mode.pending": ("", lambda v, g: _flag(g.gpu.mig_pending) if g.mig_capable else NA),
    "gsp.mode.current": ("", _const("Enabled")),
    "gsp.mode.default": ("", _const("Enabled")),
    "c2c.mode": ("", _const("Disabled")),
    "protected_memory.total": ("MiB", _const("0 MiB")),
    "protected_memory.used": ("MiB", _const("0 MiB")),
    "protected_memory.free": ("MiB", _const("0 MiB")),
    "fabric.state": ("", lambda v, g: "Completed" if g.board.nvlinks >= 18 else NA),
    "fabric.status": ("", lambda v, g: "Success" if g.board.nvlinks >= 18 else NA),
    "fabric.cliqueId": ("", lambda v, g: "0" if g.board.nvlinks >= 18 else NA),
    "fabric.clusterUuid": ("", lambda v, g: "00000000-0000-0000-0000-000000000000" if g.board.nvlinks >= 18
                           else NA),
    **{f"fabric.health.{k}": ("", _const("N/A")) for k in (
        "summary", "bandwidth", "route_recovery_in_progress", "route_unhealthy", "access_timeout_recovery",
        "incorrect_configuration")},
    "platform.chassis_serial_number": ("", _const("")),
    "platform.slot_number": ("", _const("0")),
    "platform.tray_index": ("", _const("0")),
    "platform.host_id": ("", _const("1")),
    "platform.peer_type": ("", _const("Direct Connected")),
    "platform.module_id": ("", lambda v, g: str(g.gpu.index + 1)),
    "platform.gpu_fabric_guid": ("", _const("0x0000000000000000")),
    "hostname": ("", _const(NA)),
}

# Other names nvidia-smi accepts for a field (``--help-query-gpu``: "gpu_name" or "name", ...).
ALIASES = {
    "gpu_name": "name", "gpu_serial": "serial", "gpu_uuid": "uuid", "gpu_bus_id": "pci.bus_id",
    "clocks.gr": "clocks.current.graphics", "clocks.sm": "clocks.current.sm", "clocks.mem": "clocks.current.memory",
    "clocks.video": "clocks.current.video", "clocks.max.gr": "clocks.max.graphics",
    "clocks.max.mem": "clocks.max.memory", "power.limit.enforced": "enforced.power.limit",
}


def _draw(g: GpuReport) -> float:
    return g.board.power_idle if _idle(g) else g.board.power_limit * 0.62


def _clock(g: GpuReport) -> int:
    return g.board.idle_graphics if _idle(g) else g.board.max_graphics


def _app_clock(g: GpuReport) -> int:
    return round(g.board.max_graphics * 0.78 / 15) * 15


# --query-compute-apps: (unit, getter over a process row)
AppGetter = Callable[[Report, GpuReport, int], str]
APP_FIELDS: dict[str, tuple[str, AppGetter]] = {
    "timestamp": ("", lambda v, g, i: _stamp(v)),
    "gpu_name": ("", lambda v, g, i: g.gpu.product),
    "gpu_bus_id": ("", lambda v, g, i: g.gpu.bus_id),
    "gpu_serial": ("", lambda v, g, i: g.gpu.serial),
    "gpu_uuid": ("", lambda v, g, i: g.gpu.uuid),
    "pid": ("", lambda v, g, i: str(g.processes[i].pid)),
    "process_name": ("", lambda v, g, i: g.processes[i].name),
    "used_gpu_memory": ("MiB", lambda v, g, i: _mib(g.processes[i].used_memory_mib)),
}
APP_ALIASES = {"name": "process_name", "used_memory": "used_gpu_memory"}


def _format(spec: str | None) -> tuple[bool, bool]:
    """(header, units) from ``--format``; only csv exists."""
    if spec is None:
        raise ReportError("Invalid combination of input arguments. Please run 'nvidia-smi -h' for help.\n", 2)
    options = [o.strip() for o in spec.split(",") if o.strip()]
    if "csv" not in options or any(o not in ("csv", "noheader", "nounits") for o in options):
        raise ReportError(f'"{spec}" is not a valid format. Please run \'nvidia-smi -h\' for help.\n', 2)
    return "noheader" not in options, "nounits" not in options


def _strip_unit(value: str, unit: str) -> str:
    if unit and value.endswith(f" {unit}"):
        return value[: -len(unit) - 1]
    return value


def _fields(spec: str, known: Mapping[str, object], aliases: Mapping[str, str]) -> list[str]:
    names = []
    for raw in spec.split(","):
        name = raw.strip()
        if not name:
            continue
        canonical = aliases.get(name, name)
        if canonical not in known:
            raise ReportError(f'Field "{name}" is not a valid field to query.\n\n', 2)
        names.append(canonical)
    if not names:
        raise ReportError("Invalid combination of input arguments. Please run 'nvidia-smi -h' for help.\n", 2)
    return names


def query(view: Report, gpu_fields: str | None, app_fields: str | None, fmt: str | None) -> Result:
    """The CSV for ``--query-gpu`` (one row per selected GPU) or ``--query-compute-apps`` (one per compute
    process: types ``C``, ``M+C`` and ``C+G``, not graphics-only ``G``)."""
    header, units = _format(fmt)
    rows: list[str] = []
    if gpu_fields is not None:
        names = _fields(gpu_fields, GPU_FIELDS, ALIASES)
        heads = [f"{n} [{GPU_FIELDS[n][0]}]" if GPU_FIELDS[n][0] else n for n in names]
        for g in view.gpus:
            cells = []
            for n in names:
                unit, get = GPU_FIELDS[n]
                value = get(view, g)
                cells.append(value if units else _strip_unit(value, unit))
            rows.append(", ".join(cells))
    else:
        assert app_fields is not None
        names = _fields(app_fields, APP_FIELDS, APP_ALIASES)
        heads = [f"{n} [{APP_FIELDS[n][0]}]" if APP_FIELDS[n][0] else n for n in names]
        for g in view.gpus:
            for i, p in enumerate(g.processes):
                if "C" not in p.type:
                    continue
                cells = []
                for n in names:
                    unit, app_get = APP_FIELDS[n]
                    value = app_get(view, g, i)
                    cells.append(value if units else _strip_unit(value, unit))
                rows.append(", ".join(cells))
    lines = ([", ".join(heads)] if header else []) + rows
    return Result(stdout="".join(line + "\n" for line in lines))
