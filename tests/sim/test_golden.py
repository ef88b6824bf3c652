"""Golden tests: the stand-ins, put into a capture's state, print what the real tool printed.

Each case is a YAML file under ``tests/sim/cases/<tool>/``::

    fixture: nvidia-smi/a30_mig_-lgi.txt   # under shared/fixtures
    host: {gpu: "NVIDIA A30", count: 1}    # keyword arguments of gpuprov.sim.presets.new_machine
    setup:                                 # commands run first; each must exit 0 unless listed in allow_fail
      - nvidia-smi -i 0 -mig 1
    command: nvidia-smi mig -lgi           # a string (shlex-split) or a list
    stdin: ""                              # optional
    exit_code: 0                           # expected exit code (default 0)
    stream: stdout                         # stdout | stderr | both (stdout then stderr, as a terminal shows)
    compare: exact                         # exact | lines
    lines: ["^\\|   0  MIG"]               # for compare: lines — only lines matching one of these regexes
    fixture_lines: [3, 12]                 # optional: 1-based inclusive range of the fixture to compare
    state:                                 # optional: state no command can set (a capture's layout, processes)
      machine: {passthrough_vm: true}      #   Machine attributes
      gpus: [{index: 0, mig_current: true, gpu_instances: [{id: 1, profile_id: 9, start: 4, size: 4,
              compute_instances: [{id: 0, profile_id: 2, start: 0, size: 3, uuid: MIG-...}]}]}]
      processes: [{pid: 17480, name: ./saxpy, gpu: 0, gi: 1, ci: 0, used_memory_mib: 8413}]
    indent: ignore                         # for compare: lines — a source that re-indented the text
    mask: ["GPU instance ID( +\\d+)"]        # optional: groups replaced by <id> on both sides — identifiers the
                                           #   driver picks without documenting how (a GI ID within its pool)
    sort: true                             # for compare: lines — order-free (a listing ordered by masked IDs)

Only values that identify one particular card are normalised (UUIDs, serials, bus ids, dates); everything else must
match byte for byte.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpuprov.sim.commands import load_all
from gpuprov.sim.host import SimHost

CASES = Path(__file__).parent / "cases"

_NORMALISE = [
    (re.compile(r"GPU-[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"), "GPU-<uuid>"),
    (re.compile(r"MIG-[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"), "MIG-<uuid>"),
    (re.compile(r"MIG-GPU-<uuid>/\d+/\d+"), "MIG-<uuid>"),
    (re.compile(r"\b[0-9A-Fa-f]{8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-9]\b"), "<busid>"),
    (re.compile(r"\b[0-9A-Fa-f]{4}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-9]\b"), "<busid>"),
    (re.compile(r"^(Timestamp\s*:\s*|<timestamp>).*$", re.M), r"\1<date>"),
    (re.compile(r"^[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4}\s*$", re.M), "<date>"),
    (re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d\.\d{3}(?=, )", re.M), "<date>"),  # --query-* csv timestamp
    (re.compile(r"(Serial Number\s*:\s*|<serial>)\d+"), r"\1<serial>"),
]


def normalise(text: str) -> str:
    for pattern, repl in _NORMALISE:
        text = pattern.sub(repl, text)
    return text


def apply_state(machine: Any, state: dict[str, Any]) -> None:
    """Put a case's direct ``state`` into the machine (see the module docstring)."""
    from gpuprov.sim.machine import ComputeInstance, GpuInstance, Process

    for key, value in (state.get("machine") or {}).items():
        setattr(machine, key, value)
    for spec in state.get("gpus") or []:
        spec = dict(spec)
        gpu = machine.gpu(spec.pop("index"))
        for gi in spec.pop("gpu_instances", None) or []:
            cis = [ComputeInstance(**ci) for ci in gi.get("compute_instances", [])]
            gpu.gpu_instances.append(GpuInstance(**{**gi, "compute_instances": cis}))
        for key, value in spec.items():
            setattr(gpu, key, value)
    machine.processes.extend(Process(**p) for p in state.get("processes") or [])


def mask(pattern: re.Pattern[str], text: str) -> str:
    """``text`` with every group of every match of ``pattern`` replaced by ``<id>``."""

    def repl(m: re.Match[str]) -> str:
        out, pos = [], m.start()
        for g in range(1, (m.lastindex or 0) + 1):
            if m.start(g) >= 0:
                out += [m.string[pos:m.start(g)], "<id>"]
                pos = m.end(g)
        return "".join(out) + m.string[pos:m.end()]

    return pattern.sub(repl, text)


def _cases() -> list[Path]:
    return sorted(CASES.rglob("*.yaml"))


def run(host: SimHost, command: str | list[str], stdin: str = "") -> Any:
    argv = shlex.split(command) if isinstance(command, str) else list(command)
    commands = load_all()
    assert argv[0] in commands, f"no stand-in for {argv[0]}"
    return commands[argv[0]](host, argv, stdin, {})


@pytest.mark.parametrize("case_file", _cases(), ids=lambda p: str(p.relative_to(CASES)))
def test_golden(case_file: Path, fixtures_dir: Path, tmp_path: Path) -> None:
    from gpuprov.sim.presets import new_machine

    case = yaml.safe_load(case_file.read_text())
    expected = _expected(case, fixtures_dir)
    host = SimHost(tmp_path / "host")
    machine = new_machine(**case.get("host", {}))
    apply_state(machine, case.get("state") or {})
    host.save(machine)
    allow_fail = set(case.get("allow_fail", []))
    for step in case.get("setup", []):
        result = run(host, step)
        assert result.exit_code == 0 or step in allow_fail, f"setup {step!r} failed: {result.stdout}{result.stderr}"
    result = run(host, case["command"], case.get("stdin", ""))
    stream = case.get("stream", "stdout")
    actual = {"stdout": result.stdout, "stderr": result.stderr, "both": result.stdout + result.stderr}[stream]
    assert result.exit_code == case.get("exit_code", 0), actual
    _compare(case, case_file, expected, actual)


def _expected(case: dict[str, Any], fixtures_dir: Path) -> str:
    expected = (fixtures_dir / case["fixture"]).read_text()
    if "fixture_lines" in case:
        first, last = case["fixture_lines"]
        expected = "".join(expected.splitlines(keepends=True)[first - 1 : last])
    return expected


def _compare(case: dict[str, Any], case_file: Path, expected: str, actual: str) -> None:
    """The case's comparison of the capture with what the stand-in printed (see the module docstring)."""
    expected, actual = normalise(expected), normalise(actual)
    for pattern in case.get("mask", []):
        expected, actual = (mask(re.compile(pattern, re.M), text) for text in (expected, actual))
    if case.get("compare", "exact") == "lines":
        patterns = [re.compile(p) for p in case["lines"]]

        def keep(text: str) -> list[str]:
            strip = str.strip if case.get("indent") == "ignore" else str.rstrip
            return [strip(line) for line in text.splitlines() if any(p.search(line) for p in patterns)]

        order = sorted if case.get("sort") else list
        assert order(keep(actual)) == order(keep(expected))
        assert keep(expected), f"{case_file.name}: the line patterns match nothing in the fixture"
    else:
        assert actual == expected


_CLI_HOST = {"preset": "--preset", "gpu": "--gpu", "count": "--count", "driver": "--driver",
             "numa_nodes": "--numa-nodes"}


def _replayable(path: Path) -> bool:
    case = yaml.safe_load(path.read_text())
    return (path.parent.name == "nvidia-smi" and not case.get("state") and not case.get("stdin")
            and set(case.get("host", {})) <= set(_CLI_HOST))


@pytest.mark.parametrize("case_file", [p for p in _cases() if _replayable(p)], ids=lambda p: p.stem)
def test_replayed_through_gpuprov_sim(case_file: Path, fixtures_dir: Path, tmp_path: Path) -> None:
    """What a person types: ``gpuprov sim new DIR --gpu ...``, then ``gpuprov sim run DIR -- nvidia-smi ...`` for
    each command of the capture's sequence, prints what the capture shows, with its exit code."""
    from click.testing import CliRunner

    from gpuprov.sim.cli import sim

    case = yaml.safe_load(case_file.read_text())
    runner = CliRunner()
    directory = str(tmp_path / "host")
    options = [part for key, value in case.get("host", {}).items() for part in (_CLI_HOST[key], str(value))]
    made = runner.invoke(sim, ["new", directory, *options])
    assert made.exit_code == 0, made.output
    allow_fail = set(case.get("allow_fail", []))
    for step in case.get("setup", []):
        done = runner.invoke(sim, ["run", directory, "--", *shlex.split(step)])
        assert done.exit_code == 0 or step in allow_fail, f"setup {step!r} failed: {done.output}"
    argv = shlex.split(case["command"]) if isinstance(case["command"], str) else list(case["command"])
    result = runner.invoke(sim, ["run", directory, "--", *argv])
    stream = case.get("stream", "stdout")
    actual = {"stdout": result.stdout, "stderr": result.stderr, "both": result.stdout + result.stderr}[stream]
    assert result.exit_code == case.get("exit_code", 0), actual
    _compare(case, case_file, _expected(case, fixtures_dir), actual)
