"""The nvidia-smi stand-in's full reports against the captures, and gpuprov's own parsers against the reports.

Three kinds of check:

- the golden cases of ``cases/nvidia-smi-report/`` are run by ``test_golden.py`` through the ``nvidia-smi``
  stand-in; the tests here read the same cases for the state they set;
- structure: for each ``-q -x`` capture, the simulator put into the capture's state prints the same elements in
  the same order and nesting (the telemetry may differ, the layout may not), and the same text in every element
  gpuprov or a person reads while provisioning;
- round trip: the MIG plugin's parser (``plugins/gpuprov_mig/facts.py``) reads the simulator's XML into exactly
  the machine's state.
"""

from __future__ import annotations

import shlex
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_golden import apply_state

from gpuprov.sim.host import SimHost
from gpuprov.sim.machine import ComputeInstance, GpuInstance, Machine, Process
from gpuprov.sim.nvidia_smi_report import report
from gpuprov.sim.presets import new_machine

CASES = Path(__file__).parent / "cases" / "nvidia-smi-report"


def _host(tmp_path: Path, case: dict[str, Any]) -> SimHost:
    host = SimHost(tmp_path / "host")
    machine = new_machine(**case.get("host", {}))
    apply_state(machine, case.get("state") or {})
    host.save(machine)
    return host


# ------------------------------------------------------------------------------------------------ XML structure

XML_CASES = {
    "a100-sxm4-40gb-510.47.03_q-x_mig-enabled.xml": "q-x_a100-sxm4-40gb-510-mig-enabled.yaml",
    "tesla-p100-pcie-16gb-510.47.03_q-x.xml": "q-x_tesla-p100-510.yaml",
    "tesla-t4-515.105.01_q-x.xml": "q-x_tesla-t4-515-processes.yaml",
    "rtx-pro-6000-blackwell-maxq-590.44.01_q-x.xml": "q-x_rtx-pro-6000-590.yaml",
}

# Elements whose text is state, not telemetry: what gpuprov's parsers and a person provisioning read.
STATE_PATHS = (
    "driver_version", "cuda_version", "attached_gpus",
    "gpu/product_name", "gpu/product_brand", "gpu/product_architecture", "gpu/persistence_mode",
    "gpu/mig_mode/current_mig", "gpu/mig_mode/pending_mig", "gpu/minor_number",
    "gpu/gpu_virtualization_mode/virtualization_mode", "gpu/pci/pci_bus", "gpu/pci/pci_device",
    "gpu/pci/pci_domain", "gpu/pci/pci_device_id", "gpu/pci/pci_bus_id", "gpu/compute_mode",
    "gpu/fb_memory_usage/total", "gpu/uuid", "gpu/serial",
)
MIG_PATHS = ("index", "gpu_instance_id", "compute_instance_id", "device_attributes/shared/multiprocessor_count",
             "device_attributes/shared/copy_engine_count", "device_attributes/shared/encoder_count",
             "device_attributes/shared/decoder_count", "device_attributes/shared/ofa_count",
             "device_attributes/shared/jpg_count", "fb_memory_usage/total")
PROCESS_PATHS = ("gpu_instance_id", "compute_instance_id", "pid", "type", "process_name", "used_memory")


def _skeleton(root: ET.Element) -> list[str]:
    """Every element as its path, in document order; the supported-clocks table (per board) is left out."""
    out: list[str] = []

    def walk(node: ET.Element, path: str) -> None:
        for child in node:
            here = f"{path}/{child.tag}"
            out.append(here)
            if child.tag != "supported_clocks":
                walk(child, here)

    walk(root, root.tag)
    return out


def _sim_xml(tmp_path: Path, case_name: str) -> str:
    case = yaml.safe_load((CASES / case_name).read_text())
    result = report(_host(tmp_path, case), ["nvidia-smi", "-q", "-x"], {})
    assert result.exit_code == 0
    return result.stdout


@pytest.mark.parametrize("capture", sorted(XML_CASES))
def test_xml_layout_and_state_fields(capture: str, fixtures_dir: Path, tmp_path: Path) -> None:
    expected = ET.fromstring((fixtures_dir / "nvidia-smi-xml" / "xml" / capture).read_text())
    text = _sim_xml(tmp_path, XML_CASES[capture])
    actual = ET.fromstring(text)
    assert _skeleton(actual) == _skeleton(expected)
    for path in STATE_PATHS:
        assert (actual.findtext(path) or "").strip() == (expected.findtext(path) or "").strip(), path
    pairs = list(zip(actual.iter("mig_device"), expected.iter("mig_device"), strict=True))
    for mine, theirs in pairs:
        for path in MIG_PATHS:
            assert mine.findtext(path) == theirs.findtext(path), f"mig_device/{path}"
    for mine, theirs in zip(actual.iter("process_info"), expected.iter("process_info"), strict=True):
        for path in PROCESS_PATHS:
            assert mine.findtext(path) == theirs.findtext(path), f"process_info/{path}"
    assert text.startswith('<?xml version="1.0" ?>\n<!DOCTYPE nvidia_smi_log SYSTEM "nvsmi_device_v1')
    dtd = capture_dtd(fixtures_dir, capture)
    assert text.splitlines()[1] == f'<!DOCTYPE nvidia_smi_log SYSTEM "nvsmi_device_v{dtd}.dtd">'
    assert "\n\t<gpu id=" in text and text.endswith("\t</gpu>\n\n</nvidia_smi_log>\n")


def capture_dtd(fixtures_dir: Path, capture: str) -> str:
    line = (fixtures_dir / "nvidia-smi-xml" / "xml" / capture).read_text().splitlines()[1]
    return line.split("nvsmi_device_v", 1)[1].split(".dtd", 1)[0]


# ------------------------------------------------------------------------------------------------ round trip


def _dgx_a100_with_mig() -> Machine:
    """A DGX A100 with three differently split GPUs, a pending mode change, MPS-style processes and a
    non-default compute mode: every field the MIG facts carry differs somewhere."""
    m = new_machine(preset="dgx-a100", hostname="infer01")
    g0, g1, g3 = m.gpu(0), m.gpu(1), m.gpu(3)
    g0.mig_current = g0.mig_pending = True
    g0.gpu_instances = [
        GpuInstance(1, 9, 4, 4, [ComputeInstance(0, 2, 0, 3, "MIG-aaaaaaaa-0000-5000-8000-000000000001")]),
        GpuInstance(2, 9, 0, 4, [ComputeInstance(0, 0, 0, 1, "MIG-aaaaaaaa-0000-5000-8000-000000000002"),
                                 ComputeInstance(1, 1, 1, 2, "MIG-aaaaaaaa-0000-5000-8000-000000000003")]),
    ]
    g1.mig_current = g1.mig_pending = True
    g1.gpu_instances = [GpuInstance(i + 7, 19, i, 1, [ComputeInstance(0, 0, 0, 1, f"MIG-bbbbbbbb-0000-5000-8000-"
                                                                                  f"00000000000{i}")])
                        for i in range(7)]
    g3.mig_pending = True  # enabled, waiting for a reset
    m.gpu(5).compute_mode = "Exclusive_Process"
    m.processes += [Process(4101, "./bin/BlackScholes", 0, 2, 1, "M+C", 326),
                    Process(4100, "nvidia-cuda-mps-server", 0, 2, 1, "C", 30),
                    Process(4200, "python", 1, 9, 0, "C", 4000),
                    Process(4300, "python train.py --tag a&b<1>", 4, None, None, "C", 20000)]
    return m


def test_mig_facts_parse_the_state(tmp_path: Path) -> None:
    from gpuprov_mig.facts import parse_query_xml

    machine = _dgx_a100_with_mig()
    host = SimHost(tmp_path / "h")
    host.save(machine)
    record = parse_query_xml(report(host, ["nvidia-smi", "-q", "-x"], {}).stdout)
    assert record.driver == machine.driver_version and record.cuda == machine.cuda_version
    assert [g.index for g in record.gpus] == [g.index for g in machine.gpus]
    for parsed, gpu in zip(record.gpus, machine.gpus, strict=True):
        assert (parsed.product, parsed.uuid, parsed.bus_id) == (gpu.product, gpu.uuid, gpu.bus_id)
        assert (parsed.mig_capable, parsed.mig_current, parsed.mig_pending) == (True, gpu.mig_current,
                                                                                gpu.mig_pending)
        assert parsed.compute_mode == gpu.compute_mode and parsed.memory_mib == gpu.memory_mib
        assert parsed.pci_device_id == "0x20B210DE" and parsed.architecture == "Ampere"
        assert parsed.virtualization == "None"
        ids = sorted((gi.id, ci.id) for gi in gpu.gpu_instances for ci in gi.compute_instances)
        assert list(parsed.mig_device_ids) == [(n, gi, ci) for n, (gi, ci) in enumerate(ids)]
        procs = sorted((p.pid, p.name, p.type, p.used_memory_mib, p.gi, p.ci)
                       for p in machine.processes if p.gpu == gpu.index)
        assert sorted((p.pid, p.name, p.type, p.used_memory_mib, p.gi, p.ci) for p in parsed.processes) == procs


def test_selection_and_errors(tmp_path: Path) -> None:
    machine = _dgx_a100_with_mig()
    host = SimHost(tmp_path / "h")
    host.save(machine)

    def gpus_of(*args: str) -> list[str]:
        result = report(host, ["nvidia-smi", "-q", "-x", *args], {})
        assert result.exit_code == 0, result.stdout
        return [g.get("id") or "" for g in ET.fromstring(result.stdout).iter("gpu")]

    bus = [g.bus_id for g in machine.gpus]
    assert gpus_of("-i", "1") == [bus[1]]
    assert gpus_of("-i", "0,3") == [bus[0], bus[3]]
    assert gpus_of("--id=" + machine.gpu(6).uuid) == [bus[6]]
    assert gpus_of("-i", bus[2].lower()[4:]) == [bus[2]]  # 4-digit domain, lower case
    missing = report(host, ["nvidia-smi", "-q", "-x", "-i", "8"], {})
    assert (missing.stdout, missing.exit_code) == ("No devices were found\n", 6)
    assert report(host, ["nvidia-smi", "-x"], {}).exit_code == 2


# ------------------------------------------------------------------------------------------------ --query-gpu

QUERY_CASES = {
    "h100-80gb-hbm3-590.48.01_query-gpu_all-fields_mig-enabled_load.csv": "query-gpu_h100-590-all-fields.yaml",
    "h200-590.48.01_query-gpu_all-fields_idle.csv": "query-gpu_h200-590-all-fields.yaml",
    "tesla-p100-pcie-16gb_query-gpu_csv.csv": "query-gpu_p100-csv-nounits.yaml",
}
# Columns that are state (or fixed by product and driver), compared exactly; the rest is telemetry.
QUERY_STATE = ("driver_version", "count", "name", "serial", "pci.bus_id", "pci.domain", "pci.bus", "pci.device",
               "pci.baseClass", "pci.subClass", "pci.device_id", "pci.sub_device_id", "index", "display_mode",
               "persistence_mode", "addressing_mode", "accounting.mode", "vbios_version", "memory.total [MiB]",
               "compute_mode", "compute_cap", "utilization.gpu [%]", "ecc.mode.current", "mig.mode.current",
               "mig.mode.pending", "power.limit [W]", "power.max_limit [W]", "fabric.state", "fan.speed [%]")


@pytest.mark.parametrize("capture", sorted(QUERY_CASES))
def test_query_gpu_state_columns(capture: str, fixtures_dir: Path, tmp_path: Path) -> None:
    import csv

    case = yaml.safe_load((CASES / QUERY_CASES[capture]).read_text())
    result = report(_host(tmp_path, case), shlex.split(case["command"]), {})
    theirs = list(csv.reader((fixtures_dir / "nvidia-smi-xml" / "query" / capture).read_text().splitlines(),
                             skipinitialspace=True))
    mine = list(csv.reader(result.stdout.splitlines(), skipinitialspace=True))
    assert mine[0] == theirs[0] and len(mine) == len(theirs) == 2
    expected, actual = dict(zip(theirs[0], theirs[1], strict=True)), dict(zip(mine[0], mine[1], strict=True))
    columns = [c for c in QUERY_STATE if c in expected] + (["uuid"] if "uuid" in expected else [])
    assert len(columns) >= 2
    for column in columns:
        if column == "uuid" and expected[column].startswith("GPU-00000000"):
            continue  # masked by the capture script
        assert actual[column] == expected[column], column


def test_query_errors(tmp_path: Path) -> None:
    host = SimHost(tmp_path / "h")
    host.save(new_machine(gpu="NVIDIA A30", count=2))
    bad = report(host, ["nvidia-smi", "--query-gpu=index,cuda_version", "--format=csv"], {})
    assert (bad.stdout, bad.exit_code) == ('Field "cuda_version" is not a valid field to query.\n\n', 2)
    assert report(host, ["nvidia-smi", "--query-gpu=index"], {}).exit_code == 2  # no --format
    two = report(host, ["nvidia-smi", "--query-gpu=index,gpu_name,memory.total", "--format=csv,noheader,nounits"],
                 {})
    assert two.stdout == "0, NVIDIA A30, 24576\n1, NVIDIA A30, 24576\n"


# ------------------------------------------------------------------------------------------------ default table


def _mig_table(text: str) -> list[tuple[str, ...]]:
    """Each MIG device row's state cells: GPU, GI, CI, MIG Dev, memory total, SMs, CE, ENC, DEC, OFA, JPG."""
    import re

    row = re.compile(r"^\|\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+\|\s*\d+MiB /\s*(\d+)MiB\s*\|\s*(\d+)\s+\d+\s+\|"
                     r"\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+\|$")
    return [m.groups() for line in text.splitlines() if (m := row.match(line))]


@pytest.mark.parametrize("case_name", ["table_h100-590-mig-load.yaml", "table_h100-590-mig-idle.yaml",
                                       "table_a100-580-mig-i0.yaml"])
def test_table_mig_devices(case_name: str, fixtures_dir: Path, tmp_path: Path) -> None:
    case = yaml.safe_load((CASES / case_name).read_text())
    result = report(_host(tmp_path, case), shlex.split(case["command"]), {})
    expected = _mig_table((fixtures_dir / case["fixture"]).read_text())
    assert len(expected) >= 4 and _mig_table(result.stdout) == expected
    widths = {len(line) for line in result.stdout.splitlines()[1:] if line}
    assert widths == {91}


# ------------------------------------------------------------------------------------------------ topo -m

TOPO_CASES = {  # capture -> (new_machine arguments, NUMA nodes' CPUs, the GPUs' nodes)
    "dgx-a100_topo-m.txt": ({"preset": "dgx-a100", "driver": "470.57.02"}, None, None),
    "h200-x8_topo-m_nic-legend.txt": ({"preset": "hgx-h200"}, ["0-63,128-191", "64-127,192-255"], None),
    "h100-x8_topo-m_tabs-expanded_no-legend.txt": ({"preset": "dgx-h100", "driver": "525.125.06"},
                                                   ["0-51,104-155", "52-103,156-207"], None),
    "aws-p5.48xlarge-h100-x8_topo-m_tabs-expanded.txt": ({"preset": "dgx-h100"}, ["0-47,96-143", "48-95,144-191"],
                                                         None),
}


def _topo(text: str) -> tuple[list[str], dict[str, tuple[list[str], str, str]]]:
    """The header and each GPU row: links to the other GPUs, CPU affinity, NUMA affinity. TABs or expanded TABs;
    NIC columns (the sim has no NICs) are skipped."""
    import re

    lines = [line.replace("\x1b[4m", "").replace("\x1b[0m", "") for line in text.splitlines()]
    header = re.split(r"\t|\s{2,}", lines[0].strip())
    gpus = [h for h in header if re.fullmatch(r"GPU\d+", h)]
    rows = {}
    for line in lines[1:]:
        tokens = line.split()
        if not tokens or not re.fullmatch(r"GPU\d+", tokens[0]):
            continue
        links, rest = tokens[1:1 + len(gpus)], tokens[1 + len(gpus):]
        at = next(i for i, t in enumerate(rest) if re.fullmatch(r"\d+(-\d+)?(,\d+(-\d+)?)*", t))
        rows[tokens[0]] = (links, rest[at], rest[at + 1])
    return header, rows


@pytest.mark.parametrize("capture", sorted(TOPO_CASES))
def test_topo_matrix(capture: str, fixtures_dir: Path, tmp_path: Path) -> None:
    from gpuprov.sim.sysfs import parse_list

    kwargs, cpus, _ = TOPO_CASES[capture]
    machine = new_machine(**kwargs)
    for node, spec in zip(machine.numa_nodes, cpus or [], strict=False):
        node.cpus = parse_list(spec)
    host = SimHost(tmp_path / "h")
    host.save(machine)
    result = report(host, ["nvidia-smi", "topo", "-m"], {})
    assert result.exit_code == 0
    header, rows = _topo(result.stdout)
    their_header, theirs = _topo((fixtures_dir / "nvidia-smi-xml" / "topo" / capture).read_text())
    affinity = [h for h in their_header if "Affinity" in h or h == "GPU NUMA ID"]
    assert [h for h in header if not h.startswith("GPU") or h == "GPU NUMA ID"] == affinity
    assert rows == theirs and len(rows) == 8
    assert all("\t" in line for line in result.stdout.splitlines()[:9])


def test_topo_errors(tmp_path: Path) -> None:
    host = SimHost(tmp_path / "h")
    host.save(new_machine(preset="dgx-h100"))
    wrong = report(host, ["nvidia-smi", "topo", "-m", "-i", "0"], {})
    assert (wrong.stdout, wrong.exit_code) == (
        "The -i command line argument must be used in conjunction with -n or -p.\n", 2)
    assert report(host, ["nvidia-smi", "topo"], {}).exit_code == 2


def test_topo_single_gpu_exact(fixtures_dir: Path, tmp_path: Path) -> None:
    """GEX-H100M "capabilities": a 1-GPU VM (CPUs 0-19, node 0), driver 590.48.01 — the ESC[4m header, TABs, the
    empty cell before GPU NUMA ID, the legend without NICs. Called directly: the stand-in's dispatcher reads
    ``-m`` after ``topo`` as one of its own options (reported to its owner)."""
    from gpuprov.sim.numa import apply_topology

    machine = new_machine(gpu="NVIDIA H100 80GB HBM3", count=1, driver="590.48.01")
    apply_topology(machine, {"nodes": [{"id": 0, "cpus": "0-19", "memory_mb": 231000}], "gpus": [{"numa_node": 0}]})
    host = SimHost(tmp_path / "h")
    host.save(machine)
    expected = (fixtures_dir / "nvidia-smi-xml" / "topo" / "h100-80gb-hbm3-590.48.01_topo-m_1gpu_mig-enabled.txt")
    assert report(host, ["nvidia-smi", "topo", "-m"], {}).stdout == expected.read_text()


# ------------------------------------------------------------------------------------------------ -q text

Q_CASES = {
    "h100-80gb-hbm3-590.48.01_q_mig-enabled_load.txt": "q_h100-590-mig-load.yaml",
    "h200-590.48.01_q_idle.txt": "q_h200-590-idle.yaml",
    "l40s-595.80_q_idle.txt": "q_l40s-595-idle.yaml",
    "h100-80gb-hbm3-x8-565.57.01_q.txt": "q_dgx-h100-565.yaml",
}


def _keys(text: str) -> list[str]:
    """Each line up to its value: the key with its indentation and padding (the layout), values dropped."""
    return [line.split(" : ", 1)[0] + " :" if " : " in line else line for line in text.splitlines()]


@pytest.mark.parametrize("capture", sorted(Q_CASES))
def test_q_text_layout(capture: str, fixtures_dir: Path, tmp_path: Path) -> None:
    case = yaml.safe_load((CASES / Q_CASES[capture]).read_text())
    text = report(_host(tmp_path, case), ["nvidia-smi", "-q"], {}).stdout
    expected = (fixtures_dir / "nvidia-smi-xml" / "q-text" / capture).read_text()
    assert _keys(text.rstrip("\n")) == _keys(expected.rstrip("\n"))  # the 565 copy lost its final empty line
    assert text.startswith("\n==============NVSMI LOG==============\n\n") and text.endswith("\n\n")


def test_q_display_and_selection(tmp_path: Path) -> None:
    machine = _dgx_a100_with_mig()
    host = SimHost(tmp_path / "h")
    host.save(machine)
    out = report(host, ["nvidia-smi", "-q", "-d", "COMPUTE", "-i", "5"], {}).stdout
    body = out.split("Attached GPUs", 1)[1].splitlines()[1:]
    assert body == [f"GPU {machine.gpu(5).bus_id}", f"    {'Compute Mode':<51}: Exclusive_Process", ""]
    pids = report(host, ["nvidia-smi", "-q", "-d", "PIDS,COMPUTE", "-i", "0"], {}).stdout
    assert "        GPU instance ID                   : 2\n        Compute instance ID               : 1\n" \
           "        Process ID                        : 4100\n            Type                          : C\n" in pids
    bad = report(host, ["nvidia-smi", "-q", "-d", "NOPE"], {})
    assert bad.exit_code == 2


# ------------------------------------------------------------------------------------------------ property

_MIG_PRODUCTS = ("NVIDIA A100-SXM4-40GB", "NVIDIA A100-SXM4-80GB", "NVIDIA A30", "NVIDIA H100 80GB HBM3",
                 "NVIDIA H200")


def _layout_strategy() -> Any:
    from hypothesis import strategies as st

    drivers = {"NVIDIA A100-SXM4-40GB": ("515.105.01", "535.104.05", "580.126.09"),
               "NVIDIA A100-SXM4-80GB": ("535.104.05", "590.48.01"), "NVIDIA A30": ("515.105.01", "580.126.09"),
               "NVIDIA H100 80GB HBM3": ("535.104.05", "590.48.01"), "NVIDIA H200": ("580.126.09", "590.48.01")}
    return st.sampled_from(_MIG_PRODUCTS).flatmap(lambda product: st.tuples(
        st.just(product), st.sampled_from(drivers[product]), st.lists(st.integers(0, 6), min_size=1, max_size=7),
        st.integers(0, 3)))


def test_reports_agree_with_the_state_for_any_layout(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Whatever layout the MIG engine accepted, every report shows it the same way: the XML parses back into the
    state, the table's MIG rows and the -q MIG Device blocks are the devices ``-L`` numbers, every table line is
    the layout's width, and processes appear under their device."""
    import re

    from gpuprov_mig.facts import parse_gpu_list, parse_query_xml
    from hypothesis import given, settings

    from gpuprov.sim import migprofiles
    from gpuprov.sim.commands import load_all

    smi = load_all()["nvidia-smi"]

    @settings(max_examples=12, deadline=None)
    @given(_layout_strategy())
    def check(spec: tuple[str, str, list[int], int]) -> None:
        product, driver, picks, procs = spec
        host = SimHost(tmp_path_factory.mktemp("h"))
        host.save(new_machine(gpu=product, count=1, driver=driver))
        profiles = migprofiles.gi_profiles(product, driver)
        ids = ",".join(str(profiles[p % len(profiles)].id) for p in picks)
        assert smi(host, ["nvidia-smi", "-i", "0", "-mig", "1"], "", {}).exit_code == 0
        smi(host, ["nvidia-smi", "-r", "-i", "0"], "", {})
        smi(host, ["nvidia-smi", "mig", "-i", "0", "-cgi", ids, "-C"], "", {})  # may refuse part of it
        machine = host.load()
        gpu = machine.gpu(0)
        devices = sorted((gi.id, ci.id) for gi in gpu.gpu_instances for ci in gi.compute_instances)
        for n, (gi, ci) in enumerate(devices[:procs]):
            machine.processes.append(Process(5000 + n, f"job{n}", 0, gi, ci, "C", 100 + n))
        host.save(machine)

        record = parse_query_xml(smi(host, ["nvidia-smi", "-q", "-x"], "", {}).stdout)
        (parsed,) = record.gpus
        assert parsed.mig_current == gpu.mig_current and parsed.uuid == gpu.uuid
        assert list(parsed.mig_device_ids) == [(n, gi, ci) for n, (gi, ci) in enumerate(devices)]
        assert sorted((p.pid, p.gi, p.ci) for p in parsed.processes) == sorted(
            (p.pid, p.gi, p.ci) for p in machine.processes)
        listed = parse_gpu_list(smi(host, ["nvidia-smi", "-L"], "", {}).stdout)
        assert [d.device for d in listed] == list(range(len(devices)))
        table = smi(host, ["nvidia-smi"], "", {}).stdout
        if driver >= "550":
            assert {len(line) for line in table.splitlines()[1:] if line} == {91}
        rows = _mig_table(table)
        assert [(int(r[1]), int(r[2]), int(r[3])) for r in rows] == [(gi, ci, n) for n, (gi, ci) in
                                                                      enumerate(devices)]
        text = smi(host, ["nvidia-smi", "-q"], "", {}).stdout
        blocks = re.findall(r"MIG Device\n\s+Index\s+: (\d+)\n\s+GPU Instance ID\s+: (\d+)\n\s+Compute Instance ID"
                            r"\s+: (\d+)", text)
        assert [(int(i), int(g), int(c)) for i, g, c in blocks] == [(n, gi, ci) for n, (gi, ci) in
                                                                    enumerate(devices)]

    check()


@pytest.mark.parametrize("cpu", ["48", "222"])
def test_topo_cpu_affinity_exact(cpu: str, fixtures_dir: Path, tmp_path: Path) -> None:
    """GENG's DGX A100: ``topo -c 48`` names GPUs 0, 1 (node 3), ``-c 222`` GPUs 6, 7 (node 5), as the preset
    places them; and the NUMA plugin's parser reads the matrix back into each GPU's node and CPUs."""
    from gpuprov_numa.facts import parse_topo_cpu, parse_topo_matrix

    machine = new_machine(preset="dgx-a100")
    host = SimHost(tmp_path / "h")
    host.save(machine)
    expected = (fixtures_dir / "nvidia-smi-xml" / "topo" / f"dgx-a100_topo-c_{cpu}.txt").read_text()
    got = report(host, ["nvidia-smi", "topo", "-c", cpu], {}).stdout
    assert got == expected and parse_topo_cpu(got) == parse_topo_cpu(expected)
    nodes = {n.id: n for n in machine.numa_nodes}
    parsed = parse_topo_matrix(report(host, ["nvidia-smi", "topo", "-m"], {}).stdout)
    assert [(t.index, t.numa_nodes, t.cpus) for t in parsed] == [
        (g.index, (g.numa_node,), tuple(nodes[g.numa_node].cpus)) for g in machine.gpus]
    near = report(host, ["nvidia-smi", "topo", "-C", "-i", "4"], {})
    assert near.stdout == "NUMA IDs of closest CPU: 7\n"


def test_no_gpu(tmp_path: Path) -> None:
    host = SimHost(tmp_path / "h")
    host.save(new_machine(numa_nodes=2))
    for argv in (["nvidia-smi"], ["nvidia-smi", "-q", "-x"], ["nvidia-smi", "--query-gpu=index", "--format=csv"]):
        result = report(host, argv, {})
        assert (result.stdout, result.exit_code) == ("No devices were found\n", 6)


def test_mig_facts_from_every_probe_equal_the_state(tmp_path: Path) -> None:
    """The MIG plugin's whole detect path (its six nvidia-smi probes, run through the stand-in) against a DGX A100
    with three differently split GPUs: each GPU's instances, placements, compute instances and MIG UUIDs, and
    the processes, are the machine's."""
    from gpuprov_mig.facts import SMI_PROBES, facts_from_smi

    from gpuprov.sim.commands import load_all

    machine = _dgx_a100_with_mig()
    host = SimHost(tmp_path / "h")
    host.save(machine)
    smi = load_all()["nvidia-smi"]
    outputs = {name: smi(host, shlex.split(command), "", {}) for name, command in SMI_PROBES.items()}
    facts = facts_from_smi(outputs)
    assert facts["mig"]["driver"] == machine.driver_version
    for fact, gpu in zip(facts["mig"]["gpus"], machine.gpus, strict=True):
        assert (fact["uuid"], fact["mig_current"], fact["mig_pending"]) == (gpu.uuid, gpu.mig_current,
                                                                            gpu.mig_pending)
        want = sorted((gi.id, gi.profile_id, [gi.start, gi.size],
                       [(ci.id, ci.profile_id, ci.uuid) for ci in sorted(gi.compute_instances, key=lambda c: c.id)])
                      for gi in gpu.gpu_instances) if gpu.mig_current else []
        got = sorted((i["gi"], i["profile_id"], i["placement"], [(c["ci"], c["profile_id"], c["uuid"])
                                                                   for c in i["cis"]]) for i in fact["instances"])
        assert got == want, gpu.index
        assert sorted((p["pid"], p["gi"], p["ci"]) for p in fact["processes"]) == sorted(
            (p.pid, p.gi, p.ci) for p in machine.processes if p.gpu == gpu.index)


def test_topo_through_the_stand_in(tmp_path: Path) -> None:
    """``topo`` is a subcommand: its ``-m``/``-c`` reach the reports, not nvidia-smi's own option parser."""
    from gpuprov.sim.commands import load_all

    host = SimHost(tmp_path / "h")
    host.save(new_machine(preset="dgx-a100"))
    direct = report(host, ["nvidia-smi", "topo", "-m"], {})
    through = load_all()["nvidia-smi"](host, ["nvidia-smi", "topo", "-m"], "", {})
    assert (through.stdout, through.exit_code) == (direct.stdout, 0)


def test_table_pending_mig_mode_and_long_names(tmp_path: Path) -> None:
    """A pending MIG change shows as the pending mode with ``*`` (the GPU keeps its current mode's ECC and
    utilisation cells); a product name too long for the 79-column Name cell ends in ``...``."""
    machine = new_machine(gpu="NVIDIA A100 80GB PCIe", count=2, driver="515.105.01")
    machine.gpu(0).mig_current, machine.gpu(0).mig_pending = True, False
    machine.gpu(1).mig_pending = True
    host = SimHost(tmp_path / "h")
    host.save(machine)
    lines = report(host, ["nvidia-smi"], {}).stdout.splitlines()
    assert "|   0  NVIDIA A100 80G...  On   |" in lines[8] and lines[8].endswith("|                   On |")
    assert lines[9].endswith("|     N/A      Default |") and lines[10].endswith("|            Disabled* |")
    assert lines[14].endswith("|             Enabled* |")


@pytest.mark.parametrize("machine", [
    pytest.param(_dgx_a100_with_mig, id="dgx-a100-mig-processes"),
    pytest.param(lambda: new_machine(preset="dgx-h100"), id="dgx-h100"),
    pytest.param(lambda: new_machine(gpu="Tesla P100-PCIE-16GB", count=2, driver="510.47.03"), id="p100-510"),
    pytest.param(lambda: new_machine(gpu="NVIDIA A30", count=1, driver="535.183.01"), id="a30-535"),
])
def test_compiled_xml_prints_what_the_outline_prints(machine: Any) -> None:
    """The stand-in prints -q -x through templates compiled to format strings; the node-by-node outline it
    replaced (still what -q -x means, and what the golden tests were written against) must print the same."""
    from gpuprov.sim.nvidia_smi_report import build
    from gpuprov.sim.nvidia_smi_xml import _render, gpu_lines, gpu_nodes

    view = build(machine())
    for g in view.gpus:
        assert "\n".join(gpu_lines(view, g, 2)) == "\n".join(_render(gpu_nodes(view, g), 2))
