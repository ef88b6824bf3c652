"""The connection interface: one-round-trip batching, atomic writes, and the local transport."""

from __future__ import annotations

import os
from pathlib import Path

from gpuprov.connection.base import parse_batch
from gpuprov.connection.local import LocalConnection
from gpuprov.inventory import Host


def local_host() -> Host:
    return Host("localhost", {"ansible_connection": "local"}, ("all", "ungrouped"))


def test_run_batch_keeps_each_commands_output_apart() -> None:
    conn = LocalConnection(local_host())
    results = conn.run_batch({
        "plain": "echo one; echo two",
        "stderr": "echo out; echo err >&2; exit 3",
        "no-newline": "printf abc",
        "fake-frame": "echo 'GPUPROV0000 plain 0'",
        "stdin-closed": "cat",
        "quoted name": "true",
    })
    assert results["plain"].stdout == "one\ntwo\n" and results["plain"].exit_code == 0
    assert (results["stderr"].stdout, results["stderr"].stderr, results["stderr"].exit_code) == ("out\n", "err\n", 3)
    assert results["no-newline"].stdout == "abc"
    assert results["fake-frame"].stdout == "GPUPROV0000 plain 0\n"
    assert results["stdin-closed"].stdout == "" and results["stdin-closed"].exit_code == 0
    assert results["quoted name"].exit_code == 0


def test_a_batch_cut_short_reports_the_probes_that_never_ran() -> None:
    results = parse_batch("\nMARK 0 0\nout\nMARK-err\n", "MARK", ["a", "b"])
    assert results["a"].stdout == "out"
    assert results["b"].exit_code == 255 and "batch ended" in results["b"].stderr


def test_put_is_atomic_and_sets_the_mode(tmp_path: Path) -> None:
    conn = LocalConnection(local_host())
    target = tmp_path / "etc" / "unit.service"
    conn.put(str(target), b"[Unit]\n", mode=0o640)
    assert target.read_bytes() == b"[Unit]\n"
    assert oct(os.stat(target).st_mode & 0o777) == oct(0o640)
    assert [p.name for p in target.parent.iterdir()] == ["unit.service"]  # no temporary file left
    assert conn.get(str(target)) == b"[Unit]\n"
    assert conn.get(str(tmp_path / "missing")) is None
