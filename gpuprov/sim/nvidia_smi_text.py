"""``nvidia-smi -q`` (and ``-q -d SECTIONS``): the plain-text report, in the driver generation's layout.

Why: a person provisioning reads ``nvidia-smi -q`` (``-i N``, ``-d COMPUTE``, ``-d PIDS``...) for the MIG mode, the
MIG devices, the compute mode and what runs where, so those must be the state's, with the keys, order and padding
of the real tool (``fixtures/nvidia-smi-xml/q-text/``): keys padded so the colon sits in column 55 from R580
(590.48.01, 595.80), column 42 before (565.57.01; the same layout is assumed back to R535), the process records
padded to 42 in both; a leading empty line, the ``NVSMI LOG`` banner, and an empty line after each GPU.

``-d`` keeps the header and, per GPU, the top-level sections of the named display groups (``COMPUTE``: Compute
Mode; ``PIDS``: Processes; ``MEMORY``: the memory usages...). The per-group sample blocks the real tool adds to
``UTILIZATION``/``POWER``/``CLOCK`` (utilization samples, power samples) are not simulated.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from .nvidia_smi_outline import Node, outline
from .nvidia_smi_report import GpuReport, Report
from .nvidia_smi_xml import gpu_values

__all__ = ["DISPLAY_KEYS", "text_report"]

_GPU = """\
Product Name: {product}
Product Brand: {brand}
Product Architecture: {arch}
Display Mode: {display_mode}
[new] Display Attached: Yes
Display Active: Disabled
Persistence Mode: {persistence}
Addressing Mode: {addressing}
MIG Mode
    Current: {mig_current}
    Pending: {mig_pending}
@mig_devices
Accounting Mode: Disabled
Accounting Mode Buffer Size: 4000
Driver Model
    Current: N/A
    Pending: N/A
Serial Number: {serial}
GPU UUID: {uuid}
[new] GPU PDI: {pdi}
Minor Number: {minor}
VBIOS Version: {vbios}
MultiGPU Board: No
Board ID: {board_id}
Board Part Number: {board_part}
GPU Part Number: {gpu_part}
FRU Part Number: N/A
Platform Info
    [new] Chassis Serial Number: N/A
    [new] Slot Number: N/A
    [new] Tray Index: N/A
    [new] Host ID: N/A
    [!new] RACK Serial Number: N/A
    [!new] Chassis Physical Slot Number: N/A
    [!new] Compute Slot Index: N/A
    [!new] Node Index: N/A
    Peer Type: N/A
    Module Id: {module_id}
    [new] GPU Fabric GUID: N/A
Inforom Version
    Image Version: N/A
    OEM Object: 2.1
    ECC Object: 7.16
    Power Management Object: N/A
Inforom BBX Object Flush
    Latest Timestamp: N/A
    Latest Duration: N/A
GPU Operation Mode
    Current: N/A
    Pending: N/A
GPU C2C Mode: Disabled
GPU Virtualization Mode
    Virtualization Mode: {virtualization}
    Host VGPU Mode: N/A
    vGPU Heterogeneous Mode: N/A
[!new] GPU Reset Status
    Reset Required: No
    Drain and Reset Recommended: No
GPU Recovery Action: None
GSP Firmware Version: {gsp}
IBMNPU
    Relaxed Ordering Mode: N/A
PCI
    Bus: 0x{pci_bus}
    Device: 0x{pci_device}
    Domain: 0x{pci_domain}
    Base Classcode: 0x3
    Sub Classcode: 0x{pci_sub_class}
    Device Id: 0x{pci_device_id}
    Bus Id: {bus_id}
    Sub System Id: 0x{subsystem}
    GPU Link Info
        PCIe Generation
            Max: {pcie_gen}
            Current: {pcie_gen}
            Device Current: {pcie_gen}
            Device Max: {pcie_gen}
            Host Max: N/A
        Link Width
            Max: 16x
            Current: 16x
    Bridge Chip
        Type: N/A
        Firmware: N/A
    Replays Since Reset: 0
    Replay Number Rollovers: 0
    Tx Throughput: 0 KB/s
    Rx Throughput: 0 KB/s
    Atomic Caps Outbound: N/A
    Atomic Caps Inbound: N/A
Fan Speed: {fan}
Performance State: {pstate}
Clocks Event Reasons
    Idle: {idle_reason}
    Applications Clocks Setting: Not Active
    SW Power Cap: Not Active
    HW Slowdown: Not Active
        HW Thermal Slowdown: Not Active
        HW Power Brake Slowdown: Not Active
    Sync Boost: Not Active
    SW Thermal Slowdown: Not Active
    Display Clock Setting: Not Active
[new] Clocks Event Reasons Counters
    SW Power Capping: 0 us
    Sync Boost: 0 us
    SW Thermal Slowdown: 0 us
    HW Thermal Slowdown: 0 us
    HW Power Braking: 0 us
Sparse Operation Mode: Disabled
FB Memory Usage
    Total: {fb_total} MiB
    Reserved: {fb_reserved} MiB
    Used: {fb_used} MiB
    Free: {fb_free} MiB
BAR1 Memory Usage
    Total: {bar1_total} MiB
    Used: {bar1_used} MiB
    Free: {bar1_free} MiB
Conf Compute Protected Memory Usage
    Total: 0 MiB
    Used: 0 MiB
    Free: 0 MiB
Compute Mode: {compute_mode}
Utilization
    [new] GPU: {util}
    [!new] Gpu: {util}
    Memory: {mem_util}
    Encoder: {mem_util}
    Decoder: {mem_util}
    JPEG: {mem_util}
    OFA: {mem_util}
Encoder Stats
    Active Sessions: 0
    Average FPS: 0
    Average Latency: 0
FBC Stats
    Active Sessions: 0
    Average FPS: 0
    Average Latency: 0
[new] DRAM Encryption Mode
    Current: {dram_encryption}
    Pending: {dram_encryption}
ECC Mode
    Current: {ecc}
    Pending: {ecc}
ECC Errors
    Volatile
        SRAM Correctable: {ecc_count}
        SRAM Uncorrectable Parity: {ecc_count}
        SRAM Uncorrectable SEC-DED: {ecc_count}
        DRAM Correctable: {ecc_count}
        DRAM Uncorrectable: {ecc_count}
    Aggregate
        SRAM Correctable: {ecc_count}
        SRAM Uncorrectable Parity: {ecc_count}
        SRAM Uncorrectable SEC-DED: {ecc_count}
        DRAM Correctable: {ecc_count}
        DRAM Uncorrectable: {ecc_count}
        SRAM Threshold Exceeded: {ecc_flag}
    Aggregate Uncorrectable SRAM Sources
        SRAM L2: {ecc_count}
        SRAM SM: {ecc_count}
        SRAM Microcontroller: {ecc_count}
        SRAM PCIE: {ecc_count}
        SRAM Other: {ecc_count}
    [new] Channel Repair Pending: No
    [new] TPC Repair Pending: No
    [new] Unrepairable Memory: {ecc_flag}
Retired Pages
    Single Bit ECC: N/A
    Double Bit ECC: N/A
    Pending Page Blacklist: N/A
[mig] Remapped Rows: N/A
[!mig] Remapped Rows
    Correctable Error: 0
    [r595] Inactive Correctable Error: 0
    Uncorrectable Error: 0
    [r595] Inactive Uncorrectable Error: 0
    Pending: No
    Remapping Failure Occurred: No
    Bank Remap Availability Histogram
        Max: {remap_banks} bank(s)
        High: 0 bank(s)
        Partial: 0 bank(s)
        Low: 0 bank(s)
        None: 0 bank(s)
Temperature
    GPU Current Temp: {temp} C
    GPU T.Limit Temp: {tlimit} C
    GPU Shutdown T.Limit Temp: -8 C
    GPU Slowdown T.Limit Temp: -2 C
    GPU Max Operating T.Limit Temp: 0 C
    GPU Target Temperature: N/A
    Memory Current Temp: {mem_temp}
    Memory Max Operating T.Limit Temp: {mem_tlimit}
GPU Power Readings
    [new] Average Power Draw: {power_draw}
    [new] Instantaneous Power Draw: {power_draw}
    [!new] Power Draw: {power_draw}
    Current Power Limit: {power_limit}
    Requested Power Limit: {power_limit}
    Default Power Limit: {power_limit}
    Min Power Limit: {power_min}
    Max Power Limit: {power_limit}
GPU Memory Power Readings{sp}
    [new] Average Power Draw: N/A
    [new] Instantaneous Power Draw: N/A
    [!new] Power Draw: N/A
Module Power Readings
    [new] Average Power Draw: N/A
    [new] Instantaneous Power Draw: N/A
    [!new] Power Draw: N/A
    Current Power Limit: N/A
    Requested Power Limit: N/A
    Default Power Limit: N/A
    Min Power Limit: N/A
    Max Power Limit: N/A
[new] Power Smoothing: N/A
[new] Workload Power Profiles
    Requested Profiles: N/A
    Enforced Profiles: N/A
[new] EDPp Multiplier: 100.00%
Clocks
    Graphics: {graphics_clock} MHz
    SM: {graphics_clock} MHz
    Memory: {mem_clock} MHz
    Video: {video_clock} MHz
Applications Clocks
    Graphics: {app_clock}
    Memory: {app_mem_clock}
Default Applications Clocks
    Graphics: {app_clock}
    Memory: {app_mem_clock}
Deferred Clocks
    Memory: N/A
Max Clocks
    Graphics: {max_graphics} MHz
    SM: {max_graphics} MHz
    Memory: {max_memory} MHz
    Video: {max_video} MHz
Max Customer Boost Clocks
    Graphics: {boost_graphics}
Clock Policy
    Auto Boost: N/A
    Auto Boost Default: N/A
[!new] Voltage
    Graphics: {volt}
Fabric
    State: {fabric_state}
    Status: {fabric_status}
    CliqueId: {fabric_clique}
    ClusterUUID: {fabric_cluster}
    Health
        [new] Summary: N/A
        Bandwidth: N/A
        [new] Route Recovery in progress: N/A
        [new] Route Unhealthy: N/A
        [new] Access Timeout Recovery: N/A
        [new] Incorrect Configuration: N/A
        [r595] Partition Assigned: N/A
@processes
Capabilities
    EGM: disabled
"""

_MIG_DEVICE = """\
MIG Device
    Index: {index}
    GPU Instance ID: {gi}
    Compute Instance ID: {ci}
    Device Attributes
        Shared
            Multiprocessor count: {sm}
            Copy Engine count: {ce}
            Encoder count: {enc}
            Decoder count: {dec}
            OFA count: {ofa}
            JPG count: {jpg}
    ECC Errors
        Volatile
            SRAM Uncorrectable: 0
    Shared FB Memory Usage
        Total: {total} MiB
        Reserved: 0 MiB
        Used: {used} MiB
        Free: {free} MiB
    Shared BAR1 Memory
        Total: {bar1} MiB
        Used: 0 MiB
        Free: {bar1} MiB
"""

_PROCESS = """\
[mig] GPU instance ID: {gi}
[mig] Compute instance ID: {ci}
[!mig] GPU instance ID: N/A
[!mig] Compute instance ID: N/A
Process ID: {pid}
    Type: {type}
    Name: {name}
    Used GPU Memory: {used} MiB
"""

# -d group -> the top-level keys it shows
DISPLAY_KEYS: dict[str, tuple[str, ...]] = {
    "MEMORY": ("FB Memory Usage", "BAR1 Memory Usage", "Conf Compute Protected Memory Usage"),
    "UTILIZATION": ("Utilization",),
    "ECC": ("ECC Mode", "ECC Errors"),
    "TEMPERATURE": ("Temperature",),
    "POWER": ("GPU Power Readings", "GPU Memory Power Readings ", "Module Power Readings"),
    "CLOCK": ("Clocks", "Applications Clocks", "Default Applications Clocks", "Deferred Clocks", "Max Clocks",
              "Max Customer Boost Clocks", "Clock Policy"),
    "COMPUTE": ("Compute Mode",),
    "PIDS": ("Processes",),
    "PERFORMANCE": ("Performance State", "Clocks Event Reasons", "Clocks Event Reasons Counters"),
    "SUPPORTED_CLOCKS": (),
    "PAGE_RETIREMENT": ("Retired Pages",),
    "ACCOUNTING": ("Accounting Mode", "Accounting Mode Buffer Size"),
    "ENCODER_STATS": ("Encoder Stats",),
    "SUPPORTED_GPU_TARGET_TEMP": (),
    "VOLTAGE": ("Voltage",),
    "FBC_STATS": ("FBC Stats",),
    "ROW_REMAPPER": ("Remapped Rows",),
    "RESET_STATUS": ("GPU Reset Status", "GPU Recovery Action"),
    "GSP_FIRMWARE_VERSION": ("GSP Firmware Version",),
    "POWER_SMOOTHING": ("Power Smoothing",),
    "POWER_PROFILES": ("Workload Power Profiles",),
}


def _gpu_nodes(view: Report, g: GpuReport) -> list[Node]:
    values = gpu_values(view, g)
    b, new = g.board, view.major >= 580
    values.update({
        "sp": " ",
        "display_mode": "Requested functionality has been deprecated" if new else "Enabled",
        "addressing": "HMM" if b.architecture in ("Ada Lovelace", "Blackwell") and not g.mig_on else "None",
        "pdi": f"0x{int(g.gpu.uuid.replace('-', '')[-16:], 16):016x}" if g.gpu.uuid.count("-") >= 4 else "N/A",
        "dram_encryption": "Disabled" if b.architecture == "Blackwell" else "N/A",
        "ecc_flag": "No" if b.ecc else "N/A",
        "remap_banks": 3072 if "H200" in g.gpu.product else 2560 if b.architecture == "Hopper" else 192,
        "tlimit": max(87 - int(str(values["temp"])), 0),
        "mem_tlimit": "0 C" if b.memory_temp is not None else "N/A",
        "boost_graphics": f"{b.max_graphics} MHz",
        "app_clock": "Requested functionality has been deprecated" if new else f"{values['app_graphics']} MHz",
        "app_mem_clock": "Requested functionality has been deprecated" if new else f"{b.max_memory} MHz",
        "volt": "685.000 mV" if b.architecture in ("Ampere", "Hopper") else "N/A",
        "fabric_state": "Completed" if b.nvlinks >= 18 else "N/A",
        "fabric_status": "Success" if b.nvlinks >= 18 else "N/A",
        "fabric_clique": "0" if b.nvlinks >= 18 else "N/A",
        "fabric_cluster": "00000000-0000-0000-0000-000000000000" if b.nvlinks >= 18 else "N/A",
    })
    flags = {"new"} if new else set()
    if view.major >= 595:  # 595.80 adds the inactive remapped-row counters and the fabric partition
        flags.add("r595")
    if g.mig_on:
        flags.add("mig")

    def mig_devices() -> list[Node]:
        nodes: list[Node] = []
        for d in g.mig_devices:
            nodes += outline(_MIG_DEVICE, {"index": d.index, "gi": d.gi, "ci": d.ci, "sm": d.sm_count, "ce": d.ce,
                                           "enc": d.enc, "dec": d.dec, "ofa": d.ofa, "jpg": d.jpg,
                                           "total": d.memory_mib, "used": d.used_mib,
                                           "free": d.memory_mib - d.used_mib, "bar1": d.bar1_mib})
        return nodes

    def processes() -> list[Node]:
        if not g.processes:
            return [Node(0, "Processes", "None")]
        nodes = [Node(0, "Processes", None)]
        for p in g.processes:
            on_mig = {"mig"} if g.mig_on and p.gi is not None else set()
            nodes += outline(_PROCESS, {"gi": p.gi, "ci": p.ci, "pid": p.pid, "type": p.type, "name": p.name,
                                        "used": p.used_memory_mib}, flags=on_mig, depth=1)
        return nodes

    return outline(_GPU, values, flags=flags, blocks={"mig_devices": mig_devices, "processes": processes})


def _render(nodes: list[Node], width: int, base: int) -> list[str]:
    lines = []
    in_processes = False
    for node in nodes:
        if node.depth == 0:
            in_processes = node.key == "Processes"
        pad = "    " * (base + node.depth)
        if node.value is None:
            lines.append(pad + node.key)
            continue
        key_width = (42 if in_processes and node.depth > 0 else width) - len(pad)
        lines.append(f"{pad}{node.key:<{key_width}}: {node.value}")
    return lines


def _select(nodes: list[Node], keys: set[str]) -> list[Node]:
    out, keep = [], False
    for node in nodes:
        if node.depth == 0:
            keep = node.key in keys
        if keep:
            out.append(node)
    return out


def text_report(view: Report, display: Sequence[str] = ()) -> str:
    """``nvidia-smi -q`` for the selected GPUs; ``display`` are ``-d`` groups (all sections when empty)."""
    width = 55 if view.major >= 580 else 42
    m = view.machine
    stamp = time.asctime(time.localtime(view.timestamp))

    def top(key: str, value: object) -> str:
        return f"{key:<{width}}: {value}"

    lines = ["", "==============NVSMI LOG==============", "", top("Timestamp", stamp),
             top("Driver Version", m.driver_version), top("CUDA Version", m.cuda_version), "",
             top("Attached GPUs", len(view.all_gpus))]
    keys = {k for group in display for k in DISPLAY_KEYS.get(group, ())}
    for g in view.gpus:
        nodes = _gpu_nodes(view, g)
        if display:
            nodes = _select(nodes, keys)
        lines.append(f"GPU {g.gpu.bus_id}")
        lines += _render(nodes, width, 1)
        lines.append("")
    return "\n".join(lines) + "\n"
