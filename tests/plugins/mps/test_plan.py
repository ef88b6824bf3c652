"""Planning on facts built from real captures (see ``captures``), through the plugin façade as the runner calls
it: the MIG plugin plans first, the MPS plugin plans against what MIG leaves, then ``gpuprov_plan_modifychanges``
orders MPS's releases before the MIG changes that need them.

The MPS facts here are what the plugin's probes print on a host whose daemons gpuprov started (one record per
environment file); they are produced by the real renderer, so a plan is empty exactly when the host is as asked.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from gpuprov_mig import facts as mig_facts
from gpuprov_mps.devices import host_devices, select
from gpuprov_mps.plan import plan_host, render_env, render_files
from gpuprov_mps.schema import SCHEMA

from gpuprov.errors import GpuprovError
from gpuprov.inventory import Host
from gpuprov.plan import Disruption
from gpuprov.plugins import Plugins
from gpuprov.render import Templates

from .captures import MIG_UUIDS, WHOLE, host_facts


@pytest.fixture(scope="module")
def plugins() -> Plugins:
    return Plugins.load()


@pytest.fixture
def templates(plugins: Plugins) -> Templates:
    return Templates(plugins.template_dirs())


def mps_settings(**values: Any) -> dict[str, Any]:
    out = SCHEMA.defaults()
    out.update(values)
    return out


def running(facts: dict[str, Any], templates: Templates, settings: dict[str, Any], *,
            bound: dict[str, str] | None = None, percentage: float | None = None) -> dict[str, Any]:
    """``facts`` plus the MPS facts of a host where gpuprov runs a daemon for each device ``settings`` select."""
    facts = copy.deepcopy(facts)
    devices = select(host_devices(facts), settings["devices"], [g["index"] for g in facts["gpus"]
                                                                if g["mig_current"]])
    files = render_files("node01", settings, templates).by_key()
    daemons = []
    for d in devices:
        env = render_env("node01", d, settings, templates)
        daemons.append({
            "instance": d.instance, "env_text": env, "env": dict(
                line.split("=", 1) for line in env.splitlines() if "=" in line and not line.startswith("#")),
            "unit": {"active": "active", "sub": "running", "enabled": "enabled", "load": "loaded", "main_pid": 4100},
            "answers": True, "servers": [],
            "active_thread_percentage": percentage if percentage is not None else
            float(settings.get("active_thread_percentage") or 100),
            "pinned_mem_limit": settings.get("pinned_mem_limit"),
            "bound_uuid": (bound or {}).get(d.name, d.uuid),
        })
    facts["mps"] = {"files": files, "target": {"enabled": "enabled", "active": "inactive"}, "daemons": daemons,
                    "default_daemon": False}
    if settings.get("compute_mode") == "exclusive":
        for g in facts["gpus"]:
            if not g["mig_current"]:
                g["compute_mode"] = "Exclusive_Process"
    return facts


def run_plan(plugins: Plugins, templates: Templates, facts: dict[str, Any], **sections: Any) -> list[Any]:
    planned = copy.deepcopy(facts)
    return plugins.plan(Host("node01", {}), facts, sections, planned, templates)


def ids(changes: list[Any]) -> list[str]:
    return [c.id for c in changes]


def runs(change: Any) -> list[str]:
    """A change's commands, by their description where they have one (start/restart carry the journal tail)."""
    return [s.description or s.command for s in change.steps if s.kind == "run"]


def no_mps(fixtures: Path) -> dict[str, Any]:
    facts = host_facts(fixtures)
    facts["mps"] = {"files": {"unit": None, "target": None, "helper": None, "wrapper": None},
                    "target": {"enabled": "", "active": ""}, "daemons": [], "default_daemon": False}
    return facts


def test_host_as_asked_plans_nothing(plugins: Plugins, templates: Templates, fixtures_dir: Path) -> None:
    settings = mps_settings(active_thread_percentage=50, pinned_mem_limit="4096M")
    facts = running(host_facts(fixtures_dir), templates, settings)
    assert run_plan(plugins, templates, facts, mps=settings) == []


def test_a_fresh_host_gets_files_then_a_daemon_per_device(plugins: Plugins, templates: Templates,
                                                         fixtures_dir: Path) -> None:
    changes = run_plan(plugins, templates, no_mps(fixtures_dir), mps=mps_settings())
    assert ids(changes) == ["mps/files", "mps/daemon/gpu0-mig0", "mps/daemon/gpu0-mig4-ci0",
                            "mps/daemon/gpu0-mig4-ci1", "mps/daemon/gpu0-mig6", "mps/daemon/gpu1"]
    assert all(c.disruption is Disruption.NONE and c.blocked is None for c in changes)
    env = changes[-1].steps[0]
    assert env.path == "/etc/gpuprov/mps/gpu1.env"
    assert "GPUPROV_MPS_COMPUTE_MODE=EXCLUSIVE_PROCESS\n" in env.content
    assert f"GPUPROV_MPS_GPU_UUID={WHOLE.uuid}\n" in env.content
    mig_env = changes[1].steps[0].content
    assert "GPUPROV_MPS_COMPUTE_MODE=\n" in mig_env  # MIG devices have no compute mode
    assert "MIG-" not in mig_env  # a MIG device's UUID is looked up when the daemon starts, never frozen here


def test_a_changed_limit_restarts_gpu_idle_and_clients_block_it(plugins: Plugins, templates: Templates,
                                                               fixtures_dir: Path) -> None:
    client = mig_facts.Process(pid=3805, name="./bin/BlackScholes", type="M+C", used_memory_mib=326, gi=2, ci=0)
    server = mig_facts.Process(pid=3809, name="nvidia-cuda-mps-server", type="C", used_memory_mib=60, gi=2, ci=0)
    facts = running(host_facts(fixtures_dir, processes=(client, server)), templates,
                    mps_settings(active_thread_percentage=50))
    changes = {c.id: c for c in run_plan(plugins, templates, facts, mps=mps_settings(active_thread_percentage=25))}
    assert sorted(changes) == ["mps/daemon/gpu0-mig0", "mps/daemon/gpu0-mig4-ci0", "mps/daemon/gpu0-mig4-ci1",
                               "mps/daemon/gpu0-mig6", "mps/daemon/gpu1"]
    busy = changes["mps/daemon/gpu0-mig0"]
    assert busy.disruption is Disruption.GPU_IDLE
    assert busy.blocked == ("node01: gpu0/mig@0: PID 3805 (BlackScholes) are clients of its MPS daemon; a restart "
                            "cuts them off: let them finish or use --force")
    assert runs(busy) == ["restart nvidia-mps@gpu0-mig0.service (gpu0/mig@0)"]
    idle = changes["mps/daemon/gpu0-mig6"]
    assert idle.blocked is None and idle.disruption is Disruption.GPU_IDLE


def test_forgotten_defaults_are_sent_again_without_a_restart(plugins: Plugins, templates: Templates,
                                                            fixtures_dir: Path) -> None:
    settings = mps_settings(devices=[1], active_thread_percentage=25)
    facts = running(host_facts(fixtures_dir), templates, settings, percentage=100.0)
    (change,) = run_plan(plugins, templates, facts, mps=settings)
    assert change.disruption is Disruption.NONE
    assert [s.command for s in change.steps] == [
        "/usr/local/libexec/gpuprov/mps-device ready /etc/gpuprov/mps/gpu1.env"]
    assert runs(change) == ["set the defaults of the daemon for gpu1 again"]


def test_a_daemon_bound_to_a_gone_uuid_is_restarted(plugins: Plugins, templates: Templates,
                                                   fixtures_dir: Path) -> None:
    settings = mps_settings(devices=["gpu0/mig@6"])
    stale = "MIG-00000000-1111-2222-3333-444444444444"
    facts = running(host_facts(fixtures_dir), templates, settings, bound={"gpu0/mig@6": stale})
    (change,) = run_plan(plugins, templates, facts, mps=settings)
    assert change.summary == (f"MPS daemon for gpu0/mig@6 (1g.5gb): bound to {stale}, the device is now "
                              f"{MIG_UUIDS[(9, 0)]}")


def test_mig_re_creating_a_device_releases_its_daemon_first(plugins: Plugins, templates: Templates,
                                                           fixtures_dir: Path) -> None:
    """The 2g at slice 4 (two compute instances) becomes two 1g at 4 and 5: both daemons of the 2g are stopped
    before ``mig/gpu0``; the one whose name lives on (gpu0/mig@4 is a new device) starts after it."""
    settings = mps_settings(devices="mig")
    facts = running(host_facts(fixtures_dir), templates, settings)
    mig = {"layout": ["4g.20gb@0", "1g.5gb@4", "1g.5gb@5", "1g.5gb@6"], "reset": "auto", "services": None,
           "boot_unit": False, "enabled": True, "devices": None, "mig_parted_config": None, "config": None}
    changes = run_plan(plugins, templates, facts, mig=mig, mps=settings)
    order = ids(changes)
    assert order.index("mps/daemon/gpu0-mig4-ci0") < order.index("mig/gpu0")
    assert order.index("mps/daemon/gpu0-mig4-ci1") < order.index("mig/gpu0")
    assert order.index("mig/gpu0") < order.index("mps/daemon/gpu0-mig4") < order.index("mps/daemon/gpu0-mig5")
    removed = {c.id: c for c in changes}["mps/daemon/gpu0-mig4-ci0"]
    assert removed.summary == ("remove the MPS daemon for gpu0/mig@4/ci0 (the MIG changes of this play remove the "
                               "device)")
    assert "mps/daemon/gpu0-mig0" not in order and "mps/daemon/gpu0-mig6" not in order  # untouched devices


def test_whole_gpu_daemon_stops_before_mig_mode_goes_on(plugins: Plugins, templates: Templates,
                                                       fixtures_dir: Path) -> None:
    settings = mps_settings(devices="all")
    facts = running(host_facts(fixtures_dir), templates, settings)
    mig = {"layout": None, "reset": "auto", "services": None, "boot_unit": False, "enabled": True,
           "devices": {1: "all-enabled"}, "mig_parted_config": None, "config": None}
    changes = run_plan(plugins, templates, facts, mig=mig, mps=settings)
    order = ids(changes)
    assert order.index("mps/daemon/gpu1") < order.index("mig/mode/gpu1")
    removal = {c.id: c for c in changes}["mps/daemon/gpu1"]
    assert [s.command for s in removal.steps if s.kind == "run"] == [
        "systemctl stop nvidia-mps@gpu1.service", "systemctl disable nvidia-mps@gpu1.service",
        "nvidia-smi -i 1 -c DEFAULT"]  # while the GPU is whole: EXCLUSIVE_PROCESS does not apply to MIG devices


def test_mps_off_removes_daemons_restores_default_then_the_files(plugins: Plugins, templates: Templates,
                                                                fixtures_dir: Path) -> None:
    facts = running(host_facts(fixtures_dir), templates, mps_settings())
    changes = run_plan(plugins, templates, facts, mps=mps_settings(enabled=False))
    assert ids(changes)[-1] == "mps/files"
    gpu1 = {c.id: c for c in changes}["mps/daemon/gpu1"]
    assert [s.command for s in gpu1.steps if s.kind == "run"] == [
        "systemctl stop nvidia-mps@gpu1.service", "systemctl disable nvidia-mps@gpu1.service",
        "nvidia-smi -i 1 -c DEFAULT"]
    assert [s.path for s in changes[-1].steps if s.kind == "remove"] == [
        "/etc/systemd/system/nvidia-mps@.service", "/etc/systemd/system/gpuprov-mps.target",
        "/usr/local/libexec/gpuprov/mps-device", "/usr/local/bin/mps-run"]


def test_a_daemon_of_another_user_warns_that_clients_will_wait(plugins: Plugins, templates: Templates,
                                                              fixtures_dir: Path) -> None:
    changes = run_plan(plugins, templates, no_mps(fixtures_dir), mps=mps_settings(devices=[1], user="svc"))
    assert any("jobs of any other user connect and then wait forever" in w for w in changes[0].warnings)
    assert "User=svc" in changes[0].steps[2].content.splitlines()


@pytest.mark.parametrize(("values", "key", "message"), [
    ({"multiuser": True, "user": "svc"}, "multiuser", "multi-user MPS needs a daemon running as root"),
    ({"pinned_mem_limit": "10GB"}, "pinned_mem_limit", "an integer and G or M"),
    ({"pipe_dir": "/run/nvidia-mps"}, "pipe_dir", "must contain {device}"),
    ({"pipe_dir": "/run/my dir/{device}"}, "pipe_dir", "use an absolute path"),
    ({"devices": "some"}, "devices", "use gpus, mig, all, or a list"),
])
def test_settings_rules(values: dict[str, Any], key: str, message: str) -> None:
    assert SCHEMA.check is not None
    problems = SCHEMA.check(mps_settings(**values))
    assert any(k == key and message in m for k, m in problems), problems


def test_unknown_device_is_an_error_naming_the_host(plugins: Plugins, templates: Templates,
                                                    fixtures_dir: Path) -> None:
    with pytest.raises(GpuprovError, match=r"^node01: mps.devices: 'gpu3' names no device"):
        plan_host("node01", no_mps(fixtures_dir), mps_settings(devices=["gpu3"]), no_mps(fixtures_dir), templates)


def test_a_unit_whose_install_section_changed_is_enabled_again(plugins: Plugins, templates: Templates,
                                                              fixtures_dir: Path) -> None:
    """An older unit was wanted by gpuprov-mps.target; the links ``enable`` made must follow the new [Install]."""
    settings = mps_settings(devices=[1])
    facts = running(host_facts(fixtures_dir), templates, settings)
    facts["mps"]["files"]["unit"] = facts["mps"]["files"]["unit"].replace(
        "WantedBy=multi-user.target", "WantedBy=gpuprov-mps.target")
    changes = {c.id: c for c in run_plan(plugins, templates, facts, mps=settings)}
    assert runs(changes["mps/daemon/gpu1"]) == [
        "systemctl disable nvidia-mps@gpu1.service", "systemctl enable nvidia-mps@gpu1.service",
        "restart nvidia-mps@gpu1.service (gpu1)"]
    assert changes["mps/daemon/gpu1"].summary == "MPS daemon for gpu1: unit or helper changed"


def test_a_daemon_that_does_not_answer_is_restarted(plugins: Plugins, templates: Templates,
                                                   fixtures_dir: Path) -> None:
    settings = mps_settings(devices=[1])
    facts = running(host_facts(fixtures_dir), templates, settings)
    facts["mps"]["daemons"][0]["answers"] = None  # the probe's front end timed out: a wedged daemon
    (change,) = run_plan(plugins, templates, facts, mps=settings)
    assert change.summary == "MPS daemon for gpu1: its daemon does not answer on /run/nvidia-mps/gpu1"
    assert runs(change) == ["restart nvidia-mps@gpu1.service (gpu1)"]


def test_an_idle_mps_server_on_a_re_created_device_is_explained(plugins: Plugins, templates: Templates,
                                                               fixtures_dir: Path) -> None:
    """The MIG plugin blocks on the server nvidia-smi shows on the 1g.5gb it replaces by a 1g.10gb at the same
    slice; the release that runs first says that stopping that server loses nothing."""
    server = mig_facts.Process(pid=3809, name="nvidia-cuda-mps-server", type="C", used_memory_mib=60, gi=9, ci=0)
    settings = mps_settings(devices=["gpu0/mig@6"])
    facts = running(host_facts(fixtures_dir, processes=(server,)), templates, settings)
    layout = ["4g.20gb@0", {"profile": "2g.10gb", "start": 4, "compute": ["1c.2g.10gb", "1c.2g.10gb"]}, "1g.10gb@6"]
    mig = {"layout": None, "reset": "auto", "services": None, "boot_unit": False, "enabled": True,
           "devices": {0: layout, 1: "all-disabled"}, "mig_parted_config": None, "config": None}
    changes = run_plan(plugins, templates, facts, mig=mig, mps=settings)
    assert ids(changes) == ["mps/release/gpu0-mig6", "mig/gpu0", "mps/daemon/gpu0-mig6"]
    release, mig_change, daemon = changes
    assert mig_change.blocked and "3809" in mig_change.blocked
    assert release.warnings == ("PID 3809 (nvidia-cuda-mps-server) is this daemon's MPS server without clients: the "
                                "MIG change counts it as busy, but this change stops it first, so --force loses no "
                                "work here",)
    assert runs(daemon) == ["restart nvidia-mps@gpu0-mig6.service (gpu0/mig@6)"]


def test_a_mig_daemon_must_run_as_root(plugins: Plugins, templates: Templates, fixtures_dir: Path) -> None:
    with pytest.raises(GpuprovError, match=r"^node01: mps.user: the daemon of a MIG device \(gpu0/mig@0\) must run "
                                           r"as root, not svc: it finds its device's current UUID with nvidia-smi mig"):
        run_plan(plugins, templates, no_mps(fixtures_dir), mps=mps_settings(devices="all", user="svc"))


@pytest.mark.parametrize("values", [
    {"devices": "mig", "active_thread_percentage": 33.5, "pinned_mem_limit": "4096M", "multiuser": True},
    {"devices": [1, "gpu0/mig@6"], "compute_mode": "unchanged", "pipe_dir": "/var/lib/mps/{device}/pipe",
     "stop_timeout": 30},
    {"devices": "gpus", "user": "svc", "compute_mode": "default"},
], ids=["mig-limits", "a-list", "whole-as-a-user"])
def test_export_plans_nothing_on_the_host_it_came_from(plugins: Plugins, templates: Templates, fixtures_dir: Path,
                                                       values: dict[str, Any]) -> None:
    from gpuprov_mps.plan import export_settings

    settings = mps_settings(**values)
    facts = running(host_facts(fixtures_dir), templates, settings)
    for d in facts["mps"]["daemons"]:
        d["unit"]["user"] = settings["user"]
    exported = export_settings(facts)
    assert exported is not None
    assert run_plan(plugins, templates, facts, mps=mps_settings(**exported["mps"])) == []
    assert export_settings(no_mps(fixtures_dir)) is None


def test_planned_names_each_daemon_for_later_plugins(templates: Templates, fixtures_dir: Path) -> None:
    planned = copy.deepcopy(no_mps(fixtures_dir))
    plan_host("node01", no_mps(fixtures_dir), mps_settings(devices=[1, "gpu0/mig@6"]), planned, templates)
    assert planned["mps"]["devices"] == [
        {"name": "gpu0/mig@6", "instance": "gpu0-mig6", "unit": "nvidia-mps@gpu0-mig6.service", "gpu": 0,
         "pipe_dir": "/run/nvidia-mps/gpu0-mig6"},
        {"name": "gpu1", "instance": "gpu1", "unit": "nvidia-mps@gpu1.service", "gpu": 1,
         "pipe_dir": "/run/nvidia-mps/gpu1"}]
    assert "ExecStart=/usr/local/libexec/gpuprov/mps-device start" in planned["mps"]["unit_template"]
