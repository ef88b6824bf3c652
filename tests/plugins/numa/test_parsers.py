"""NUMA parser cases as data: ``parsers/<parser>/<case>.json`` names a real capture from ``fixtures/`` and the
records the parser must return (CPU and node lists written as range strings, ``0-15,128-143``, so a reviewer can
check them against the capture). One generic test runs them all; a second makes sure every capture in
``fixtures/numa/`` and ``fixtures/nvidia-smi-xml/topo/`` has a case, so a new capture cannot go untested.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from gpuprov_numa import facts as f

CASES_DIR = Path(__file__).parent / "parsers"
CASES = sorted(CASES_DIR.glob("*/*.json"))

PARSERS: dict[str, Callable[[str], Any]] = {
    "numactl_hardware": f.parse_numactl_hardware,
    "numactl_show": f.parse_numactl_show,
    "lscpu": f.parse_lscpu,
    "lscpu_json": f.parse_lscpu_json,
    "lscpu_extended": f.parse_lscpu_extended,
    "topo_matrix": f.parse_topo_matrix,
    "topo_cpu": f.parse_topo_cpu,
    "lspci_numa": f.parse_lspci_numa,
    "smi_table_bus_ids": f.parse_smi_table_bus_ids,
}

CAPTURE_DIRS = ("numa", "nvidia-smi-xml/topo")


def compact(value: Any) -> Any:
    """Lists of integers as range strings (what the cases hold); everything else as :func:`facts.to_data`."""
    if isinstance(value, list) and value and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return f.format_cpulist(value)
    if isinstance(value, dict):
        return {k: compact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [compact(v) for v in value]
    return value


@pytest.mark.parametrize("case", CASES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_parser_case(case: Path, fixtures_dir: Path) -> None:
    data = json.loads(case.read_text())
    parse = PARSERS[case.parent.name]
    text = (fixtures_dir / data["fixture"]).read_text()
    if "error" in data:
        with pytest.raises(ValueError, match=re.escape(data["error"])):
            parse(text)
    else:
        assert compact(f.to_data(parse(text))) == data["expected"]


def test_every_capture_has_a_case(fixtures_dir: Path) -> None:
    covered = {json.loads(c.read_text())["fixture"] for c in CASES}
    missing = [f"{d}/{p.name}" for d in CAPTURE_DIRS for p in sorted((fixtures_dir / d).iterdir())
               if p.name != "SOURCES.md" and f"{d}/{p.name}" not in covered]
    assert not missing, f"captures without a parser case: {missing}"
