"""The simulator's MIG model: its profile tables against the real captures, and the engine's rules as properties.

The profile table (``gpuprov/sim/mig_profiles.json``) must print what the captured ``-lgip``/``-lgipp`` print; the
engine (``gpuprov/sim/mig.py``) must accept exactly the instance sets the placement tables allow, checked against a
brute-force oracle that knows nothing but the reference tables.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpuprov.sim import mig, migprofiles
from gpuprov.sim.machine import Gpu, Machine, Process
from gpuprov.sim.presets import new_machine

# capture -> (product, driver the capture's layout stands for)
LGIP_CAPTURES = {
    "nvidia-smi/a100-sxm4-40gb-r580_mig_-i_0_-lgip.txt": ("NVIDIA A100-SXM4-40GB", "580.126.09"),
    "nvidia-smi/a100-sxm4-40gb_mig_-lgip.txt": ("NVIDIA A100-SXM4-40GB", "470.82.01"),
    "nvidia-smi/a30_mig_-lgip.txt": ("NVIDIA A30", "535.183.01"),
    "nvidia-smi/gh200_mig_-lgip.txt": ("NVIDIA GH200 480GB", "535.183.01"),
}
_ROW1 = re.compile(r"^\|\s+0\s+MIG (\S+)\s+(\d+)\s+\d+/(\d+)\s+([\d.]+)\s+No\s+(\d+)\s+(\d+)\s+(\d+)\s+\|$")
_ROW2 = re.compile(r"^\|\s+(\d+)\s+(\d+)\s+(\d+)\s+\|$")


@pytest.mark.parametrize("capture", sorted(LGIP_CAPTURES))
def test_profile_table_matches_captured_lgip(capture: str, fixtures_dir: Path) -> None:
    product, driver = LGIP_CAPTURES[capture]
    rows = []
    first = None
    for line in (fixtures_dir / capture).read_text().splitlines():
        if m := _ROW1.match(line):
            first = m.groups()
        elif first and (m := _ROW2.match(line)):
            name, pid, total, gib, sm, dec, enc = first
            rows.append((name, int(pid), int(total), gib, int(sm), int(dec), int(enc), *map(int, m.groups())))
            first = None
    assert rows, capture
    ours = [(p.name, p.id, p.max_count, f"{p.memory_mib / 1024:.2f}", p.sm_count, p.dec, p.enc, p.ce, p.jpeg, p.ofa)
            for p in migprofiles.gi_profiles(product, driver)]
    assert ours == rows


@pytest.mark.parametrize("capture,product", [
    ("nvidia-smi/a100-sxm4-40gb_mig_-lgipp.txt", "NVIDIA A100-SXM4-40GB"),
    ("nvidia-smi/a30_mig_-lgipp.txt", "NVIDIA A30"),
])
def test_placements_match_captured_lgipp(capture: str, product: str, fixtures_dir: Path) -> None:
    seen = {}
    for line in (fixtures_dir / capture).read_text().splitlines():
        m = re.match(r"GPU\s+0 Profile ID\s+(\d+) Placements? ?: \{([\d,]+)\}:(\d+)$", line)
        assert m, line
        seen[int(m.group(1))] = (tuple(int(s) for s in m.group(2).split(",")), int(m.group(3)))
    assert {p.id: (p.starts, p.size) for p in migprofiles.gi_profiles(product, "580.126.09")} == seen


def test_driver_keyed_profiles() -> None:
    # +me profiles appear from R470; an A100-PCIE-40GB lists 1g.10gb from R525 (absent in the 510.47.03 capture)
    assert migprofiles.gi_profile("NVIDIA A100-SXM4-40GB", "460.32.03", 20) is None
    assert migprofiles.gi_profile("NVIDIA A100-SXM4-40GB", "470.82.01", "1g.5gb+me") is not None
    assert migprofiles.gi_profile("NVIDIA A100-PCIE-40GB", "510.47.03", 15) is None
    assert migprofiles.gi_profile("NVIDIA A100-PCIE-40GB", "525.85.12", "MIG 1g.10gb") is not None
    # the same card, different memory by driver
    assert migprofiles.gi_profile("NVIDIA A100-SXM4-40GB", "470.82.01", 14).memory_mib == 9856  # type: ignore[union-attr]
    assert migprofiles.gi_profile("NVIDIA A100-SXM4-40GB", "580.126.09", 14).memory_mib == 9984  # type: ignore[union-attr]
    assert migprofiles.gi_profiles("NVIDIA L40S", "580.126.09") == ()
    for product in ("NVIDIA A100-SXM4-80GB", "NVIDIA A100 80GB PCIe", "NVIDIA H100 PCIe", "NVIDIA H100 80GB HBM3",
                    "NVIDIA H100 NVL", "NVIDIA H200", "NVIDIA GH200 480GB"):
        profiles = migprofiles.gi_profiles(product, "580.126.09")
        assert [p.id for p in profiles] == [19, 20, 15, 14, 9, 5, 0], product


def test_ci_profiles_match_captured_lcip() -> None:
    gi4 = migprofiles.gi_profile("NVIDIA A100-SXM4-40GB", "580.126.09", "4g.20gb")
    assert gi4 is not None
    assert [(c.name, c.id, c.max_count, c.sm_count, c.default) for c in gi4.ci_profiles] == [
        ("1c.4g.20gb", 0, 4, 14, False), ("2c.4g.20gb", 1, 2, 28, False), ("4g.20gb", 3, 1, 56, True)]
    gi15 = migprofiles.gi_profile("NVIDIA GH200 480GB", "580.126.09", 15)
    assert gi15 is not None and [(c.id, c.name, c.default) for c in gi15.ci_profiles] == [(7, "1g.24gb", True)]
    me = migprofiles.gi_profile("NVIDIA A100-SXM4-80GB", "580.126.09", "1g.10gb+me")
    assert me is not None and migprofiles.mig_device_name(me, me.ci_profiles[0]) == "1g.10gb"


# -- the engine against a brute-force oracle built from the reference tables only -------------------------------




REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "mig-profiles.json"
REF_KEYS = {"NVIDIA A100-SXM4-40GB": "NVIDIA A100-SXM4-40GB", "NVIDIA A100-PCIE-40GB": "NVIDIA A100-PCIE-40GB",
            "NVIDIA A100-SXM4-80GB": "NVIDIA A100-SXM4-80GB", "NVIDIA A30": "NVIDIA A30",
            "NVIDIA H100 PCIe": "NVIDIA H100 PCIe", "NVIDIA H100 80GB HBM3": "NVIDIA H100 80GB HBM3",
            "NVIDIA H100 NVL": "NVIDIA H100 NVL", "NVIDIA H200": "NVIDIA H200",
            "NVIDIA GH200 480GB": "GH200 (H100 96GB)"}
PRODUCTS = sorted(REF_KEYS)


def _reference_tables() -> dict[str, dict[int, tuple[list[tuple[int, int]], int]]]:
    """product -> GI profile id -> (placements, max count), straight from shared/reference/mig-profiles.json."""
    ref = json.loads(REFERENCE.read_text())
    out = {}
    for product, key in REF_KEYS.items():
        entry = ref[key]
        table = ref["placement_tables"][entry["placement_table"]]["by_gi_profile_id"]
        out[product] = {p["gi_profile_id"]: ([tuple(x) for x in table[str(p["gi_profile_id"])]], p["max_count"])
                        for p in entry["profiles"] if p["gi_profile_id"] is not None}
    return out


ORACLE = _reference_tables() if REFERENCE.is_file() else {}


def _enabled(product: str) -> tuple[Machine, Gpu]:
    machine = new_machine(gpu=product, count=1, hostname=f"prop-{product}")
    gpu = machine.gpus[0]
    assert mig.set_mig_mode(machine, gpu, True).outcome == "applied"
    return machine, gpu


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, list[tuple[int, int | None]]]:
    product = draw(st.sampled_from(PRODUCTS))
    ids = sorted(ORACLE[product])
    starts = st.one_of(st.none(), st.integers(0, 8))
    return product, draw(st.lists(st.tuples(st.sampled_from(ids), starts), max_size=9))


@pytest.mark.skipif(not ORACLE, reason="shared/reference is not beside the work tree")
@settings(max_examples=300, deadline=None)
@given(requests())
def test_creation_succeeds_exactly_when_the_reference_tables_allow(
        req: tuple[str, list[tuple[int, int | None]]]) -> None:
    product, wanted = req
    machine, gpu = _enabled(product)
    table = ORACLE[product]
    placed: list[tuple[int, int, int]] = []  # (profile, start, size) as the oracle sees them

    def free(start: int, size: int) -> bool:
        return all(start + size <= s or s + z <= start for _, s, z in placed)

    for profile_id, start in wanted:
        placements, max_count = table[profile_id]
        under_max = sum(1 for p, _, _ in placed if p == profile_id) < max_count
        options = [(s, z) for s, z in placements if free(s, z)] if under_max else []
        allowed = bool(options) if start is None else (start, placements[0][1]) in options
        profile = migprofiles.gi_profile(product, machine.driver_version, profile_id)
        assert profile is not None
        assert mig.free_count(machine, gpu, profile) == min(len(options), max_count - sum(
            1 for p, _, _ in placed if p == profile_id))
        try:
            gi = mig.create_gpu_instance(machine, gpu, profile, start)
        except mig.MigError as exc:
            assert not allowed, f"{product}: refused {profile.name}@{start} ({exc.reason}) with {placed}"
            continue
        assert allowed, f"{product}: accepted {profile.name}@{start} with {placed}"
        assert (gi.start, gi.size) in options and (start is None or gi.start == start)
        assert gi.id in mig.gi_id_pool(machine, gpu, gi.size)
        placed.append((profile_id, gi.start, gi.size))
    assert sorted((g.profile_id, g.start, g.size) for g in gpu.gpu_instances) == sorted(placed)
    assert len({g.id for g in gpu.gpu_instances}) == len(gpu.gpu_instances)


@pytest.mark.skipif(not ORACLE, reason="shared/reference is not beside the work tree")
@settings(max_examples=100, deadline=None)
@given(st.sampled_from(PRODUCTS), st.data())
def test_compute_instances_fill_a_gi_and_destroy_in_order(product: str, data: st.DataObject) -> None:
    machine, gpu = _enabled(product)
    profiles = migprofiles.gi_profiles(product, machine.driver_version)
    profile = data.draw(st.sampled_from(profiles))
    gi = mig.create_gpu_instance(machine, gpu, profile)
    cis = []
    for c in data.draw(st.lists(st.sampled_from(profile.ci_profiles), max_size=8)):
        before = mig.ci_free_count(machine, gpu, gi, c)
        try:
            cis.append(mig.create_compute_instance(machine, gpu, gi, c))
        except mig.MigError:
            assert before == 0
            continue
        assert before > 0
    used = sorted(s for ci in gi.compute_instances for s in range(ci.start, ci.start + ci.size))
    assert len(used) == len(set(used)) and all(0 <= s < profile.slices for s in used)
    assert sorted(ci.id for ci in gi.compute_instances) == list(range(len(cis)))
    assert len({ci.uuid for ci in cis}) == len(cis)
    if cis:
        # a GI with compute instances is in use; a CI with a process is in use; then they go in order
        with pytest.raises(mig.MigError, match="In use by another client"):
            mig.destroy_gpu_instance(machine, gpu, gi)
        machine.processes.append(Process(pid=4242, name="python", gpu=gpu.index, gi=gi.id, ci=cis[0].id))
        with pytest.raises(mig.MigError, match="In use by another client"):
            mig.destroy_compute_instance(machine, gpu, gi, cis[0])
        machine.processes.clear()
        for ci in list(gi.compute_instances):
            mig.destroy_compute_instance(machine, gpu, gi, ci)
    mig.destroy_gpu_instance(machine, gpu, gi)
    assert gpu.gpu_instances == []


def test_a_new_compute_instance_gets_a_new_uuid() -> None:
    machine, gpu = _enabled("NVIDIA A30")
    profile = migprofiles.gi_profile("NVIDIA A30", machine.driver_version, "2g.12gb")
    assert profile is not None
    gi = mig.create_gpu_instance(machine, gpu, profile)
    default = next(c for c in profile.ci_profiles if c.default)
    first = mig.create_compute_instance(machine, gpu, gi, default)
    mig.destroy_compute_instance(machine, gpu, gi, first)
    second = mig.create_compute_instance(machine, gpu, gi, default)
    assert (first.id, first.start) == (second.id, second.start) and first.uuid != second.uuid


@pytest.mark.parametrize("product", PRODUCTS)
def test_mode_pending_reset_and_reboot_by_architecture(product: str) -> None:
    hopper = migprofiles.architecture(product) == "hopper"
    machine = new_machine(gpu=product, count=1)
    gpu = machine.gpus[0]
    machine.processes.append(Process(pid=100, name="nvidia-persistenced", gpu=0, type="G"))
    change = mig.set_mig_mode(machine, gpu, True)
    assert (change.outcome, change.reason, gpu.mig_current, gpu.mig_pending) == ("pending", mig.IN_USE, False, True)
    assert mig.reset_gpu(machine, gpu) == "in-use" and not gpu.mig_current
    machine.processes.clear()
    assert mig.reset_gpu(machine, gpu) == "reset" and gpu.mig_current and gpu.mig_pending
    profile = migprofiles.gi_profiles(product, machine.driver_version)[-1]
    mig.create_gpu_instance(machine, gpu, profile)
    mig.reboot(machine)
    assert gpu.gpu_instances == [] and machine.boot_count == 1
    # Ampere keeps the mode in its InfoROM; Hopper forgets it with the driver
    assert (gpu.mig_current, gpu.mig_pending) == ((False, False) if hopper else (True, True))
    # with nothing holding it, a mode change is immediate on both
    assert mig.set_mig_mode(machine, gpu, not gpu.mig_current).outcome == "applied"


def test_passthrough_vm_needs_a_reboot_on_ampere_only() -> None:
    for product, hopper in (("NVIDIA A100-SXM4-80GB", False), ("NVIDIA H100 80GB HBM3", True)):
        machine = new_machine(gpu=product, count=1)
        machine.passthrough_vm = True
        gpu = machine.gpus[0]
        change = mig.set_mig_mode(machine, gpu, True)
        if hopper:
            assert change.outcome == "applied" and gpu.mig_current
            continue
        assert (change.outcome, change.reason) == ("pending", mig.NOT_SUPPORTED)
        assert mig.reset_gpu(machine, gpu) == "not-supported" and not gpu.mig_current
        mig.reboot(machine)
        assert gpu.mig_current


def test_gpu_without_mig_is_not_supported() -> None:
    machine = new_machine(gpu="NVIDIA L40S", count=1)
    assert mig.set_mig_mode(machine, machine.gpus[0], True).outcome == "not-supported"


def test_saved_state_round_trips_and_other_writers_are_seen(tmp_path: Path) -> None:
    """The state file is the simulator's one model; its faster JSON must say what ``asdict`` says, and a handle
    that keeps the machine between commands must still see what another process wrote."""
    from dataclasses import asdict

    from gpuprov.sim.host import SimHost

    machine, gpu = _enabled("NVIDIA A30")
    profile = migprofiles.gi_profile("NVIDIA A30", machine.driver_version, "2g.12gb")
    assert profile is not None
    gi = mig.create_gpu_instance(machine, gpu, profile)
    mig.create_compute_instance(machine, gpu, gi, next(c for c in profile.ci_profiles if c.default))
    machine.processes.append(Process(pid=100, name="train", gpu=0, gi=gi.id, ci=0))
    machine.services["systemd"] = {"units": {"a.service": {"active": "active", "pids": [1, 2]}}}
    assert machine.to_json() == asdict(machine)

    host = SimHost(tmp_path / "state")
    host.save(machine)
    assert host.machine.gpus[0].gpu_instances[0].compute_instances[0].uuid == gi.compute_instances[0].uuid
    other = SimHost(tmp_path / "state")  # a stand-in in another process
    with other.locked() as theirs:
        theirs.gpus[0].gpu_instances.clear()
    assert host.machine.gpus[0].gpu_instances == []
    before = (tmp_path / "state" / "machine.json").stat()
    with host.locked():
        pass  # only looked: the file is left as it is
    assert (tmp_path / "state" / "machine.json").stat().st_ino == before.st_ino
    with pytest.raises(RuntimeError), host.locked() as half:
        half.processes.clear()
        raise RuntimeError("a command failing half-way saves nothing")
    assert [p.pid for p in host.machine.processes] == [100]


# -- the stand-in's command line ---------------------------------------------------------------------------------


def test_nvidia_smi_accepts_gpus_and_options_as_nvidia_smi_spells_them(tmp_path: Path) -> None:
    from gpuprov.sim.host import SimHost
    from gpuprov.sim.nvidia_smi import nvidia_smi

    host = SimHost(tmp_path / "host")
    host.save(new_machine(gpu="NVIDIA A30", count=3, hostname="argv"))
    gpu1 = host.load().gpu(1)

    def smi(*argv: str) -> tuple[int, str]:
        result = nvidia_smi(host, ["nvidia-smi", *argv], "", {})
        return result.exit_code, result.stdout

    # -i by index, bus id (any of its forms), UUID, or a list; long options with = or a separate value
    for spec in ("1", gpu1.bus_id, gpu1.bus_id[4:], gpu1.bus_id[9:].lower(), gpu1.uuid):
        assert smi("-i", spec, "-L") == (0, f"GPU 1: NVIDIA A30 (UUID: {gpu1.uuid})\n"), spec
    assert smi("--id=0,2", "--multi-instance-gpu=1")[1].count("Enabled MIG Mode") == 2
    assert smi("--id", "9", "-L") == (6, "No devices were found\n")
    assert smi("-mig", "2")[0] == 2 and smi("-L", "-r")[0] == 2 and smi("--bogus")[0] == 2
    # GPU 1 is not in MIG mode: it is skipped; none selected in MIG mode is the driver's "No MIG-enabled" answer
    assert smi("mig", "-i", "1", "--list-gpu-instances") == (6, "No MIG-enabled devices found.\n")
    assert smi("mig", "-i", "0", "--list-gpu-instances") == (6, "No GPU instances found: Not Found\n")
    code, out = smi("-i", "0,1,2", "mig", "--create-gpu-instance", "2g.12gb:2,1g.6gb:1", "-C")
    assert code == 0 and out.count("Successfully created GPU instance") == 4  # GPUs 0 and 2
    assert "Placement" in smi("mig", "-lci")[1]
    gis = {(g.index, gi.profile_id, gi.start) for g in host.load().gpus for gi in g.gpu_instances}
    assert gis == {(0, 5, 2), (0, 14, 1), (2, 5, 2), (2, 14, 1)}
    # an explicit start outside the profile's placements, and one that overlaps
    assert smi("mig", "-i", "0", "-cgi", "1g.6gb:7")[0] == mig.CODES[mig.INVALID_ARGUMENT]
    assert smi("mig", "-i", "0", "-cgi", "5:2")[0] == mig.CODES[mig.INSUFFICIENT_RESOURCES]
    assert smi("mig", "-i", "0", "-dci", "-gi", "99")[0] == 6
