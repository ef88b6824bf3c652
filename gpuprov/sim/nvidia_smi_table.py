"""``nvidia-smi`` with no query: the GPU table, the MIG devices table and the Processes table; and ``topo -m``.

Why: this is what a person looks at while provisioning (is MIG on, which instances exist, what holds the GPU), so
its cells must be the state's, in the column layout of the driver generation (``fixtures/nvidia-smi-xml/table/``,
``fixtures/nvidia-smi/``, ``fixtures/mps/*nvidia-smi*``):

- from R550: 91 columns (580.126.09, 590.48.01), ``Shared Memory-Usage`` / ``Shared BAR1-Usage`` in the MIG table,
  one MIG-table row per compute instance (CIs of one GI repeat the GI's memory, as the A100 580 capture shows);
- R525-R545: 89 columns (the Processes part is captured on a k8s-device-plugin 0.15 node; the GPU part follows
  the same generation's layout, with a 22-column Bus-Id cell);
- before R525: 79 columns (460.32.03; the MIG devices table as the MIG user guide shows it).

A GPU with MIG on shows ``N/A`` GPU-Util and ``On`` in the ECC cell, as both MIG captures do.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from .host import Result
from .machine import Process
from .nvidia_smi_report import GpuReport, Report, ReportError

__all__ = ["table", "topo"]

_COMPUTE = {"Default": "Default", "Exclusive_Process": "E. Process", "Exclusive_Thread": "E. Thread",
            "Prohibited": "Prohibited"}


def _width(major: int) -> int:
    return 91 if major >= 550 else 89 if major >= 525 else 79


def _row(text: str, width: int) -> str:
    return f"|{text:<{width - 2}}|"


def _rule(width: int, char: str = "-") -> str:
    return "+" + char * (width - 2) + "+"


def _name(name: str, width: int) -> str:
    return name if len(name) <= width else name[: width - 3] + "..."


def _proc_name(name: str, width: int) -> str:
    """nvidia-smi keeps the end of a long process name: ``...lib/python3/bin/python``."""
    return name if len(name) <= width else "..." + name[-(width - 3):]


def _draw_watts(g: GpuReport) -> int:
    b = g.board
    return round(b.power_idle if not g.processes else b.power_limit * 0.62)


def _temp(g: GpuReport) -> int:
    return g.board.temp if not g.processes else g.board.temp + 20


def _util(g: GpuReport) -> str:
    if g.mig_on:
        return "N/A"
    return "0%" if not g.processes else "100%"


def _ecc(g: GpuReport) -> str:
    if g.mig_on:
        return "On"
    return "0" if g.board.ecc else "N/A"


def _mig_mode(g: GpuReport) -> str:
    """The MIG M. cell: the current mode, or the pending one marked ``*`` while a change waits for a reset or a
    reboot (field copies of R515 tables show ``Disabled*`` on a GPU still in MIG mode)."""
    if not g.mig_capable:
        return "N/A"
    if g.gpu.mig_pending != g.gpu.mig_current:
        return ("Enabled" if g.gpu.mig_pending else "Disabled") + "*"
    return "Enabled" if g.gpu.mig_current else "Disabled"


def _fan(g: GpuReport) -> str:
    return "N/A" if g.board.fan == "N/A" else g.board.fan.replace(" ", "")


def _gpu_rows(view: Report, width: int) -> list[str]:
    m = view.machine
    v, cuda = m.driver_version, m.cuda_version
    lines = [_rule(width)]
    if width == 91:
        lines += [f"| NVIDIA-SMI {v:<23}Driver Version: {v:<15}CUDA Version: {cuda:<9}|",
                  "+-----------------------------------------+------------------------+----------------------+",
                  "| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |",
                  "| Fan  Temp   Perf          Pwr:Usage/Cap |           Memory-Usage | GPU-Util  Compute M. |",
                  "|                                         |                        |               MIG M. |",
                  "|=========================================+========================+======================|"]
        sep = "+-----------------------------------------+------------------------+----------------------+"
    elif width == 89:
        lines += [f"| NVIDIA-SMI {v:<23}Driver Version: {v:<13}CUDA Version: {cuda:<9}|",
                  "|-----------------------------------------+----------------------+----------------------+",
                  "| GPU  Name                 Persistence-M | Bus-Id        Disp.A | Volatile Uncorr. ECC |",
                  "| Fan  Temp   Perf          Pwr:Usage/Cap |         Memory-Usage | GPU-Util  Compute M. |",
                  "|                                         |                      |               MIG M. |",
                  "|=========================================+======================+======================|"]
        sep = "+-----------------------------------------+----------------------+----------------------+"
    else:
        lines += [f"| NVIDIA-SMI {v:<13}Driver Version: {v:<13}CUDA Version: {cuda:<9}|",
                  "|-------------------------------+----------------------+----------------------+",
                  "| GPU  Name        Persistence-M| Bus-Id        Disp.A | Volatile Uncorr. ECC |",
                  "| Fan  Temp  Perf  Pwr:Usage/Cap|         Memory-Usage | GPU-Util  Compute M. |",
                  "|                               |                      |               MIG M. |",
                  "|===============================+======================+======================|"]
        sep = "+-------------------------------+----------------------+----------------------+"
    for g in view.gpus:
        gpu = g.gpu
        pers = "On" if gpu.persistence_mode else "Off"
        mode = _COMPUTE.get(gpu.compute_mode, gpu.compute_mode)
        fan, temp, draw, cap = _fan(g), f"{_temp(g)}C", f"{_draw_watts(g)}W", f"{round(g.board.power_limit)}W"
        used, total = f"{g.used_mib}MiB", f"{gpu.memory_mib}MiB"
        if width == 91:
            lines += [f"|{gpu.index:>4}  {_name(gpu.product, 29):<29}{pers:>4}  |{gpu.bus_id:>19} Off |"
                      f"{_ecc(g):>21} |",
                      f"|{fan:>4}{temp:>6}{'P0':>6}{draw:>16} / {cap:>5} |{used:>11} / {total:>9} |"
                      f"{_util(g):>8}{mode:>13} |",
                      f"|{'':41}|{'':24}|{_mig_mode(g):>21} |"]
        elif width == 89:
            lines += [f"|{gpu.index:>4}  {_name(gpu.product, 29):<29}{pers:>4}  | {gpu.bus_id:>16} Off |"
                      f"{_ecc(g):>21} |",
                      f"|{fan:>4}{temp:>6}{'P0':>6}{draw:>17} / {cap:>4} |{used:>10} / {total:>8} |"
                      f"{_util(g):>8}{mode:>13} |",
                      f"|{'':41}|{'':22}|{_mig_mode(g):>21} |"]
        else:
            lines += [f"|{gpu.index:>4}  {_name(gpu.product, 18):<18}{pers:>4}   | {gpu.bus_id:>16} Off |"
                      f"{_ecc(g):>21} |",
                      f"|{fan:>4}{temp:>6}{'P0':>6}{draw:>7} / {cap:>4} |{used:>10} / {total:>8} |"
                      f"{_util(g):>8}{mode:>13} |",
                      f"|{'':31}|{'':22}|{_mig_mode(g):>21} |"]
        lines.append(sep)
    return lines


def _mig_rows(view: Report, width: int) -> list[str]:
    gpus = [g for g in view.gpus if g.mig_on]
    if not gpus:
        return []
    if width == 91:
        sep = "+------------------+----------------------------------+-----------+-----------------------+"
        lines = [_rule(width), _row(" MIG devices:", width), sep,
                 "| GPU  GI  CI  MIG |              Shared Memory-Usage |        Vol|        Shared         |",
                 "|      ID  ID  Dev |                Shared BAR1-Usage | SM     Unc| CE ENC  DEC  OFA  JPG |",
                 "|                  |                                  |        ECC|                       |",
                 "|==================+==================================+===========+=======================|"]
    else:
        sep = "+------------------+----------------------+-----------+-----------------------+"
        lines = ["+-----------------------------------------------------------------------------+",
                 "| MIG devices:                                                                |", sep,
                 "| GPU  GI  CI  MIG |         Memory-Usage |        Vol|         Shared        |",
                 "|      ID  ID  Dev |                      | SM     Unc| CE  ENC  DEC  OFA  JPG|",
                 "|                  |                      |        ECC|                       |",
                 "|==================+======================+===========+=======================|"]
        width = 79
    devices = [(g, d) for g in gpus for d in g.mig_devices]
    if not devices:
        return [*lines, _row("  No MIG devices found", width), _rule(width)]
    for g, d in devices:
        used, total, bar1 = f"{d.used_mib}MiB", f"{d.memory_mib}MiB", f"{d.bar1_mib}MiB"
        ids = f"{g.gpu.index:>3}{d.gi:>5}{d.ci:>4}{d.index:>4}  "
        engines = f"{d.ce:>3}{d.enc:>4}{d.dec:>5}{d.ofa:>5}{d.jpg:>5} "
        if width == 91:  # "used / total" right-aligned, the total padded to 5 digits (" 9984MiB")
            memory, bar = f"{used} / {d.memory_mib:>5}MiB", f"0MiB / {d.bar1_mib:>5}MiB"
            lines += [f"|{ids}|{memory:>30}    | {d.sm_count:<3}{0:>6} |{engines}|",
                      f"|{'':18}|{bar:>30}    |{'':11}|{'':23}|", sep]
        else:
            lines += [f"|{ids}|{used:>11} / {total:>8} | {d.sm_count:<3}{0:>6} |{engines}|",
                      f"|{'':18}|{'0MiB':>11} / {bar1:>8} |{'':11}|{'':23}|", sep]
    return lines


def _process_cells(g: GpuReport, p: Process) -> tuple[str, str]:
    if g.mig_on and p.gi is not None:
        return f"{p.gi:>5}", f"{p.ci if p.ci is not None else 'N/A':>5}"
    return f"{'N/A':>6}", f"{'N/A':>5}"


def _process_rows(view: Report, width: int) -> list[str]:
    if width == 91:
        head = ["|  GPU   GI   CI              PID   Type   Process name                        GPU Memory |",
                "|        ID   ID                                                               Usage      |"]
        pid_end, name_w = 33, 37
    elif width == 89:
        head = ["|  GPU   GI   CI        PID   Type   Process name                            GPU Memory |",
                "|        ID   ID                                                             Usage      |"]
        pid_end, name_w = 27, 41
    else:
        head = ["|  GPU   GI   CI        PID   Type   Process name                  GPU Memory |",
                "|        ID   ID                                                   Usage      |"]
        pid_end, name_w = 27, 31
    lines = [_rule(width), _row(" Processes:", width), *head, "|" + "=" * (width - 2) + "|"]
    rows = []
    for g in view.gpus:
        for p in g.processes:
            gi, ci = _process_cells(g, p)
            ids = f"{g.gpu.index:>5}{gi}{ci}"
            lead = ids + f"{p.pid:>{pid_end - 1 - len(ids)}}{p.type:>7}   "
            rows.append(f"|{lead}{_proc_name(p.name, name_w - 1):<{name_w}}{str(p.used_memory_mib) + 'MiB':>9} |")
    if not rows:
        rows = [_row("  No running processes found", width)]
    return lines + rows + [_rule(width)]


def table(view: Report) -> str:
    """The whole default view for the selected GPUs."""
    width = _width(view.major)
    stamp = time.asctime(time.localtime(view.timestamp))
    lines = [stamp + ("       " if width >= 89 else ""), *_gpu_rows(view, width), ""]
    mig = _mig_rows(view, width)
    if mig:
        lines += [*mig, ""]
    lines += _process_rows(view, width)
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------ topo

_LEGEND = """\
Legend:

  X    = Self
  SYS  = Connection traversing PCIe as well as the SMP interconnect between NUMA nodes (e.g., QPI/UPI)
  NODE = Connection traversing PCIe as well as the interconnect between PCIe Host Bridges within a NUMA node
  PHB  = Connection traversing PCIe as well as a PCIe Host Bridge (typically the CPU)
  PXB  = Connection traversing multiple PCIe bridges (without traversing the PCIe Host Bridge)
  PIX  = Connection traversing at most a single PCIe bridge
  NV#  = Connection traversing a bonded set of # NVLinks"""


def _link(a: GpuReport, b: GpuReport) -> str:
    if a.board.nvlinks and a.board is b.board:
        return f"NV{a.board.nvlinks}"
    if a.gpu.numa_node == b.gpu.numa_node:
        return "NODE"
    return "SYS"


def topo(view: Report, args: Sequence[str], ids: str | None) -> Result:
    """``topo -m`` (``--matrix``): links between GPUs and each GPU's CPU and NUMA affinity (its PCI device's
    ``local_cpulist`` and ``numa_node``). From R535 a ``GPU NUMA ID`` column follows (``N/A``: the GPU's memory
    is not a NUMA node); the header row is underlined with ``ESC[4m`` … ``ESC[0m``, even through a pipe; rows are
    TAB-separated and the affinity cells carry an empty cell between them, as the captures show.

    ``topo -c CPU`` (``--cpu``) lists the GPUs near a CPU (the DGX A100 captures); ``-C -i N`` / ``-M -i N`` print
    the NUMA node of the CPUs / memory closest to GPU N (``reference/numa.md`` §4). ``-i`` with ``-m`` or ``-c``
    is refused with the tool's message."""
    from .sysfs import format_list

    option = args[0] if args else ""
    if option in ("-C", "--get-numa-id-of-nearby-cpu", "-M", "--get-numa-id-of-nearby-memory"):
        if ids is None or len(args) != 1:
            raise ReportError("Invalid combination of input arguments. Please run 'nvidia-smi -h' for help.\n", 2)
        what = "CPU" if option in ("-C", "--get-numa-id-of-nearby-cpu") else "memory"
        lines = [f"NUMA IDs of closest {what}: {g.gpu.numa_node if g.gpu.numa_node >= 0 else 'N/A'}"
                 for g in view.gpus]
        return Result(stdout="\n".join(lines) + "\n")
    if ids is not None:
        raise ReportError("The -i command line argument must be used in conjunction with -n or -p.\n", 2)
    nodes = {n.id: n for n in view.machine.numa_nodes}
    gpus = view.all_gpus
    if option in ("-c", "--cpu") and len(args) == 2 and args[1].isdigit():
        cpu = int(args[1])
        near = [str(g.gpu.index) for g in gpus if g.gpu.numa_node in nodes and cpu in nodes[g.gpu.numa_node].cpus]
        return Result(stdout=f"The GPUs that have an affinity with CPU {cpu} are:\n" + ", ".join(near) + "\n")
    if option not in ("-m", "--matrix") or len(args) != 1:
        raise ReportError("Invalid combination of input arguments. Please run 'nvidia-smi -h' for help.\n", 2)
    new = view.major >= 535
    header = [f"GPU{i}" for i in range(len(gpus))] + ["CPU Affinity", "NUMA Affinity"]
    if new:
        header.append("GPU NUMA ID")
    lines = ["\t\x1b[4m" + "\t".join(header) + "\x1b[0m" if new else "\t" + "\t".join(header)]
    for i, a in enumerate(gpus):
        cells = [" X " if j == i else _link(a, b) for j, b in enumerate(gpus)]
        node = nodes.get(a.gpu.numa_node)
        cpus = format_list(node.cpus) if node is not None and node.cpus else "N/A"
        numa = str(a.gpu.numa_node) if a.gpu.numa_node >= 0 else "N/A"
        cells += [cpus, numa]
        if new:
            cells += ["", "N/A"]
        lines.append(f"GPU{i}\t" + "\t".join(cells))
    return Result(stdout="\n".join(lines) + "\n\n" + _LEGEND + "\n")
