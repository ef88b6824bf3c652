"""Broken inventories and playbooks through the real CLI: exit 1, ``file:line`` first, never a traceback.

The corpus lives in ``tests/data/bad/``: one case per file (or per directory, for ``group_vars``/``host_vars``
mistakes), whose wrong file carries its expectation as a first-line comment ``# expect: LINE[:COL]: fragment``.
Inventories go through ``gpuprov inventory --list``, playbooks through ``gpuprov plan`` against ``hosts.ini``
(local hosts, so a playbook that does load is only planned on this machine) with the ``steps`` test plugin.

A hypothesis test then mutates valid files (lines deleted, duplicated, swapped, re-indented; bad characters and
bytes inserted) and asserts the CLI either accepts the result (exit 0 or 2) or rejects it with exit 1 and a
``file:line:`` message, and never prints a traceback or an internal error.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpuprov.cli import main

DATA = Path(__file__).resolve().parents[1] / "data"
BAD = DATA / "bad"
STEPS_PLUGIN = DATA / "plugins" / "steps"
HOSTS = BAD / "hosts.ini"
EXPECT = re.compile(r"^# expect: (\d+(?::\d+)?): (.+)$")
LOCATED = re.compile(r"^(\S+?):(\d+)(?::\d+)?: \S")


@dataclass(frozen=True)
class Case:
    """One broken input: what to run, and where and what the error must say."""

    name: str
    argv: tuple[str, ...]
    wrong_file: Path
    where: str
    fragment: str


def _expectation(path: Path) -> tuple[Path, str, str] | None:
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        first = f.read_bytes().split(b"\n", 1)[0].decode("utf-8", errors="replace")
        m = EXPECT.match(first)
        if m:
            return f, m.group(1), m.group(2)
    return None


def _cases() -> list[Case]:
    cases = []
    for entry in sorted((BAD / "inventory").iterdir()):
        found = _expectation(entry)
        assert found, f"{entry}: no '# expect: LINE: fragment' first line"
        cases.append(Case(f"inventory/{entry.name}", ("inventory", "-i", str(entry), "--list"), *found))
    for entry in sorted((BAD / "playbook").iterdir()):
        found = _expectation(entry)
        assert found, f"{entry}: no '# expect: LINE: fragment' first line"
        cases.append(Case(f"playbook/{entry.name}", ("plan", "-i", str(HOSTS), str(entry), "--plugin",
                                                     "gpuprov_steps"), *found))
    return cases


CASES = _cases()


@pytest.fixture
def steps_plugin(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The ``steps`` test plugin importable, and a scratch working directory (retry files land there)."""
    monkeypatch.syspath_prepend(str(STEPS_PLUGIN))
    monkeypatch.chdir(tmp_path)


def run_cli(argv: list[str] | tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``gpuprov ARGV`` in this process, through the same entry point as the installed command."""
    capsys.readouterr()
    try:
        main(list(argv))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    else:  # pragma: no cover - main always exits
        code = 0
    out, err = capsys.readouterr()
    return code, out, err


def test_the_corpus_is_large_and_covers_every_kind_of_mistake() -> None:
    assert len(CASES) >= 30, len(CASES)
    names = " ".join(c.name for c in CASES)
    for kind in ("yaml-syntax", "unknown-key", "setting-type", "unknown-group", "unknown-section", "range",
                 "serial", "jinja", "not-utf8", "gv-", "hv-"):
        assert kind in names, f"no case of {kind}"


@pytest.mark.usefixtures("steps_plugin")
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_broken_input_is_located_and_explained(case: Case, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(case.argv, capsys)
    assert code == 1, (code, out, err)
    assert "Traceback" not in out + err and "internal error" not in out + err, out + err
    first = err.splitlines()[0] if err else ""
    assert first.startswith(f"{case.wrong_file}:{case.where}:"), first
    assert case.fragment in err, err
    assert not list(Path.cwd().glob("*.retry")), "bad input must stop the run before any host is worked on"


def test_the_installed_command_reports_without_a_traceback(tmp_path: Path) -> None:
    """A few cases through a real ``python -m gpuprov`` process: stderr, exit code and nothing else."""
    env = {"PYTHONPATH": str(STEPS_PLUGIN), "PATH": "/usr/bin:/bin"}
    picked = [c for c in CASES if c.name in ("inventory/ini-not-utf8.ini", "playbook/jinja-undefined.yml",
                                             "playbook/unknown-group.yml", "inventory/yaml-children-list.yml")]
    assert len(picked) == 4
    for case in picked:
        proc = subprocess.run([sys.executable, "-m", "gpuprov", *case.argv], capture_output=True, text=True,
                              cwd=tmp_path, env=env, timeout=60)
        assert proc.returncode == 1, proc
        assert proc.stderr.startswith(f"{case.wrong_file}:{case.where}:"), proc.stderr
        assert "Traceback" not in proc.stderr + proc.stdout


# ------------------------------------------------------------------------------------------- mutations

BAD_TEXT = [":", "[", "]", "{", "}", "{{", "}}", "{%", '"', "'", "\t", "%", "&", "*", "!", "|", ">", "-", "#",
            "=", ",", "\\", "\x00", "\u00e9", "@", "`", "$(touch owned)", "; reboot", " ", "\n", "&a ", "*a", "<<: *a",
            "!!python/object ", "---", "? ", "null", "[1:0]", "{{ x }}", "{{ 1/0 }}"]


@st.composite
def mutated(draw: st.DrawFn, text: str) -> bytes:
    """``text`` with one to three random edits of the kinds people make by hand."""
    lines = text.split("\n")
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, max(0, len(lines) - 1)))
        kind = draw(st.sampled_from(["delete", "duplicate", "swap", "indent", "dedent", "insert"]))
        if kind == "delete" and len(lines) > 1:
            del lines[i]
        elif kind == "duplicate":
            lines.insert(i, lines[i])
        elif kind == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif kind == "indent":
            lines[i] = " " * draw(st.integers(1, 4)) + lines[i]
        elif kind == "dedent":
            lines[i] = lines[i][draw(st.integers(1, 4)):]
        else:
            pos = draw(st.integers(0, len(lines[i])))
            bad = draw(st.sampled_from(BAD_TEXT))
            lines[i] = lines[i][:pos] + bad + lines[i][pos:]
    data = "\n".join(lines).encode()
    if draw(st.integers(0, 9)) == 0:  # now and then a byte that is not UTF-8
        pos = draw(st.integers(0, len(data)))
        data = data[:pos] + b"\xff" + data[pos:]
    return data


def _check_outcome(code: int, out: str, err: str) -> None:
    assert "Traceback" not in out + err, out + err
    assert "internal error" not in out + err, out + err
    if code == 1:
        first = err.splitlines()[0] if err.strip() else ""
        m = LOCATED.match(first)
        assert m and int(m.group(2)) >= 1, f"exit 1 without a file:line: message first:\n{err}"
    else:
        assert code in (0, 2), (code, out, err)


PLAYBOOK_SEED = (BAD / "seeds" / "site.yml").read_text()
INVENTORY_SEEDS = {
    "groupvars_dirs/hosts": DATA / "inventories" / "groupvars_dirs",
    "groupvars_dirs/group_vars/all.yml": DATA / "inventories" / "groupvars_dirs",
    "yaml/inventory.yaml": DATA / "inventories" / "yaml",
    "ranges/hosts": DATA / "inventories" / "ranges",
    "nested/hosts.yml": DATA / "inventories" / "nested",
}


@pytest.mark.usefixtures("steps_plugin")
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=mutated(PLAYBOOK_SEED))
def test_mutated_playbooks_never_crash(data: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "site.yml"
    path.write_bytes(data)
    code, out, err = run_cli(["plan", "-i", str(HOSTS), str(path), "--plugin", "gpuprov_steps"], capsys)
    _check_outcome(code, out, err)


@pytest.mark.parametrize("seed", sorted(INVENTORY_SEEDS))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_inventories_never_crash(seed: str, data: st.DataObject, tmp_path_factory: pytest.TempPathFactory,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    source = INVENTORY_SEEDS[seed]
    work = tmp_path_factory.mktemp("inv") / source.name
    shutil.copytree(source, work)
    target = work / seed.split("/", 1)[1]
    target.write_bytes(data.draw(mutated(target.read_text())))
    inventory = work / "hosts" if "group_vars" in seed else target  # a vars file is read beside its inventory
    code, out, err = run_cli(["inventory", "-i", str(inventory), "--list"], capsys)
    _check_outcome(code, out, err)
