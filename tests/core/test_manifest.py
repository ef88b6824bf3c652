"""A file a person edited since gpuprov wrote it is kept as a backup, and the plan says so (``gpuprov.manifest``),
on simulated hosts through the ``gpuprov`` command; ``tests/e2e/test_faults.py`` does the same over SSH."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_bad_input import run_cli

from gpuprov.manifest import backup_path, guard, parse_probe, probe_command, sha256
from gpuprov.plan import Change, Step
from gpuprov.sim.host import SimHost

DIR = "/etc/gpuprov-steps"


@pytest.fixture
def rack(steps_rack: Path) -> Path:
    """Two simulated hosts and the steps plugin alone; returns the directory holding inventory and playbook."""
    return steps_rack


def play(rack: Path, content: str) -> list[str]:
    (rack / "site.yml").write_text(f"- hosts: all\n  steps: {{dir: {DIR}, names: [a, b], mode: file-only, "
                                   f"content: {content!r}}}\n")
    return ["-i", str(rack / "hosts"), str(rack / "site.yml"), "--plugin", "gpuprov_steps"]


def on_host(rack: Path, host: str, path: str) -> Path:
    return SimHost(rack / host).path(path)


def test_an_edited_file_is_kept_and_the_plan_says_so(rack: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(["apply", *play(rack, "v1")], capsys)
    assert code == 0, out + err
    manifest = on_host(rack, "n1", "/var/lib/gpuprov/manifest").read_text()
    v1, v2 = sha256("v1\n"), sha256("v2\n")
    assert manifest == f"{v1}  {DIR}/a\n{v1}  {DIR}/b\n"

    edited = "v1\n# hand fix on n1 at 3 a.m.\n"
    on_host(rack, "n1", f"{DIR}/a").write_text(edited)
    code, out, err = run_cli(["plan", *play(rack, "v2")], capsys)
    assert code == 2, out + err
    kept = backup_path(f"{DIR}/a", sha256(edited))
    assert kept == f"/var/lib/gpuprov/backup{DIR}/a.{sha256(edited)[:12]}"
    assert f"! warning: {DIR}/a was edited since gpuprov wrote it: the current file is kept as {kept}" in out
    assert f"- keep {DIR}/a as {kept}" in out
    assert out.count("keep ") == 1, out  # b, and n2's a, were not edited: replaced without a backup

    code, out, err = run_cli(["apply", *play(rack, "v2")], capsys)
    assert code == 0, out + err
    assert on_host(rack, "n1", kept).read_text() == edited
    assert on_host(rack, "n1", f"{DIR}/a").read_text() == "v2\n"
    assert not on_host(rack, "n2", "/var/lib/gpuprov/backup").exists()
    assert f"{v2}  {DIR}/a\n" in on_host(rack, "n1", "/var/lib/gpuprov/manifest").read_text()

    code, out, err = run_cli(["plan", *play(rack, "v3")], capsys)
    assert code == 2 and "keep " not in out and "warning" not in out, out  # gpuprov's own file: no backup


def test_an_edit_after_plan_out_makes_apply_refuse(rack: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["apply", *play(rack, "v1")], capsys)[0] == 0
    code, out, err = run_cli(["plan", *play(rack, "v2"), "--out", "change.json"], capsys)
    assert code == 2 and "keep " not in out
    on_host(rack, "n2", f"{DIR}/b").write_text("edited after the review\n")
    code, out, err = run_cli(["apply", "-i", str(rack / "hosts"), "change.json", "--plugin", "gpuprov_steps"],
                             capsys)
    assert code == 1
    assert "n2: failed" in out and "facts changed since the plan was made" in out, out
    assert on_host(rack, "n2", f"{DIR}/b").read_text() == "edited after the review\n"
    assert on_host(rack, "n1", f"{DIR}/b").read_text() == "v2\n"  # n1 had not drifted


def test_a_file_there_before_gpuprov_is_kept_when_its_content_is_known() -> None:
    step = Step.write("/etc/x.conf", "new\n", before="theirs\n")
    (change,) = guard([Change("p/x", "x", steps=(step,))], {})
    kept = backup_path("/etc/x.conf", sha256("theirs\n"))
    assert [s.label() for s in change.steps] == [f"keep /etc/x.conf as {kept}", "write /etc/x.conf (mode 0644)"]
    assert change.warnings == (f"/etc/x.conf was not written by gpuprov: the current file is kept as {kept}",)
    unknown = Step.write("/etc/y.conf", "new\n")  # content not reported by the plugin: nothing to judge
    assert guard([Change("p/y", "y", steps=(unknown,))], {})[0].steps == (unknown,)


@given(st.dictionaries(st.from_regex(r"/[a-z0-9 ._/-]{1,30}", fullmatch=True), st.binary(max_size=64),
                       max_size=5), st.sets(st.integers(0, 4)))
def test_the_probe_reads_back_what_was_recorded(files: dict[str, bytes], edited: set[int]) -> None:
    """The probe on a real shell: every recorded file with its current hash, missing ones as such."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as root:
        lines, expected = [], {}
        for i, (name, data) in enumerate(sorted(files.items())):
            path = root + name.rstrip("/") + f".{i}"
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_bytes(data)
            lines.append(f"{sha256(data)}  {path}\n")
            current: str | None = sha256(data)
            if i in edited:
                Path(path).write_bytes(data + b"!")
                current = sha256(data + b"!")
            expected[path] = {"recorded": sha256(data), "current": current}
        lines.append(f"{'0' * 64}  {root}/gone\n")
        expected[f"{root}/gone"] = {"recorded": "0" * 64, "current": None}
        Path(root, "manifest").write_text("".join(lines))
        out = subprocess.run(["sh", "-c", probe_command(f"{root}/manifest")], capture_output=True, text=True,
                             check=True).stdout
        assert parse_probe(out) == expected


def test_the_control_node_keeps_its_manifest_with_the_users_state(monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    from gpuprov.inventory import Host
    from gpuprov.manifest import manifest_path

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert manifest_path(Host("me", {"ansible_connection": "local"}, ("all",))) == f"{tmp_path}/gpuprov/manifest"
    assert manifest_path(Host("n1", {}, ("all",))) == "/var/lib/gpuprov/manifest"
    assert manifest_path(Host("n1", {"gpuprov_manifest": "/srv/m"}, ("all",))) == "/srv/m"
    assert backup_path("/etc/a", "ab" * 32, "/srv/m") == f"/srv/backup/etc/a.{'ab' * 6}"
