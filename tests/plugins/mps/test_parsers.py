"""Parser cases as data (pyinfra's style): ``parsers/<parser>/<case>.json`` names a real capture from ``fixtures/``
(or, for text no capture holds, gives it inline with its source) and what the parser must return. One generic
test per parser runs them all; a last test makes sure every capture of a front-end answer has a case."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from gpuprov_mig import facts as mig_facts
from gpuprov_mps import facts as f

from .captures import host_facts

CASES = Path(__file__).parent / "parsers"


def text_of(part: dict[str, Any], fixtures: Path) -> str:
    assert ("fixture" in part) != ("output" in part), "a case names a fixture or holds its output inline"
    return (fixtures / part["fixture"]).read_text() if "fixture" in part else str(part["output"])


def answer_lines(text: str, exit_code: int | None) -> list[str]:
    """What the probe prints for one front-end command: its output, then ``@@status N``."""
    lines = text.splitlines()
    return lines + ([f"@@status {exit_code}"] if exit_code is not None else [])


@pytest.mark.parametrize("case", sorted((CASES / "query").glob("*.json")), ids=lambda p: p.stem)
def test_query_case(case: Path, fixtures_dir: Path) -> None:
    data = json.loads(case.read_text())
    if "output" in data:
        assert data.get("source"), "an inline output says where the text comes from"
    answered, lines = f.parse_query(answer_lines(text_of(data, fixtures_dir), data["exit_code"]))
    assert {"answered": answered, "lines": lines} == data["expected"]


@pytest.mark.parametrize("case", sorted((CASES / "daemons").glob("*.json")), ids=lambda p: p.stem)
def test_daemons_case(case: Path, fixtures_dir: Path) -> None:
    data = json.loads(case.read_text())
    lines: list[str] = []
    for part in data["parts"]:
        lines.append(part["mark"])
        lines.extend(answer_lines(text_of(part, fixtures_dir), part.get("exit_code")))
    parsed = f.parse_daemons("\n".join(lines) + "\n")
    got = [{"instance": d["instance"], "user": d["unit"]["user"], "active": d["unit"]["active"],
            "enabled": d["unit"]["enabled"], "main_pid": d["unit"]["main_pid"], "answers": d["answers"],
            "servers": d["servers"],
            "active_thread_percentage": d["active_thread_percentage"], "pinned_mem_limit": d["pinned_mem_limit"],
            "bound_uuid": d["bound_uuid"], "env": d["env"]} for d in parsed]
    assert got == data["expected"]


def test_every_front_end_answer_capture_has_a_case(fixtures_dir: Path) -> None:
    """Captures of what the front end prints for the commands detect sends (the daemon missing, a default)."""
    relevant = ["mps/a100-polaris_start_server_no-daemon-listening.txt",
                "mps/v100-k8s-dp-v0.15_get_default_active_thread_percentage.txt"]
    covered = set()
    for case in CASES.glob("*/*.json"):
        data = json.loads(case.read_text())
        covered.add(data.get("fixture"))
        covered.update(p.get("fixture") for p in data.get("parts", ()))
    assert [r for r in relevant if r not in covered] == []
    assert all((fixtures_dir / r).is_file() for r in relevant)


def test_a_stray_line_before_any_device_names_the_listing() -> None:
    with pytest.raises(ValueError, match="MPS daemon listing: unexpected line before any device"):
        f.parse_daemons("garbage\n@@device gpu0\n")


def test_clients_and_servers_of_each_daemon_come_from_nvidia_smi(fixtures_dir: Path) -> None:
    """The MIG guide's capture (a client ``M+C`` and its server ``C`` per MIG device), placed on the SSUP2 GPU's
    4g.20gb (GI 2) and 1g.5gb (GI 9): each daemon gets the processes of its own device."""
    capture = (fixtures_dir / "mps/h100-80gb-hbm3-r580_nvidia-smi_processes_mps-on-two-mig-devices.txt").read_text()
    rows = re.findall(r"^\|\s+0\s+(\d+)\s+0\s+(\d+)\s+(\S+)\s+(\S+)\s+(\d+)MiB \|$", capture, re.M)
    assert len(rows) == 4
    on_a100 = {"1": 2, "2": 9}  # the guide's GI 1 and 2 -> GIs of the SSUP2 layout
    processes = tuple(mig_facts.Process(pid=int(pid), name=name, type=kind, used_memory_mib=int(mib),
                                        gi=on_a100[gi], ci=0) for gi, pid, kind, name, mib in rows)
    facts = host_facts(fixtures_dir, processes=processes)

    class Out:
        def __init__(self, stdout: str) -> None:
            self.stdout, self.stderr, self.exit_code = stdout, "", 0

    listing = "".join(
        f"@@device {inst}\nGPUPROV_MPS_GPU=0\nGPUPROV_MPS_MIG_START={start}\nGPUPROV_MPS_MIG_RANK=0\n"
        f"CUDA_MPS_PIPE_DIRECTORY=/run/nvidia-mps/{inst}\n@@unit\nActiveState=active\n"
        for inst, start in (("gpu0-mig0", 0), ("gpu0-mig6", 6), ("gpu0-mig4-ci1", 4)))
    got = f.gather({"mps.daemons": Out(listing)}, facts)["mps"]["daemons"]
    assert [(d["instance"], [c["pid"] for c in d["clients"]], d["server_processes"]) for d in got] == [
        ("gpu0-mig0", [3805], [3809]), ("gpu0-mig6", [3817], [3819]), ("gpu0-mig4-ci1", [], [])]
