"""Planning on facts built from real captures: minimal change per GPU, explicit placements, busy instances refused,
disruption by architecture, the boot unit, and ``planned`` for the MPS plugin.

The facts come from the SSUP2 capture session (A100-SXM4-40GB, driver 580.126.09: 4g.20gb at 0:4, a 2g.10gb at 4:2
split into two 1c.2g.10gb, a 1g.5gb at 6:1), parsed by the plugin's own parsers; the GPU record itself (what
``-q -x`` would say) is written out here with the capture's identity.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from gpuprov_mig import facts as f
from gpuprov_mig import gpuprov_template_dirs
from gpuprov_mig.plan import (
    GpuTarget,
    TargetGi,
    boot_files,
    diff_instances,
    export_settings,
    layout_spec_for,
    plan_host,
    resolve_targets,
)

from gpuprov.errors import GpuprovError
from gpuprov.plan import Disruption
from gpuprov.render import Templates

SSUP2 = {
    "lgip": "nvidia-smi/a100-sxm4-40gb-r580_mig_-i_0_-lgip.txt",
    "lgipp": "nvidia-smi/a100-sxm4-40gb_mig_-lgipp.txt",
    "lgi": "nvidia-smi/a100-sxm4-40gb-r580_mig_-i_0_-lgi.txt",
    "lci": "nvidia-smi/a100-sxm4-40gb-r580_mig_-i_0_-lci.txt",
    "list": "nvidia-smi/a100-sxm4-40gb-r580_-L.txt",
}
A100 = f.GpuRecord(index=0, product="NVIDIA A100-SXM4-40GB", architecture="Ampere",
                   uuid="GPU-9e4aeb94-01c0-5173-4811-4ca60f77b3a9", bus_id="00000000:10:1C.0",
                   pci_device_id="0x20B010DE", virtualization="None", mig_capable=True, mig_current=True,
                   mig_pending=True, memory_mib=40960, compute_mode="Default")
RUNNING = {"nvidia-persistenced.service": {"load": "loaded", "active": "active", "enabled": "enabled"},
           "nvidia-dcgm.service": {"load": "loaded", "active": "inactive", "enabled": "disabled"},
           "nvsm.service": {"load": "not-found", "active": "inactive", "enabled": ""}}

# The SSUP2 layout as targets: 4g at 0:4, 2g at 4:2 split in two 1c, 1g at 6:1.
G4 = TargetGi(5, "4g.20gb", 0, 4)
G2_SPLIT = TargetGi(14, "2g.10gb", 4, 2, ("1c.2g.10gb", "1c.2g.10gb"))
G1_AT6 = TargetGi(19, "1g.5gb", 6, 1)


def capture_facts(fixtures: Path, gpu: f.GpuRecord = A100, *, mig_on: bool = True,
                  processes: tuple[f.Process, ...] = (), units: dict[str, Any] | None = None) -> dict[str, Any]:
    def read(key: str) -> str:
        return (fixtures / SSUP2[key]).read_text()

    gpu = replace(gpu, processes=processes)
    if mig_on:
        listings = f.Listings(profiles=f.parse_lgip(read("lgip")), placements=f.parse_lgipp(read("lgipp")),
                              gis=f.parse_lgi(read("lgi")), cis=f.parse_lci(read("lci")),
                              devices=f.parse_gpu_list(read("list")))
    else:
        gpu = replace(gpu, mig_current=False, mig_pending=False)
        listings = f.Listings()
    facts = f.assemble(f.QueryRecord("580.126.09", "13.0", (gpu,)), listings)
    facts["mig"]["units"] = dict(RUNNING if units is None else units)
    facts["mig"]["boot"] = {"unit": None, "script": None, "enabled": None}
    return facts


@pytest.fixture
def templates() -> Templates:
    return Templates(list(gpuprov_template_dirs()))


def plan(facts: dict[str, Any], targets: dict[int, GpuTarget], templates: Templates,
         **settings: Any) -> tuple[list[Any], dict[str, Any]]:
    settings = {"enabled": True, "reset": "auto", "services": None, "boot_unit": True, **settings}
    planned = copy.deepcopy(facts)
    changes = plan_host("node01", facts, settings, planned, templates, targets)
    return changes, planned


def by_id(changes: list[Any]) -> dict[str, Any]:
    return {c.id: c for c in changes}


def commands(change: Any) -> list[str]:
    return [s.command for s in change.steps if s.kind == "run"]


# -- minimal change ----------------------------------------------------------------------------------------------

def test_layout_already_there_changes_nothing_but_the_boot_unit(fixtures_dir: Path, templates: Templates) -> None:
    facts = capture_facts(fixtures_dir)
    changes, planned = plan(facts, {0: GpuTarget(True, (G4, G2_SPLIT, G1_AT6))}, templates)
    assert [c.id for c in changes] == ["mig/boot"]
    assert planned["mig_devices"] == facts["mig_devices"]


def test_only_what_differs_is_destroyed_and_created(fixtures_dir: Path, templates: Templates) -> None:
    """Replacing the 2g by two 1g keeps the 4g and the 1g (and their work) where they are."""
    facts = capture_facts(fixtures_dir)
    wanted = (G4, TargetGi(19, "1g.5gb", 4, 1), TargetGi(19, "1g.5gb", 5, 1), G1_AT6)
    change = by_id(plan(facts, {0: GpuTarget(True, wanted, "4g.20gb, 3 x 1g.5gb")}, templates)[0])["mig/gpu0"]
    assert commands(change) == [
        "nvidia-smi mig -i 0 -dci -ci 0,1 -gi 3",
        "nvidia-smi mig -i 0 -dgi -gi 3",
        "nvidia-smi mig -i 0 -cgi 19:4,19:5 -C",
    ]
    assert change.disruption is Disruption.GPU_IDLE
    assert change.blocked is None
    assert "keep 2" in change.summary


def test_creation_is_largest_first_with_explicit_placements(fixtures_dir: Path, templates: Templates) -> None:
    facts = capture_facts(fixtures_dir, mig_on=True)
    facts["mig"]["gpus"][0]["instances"] = []
    facts["mig_devices"] = []
    wanted = (TargetGi(19, "1g.5gb", 3, 1), TargetGi(14, "2g.10gb", 0, 2), TargetGi(9, "3g.20gb", 4, 4),
              TargetGi(19, "1g.5gb", 2, 1))
    change = by_id(plan(facts, {0: GpuTarget(True, wanted)}, templates)[0])["mig/gpu0"]
    assert commands(change) == [
        "nvidia-smi mig -i 0 -cgi 9:4,14:0,19:2,19:3 -C",  # largest first, one round trip
    ]
    assert change.disruption is Disruption.NONE


def test_compute_instances_change_inside_a_kept_gpu_instance(fixtures_dir: Path, templates: Templates) -> None:
    facts = capture_facts(fixtures_dir)
    wanted = (G4, TargetGi(14, "2g.10gb", 4, 2), G1_AT6)  # the 2g back to its default compute instance
    change = by_id(plan(facts, {0: GpuTarget(True, wanted)}, templates)[0])["mig/gpu0"]
    assert commands(change) == [
        "nvidia-smi mig -i 0 -dci -ci 0 -gi 3",
        "nvidia-smi mig -i 0 -dci -ci 1 -gi 3",
        "nvidia-smi mig -i 0 -gi 3 -cci 2g.10gb",
    ]


def test_split_compute_instances_of_a_new_gpu_instance_use_the_id_the_driver_printed(
        fixtures_dir: Path, templates: Templates) -> None:
    facts = capture_facts(fixtures_dir)
    wanted = (TargetGi(9, "3g.20gb", 0, 4, ("1c.3g.20gb", "2c.3g.20gb")), TargetGi(14, "2g.10gb", 4, 2, ()),
              G1_AT6)
    change = by_id(plan(facts, {0: GpuTarget(True, wanted)}, templates)[0])["mig/gpu0"]
    assert commands(change) == [
        "nvidia-smi mig -i 0 -dci -ci 0 -gi 2",  # the 4g, destroyed for the 3g at 0:4
        "nvidia-smi mig -i 0 -dci -ci 0 -gi 3",  # the 2g stays, without compute instances
        "nvidia-smi mig -i 0 -dci -ci 1 -gi 3",
        "nvidia-smi mig -i 0 -dgi -gi 2",
        "out=$(nvidia-smi mig -i 0 -cgi 9:0) && gi=${out#*GPU instance ID } && gi=${gi%% on GPU*} && "
        "nvidia-smi mig -i 0 -gi $gi -cci 1c.3g.20gb,2c.3g.20gb",
    ]


# -- safety ------------------------------------------------------------------------------------------------------

def test_destroying_a_busy_instance_is_blocked_naming_pids_and_device(fixtures_dir: Path,
                                                                      templates: Templates) -> None:
    busy = (f.Process(4242, "/usr/bin/python3", "C", 1200, 3, 1), f.Process(4243, "./saxpy", "C", 800, 2, 0))
    facts = capture_facts(fixtures_dir, processes=busy)
    wanted = (G4, TargetGi(19, "1g.5gb", 4, 1), TargetGi(19, "1g.5gb", 5, 1), G1_AT6)
    change = by_id(plan(facts, {0: GpuTarget(True, wanted)}, templates)[0])["mig/gpu0"]
    assert change.blocked is not None
    assert "PID 4242 (python3) on gpu0/gi3/ci1 (MIG-239565ce-30e3-52d7-8197-5630d3ce21fa)" in change.blocked
    assert "4243" not in change.blocked  # its 4g stays: not affected


def test_work_on_kept_instances_does_not_block(fixtures_dir: Path, templates: Templates) -> None:
    busy = (f.Process(4243, "./saxpy", "C", 800, 2, 0),)
    facts = capture_facts(fixtures_dir, processes=busy)
    wanted = (G4, TargetGi(19, "1g.5gb", 4, 1), TargetGi(19, "1g.5gb", 5, 1), G1_AT6)
    changes, planned = plan(facts, {0: GpuTarget(True, wanted)}, templates)
    assert by_id(changes)["mig/gpu0"].blocked is None
    assert planned["mig"]["gpus"][0]["processes"] == facts["mig"]["gpus"][0]["processes"]


# -- MIG mode and architecture -----------------------------------------------------------------------------------

def test_ampere_bare_metal_resets_with_services_stopped_and_started_again(fixtures_dir: Path,
                                                                         templates: Templates) -> None:
    facts = capture_facts(fixtures_dir, mig_on=False)
    changes = by_id(plan(facts, {0: GpuTarget(True, (G4, G2_SPLIT, G1_AT6))}, templates)[0])
    mode = changes["mig/mode/gpu0"]
    assert mode.disruption is Disruption.GPU_RESET
    assert commands(mode) == [
        "systemctl stop nvidia-persistenced.service",  # only the running one of the defaults
        "nvidia-smi -i 0 -mig 1",
        '[ "$(nvidia-smi -i 0 --query-gpu=mig.mode.current --format=csv,noheader)" = Enabled ] || '
        "nvidia-smi -i 0 --gpu-reset",
    ]
    assert [s.command for s in mode.cleanup] == ["systemctl start nvidia-persistenced.service"]
    assert list(changes) == ["mig/mode/gpu0", "mig/gpu0", "mig/boot"]
    assert changes["mig/gpu0"].after["requires_mig_mode"] is True


def test_configured_services_replace_the_defaults(fixtures_dir: Path, templates: Templates) -> None:
    units = {**RUNNING, "kubelet.service": {"load": "loaded", "active": "active", "enabled": "enabled"}}
    facts = capture_facts(fixtures_dir, mig_on=False, units=units)
    changes = by_id(plan(facts, {0: GpuTarget(True, (G4,))}, templates, services=["kubelet", "nvsm"])[0])
    assert commands(changes["mig/mode/gpu0"])[0] == "systemctl stop kubelet.service"


@pytest.mark.parametrize("why, gpu, settings", [
    ("pass-through VM", replace(A100, virtualization="Pass-Through"), {}),
    ("reset: never", A100, {"reset": "never"}),
])
def test_ampere_without_reset_needs_a_reboot(fixtures_dir: Path, templates: Templates, why: str,
                                             gpu: f.GpuRecord, settings: dict[str, Any]) -> None:
    facts = capture_facts(fixtures_dir, gpu, mig_on=False)
    changes, planned = plan(facts, {0: GpuTarget(True, (G4, G2_SPLIT, G1_AT6))}, templates, **settings)
    mode = by_id(changes)["mig/mode/gpu0"]
    assert mode.disruption is Disruption.REBOOT
    assert commands(mode) == ["nvidia-smi -i 0 -mig 1"]
    assert not mode.cleanup
    # instances are still planned (the mode may take effect at once), but later plugins see none yet
    assert by_id(changes)["mig/gpu0"].after["requires_mig_mode"] is True
    assert planned["mig_devices"] == []
    assert planned["gpus"][0]["mig_current"] is False and planned["gpus"][0]["mig_pending"] is True


def test_pending_mode_without_reset_leaves_only_the_reboot(fixtures_dir: Path, templates: Templates) -> None:
    gpu = replace(A100, virtualization="Pass-Through", mig_current=False, mig_pending=True)
    facts = capture_facts(fixtures_dir, gpu, mig_on=False)
    facts["mig"]["gpus"][0]["mig_pending"] = True
    changes = plan(facts, {0: GpuTarget(True, (G4,))}, templates)[0]
    assert [c.id for c in changes] == ["mig/mode/gpu0", "mig/boot"]
    assert changes[0].disruption is Disruption.REBOOT and not changes[0].steps
    assert "reboot" in changes[0].summary


def test_hopper_mode_change_needs_no_reset(fixtures_dir: Path, templates: Templates) -> None:
    h100 = replace(A100, product="NVIDIA H100 80GB HBM3", architecture="Hopper", virtualization="Pass-Through")
    facts = capture_facts(fixtures_dir, h100, mig_on=False)
    changes, planned = plan(facts, {0: GpuTarget(True, (TargetGi(0, "7g.80gb", 0, 8),))}, templates)
    mode = by_id(changes)["mig/mode/gpu0"]
    assert mode.disruption is Disruption.GPU_RESET
    assert "--gpu-reset" not in " ".join(commands(mode))
    assert planned["mig_devices"] == [{"gpu": 0, "gi": None, "ci": 0, "profile": "7g.80gb", "uuid": None,
                                       "placement": [0, 8]}]
    assert "apply_gpu 0 GPU-9e4aeb94-01c0-5173-4811-4ca60f77b3a9 yes 0:0:8/C" in \
        next(s.content for s in by_id(changes)["mig/boot"].steps if s.kind == "write" and "libexec" in s.path)


def test_mig_off_destroys_instances_then_disables(fixtures_dir: Path, templates: Templates) -> None:
    facts = capture_facts(fixtures_dir)
    changes, planned = plan(facts, {0: GpuTarget(False)}, templates)
    assert [c.id for c in changes] == ["mig/gpu0", "mig/mode/gpu0"]  # no boot unit: nothing to re-create
    assert commands(changes[0])[-1] == "nvidia-smi mig -i 0 -dgi -gi 2,3,9"  # every GI in one -dgi
    assert commands(changes[1])[1] == "nvidia-smi -i 0 -mig 0"
    assert planned["mig_devices"] == [] and planned["gpus"][0]["mig_current"] is False


def test_mode_change_with_processes_is_blocked(fixtures_dir: Path, templates: Templates) -> None:
    facts = capture_facts(fixtures_dir, mig_on=False, processes=(f.Process(77, "python", "C", 100, None, None),))
    mode = by_id(plan(facts, {0: GpuTarget(True, (G4,))}, templates)[0])["mig/mode/gpu0"]
    assert mode.blocked is not None and "PID 77 (python) on gpu0" in mode.blocked


# -- planned, for later plugins ----------------------------------------------------------------------------------

def test_planned_devices_keep_uuids_and_new_ones_have_none(fixtures_dir: Path, templates: Templates) -> None:
    facts = capture_facts(fixtures_dir)
    wanted = (G4, TargetGi(19, "1g.5gb", 4, 1), TargetGi(19, "1g.5gb", 5, 1), G1_AT6)
    _, planned = plan(facts, {0: GpuTarget(True, wanted)}, templates)
    assert [(d["placement"], d["uuid"]) for d in planned["mig_devices"]] == [
        ([0, 4], "MIG-c42101f0-a1fa-5b68-8908-7c5c887f28bd"),
        ([4, 1], None),
        ([5, 1], None),
        ([6, 1], "MIG-20301a31-77fa-59ec-b0b8-7ef543821f29"),
    ]
    assert facts["mig_devices"][1]["uuid"] == "MIG-8970491e-16e0-5140-9f8f-d561baa3c186"  # facts untouched


# -- the boot unit -----------------------------------------------------------------------------------------------

def test_boot_unit_written_enabled_then_left_alone(fixtures_dir: Path, templates: Templates) -> None:
    facts = capture_facts(fixtures_dir)
    target = {0: GpuTarget(True, (G4, G2_SPLIT, G1_AT6))}
    boot = by_id(plan(facts, target, templates)[0])["mig/boot"]
    writes = {s.path: s for s in boot.steps if s.kind == "write"}
    assert writes["/usr/local/libexec/gpuprov/mig-apply"].mode == 0o755
    assert commands(boot) == ["systemctl daemon-reload", "systemctl enable gpuprov-mig.service"]
    unit, script = boot_files("node01", [{"index": 0, "uuid": A100.uuid, "enable_mode": False,
                                          "specs": ["5:0:4/C", "14:4:2/1c.2g.10gb,1c.2g.10gb", "19:6:1/C"]}],
                              templates)
    assert writes["/etc/systemd/system/gpuprov-mig.service"].content == unit
    assert writes["/usr/local/libexec/gpuprov/mig-apply"].content == script
    facts["mig"]["boot"] = {"unit": unit, "script": script, "enabled": "enabled"}
    assert plan(facts, target, templates)[0] == []


def test_boot_unit_removed_when_not_wanted(fixtures_dir: Path, templates: Templates) -> None:
    facts = capture_facts(fixtures_dir)
    facts["mig"]["boot"] = {"unit": "[Unit]\n", "script": "#!/bin/bash\n", "enabled": "enabled"}
    boot = by_id(plan(facts, {0: GpuTarget(True, (G4, G2_SPLIT, G1_AT6))}, templates, boot_unit=False)[0])
    assert [s.kind for s in boot["mig/boot"].steps] == ["run", "remove", "remove", "run"]


# -- which layout a GPU gets -------------------------------------------------------------------------------------

@pytest.mark.parametrize("index, product, expected", [
    (0, "NVIDIA A100-SXM4-80GB", ("all-max", "devices[0]")),
    (2, "NVIDIA A100-SXM4-80GB", ("all-1g", "devices['2']")),
    (3, "NVIDIA A100-SXM4-80GB", ("all-1g", "devices['1-3']")),
    (5, "NVIDIA H100 80GB HBM3", (["7g.80gb"], "devices['h100 80gb hbm3']")),
    (5, "NVIDIA A100-SXM4-80GB", ("all-balanced", "layout")),
])
def test_devices_by_index_then_range_then_product(index: int, product: str, expected: tuple[Any, str]) -> None:
    settings = {"layout": "all-balanced",
                "devices": {"h100 80gb hbm3": ["7g.80gb"], "1-3": "all-1g", 0: "all-max", "2": "all-1g"}}
    assert layout_spec_for({"index": index, "product": product}, settings) == expected


def test_no_layout_leaves_instances_and_disabled_wins() -> None:
    assert layout_spec_for({"index": 0, "product": "x"}, {"layout": None}) is None
    assert layout_spec_for({"index": 0, "product": "x"}, {"enabled": False, "layout": "all-1g"})[0] == \
        "all-disabled"


def test_diff_matches_by_profile_and_placement(fixtures_dir: Path) -> None:
    gpu = capture_facts(fixtures_dir)["mig"]["gpus"][0]
    diff = diff_instances(gpu, (TargetGi(9, "3g.20gb", 0, 4), G1_AT6))  # a 3g where the 4g is: not the same
    assert [g["gi"] for g in diff.keep] == [9]
    assert sorted(g["gi"] for g in diff.destroy_gis) == [2, 3]


# -- layouts resolved per GPU (catalogue, the host's own -lgip, mig-parted files) -------------------------------

def test_named_layout_keeps_what_already_fits(fixtures_dir: Path, templates: Templates) -> None:
    """4g.20gb, 2g.10gb, 1g.5gb on the captured GPU: the 4g and the 1g stay; only the 2g's split changes."""
    facts = capture_facts(fixtures_dir)
    targets = resolve_targets("node01", facts, {"layout": ["4g.20gb", "2g.10gb", "1g.5gb"]})
    change = by_id(plan(facts, targets, templates)[0])["mig/gpu0"]
    assert commands(change) == ["nvidia-smi mig -i 0 -dci -ci 0 -gi 3", "nvidia-smi mig -i 0 -dci -ci 1 -gi 3",
                                "nvidia-smi mig -i 0 -gi 3 -cci 2g.10gb"]


def test_catalogue_plans_a_gpu_whose_mig_mode_is_off(fixtures_dir: Path, templates: Templates) -> None:
    facts = capture_facts(fixtures_dir, replace(A100, product="NVIDIA A100-SXM4-80GB"), mig_on=False)
    targets = resolve_targets("node01", facts, {"layout": "all-balanced"})
    change = by_id(plan(facts, targets, templates)[0])["mig/gpu0"]
    assert commands(change) == ["nvidia-smi mig -i 0 -cgi 9:4,14:2,19:0,19:1 -C"]
    assert "all-balanced" in change.summary


def test_the_hosts_own_profile_table_wins(fixtures_dir: Path) -> None:
    """A driver that names a profile differently from the catalogue: the host's -lgip decides."""
    facts = capture_facts(fixtures_dir)
    gpu = facts["mig"]["gpus"][0]
    for row in gpu["profiles"] + gpu["instances"]:
        key = "name" if "name" in row else "profile"
        row[key] = row[key].replace("1g.5gb", "1g.6gb")
    targets = resolve_targets("node01", facts, {"layout": ["4g.20gb", "2g.10gb", "1g.6gb"]})
    assert {t.profile for t in targets[0].instances} == {"4g.20gb", "2g.10gb", "1g.6gb"}
    with pytest.raises(GpuprovError, match="no MIG profile '1g.5gb'"):
        resolve_targets("node01", facts, {"layout": ["1g.5gb"]})


@pytest.mark.parametrize("layout, message", [
    (["3g.20gb", "3g.20gb", "1g.5gb"], "cannot hold 2 x 3g.20gb, 1g.5gb together: they need 9 memory slices and "
                                       "the GPU has 8. The most of it that fits is 2 x 3g.20gb"),
    (["2 x 1g.5gb+me"], "holds at most 1 x 1g.5gb+me, not 2"),
    (["9g.1gb"], "has no MIG profile '9g.1gb'; its profiles are:\n  1g.5gb       ID 19"),
])
def test_a_layout_that_cannot_work_names_host_gpu_product_and_what_fits(fixtures_dir: Path, layout: list[str],
                                                                       message: str) -> None:
    facts = capture_facts(fixtures_dir)
    with pytest.raises(GpuprovError) as err:
        resolve_targets("node01", facts, {"layout": layout})
    assert str(err.value).startswith("node01: GPU 0 (NVIDIA A100-SXM4-40GB, driver 580.126.09): mig.layout: ")
    assert message in str(err.value)


def test_non_mig_gpus_are_skipped_unless_named(fixtures_dir: Path) -> None:
    facts = capture_facts(fixtures_dir, replace(A100, product="Tesla T4", mig_capable=False), mig_on=False)
    assert resolve_targets("node01", facts, {"layout": "all-1g"}) == {}
    with pytest.raises(GpuprovError, match=r"GPU 0 \(Tesla T4.*does not support MIG.*devices\[0\]"):
        resolve_targets("node01", facts, {"devices": {0: "all-1g"}})


def test_mig_parted_config_import(fixtures_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("version: v1\nmig-configs:\n  all-disabled:\n    - devices: all\n      mig-enabled: false\n"
                      "  custom:\n    - device-filter: [\"0x20B010DE\"]\n      devices: all\n      mig-enabled: true\n"
                      "      mig-devices: {\"3g.20gb\": 1, \"1c.3g.20gb\": 3}\n")
    facts = capture_facts(fixtures_dir)
    target = resolve_targets("node01", facts, {"mig_parted_config": str(config), "config": "custom"})[0]
    assert sorted(((t.profile, t.cis) for t in target.instances), key=str) == [
        ("3g.20gb", ("1c.3g.20gb", "1c.3g.20gb", "1c.3g.20gb")), ("3g.20gb", None)]
    assert resolve_targets("node01", facts, {"mig_parted_config": str(config), "config": "all-disabled"})[0].mig \
        is False
    with pytest.raises(GpuprovError, match="node01: mig.mig_parted_config: .* has no configuration 'nope'"):
        resolve_targets("node01", facts, {"mig_parted_config": str(config), "config": "nope"})


def test_export_round_trips_to_an_empty_plan(fixtures_dir: Path, templates: Templates) -> None:
    facts = capture_facts(fixtures_dir)
    section = export_settings(facts)
    assert section == {"mig": {"layout": [
        "4g.20gb@0",
        {"profile": "2g.10gb", "start": 4, "compute": ["1c.2g.10gb", "1c.2g.10gb"]},
        "1g.5gb@6",
    ]}}
    settings = {"enabled": True, "reset": "auto", "boot_unit": False, **section["mig"]}
    targets = resolve_targets("node01", facts, settings)
    assert plan_host("node01", facts, settings, copy.deepcopy(facts), templates, targets) == []
