"""A host in several plays, through the ``gpuprov`` command on simulated hosts: every play's changes are kept in
the plan and the recap, and a host that failed in one play sits out the later ones (as in Ansible)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_bad_input import run_cli

from gpuprov.sim.host import SimHost


@pytest.fixture
def rack(steps_rack: Path) -> Path:
    tmp_path = steps_rack
    (tmp_path / "host_vars").mkdir()
    (tmp_path / "host_vars" / "n2.yml").write_text("first_fail: [a]\n")
    (tmp_path / "site.yml").write_text("""\
- name: first
  hosts: all
  steps: {dir: /etc/one, names: [a], fail: "{{ first_fail | default([]) }}"}
- name: second
  hosts: all
  steps: {dir: /etc/two, names: [b]}
""")
    return tmp_path


def test_every_plays_changes_are_planned(rack: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(["plan", "-i", "hosts", "site.yml", "--plugin", "gpuprov_steps"], capsys)
    assert code == 2, out + err
    assert "Plan: 4 change(s) on 2 of 2 host(s)." in out, out
    assert out.count("+ steps/a") == 1 and out.count("+ steps/b") == 1  # both hosts alike: one folded block


def test_a_host_that_failed_sits_out_the_later_plays(rack: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(["apply", "-i", "hosts", "site.yml", "--plugin", "gpuprov_steps"], capsys)
    assert code == 1, out + err
    assert "n2: failed: steps/a:" in out and "steps-tool: device busy" in out, out
    assert SimHost(rack / "n1").path("/etc/two/b").read_text() == "done\n"
    assert not SimHost(rack / "n2").path("/etc/two").exists()  # the second play never touched n2
    assert (rack / "site.retry").read_text() == "n2\n"
