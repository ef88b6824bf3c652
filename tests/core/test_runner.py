"""The runner on real local hosts: apply, convergence, failures with the tool's own message, cleanup steps,
serial batches with max_fail_percentage, reboot-required."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest

from gpuprov import hookimpl
from gpuprov.inventory import Inventory, load_inventory
from gpuprov.plan import Change, Disruption, Step
from gpuprov.playbook import Play
from gpuprov.plugins import Plugins
from gpuprov.report import Reporter
from gpuprov.runner import Runner, RunOptions, Status
from gpuprov.schema import Schema, Setting


class FilesPlugin:
    """Keeps ``DIR/<host>`` holding ``content``; behaviour switches let tests provoke each outcome."""

    @hookimpl
    def gpuprov_settings_schema(self) -> Schema:
        return Schema("files", {
            "dir": Setting(str, ""), "content": Setting(str, "v1"), "fail_on": Setting(list, []),
            "never_converges": Setting(bool, False), "reboot": Setting(bool, False),
        })

    @hookimpl
    def gpuprov_probe(self, host: Any, settings: dict) -> dict:
        return {"files.current": f"cat {shlex.quote(settings['dir'] + '/' + host.name)}"}

    @hookimpl
    def gpuprov_facts(self, outputs: dict) -> dict:
        r = outputs["files.current"]
        return {"files": r.stdout if r.exit_code == 0 else None}

    @hookimpl
    def gpuprov_plan(self, host: Any, facts: dict, settings: dict) -> list[Change]:
        path = f"{settings['dir']}/{host.name}"
        if settings["reboot"]:
            return [Change("files/reboot", "needs a reboot", disruption=Disruption.REBOOT)]
        if facts["files"] == settings["content"] and not settings["never_converges"]:
            return []
        steps = [Step.write(path, settings["content"])]
        if host.name in settings["fail_on"]:
            steps.insert(0, Step.run("echo 'nvidia-smi: In use by another client' >&2; exit 3"))
        cleanup = (Step.run(f"touch {shlex.quote(path + '.cleanup')}"),)
        return [Change("files/content", "content", steps=tuple(steps), cleanup=cleanup)]


def make(tmp_path: Path, hosts: int) -> tuple[Inventory, Plugins, Runner]:
    inv_file = tmp_path / "hosts"
    inv_file.write_text(f"[rack]\nh[1:{hosts}] ansible_connection=local\n")
    inventory = load_inventory([inv_file])
    plugins = Plugins()
    plugins.register("files", FilesPlugin())
    plugins._load_schemas()
    return inventory, plugins, Runner(inventory, plugins, Reporter(), RunOptions(forks=3))


def play(tmp_path: Path, **settings: Any) -> Play:
    return Play(name="t", hosts="rack", source="t.yml", sections={"files": {"dir": str(tmp_path), **settings}},
                )


def test_apply_converges_and_a_second_plan_is_empty(tmp_path: Path) -> None:
    inventory, _, runner = make(tmp_path, 4)
    p = play(tmp_path)
    outcomes = runner.run_play(p, inventory.select("rack"), apply=True)
    assert {o.status for o in outcomes.values()} == {Status.CHANGED}
    assert all((tmp_path / f"h{i}").read_text() == "v1" for i in range(1, 5))
    again = runner.run_play(p, inventory.select("rack"), apply=False)
    assert {o.status for o in again.values()} == {Status.OK}


def test_failed_step_reports_the_tools_message_and_runs_cleanup(tmp_path: Path) -> None:
    inventory, _, runner = make(tmp_path, 3)
    outcomes = runner.run_play(play(tmp_path, fail_on=["h2"]), inventory.select("rack"), apply=True)
    assert outcomes["h2"].status is Status.FAILED
    assert "In use by another client" in outcomes["h2"].message and "exited 3" in outcomes["h2"].message
    assert (tmp_path / "h2.cleanup").exists() and not (tmp_path / "h2").exists()
    assert outcomes["h1"].status is outcomes["h3"].status is Status.CHANGED


def test_a_host_that_does_not_converge_fails(tmp_path: Path) -> None:
    inventory, _, runner = make(tmp_path, 1)
    outcomes = runner.run_play(play(tmp_path, never_converges=True), inventory.select("rack"), apply=True)
    assert outcomes["h1"].status is Status.FAILED
    assert outcomes["h1"].message.startswith("did not converge")


def test_reboot_only_changes_end_reboot_required(tmp_path: Path) -> None:
    inventory, _, runner = make(tmp_path, 1)
    outcomes = runner.run_play(play(tmp_path, reboot=True), inventory.select("rack"), apply=True)
    assert outcomes["h1"].status is Status.REBOOT_REQUIRED


@pytest.mark.parametrize(("serial", "max_fail", "fail_on", "worked"), [
    ([1], 0, ["h1"], ["h1"]),  # the first batch fails: the rolling run stops there
    ([2], 50, ["h1"], ["h1", "h2", "h3", "h4", "h5", "h6"]),  # 1 of 2 is not more than 50%
    (["50%"], 10, ["h4"], ["h1", "h2", "h3", "h4", "h5", "h6"]),  # the last batch failed: nothing left anyway
    ([1, 2], 0, ["h3"], ["h1", "h2", "h3"]),
])
def test_serial_batches_and_max_fail_percentage(tmp_path: Path, serial: list, max_fail: int, fail_on: list,
                                                worked: list) -> None:
    inventory, _, runner = make(tmp_path, 6)
    p = play(tmp_path, fail_on=fail_on)
    p.serial, p.max_fail_percentage = serial, max_fail
    outcomes = runner.run_play(p, inventory.select("rack"), apply=True)
    assert sorted(outcomes) == worked


def test_detect_runs_the_probes_the_play_needs(tmp_path: Path) -> None:
    """A play's sections and the sections they read (Schema.reads) are detected, nothing else; a plugin that does
    not say what it reads gets every section detected. Plans do not change for it."""
    inv_file = tmp_path / "hosts"
    inv_file.write_text(f"sim1 ansible_connection=sim sim_preset=dgx-a100 sim_state_dir={tmp_path / 's'}\n")
    inventory = load_inventory([inv_file])
    plugins = Plugins.load()
    host = inventory.hosts["sim1"]

    def sections(settings: dict) -> set[str]:
        return {name.split(".")[0] for name in plugins.probe(host, settings)}

    assert sections({"mig": {}}) == {"mig"}
    assert sections({"mps": {}}) == {"mig", "mps"}
    assert sections({"numa": {}}) == {"mig", "mps", "numa"}
    runner = Runner(inventory, plugins, Reporter(), RunOptions())
    mig = {"mig": {**plugins.schemas["mig"].defaults(), "layout": "all-balanced"}}
    everything = {s: sch.defaults() for s, sch in plugins.schemas.items()} | mig
    few, full = runner.detect(host, mig), runner.detect(host, everything)
    assert set(few) < set(full) and "numa" in full and "numa" not in few
    assert few["mig"] == full["mig"]
    assert runner.plan_host(host, few, mig).changes == runner.plan_host(host, full, mig).changes

    class Reader:  # a third-party plugin reading others' facts without saying so
        @hookimpl
        def gpuprov_settings_schema(self) -> Schema:
            return Schema("reader", {})

    plugins.register("reader", Reader())
    plugins._load_schemas()
    assert sections({"reader": {}}) == {"mig", "mps", "numa"}
