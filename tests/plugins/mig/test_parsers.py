"""Parser cases as data (pyinfra's style): ``parsers/<parser>/<case>.json`` names a real capture from ``fixtures/``
(or, for a message no capture holds, the output inline with its source) and the records the parser must return.

One generic test runs them all; a second one makes sure every capture of a command gpuprov parses has a case, so
a capture added to ``fixtures/`` without a case fails here instead of being silently untested.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from gpuprov_mig import facts as f

CASES_DIR = Path(__file__).parent / "parsers"
CASES = sorted(CASES_DIR.glob("*/*.json"))

# parser folder -> (parse function, is a `nvidia-smi mig` listing that may answer "nothing to list")
PARSERS: dict[str, tuple[Callable[[str], Any], bool]] = {
    "query_xml": (f.parse_query_xml, False),
    "gpu_list": (f.parse_gpu_list, False),
    "lgip": (f.parse_lgip, True),
    "lgipp": (f.parse_lgipp, True),
    "lgi": (f.parse_lgi, True),
    "lci": (f.parse_lci, True),
}

# Captures of the commands detect runs, by file-name pattern (see fixtures/*/SOURCES.md for the naming).
RELEVANT = [
    ("nvidia-smi", r"_-lgip(_.*)?\.txt$"),
    ("nvidia-smi", r"_-lgipp(_.*)?\.txt$"),
    ("nvidia-smi", r"_-lgi(_.*)?\.txt$"),
    ("nvidia-smi", r"_-lci(_.*)?\.txt$"),
    ("nvidia-smi", r"_-L(_.*)?\.txt$"),
    ("nvidia-smi-xml/xml", r"_q-x.*\.xml$"),
    ("nvidia-smi-xml/table", r"_-L_.*\.txt$"),
]


def to_data(value: Any) -> Any:
    """Parser results as the JSON the cases hold: dataclasses as objects, tuples as lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {fl.name: to_data(getattr(value, fl.name)) for fl in dataclasses.fields(value)}
    if isinstance(value, dict) and value and isinstance(next(iter(value)), tuple):
        return [{"gpu": k[0], "id": k[1], "placements": to_data(v)} for k, v in value.items()]
    if isinstance(value, dict):
        return {k: to_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_data(v) for v in value]
    return value


@pytest.mark.parametrize("case", CASES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_parser_case(case: Path, fixtures_dir: Path) -> None:
    data = json.loads(case.read_text())
    parse, listing = PARSERS[case.parent.name]
    assert ("fixture" in data) != ("output" in data), "a case names a fixture or holds its output inline"
    if "output" in data:
        assert data.get("source"), "an inline output says where the text comes from"
        text = data["output"]
    else:
        text = (fixtures_dir / data["fixture"]).read_text()

    def run() -> Any:
        body = f.mig_listing(data["command"], text, "", data.get("exit_code", 0)) if listing else text
        return parse(body)

    if "error" in data:
        with pytest.raises(ValueError, match=re.escape(data["error"])):
            run()
    else:
        assert to_data(run()) == data["expected"]


def test_every_relevant_capture_has_a_case(fixtures_dir: Path) -> None:
    covered = {json.loads(c.read_text()).get("fixture") for c in CASES}
    missing = []
    for folder, pattern in RELEVANT:
        for path in sorted((fixtures_dir / folder).iterdir()):
            name = f"{folder}/{path.name}"
            if re.search(pattern, path.name) and name not in covered:
                missing.append(name)
    assert not missing, f"captures without a parser case: {missing}"


def test_units_block_per_unit() -> None:
    """``systemctl show`` prints one block per unit, properties in systemd's order whatever ``-p`` asked."""
    text = ("Id=nvidia-persistenced.service\nLoadState=loaded\nActiveState=active\nUnitFileState=enabled\n\n"
            "Id=nvsm.service\nLoadState=not-found\nActiveState=inactive\nUnitFileState=\n")
    assert f.parse_units(text) == {
        "nvidia-persistenced.service": {"load": "loaded", "active": "active", "enabled": "enabled"},
        "nvsm.service": {"load": "not-found", "active": "inactive", "enabled": ""},
    }


def test_unexpected_row_names_the_command() -> None:
    with pytest.raises(ValueError, match=r"nvidia-smi mig -lgi.*unexpected row"):
        f.parse_lgi("|   0  MIG 1g.5gb   nineteen   9   6:1 |\n")


def test_broken_xml_names_the_command() -> None:
    with pytest.raises(ValueError, match=r"nvidia-smi -q -x"):
        f.parse_query_xml("<nvidia_smi_log><gpu>")


def test_query_xml_reads_the_same_from_the_sections_it_keeps(fixtures_dir: Path, tmp_path: Path) -> None:
    """``-q -x`` is cut down to READ_SECTIONS before parsing: every capture, and a simulated DGX with MIG devices
    and processes on them, must give the record the whole document gives (a section read but not kept would
    show up here as a default value)."""
    import xml.etree.ElementTree as ET

    from gpuprov.sim.host import SimHost
    from gpuprov.sim.machine import Process
    from gpuprov.sim.presets import new_machine
    from gpuprov.sim.shell import run_line

    texts = [p.read_text() for p in sorted((fixtures_dir / "nvidia-smi-xml/xml").glob("*.xml"))]
    host = SimHost(tmp_path / "dgx")
    host.save(new_machine(preset="dgx-a100"))
    for line in ("nvidia-smi -i 0 -mig 1", "nvidia-smi -i 0 --gpu-reset", "nvidia-smi mig -i 0 -cgi 9,19,19 -C"):
        assert run_line(host, line).exit_code == 0, line
    with host.locked() as machine:
        gi = machine.gpus[0].gpu_instances[0]
        machine.processes.append(Process(pid=4242, name="python train.py", gpu=0, gi=gi.id, ci=0, used_memory_mib=900))
    texts.append(run_line(host, "nvidia-smi -q -x").stdout)
    for text in texts:
        skimmed = f._skim(text.strip())
        assert len(skimmed) < len(text) / 2
        assert f.parse_query_xml(text) == f._read_query(ET.fromstring(text.strip()))
    sim = f.parse_query_xml(texts[-1]).gpus[0]
    assert sim.mig_device_ids and [p.pid for p in sim.processes] == [4242]  # through the cut
