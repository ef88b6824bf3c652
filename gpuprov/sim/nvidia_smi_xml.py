"""``nvidia-smi -q -x``: the XML document, in the element set of the machine's driver generation.

Why: it is what gpuprov's MIG plugin parses on every detect (``plugins/gpuprov_mig/facts.py``), so its MIG mode,
MIG devices and processes must be the state's, and its layout the real tool's: TAB indentation,
``<?xml version="1.0" ?>``, the DOCTYPE of the driver's DTD, ``N/A`` MIG fields and a ``None`` text in
``<mig_devices>`` for GPUs without MIG, an empty line after each ``</gpu>`` (captures:
``fixtures/nvidia-smi-xml/xml/``; the v11 outline follows the 510.47.03 and 515.105.01 files, v13 the 590.44.01
one). The v12 DTD (R525-R555) has no capture here: its documents use the v11 element set under the v12 name.
"""

from __future__ import annotations

import functools
import time
from typing import NamedTuple

from .nvidia_smi_outline import Blocks, Node, entries, outline
from .nvidia_smi_report import GpuReport, Report

__all__ = ["dtd_name", "gpu_values", "xml_report"]


def dtd_name(major: int) -> str:
    if major >= 560:
        return "nvsmi_device_v13.dtd"
    if major >= 525:
        return "nvsmi_device_v12.dtd"
    return "nvsmi_device_v11.dtd"


def _flag(on: bool) -> str:
    return "Enabled" if on else "Disabled"


def _watts(w: float) -> str:
    return f"{w:.2f} W"


def gpu_values(view: Report, g: GpuReport) -> dict[str, object]:
    """The per-GPU values the XML and text outlines print."""
    gpu, b = g.gpu, g.board
    domain, bus, devfn = gpu.bus_id.split(":")
    device = devfn.split(".")[0]
    mig = g.mig_capable
    idle = not g.processes
    return {
        "product": gpu.product, "brand": b.brand, "arch": b.architecture,
        "persistence": _flag(gpu.persistence_mode),
        "mig_current": _flag(gpu.mig_current) if mig else "N/A",
        "mig_pending": _flag(gpu.mig_pending) if mig else "N/A",
        "serial": gpu.serial, "uuid": gpu.uuid, "minor": g.minor, "vbios": b.vbios,
        "board_id": f"0x{int(bus, 16) << 8 | int(device, 16):x}",
        "board_part": b.board_part, "gpu_part": b.gpu_part, "module_id": gpu.index + 1,
        "virtualization": "Pass-Through" if view.machine.passthrough_vm else "None",
        "gsp": view.machine.driver_version if b.architecture in ("Ampere", "Hopper", "Blackwell", "Ada Lovelace")
        and view.major >= 510 else "N/A",
        "pci_bus": bus, "pci_device": device, "pci_domain": domain[-4:],
        "pci_device_id": f"{_device_id(gpu.product):04X}10DE", "bus_id": gpu.bus_id,
        "pci_sub_class": b.pci_sub_class,
        "subsystem": f"{b.subsystem_id:08X}", "pcie_gen": b.pcie_gen,
        "fan": b.fan, "pstate": "P0",
        "idle_reason": "Active" if idle and not g.mig_on else "Not Active",
        "fb_total": gpu.memory_mib, "fb_reserved": g.reserved_mib, "fb_used": g.used_mib, "fb_free": g.free_mib,
        "bar1_total": b.bar1_mib, "bar1_used": g.bar1_used_mib, "bar1_free": b.bar1_mib - g.bar1_used_mib,
        "compute_mode": gpu.compute_mode,
        "util": "N/A" if g.mig_on else ("0 %" if idle else "100 %"),
        "mem_util": "N/A" if g.mig_on else "0 %",
        "ecc": _flag(b.ecc),
        "ecc_count": "0" if b.ecc else "N/A",
        "temp": b.temp if idle else b.temp + 20,
        "mem_temp": f"{b.memory_temp if idle else b.memory_temp + 18} C" if b.memory_temp is not None else "N/A",
        "power_draw": _watts(b.power_idle if idle else b.power_limit * 0.62),
        "power_limit": _watts(b.power_limit), "power_min": _watts(b.power_min),
        "graphics_clock": b.idle_graphics if idle else b.max_graphics, "mem_clock": b.max_memory,
        "video_clock": b.max_video if not idle else b.max_video // 2,
        "max_graphics": b.max_graphics, "max_memory": b.max_memory, "max_video": b.max_video,
        "app_graphics": round(b.max_graphics * 0.78 / 15) * 15,
    }


def _device_id(product: str) -> int:
    from .sysfs import pci_device_id

    return pci_device_id(product)


# -------------------------------------------------------------------------------------------------- outlines

_V11 = """\
product_name: {product}
product_brand: {brand}
product_architecture: {arch}
display_mode: Enabled
display_active: Disabled
persistence_mode: {persistence}
mig_mode
    current_mig: {mig_current}
    pending_mig: {mig_pending}
@mig_devices
accounting_mode: Disabled
accounting_mode_buffer_size: 4000
driver_model
    current_dm: N/A
    pending_dm: N/A
serial: {serial}
uuid: {uuid}
minor_number: {minor}
vbios_version: {vbios}
multigpu_board: No
board_id: {board_id}
gpu_part_number: {board_part}
gpu_module_id: {module_id}
inforom_version
    img_version: N/A
    oem_object: 2.0
    ecc_object: 6.16
    pwr_object: N/A
gpu_operation_mode
    current_gom: N/A
    pending_gom: N/A
gsp_firmware_version: {gsp}
gpu_virtualization_mode
    virtualization_mode: {virtualization}
    host_vgpu_mode: N/A
ibmnpu
    relaxed_ordering_mode: N/A
pci
    pci_bus: {pci_bus}
    pci_device: {pci_device}
    pci_domain: {pci_domain}
    pci_device_id: {pci_device_id}
    pci_bus_id: {bus_id}
    pci_sub_system_id: {subsystem}
    pci_gpu_link_info
        pcie_gen
            max_link_gen: {pcie_gen}
            current_link_gen: {pcie_gen}
        link_widths
            max_link_width: 16x
            current_link_width: 16x
    pci_bridge_chip
        bridge_chip_type: N/A
        bridge_chip_fw: N/A
    replay_counter: 0
    replay_rollover_counter: 0
    tx_util: 0 KB/s
    rx_util: 0 KB/s
fan_speed: {fan}
performance_state: {pstate}
clocks_throttle_reasons
    clocks_throttle_reason_gpu_idle: {idle_reason}
    clocks_throttle_reason_applications_clocks_setting: Not Active
    clocks_throttle_reason_sw_power_cap: Not Active
    clocks_throttle_reason_hw_slowdown: Not Active
    clocks_throttle_reason_hw_thermal_slowdown: Not Active
    clocks_throttle_reason_hw_power_brake_slowdown: Not Active
    clocks_throttle_reason_sync_boost: Not Active
    clocks_throttle_reason_sw_thermal_slowdown: Not Active
    clocks_throttle_reason_display_clocks_setting: Not Active
fb_memory_usage
    total: {fb_total} MiB
    reserved: {fb_reserved} MiB
    used: {fb_used} MiB
    free: {fb_free} MiB
bar1_memory_usage
    total: {bar1_total} MiB
    used: {bar1_used} MiB
    free: {bar1_free} MiB
compute_mode: {compute_mode}
utilization
    gpu_util: {util}
    memory_util: {mem_util}
    encoder_util: {mem_util}
    decoder_util: {mem_util}
encoder_stats
    session_count: 0
    average_fps: 0
    average_latency: 0
fbc_stats
    session_count: 0
    average_fps: 0
    average_latency: 0
ecc_mode
    current_ecc: {ecc}
    pending_ecc: {ecc}
ecc_errors
    volatile
        [pascal] single_bit
            @ecc_legacy
        [pascal] double_bit
            @ecc_legacy
        [!pascal] sram_correctable: {volatile_sram}
        [!pascal] sram_uncorrectable: {volatile_sram}
        [!pascal] dram_correctable: {volatile_sram}
        [!pascal] dram_uncorrectable: {volatile_sram}
    aggregate
        [pascal] single_bit
            @ecc_legacy
        [pascal] double_bit
            @ecc_legacy
        [!pascal] sram_correctable: {ecc_count}
        [!pascal] sram_uncorrectable: {ecc_count}
        [!pascal] dram_correctable: {ecc_count}
        [!pascal] dram_uncorrectable: {ecc_count}
retired_pages
    multiple_single_bit_retirement
        retired_count: {retired_count}
        @retired_pagelist
    double_bit_retirement
        retired_count: {retired_count}
        @retired_pagelist
    pending_blacklist: {retired_pending}
    pending_retirement: {retired_pending}
remapped_rows: N/A
temperature
    gpu_temp: {temp} C
    gpu_temp_max_threshold: 92 C
    gpu_temp_slow_threshold: 89 C
    gpu_temp_max_gpu_threshold: 85 C
    gpu_target_temperature: N/A
    memory_temp: {mem_temp}
    gpu_temp_max_mem_threshold: {mem_threshold}
supported_gpu_target_temp
    gpu_target_temp_min: N/A
    gpu_target_temp_max: N/A
power_readings
    power_state: {pstate}
    power_management: Supported
    power_draw: {power_draw}
    power_limit: {power_limit}
    default_power_limit: {power_limit}
    enforced_power_limit: {power_limit}
    min_power_limit: {power_min}
    max_power_limit: {power_limit}
clocks
    graphics_clock: {graphics_clock} MHz
    sm_clock: {graphics_clock} MHz
    mem_clock: {mem_clock} MHz
    video_clock: {video_clock} MHz
applications_clocks
    graphics_clock: {app_graphics} MHz
    mem_clock: {max_memory} MHz
default_applications_clocks
    graphics_clock: {app_graphics} MHz
    mem_clock: {max_memory} MHz
max_clocks
    graphics_clock: {max_graphics} MHz
    sm_clock: {max_graphics} MHz
    mem_clock: {max_memory} MHz
    video_clock: {max_video} MHz
max_customer_boost_clocks
    graphics_clock: {max_graphics} MHz
clock_policy
    auto_boost: N/A
    auto_boost_default: N/A
voltage
    graphics_volt: {volt}
@supported_clocks
@processes
accounted_processes
"""

_V13 = """\
product_name: {product}
product_brand: {brand}
product_architecture: {arch}
display_mode: Requested functionality has been deprecated
display_attached: No
display_active: Disabled
persistence_mode: {persistence}
addressing_mode: {addressing}
mig_mode
    current_mig: {mig_current}
    pending_mig: {mig_pending}
@mig_devices
accounting_mode: Disabled
accounting_mode_buffer_size: 4000
driver_model
    current_dm: N/A
    pending_dm: N/A
serial: {serial}
uuid: {uuid}
pdi: {pdi}
minor_number: {minor}
vbios_version: {vbios}
multigpu_board: No
board_id: {board_id}
board_part_number: {board_part}
gpu_part_number: {gpu_part}
gpu_fru_part_number: N/A
platformInfo
    chassis_serial_number:
    slot_number: 0
    tray_index: 0
    host_id: 1
    peer_type: Direct Connected
    module_id: {module_id}
    gpu_fabric_guid: 0x0000000000000000
inforom_version
    img_version: N/A
    oem_object: 2.1
    ecc_object: 7.16
    pwr_object: N/A
inforom_bbx_flush
    latest_timestamp: N/A
    latest_duration: N/A
gpu_operation_mode
    current_gom: N/A
    pending_gom: N/A
c2c_mode: Disabled
gpu_virtualization_mode
    virtualization_mode: {virtualization}
    host_vgpu_mode: N/A
    vgpu_heterogeneous_mode: N/A
gpu_recovery_action: None
gsp_firmware_version: {gsp}
ibmnpu
    relaxed_ordering_mode: N/A
pci
    pci_bus: {pci_bus}
    pci_device: {pci_device}
    pci_domain: {pci_domain}
    pci_base_class: 3
    pci_sub_class: {pci_sub_class}
    pci_device_id: {pci_device_id}
    pci_bus_id: {bus_id}
    pci_sub_system_id: {subsystem}
    pci_gpu_link_info
        pcie_gen
            max_link_gen: {pcie_gen}
            current_link_gen: {pcie_gen}
            device_current_link_gen: {pcie_gen}
            max_device_link_gen: {pcie_gen}
            max_host_link_gen: N/A
        link_widths
            max_link_width: 16x
            current_link_width: 16x
    pci_bridge_chip
        bridge_chip_type: N/A
        bridge_chip_fw: N/A
    replay_counter: 0
    replay_rollover_counter: 0
    tx_util: 0 KB/s
    rx_util: 0 KB/s
    atomic_caps_outbound: N/A
    atomic_caps_inbound: N/A
fan_speed: {fan}
performance_state: {pstate}
clocks_event_reasons
    clocks_event_reason_gpu_idle: {idle_reason}
    clocks_event_reason_applications_clocks_setting: Not Active
    clocks_event_reason_sw_power_cap: Not Active
    clocks_event_reason_hw_slowdown: Not Active
    clocks_event_reason_hw_thermal_slowdown: Not Active
    clocks_event_reason_hw_power_brake_slowdown: Not Active
    clocks_event_reason_sync_boost: Not Active
    clocks_event_reason_sw_thermal_slowdown: Not Active
    clocks_event_reason_display_clocks_setting: Not Active
clocks_event_reasons_counters
    clocks_event_reasons_counters_sw_power_cap: 0 us
    clocks_event_reasons_counters_sync_boost: 0 us
    clocks_event_reasons_counters_sw_therm_slowdown: 0 us
    clocks_event_reasons_counters_hw_therm_slowdown: 0 us
    clocks_event_reasons_counters_hw_power_brake: 0 us
sparse_operation_mode: N/A
fb_memory_usage
    total: {fb_total} MiB
    reserved: {fb_reserved} MiB
    used: {fb_used} MiB
    free: {fb_free} MiB
bar1_memory_usage
    total: {bar1_total} MiB
    used: {bar1_used} MiB
    free: {bar1_free} MiB
cc_protected_memory_usage
    total: 0 MiB
    used: 0 MiB
    free: 0 MiB
compute_mode: {compute_mode}
utilization
    gpu_util: {util}
    memory_util: {mem_util}
    encoder_util: {mem_util}
    decoder_util: {mem_util}
    jpeg_util: {mem_util}
    ofa_util: {mem_util}
encoder_stats
    session_count: 0
    average_fps: 0
    average_latency: 0
fbc_stats
    session_count: 0
    average_fps: 0
    average_latency: 0
dram_encryption_mode
    current_dram_encryption: {dram_encryption}
    pending_dram_encryption: {dram_encryption}
ecc_mode
    current_ecc: {ecc}
    pending_ecc: {ecc}
ecc_errors
    volatile
        sram_correctable: {ecc_count}
        sram_uncorrectable_parity: {ecc_count}
        sram_uncorrectable_secded: {ecc_count}
        dram_correctable: {ecc_count}
        dram_uncorrectable: {ecc_count}
    aggregate
        sram_correctable: {ecc_count}
        sram_uncorrectable_parity: {ecc_count}
        sram_uncorrectable_secded: {ecc_count}
        dram_correctable: {ecc_count}
        dram_uncorrectable: {ecc_count}
        sram_threshold_exceeded: {ecc_flag}
    aggregate_uncorrectable_sram_sources
        sram_l2: {ecc_count}
        sram_sm: {ecc_count}
        sram_microcontroller: {ecc_count}
        sram_pcie: {ecc_count}
        sram_other: {ecc_count}
    channel_repair_pending: No
    tpc_repair_pending: No
    unrepairable_memory: {ecc_flag}
retired_pages
    multiple_single_bit_retirement
        retired_count: N/A
        retired_pagelist: N/A
    double_bit_retirement
        retired_count: N/A
        retired_pagelist: N/A
    pending_blacklist: N/A
    pending_retirement: N/A
remapped_rows
    remapped_row_corr: 0
    remapped_row_unc: 0
    remapped_row_pending: No
    remapped_row_failure: No
    row_remapper_histogram
        row_remapper_histogram_max: {remap_banks} bank(s)
        row_remapper_histogram_high: 0 bank(s)
        row_remapper_histogram_partial: 0 bank(s)
        row_remapper_histogram_low: 0 bank(s)
        row_remapper_histogram_none: 0 bank(s)
temperature
    gpu_temp: {temp} C
    gpu_temp_tlimit: {tlimit} C
    gpu_temp_max_tlimit_threshold: -5 C
    gpu_temp_slow_tlimit_threshold: -2 C
    gpu_temp_max_gpu_tlimit_threshold: 0 C
    gpu_target_temperature: N/A
    memory_temp: {mem_temp}
    gpu_temp_max_mem_tlimit_threshold: {mem_tlimit}
supported_gpu_target_temp
    gpu_target_temp_min: N/A
    gpu_target_temp_max: N/A
gpu_power_readings
    power_state: Requested functionality has been deprecated
    average_power_draw: {power_draw}
    instant_power_draw: {power_draw}
    current_power_limit: {power_limit}
    requested_power_limit: {power_limit}
    default_power_limit: {power_limit}
    min_power_limit: {power_min}
    max_power_limit: {power_limit}
gpu_memory_power_readings
    average_power_draw: N/A
    instant_power_draw: N/A
module_power_readings
    power_state: Requested functionality has been deprecated
    average_power_draw: N/A
    instant_power_draw: N/A
    current_power_limit: N/A
    requested_power_limit: N/A
    default_power_limit: N/A
    min_power_limit: N/A
    max_power_limit: N/A
power_smoothing: N/A
power_profiles
    power_profile_requested_profiles: N/A
    power_profile_enforced_profiles: N/A
edpp_multiplier: N/A
clocks
    graphics_clock: {graphics_clock} MHz
    sm_clock: {graphics_clock} MHz
    mem_clock: {mem_clock} MHz
    video_clock: {video_clock} MHz
applications_clocks
    graphics_clock: Requested functionality has been deprecated
    mem_clock: Requested functionality has been deprecated
default_applications_clocks
    graphics_clock: Requested functionality has been deprecated
    mem_clock: Requested functionality has been deprecated
deferred_clocks
    mem_clock: N/A
max_clocks
    graphics_clock: {max_graphics} MHz
    sm_clock: {max_graphics} MHz
    mem_clock: {max_memory} MHz
    video_clock: {max_video} MHz
max_customer_boost_clocks
    graphics_clock: {boost_graphics}
clock_policy
    auto_boost: N/A
    auto_boost_default: N/A
fabric
    state: {fabric_state}
    status: {fabric_status}
    cliqueId: {fabric_clique}
    clusterUuid: {fabric_cluster}
    health
        summary: N/A
        bandwidth: N/A
        route_recovery_in_progress: N/A
        route_unhealthy: N/A
        access_timeout_recovery: N/A
        incorrect_configuration: N/A
@supported_clocks
@processes
accounted_processes
capabilities
    egm: disabled
"""

_MIG_DEVICE = """\
mig_device
    index: {index}
    gpu_instance_id: {gi}
    compute_instance_id: {ci}
    device_attributes
        shared
            multiprocessor_count: {sm}
            copy_engine_count: {ce}
            encoder_count: {enc}
            decoder_count: {dec}
            ofa_count: {ofa}
            jpg_count: {jpg}
    ecc_error_count
        volatile_count
            sram_uncorrectable: 0
    fb_memory_usage
        total: {total} MiB
        reserved: 0 MiB
        used: {used} MiB
        free: {free} MiB
    bar1_memory_usage
        total: {bar1} MiB
        used: 0 MiB
        free: {bar1} MiB
"""

_PROCESS = """\
process_info
    gpu_instance_id: {gi}
    compute_instance_id: {ci}
    pid: {pid}
    type: {type}
    process_name: {name}
    used_memory: {used} MiB
"""

_ECC_LEGACY = """\
device_memory: {n}
register_file: {n}
l1_cache: N/A
l2_cache: {n}
texture_memory: {n}
texture_shm: {n}
cbu: N/A
total: {n}
"""


def mig_device_nodes(g: GpuReport) -> list[Node]:
    if not g.mig_devices:
        return [Node(0, "mig_devices", None), Node(1, "None", None, text=True)]
    nodes = [Node(0, "mig_devices", None)]
    for d in g.mig_devices:
        nodes += outline(_MIG_DEVICE, {"index": d.index, "gi": d.gi, "ci": d.ci, "sm": d.sm_count, "ce": d.ce,
                                       "enc": d.enc, "dec": d.dec, "ofa": d.ofa, "jpg": d.jpg,
                                       "total": d.memory_mib, "used": d.used_mib,
                                       "free": d.memory_mib - d.used_mib, "bar1": d.bar1_mib}, depth=1)
    return nodes


def _process_nodes(g: GpuReport) -> list[Node]:
    nodes = [Node(0, "processes", None)]
    for p in g.processes:
        on_mig = g.mig_on and p.gi is not None
        nodes += outline(_PROCESS, {"gi": p.gi if on_mig else "N/A", "ci": p.ci if on_mig else "N/A",
                                    "pid": p.pid, "type": p.type, "name": p.name, "used": p.used_memory_mib},
                         depth=1)
    return nodes


def _supported_clocks(g: GpuReport) -> list[Node]:
    """One memory clock with the graphics clocks from the maximum down in 15 MHz steps (the A100's table)."""
    return list(_clock_table(g.board.max_memory, g.board.max_graphics))


@functools.lru_cache(maxsize=32)
def _clock_table(max_memory: int, max_graphics: int) -> tuple[Node, ...]:
    # the same 160 rows for every GPU of a model: made once (nodes are immutable)
    low = max(max_graphics // 7, 210)
    return (Node(0, "supported_clocks", None), Node(1, "supported_mem_clock", None),
            Node(2, "value", f"{max_memory} MHz"),
            *(Node(2, "supported_graphics_clock", f"{mhz} MHz") for mhz in range(max_graphics, low - 1, -15)))


def _gpu_outline(view: Report, g: GpuReport) -> tuple[str, dict[str, object], frozenset[str], Blocks]:
    values = gpu_values(view, g)
    b = g.board
    legacy_ecc = b.architecture == "Pascal"
    values.update({
        "volatile_sram": "N/A",  # the 510/515 documents read no volatile SRAM/DRAM counters
        "retired_count": "0" if b.architecture in ("Pascal", "Volta", "Turing") else "N/A",
        "retired_pending": "No" if b.architecture in ("Pascal", "Volta", "Turing") else "N/A",
        "mem_threshold": "95 C" if b.memory_temp is not None else "N/A",
        "addressing": "HMM" if b.architecture == "Blackwell" and "RTX" in g.gpu.product else "None",
        "pdi": f"0x{int(g.gpu.uuid.replace('-', '')[-16:], 16):016x}" if g.gpu.uuid.count("-") >= 4 else "N/A",
        "dram_encryption": "Disabled" if b.architecture == "Blackwell" else "N/A",
        "ecc_flag": "No" if b.ecc else "N/A",
        "remap_banks": 3072 if "H200" in g.gpu.product else 2560 if b.architecture == "Hopper" else 512,
        "tlimit": max(87 - int(str(values["temp"])), 0) if b.architecture != "Blackwell" else 68,
        "mem_tlimit": "0 C" if b.memory_temp is not None else "N/A",
        "boost_graphics": f"{b.max_graphics} MHz" if b.architecture != "Blackwell" else "N/A",
        "fabric_state": "Completed" if b.nvlinks >= 18 else "N/A",
        "fabric_status": "Success" if b.nvlinks >= 18 else "N/A",
        "fabric_clique": "0" if b.nvlinks >= 18 else "N/A",
        "fabric_cluster": "00000000-0000-0000-0000-000000000000" if b.nvlinks >= 18 else "N/A",
    })
    ecc_n = {"n": "0"}
    blocks = {
        "mig_devices": lambda: mig_device_nodes(g),
        "processes": lambda: _process_nodes(g),
        "supported_clocks": lambda: _supported_clocks(g),
        "ecc_legacy": lambda: outline(_ECC_LEGACY, ecc_n),
        "retired_pagelist": lambda: (
            [Node(0, "retired_pagelist", None)] if b.architecture in ("Pascal", "Volta", "Turing")
            else [Node(0, "retired_pagelist", "N/A")]),
    }
    template = _V13 if view.major >= 560 else _V11
    # the A100 reads its graphics voltage; the P100 and T4 print N/A
    values["volt"] = "881.250 mV" if b.architecture in ("Ampere", "Hopper") else "N/A"
    return template, values, frozenset({"pascal"} if legacy_ecc else ()), blocks


def gpu_nodes(view: Report, g: GpuReport) -> list[Node]:
    """One GPU's section read node by node, the outline's plain meaning: the oracle the compiled form
    (:func:`gpu_lines`) is tested against."""
    template, values, flags, blocks = _gpu_outline(view, g)
    return outline(template, values, flags=flags, blocks=blocks)


def gpu_lines(view: Report, g: GpuReport, base: int) -> list[str]:
    """One GPU's section as XML lines, through the template compiled once per generation (see :func:`_compiled`)."""
    template, values, flags, blocks = _gpu_outline(view, g)
    texts = "".join(v for v in values.values() if isinstance(v, str))
    escaped = values if not ("&" in texts or "<" in texts or ">" in texts) else \
        {k: escape(v) if isinstance(v, str) else v for k, v in values.items()}
    lines: list[str] = []
    for piece in _compiled(template, flags, base):
        if isinstance(piece, _Block):
            lines += _block_lines(tuple(blocks[piece.name]()), piece.depth, base)
        else:
            lines.append(piece.format_map(escaped))
    return lines


@functools.lru_cache(maxsize=256)
def _block_lines(nodes: tuple[Node, ...], depth: int, base: int) -> tuple[str, ...]:
    # blocks repeat: the clock table is the same for every GPU of a model, idle GPUs print the same processes
    return tuple(_render([Node(n.depth + depth, n.key, n.value, n.text) for n in nodes], base))


class _Block(NamedTuple):
    name: str
    depth: int


@functools.lru_cache(maxsize=16)
def _compiled(template: str, flags: frozenset[str], base: int) -> tuple[str | _Block, ...]:
    """The template as format strings (consecutive lines joined) and the blocks between them.

    A DGX's ``-q -x`` is 3,000 lines; filling one format string per run of lines instead of making and printing a
    node per line takes the stand-in from 3 ms to a fraction of it. Values are escaped before they are filled in
    (escaping character by character, it does not matter whether before or after); the template's own text is
    escaped here. A block is a whole subtree: what it opens it closes before the template goes on."""
    pieces: list[str | _Block] = []
    run: list[str] = []
    stack: list[tuple[int, str]] = []
    pads = _PADS[base:]

    def close(depth: int) -> None:
        while stack and stack[-1][0] >= depth:
            closed, tag = stack.pop()
            run.append(f"{pads[closed]}</{tag}>")

    for entry, depth in entries(template, flags):
        close(depth)
        if entry.kind == "block":
            if run:
                pieces.append("\n".join(run))
                run = []
            pieces.append(_Block(entry.key, depth))
        elif entry.kind == "text":
            run.append(pads[depth] + _literal(entry.key))
        elif entry.kind == "leaf":
            assert entry.value is not None
            key = _literal(entry.key)
            run.append(f"{pads[depth]}<{key}>{_literal(entry.value)}</{key}>")
        else:
            run.append(f"{pads[depth]}<{_literal(entry.key)}>")
            stack.append((depth, _literal(entry.key)))
    close(0)
    if run:
        pieces.append("\n".join(run))
    return tuple(pieces)


def _literal(piece: str) -> str:
    """A template piece as format-string text: its ``{name}`` fields stay, its own text is escaped."""
    if "{" not in piece:
        return escape(piece).replace("}", "}}")
    return escape(piece)


def escape(text: str, *, attribute: bool = False) -> str:
    """XML character data (``&``, ``<``, ``>``; and ``"`` in an attribute value, which is written in ``"``).

    Not xml.sax.saxutils: importing it imports urllib.request, http.client and ssl, a third of each lab
    ``nvidia-smi -q -x``'s start-up."""
    if "&" in text or "<" in text or ">" in text:
        text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace('"', "&quot;") if attribute else text


def _render(nodes: list[Node], base: int) -> list[str]:
    """Nodes as TAB-indented XML lines; a section without children prints as ``<tag>`` / ``</tag>``."""
    lines: list[str] = []
    append = lines.append
    stack: list[tuple[int, str]] = []
    pads = _PADS[base:]
    for depth, key, value, text in nodes:
        while stack and stack[-1][0] >= depth:
            closed, tag = stack.pop()
            append(f"{pads[closed]}</{tag}>")
        if text:
            append(pads[depth] + escape(key))
        elif value is not None:
            append(f"{pads[depth]}<{key}>{escape(value)}</{key}>")
        else:
            append(f"{pads[depth]}<{key}>")
            stack.append((depth, key))
    while stack:
        closed, tag = stack.pop()
        append(f"{pads[closed]}</{tag}>")
    return lines


_PADS = tuple("\t" * n for n in range(16))


def xml_report(view: Report) -> str:
    """The whole ``nvidia-smi -q -x`` document for the selected GPUs."""
    m = view.machine
    stamp = time.asctime(time.localtime(view.timestamp))
    doctype = f'<!DOCTYPE nvidia_smi_log SYSTEM "{dtd_name(view.major)}">'
    lines = ['<?xml version="1.0" ?>', doctype, "<nvidia_smi_log>"]
    lines += [f"\t<timestamp>{stamp}</timestamp>", f"\t<driver_version>{escape(m.driver_version)}</driver_version>",
              f"\t<cuda_version>{escape(m.cuda_version)}</cuda_version>",
              f"\t<attached_gpus>{len(view.all_gpus)}</attached_gpus>"]
    for g in view.gpus:
        lines.append(f'\t<gpu id="{escape(g.gpu.bus_id, attribute=True)}">')
        lines += gpu_lines(view, g, 2)
        lines.append("\t</gpu>")
        lines.append("")
    lines.append("</nvidia_smi_log>")
    return "\n".join(lines) + "\n"
