"""Planning MIG changes: from a host's facts and the play's ``mig:`` settings to reviewable ``Change``s.

Pure: nothing here touches a host. Per GPU the plan is the *minimal* change that reaches the layout the play asks
for — instances that are already right stay where they are (their work keeps running), the rest are destroyed
(compute instances before their GPU instance) and created largest placement first, each at an explicit placement
(``-cgi ID:START``) chosen offline, so the result is the one that was planned and never depends on the driver's
undocumented choice.

Change ids: ``mig/mode/gpuN`` (MIG mode), ``mig/gpuN`` (instances), ``mig/boot`` (the unit that re-creates the
layout at boot). Disruption follows the hardware: a mode change resets the GPU on Hopper and later, and on Ampere
where a reset is possible (``reset: auto`` on bare metal); otherwise it needs a reboot. Destroying instances needs
them idle; a process on one makes the change ``blocked`` (refused without ``--force``), naming PIDs and device.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gpuprov.errors import GpuprovError
from gpuprov.plan import Change, Disruption, Step
from gpuprov.render import Templates

from .facts import SCRIPT_PATH, UNIT_NAME, UNIT_PATH, describe_instances, service_units
from .layout import (
    Layout,
    LayoutError,
    MigPartedConfig,
    format_layout,
    load_mig_parted_config,
    parse_layout,
    placed_from_facts,
    plan_placements,
)
from .profiles import ProductProfiles, catalogue, from_lgip

# Units the boot unit runs before: what uses MIG devices must find them in place. The MPS plugin's daemons are
# ordered through gpuprov-mps.target (and should also say After=gpuprov-mig.service themselves).
BOOT_BEFORE = ("gpuprov-mps.target", "nvidia-dcgm.service", "dcgm-exporter.service", "kubelet.service")
BOOT_TIMEOUT = 300


@dataclass(frozen=True)
class TargetGi:
    """One GPU instance the play wants, at the placement chosen for it."""

    profile_id: int
    profile: str
    start: int
    size: int
    cis: tuple[str, ...] | None = None  # compute-instance profile names; None: the default one (``-C``)

    @property
    def spec(self) -> str:
        """The boot script's word for it: ``PROFILE:START:SIZE/CIS``."""
        cis = "C" if self.cis is None else (",".join(self.cis) or "-")
        return f"{self.profile_id}:{self.start}:{self.size}/{cis}"


@dataclass(frozen=True)
class GpuTarget:
    """What the play asks of one GPU: MIG on or off, and (when on) its instances — ``None`` leaves them alone."""

    mig: bool
    instances: tuple[TargetGi, ...] | None = None
    layout: str = ""  # how the play named it, for summaries ("all-balanced", "3g.40gb, 2 x 1g.10gb")


@dataclass(frozen=True)
class GpuDiff:
    """The instance-level difference on one GPU."""

    keep: tuple[Mapping[str, Any], ...]  # existing GIs (facts records) that stay as they are
    destroy_gis: tuple[Mapping[str, Any], ...]  # existing GIs destroyed (with their CIs)
    destroy_cis: tuple[tuple[Mapping[str, Any], Mapping[str, Any]], ...]  # (GI, CI) of kept GIs whose CIs change
    create_gis: tuple[TargetGi, ...]  # new GIs, in creation order
    create_cis: tuple[tuple[Mapping[str, Any], TargetGi], ...]  # kept GIs that get new CIs: (existing GI, target)

    @property
    def empty(self) -> bool:
        return not (self.destroy_gis or self.destroy_cis or self.create_gis or self.create_cis)


# -- small helpers -----------------------------------------------------------------------------------------------

def is_hopper_or_later(gpu: Mapping[str, Any]) -> bool:
    """MIG mode changes at once (no reset) and is forgotten when the driver reloads: Hopper, Blackwell and later."""
    return gpu.get("architecture") not in (None, "Ampere")


def reset_possible(gpu: Mapping[str, Any], settings: Mapping[str, Any]) -> bool:
    """Whether apply may reset an Ampere GPU to make a mode change effective (never inside a pass-through VM)."""
    return settings.get("reset", "auto") == "auto" and gpu.get("virtualization", "None") == "None"


def device_name(gpu: int, gi: int | None, ci: int | None = None) -> str:
    text = f"gpu{gpu}/gi{gi}"
    return text if ci is None else f"{text}/ci{ci}"


def _is_default_ci(name: str) -> bool:
    """The default compute instance carries the GPU instance's own name; a split one is ``Nc.<gi name>``."""
    return re.match(r"\d+c\.", name) is None


def default_ci(profile: str) -> str:
    """The default compute instance's profile name for a GPU instance profile: its name without attributes
    (``1g.10gb+me`` -> ``1g.10gb``, as nvidia-smi names the CI it creates with ``-C``)."""
    return re.sub(r"[+-].*$", "", profile)


def _ci_names(gi: Mapping[str, Any]) -> tuple[str, ...] | None:
    """A GI's compute instances as a target would name them: ``None`` for exactly the default one."""
    names = tuple(sorted(c["profile"] for c in gi.get("cis") or ()))
    if len(names) == 1 and _is_default_ci(names[0]):
        return None
    return names


def _same_cis(gi: Mapping[str, Any], target: TargetGi) -> bool:
    want = None if target.cis is None else tuple(sorted(target.cis))
    return _ci_names(gi) == want


def _processes_on(gpu: Mapping[str, Any], gi: int | None = None, ci: int | None = None) -> list[Mapping[str, Any]]:
    found = []
    for p in gpu.get("processes") or ():
        if gi is not None and p.get("gi") != gi:
            continue
        if ci is not None and p.get("ci") != ci:
            continue
        found.append(p)
    return found


def _describe_processes(gpu: Mapping[str, Any], procs: Sequence[Mapping[str, Any]]) -> str:
    by_device: dict[str, list[str]] = {}
    for p in procs:
        where = device_name(gpu["index"], p.get("gi"), p.get("ci")) if p.get("gi") is not None else \
            f"gpu{gpu['index']}"
        uuid = _uuid_of(gpu, p.get("gi"), p.get("ci"))
        if uuid:
            where += f" ({uuid})"
        label = f"{p['pid']}" + (f" ({p['name'].rsplit('/', 1)[-1]})" if p.get("name") else "")
        by_device.setdefault(where, []).append(label)
    return "; ".join(f"PID {', '.join(pids)} on {where}" for where, pids in by_device.items())


def _uuid_of(gpu: Mapping[str, Any], gi: int | None, ci: int | None) -> str | None:
    for inst in gpu.get("instances") or ():
        if inst["gi"] == gi:
            for c in inst.get("cis") or ():
                if c["ci"] == ci:
                    return c.get("uuid")
    return None


def _smi(*args: Any) -> str:
    return "nvidia-smi " + " ".join(shlex.quote(str(a)) for a in args)


def _gi_record(target: TargetGi, gi: int | None, cis: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """A planned GI in the facts' shape; ``gi`` is ``None`` until the driver picks the id."""
    if cis is None:
        names = [target.profile] if target.cis is None else list(target.cis)
        cis = [{"ci": i, "profile_id": None, "profile": n, "placement": None, "uuid": None}
               for i, n in enumerate(names)]
    return {"gi": gi, "profile_id": target.profile_id, "profile": target.profile,
            "placement": [target.start, target.size], "cis": [dict(c) for c in cis]}


# -- the diff ----------------------------------------------------------------------------------------------------

def diff_instances(gpu: Mapping[str, Any], wanted: Sequence[TargetGi]) -> GpuDiff:
    """Match existing GPU instances to the wanted ones by (profile, placement); everything else changes.

    ``wanted`` comes from the placement solver, which already kept existing instances where it could, so a wanted
    GI at an existing GI's exact placement and profile *is* that GI. Creation order: largest placement first, then
    by start, as the MIG guide's known ordering issue asks.
    """
    existing = list(gpu.get("instances") or ())
    by_place = {(g["profile_id"], g["placement"][0], g["placement"][1]): g for g in existing}
    keep: list[Mapping[str, Any]] = []
    destroy_cis: list[tuple[Mapping[str, Any], Mapping[str, Any]]] = []
    create_cis: list[tuple[Mapping[str, Any], TargetGi]] = []
    create: list[TargetGi] = []
    matched: set[int] = set()
    for t in wanted:
        g = by_place.get((t.profile_id, t.start, t.size))
        if g is None or g["gi"] in matched:
            create.append(t)
            continue
        matched.add(g["gi"])
        keep.append(g)
        if not _same_cis(g, t):
            destroy_cis.extend((g, c) for c in g.get("cis") or ())
            create_cis.append((g, t))
    destroy = [g for g in existing if g["gi"] not in matched]
    create.sort(key=lambda t: (-t.size, t.start))
    return GpuDiff(tuple(keep), tuple(destroy), tuple(destroy_cis), tuple(create), tuple(create_cis))


def instance_steps(index: int, diff: GpuDiff) -> list[Step]:
    """nvidia-smi commands for a diff: CIs, then GIs on the way down; GIs largest first, then CIs on the way up."""
    steps: list[Step] = []
    for gi in diff.destroy_gis:
        if gi.get("cis"):
            ci_ids = ",".join(str(c["ci"]) for c in gi["cis"])
            steps.append(Step.run(_smi("mig", "-i", index, "-dci", "-ci", ci_ids, "-gi", gi["gi"]),
                                  f"destroy the compute instances of {device_name(index, gi['gi'])}"))
    for gi, c in diff.destroy_cis:
        steps.append(Step.run(_smi("mig", "-i", index, "-dci", "-ci", c["ci"], "-gi", gi["gi"]),
                              f"destroy compute instance {device_name(index, gi['gi'], c['ci'])} ({c['profile']})"))
    if diff.destroy_gis:  # one -dgi for all of them, as for -cgi below
        ids = ",".join(str(gi["gi"]) for gi in diff.destroy_gis)
        what = ", ".join(f"{device_name(index, gi['gi'])} ({gi['profile']} at {gi['placement'][0]}:"
                         f"{gi['placement'][1]})" for gi in diff.destroy_gis)
        noun = "GPU instance" if len(diff.destroy_gis) == 1 else "GPU instances"
        steps.append(Step.run(_smi("mig", "-i", index, "-dgi", "-gi", ids), f"destroy {noun} {what}"))
    batch: list[TargetGi] = []  # consecutive GIs with their default CI: one -cgi list, one round trip

    def flush() -> None:
        if batch:
            places = ",".join(f"{t.profile_id}:{t.start}" for t in batch)
            wheres = ", ".join(f"{t.profile} at {t.start}:{t.size}" for t in batch)
            what = "GPU instance" if len(batch) == 1 else "GPU instances"
            which = "its default compute instance" if len(batch) == 1 else "their default compute instances"
            steps.append(Step.run(_smi("mig", "-i", index, "-cgi", places, "-C"),
                                  f"create {what} {wheres} with {which}"))
            batch.clear()

    for t in diff.create_gis:
        where = f"{t.profile} at {t.start}:{t.size}"
        if t.cis is None:
            batch.append(t)
            continue
        flush()
        if not t.cis:
            steps.append(Step.run(_smi("mig", "-i", index, "-cgi", f"{t.profile_id}:{t.start}"),
                                  f"create GPU instance {where} without compute instances"))
        else:
            # The driver picks the new GI's id; read it from what -cgi printed to make its compute instances.
            create = _smi("mig", "-i", index, "-cgi", f"{t.profile_id}:{t.start}")
            cci = _smi("mig", "-i", index, "-cci", ",".join(t.cis)).replace(" -cci ", " -gi $gi -cci ", 1)
            command = f"out=$({create}) && gi=${{out#*GPU instance ID }} && gi=${{gi%% on GPU*}} && {cci}"
            steps.append(Step.run(command, f"create GPU instance {where} with compute instances "
                                           f"{', '.join(t.cis)}"))
    flush()
    for gi, t in diff.create_cis:
        if t.cis is None:
            steps.append(Step.run(_smi("mig", "-i", index, "-gi", gi["gi"], "-cci", default_ci(t.profile)),
                                  f"create the default compute instance of {device_name(index, gi['gi'])}"))
        elif t.cis:
            steps.append(Step.run(_smi("mig", "-i", index, "-gi", gi["gi"], "-cci", ",".join(t.cis)),
                                  f"create compute instances {', '.join(t.cis)} in {device_name(index, gi['gi'])}"))
    return steps


# -- per GPU -----------------------------------------------------------------------------------------------------

@dataclass
class GpuPlan:
    changes: list[Change]
    boot: dict[str, Any] | None  # the boot script's entry for this GPU, None when it has none
    planned_gpu: dict[str, Any]  # the facts["mig"]["gpus"] record after the changes
    devices: list[dict[str, Any]]  # the GPU's facts["mig_devices"] after the changes


def plan_gpu(host: str, gpu: Mapping[str, Any], target: GpuTarget, settings: Mapping[str, Any],
             units: Mapping[str, Mapping[str, str]]) -> GpuPlan:
    """The changes for one GPU (mode and instances), what the boot script must redo, and the GPU as planned."""
    index = gpu["index"]
    label = f"GPU {index} ({gpu['product']})"
    changes: list[Change] = []
    planned = {k: v for k, v in gpu.items()}
    current, pending = bool(gpu["mig_current"]), bool(gpu["mig_pending"])
    instances = list(gpu.get("instances") or ())
    hopper = is_hopper_or_later(gpu)
    now = hopper or reset_possible(gpu, settings)  # can the mode change take effect during this apply?

    # The mode: after this apply it is the wanted one if it already is, or if the change can take effect now.
    mode_change = None
    if target.mig != current or target.mig != pending:
        mode_change = _mode_change(gpu, label, target.mig, current, pending, now, hopper, settings, units)
    planned["mig_current"] = target.mig if (target.mig == current or now) else current
    planned["mig_pending"] = target.mig

    # The instances. When MIG is being enabled, they are created right after the mode change; if the mode turns
    # out to wait for a reboot, gpuprov_apply skips them and the host ends reboot-required. A mode already waiting
    # for a reboot leaves nothing to do on this GPU in this run.
    instance_change: Change | None = None
    after_instances: list[Mapping[str, Any]] = list(instances)
    if target.mig and target.instances is not None and (current or now or not pending):
        diff = diff_instances(gpu, target.instances)
        if not diff.empty:
            instance_change = _instance_change(host, gpu, label, diff, target, needs_mode=not current)
        after_instances = _after(gpu, diff)
    elif not target.mig and instances:
        diff = GpuDiff((), tuple(instances), (), (), ())
        instance_change = _instance_change(host, gpu, label, diff, target, needs_mode=False)
        after_instances = []
    if not planned["mig_current"]:
        after_instances = []  # pessimistic for later plugins: no MIG device exists until the mode is effective

    ordered = [mode_change, instance_change] if target.mig and not current else [instance_change, mode_change]
    changes.extend(c for c in ordered if c is not None)

    planned["instances"] = after_instances
    planned["processes"] = [p for p in gpu.get("processes") or ()
                            if p.get("gi") is None or any(i["gi"] == p["gi"] for i in after_instances)]
    devices = [{"gpu": index, "gi": i["gi"], "ci": c["ci"], "profile": c["profile"], "uuid": c.get("uuid"),
                "placement": list(i["placement"])} for i in after_instances for c in i.get("cis") or ()]
    boot = None
    if target.mig:
        specs = ["keep"] if target.instances is None else [t.spec for t in sorted(
            target.instances, key=lambda t: (-t.size, t.start))]
        boot = {"index": index, "uuid": gpu["uuid"], "enable_mode": hopper, "specs": specs}
    return GpuPlan(changes, boot, planned, devices)


def _after(gpu: Mapping[str, Any], diff: GpuDiff) -> list[dict[str, Any]]:
    """The GPU's instances once ``diff`` is applied: kept ones as they are, new ones without ids yet."""
    out: list[dict[str, Any]] = []
    changed_cis = {g["gi"]: t for g, t in diff.create_cis}
    for g in diff.keep:
        if g["gi"] in changed_cis:
            out.append(_gi_record(changed_cis[g["gi"]], g["gi"]))
        else:
            out.append({k: v for k, v in g.items()})
    out.extend(_gi_record(t, None) for t in diff.create_gis)
    out.sort(key=lambda g: (g["placement"][0], g["placement"][1]))
    return out


def _instance_change(host: str, gpu: Mapping[str, Any], label: str, diff: GpuDiff, target: GpuTarget,
                     needs_mode: bool) -> Change:
    index = gpu["index"]
    busy: list[Mapping[str, Any]] = []
    for g in diff.destroy_gis:
        busy.extend(_processes_on(gpu, g["gi"]))
    for g, c in diff.destroy_cis:
        busy.extend(_processes_on(gpu, g["gi"], c["ci"]))
    parts = []
    if diff.create_gis or diff.create_cis:
        parts.append(f"create {describe_instances([_gi_record(t, None) for t in diff.create_gis])}"
                     if diff.create_gis else "create compute instances")
    if diff.destroy_gis:
        parts.append(f"destroy {describe_instances(diff.destroy_gis)}")
    if diff.destroy_cis and not diff.destroy_gis:
        parts.append(f"re-split {len(diff.create_cis)} GPU instance(s)")
    if diff.keep:
        parts.append(f"keep {len(diff.keep)}")
    layout = f" to {target.layout}" if target.layout and target.mig else (" (MIG off)" if not target.mig else "")
    disruption = Disruption.GPU_IDLE if (diff.destroy_gis or diff.destroy_cis) else Disruption.NONE
    blocked = None
    if busy:
        blocked = (f"{host}: {label}: {_describe_processes(gpu, busy)} would lose their MIG device; stop them or "
                   "use --force")
    after = _after(gpu, diff) if target.mig else []
    return Change(
        id=f"mig/gpu{index}",
        summary=f"{label}: layout{layout}: {'; '.join(parts)}",
        steps=tuple(instance_steps(index, diff)),
        disruption=disruption,
        before=_layout_view(gpu.get("instances") or ()),
        after={"instances": _layout_view(after), "requires_mig_mode": needs_mode} if needs_mode else
        _layout_view(after),
        blocked=blocked,
    )


def _layout_view(instances: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Instances as a change's before/after: what a reviewer compares (profile, placement, compute instances)."""
    return [{"gi": i["gi"], "profile": i["profile"], "placement": list(i["placement"]),
             "cis": [c["profile"] for c in i.get("cis") or ()]} for i in
            sorted(instances, key=lambda i: (i["placement"][0], i["placement"][1]))]


def _mode_change(gpu: Mapping[str, Any], label: str, want: bool, current: bool, pending: bool, now: bool,
                 hopper: bool, settings: Mapping[str, Any], units: Mapping[str, Mapping[str, str]]) -> Change:
    index = gpu["index"]
    word = "enable" if want else "disable"
    state = f"MIG mode {'on' if current else 'off'}" + (f", pending {'on' if pending else 'off'}"
                                                          if pending != current else "")
    steps: list[Step] = []
    cleanup: list[Step] = []
    warnings: list[str] = []
    blocked = None
    if want == current and want != pending:
        # A change requested earlier but not yet effective is cancelled by asking for the current mode again.
        return Change(id=f"mig/mode/gpu{index}", summary=f"{label}: cancel the pending MIG mode change ({state})",
                      steps=(Step.run(_smi("-i", index, "-mig", int(want))),),
                      before={"current": current, "pending": pending}, after={"current": want, "pending": want})
    if not now:
        reason = ("reset: never" if settings.get("reset") == "never" else
                  f"a GPU reset is not possible in a {gpu.get('virtualization')} VM")
        if pending == want:
            summary = f"{label}: MIG mode {word} is pending; reboot the host to finish ({reason})"
        else:
            summary = f"{label}: {word} MIG mode; takes effect at the next reboot ({reason})"
            steps.append(Step.run(_smi("-i", index, "-mig", int(want))))
        return Change(id=f"mig/mode/gpu{index}", summary=summary, steps=tuple(steps), disruption=Disruption.REBOOT,
                      before={"current": current, "pending": pending}, after={"current": want, "pending": want})
    stop = [u for u in service_units(settings) if units.get(u, {}).get("active") in ("active", "activating",
                                                                                       "reloading")]
    if stop:
        steps.append(Step.run("systemctl stop " + " ".join(shlex.quote(u) for u in stop),
                              f"stop the services holding the GPU: {', '.join(stop)}"))
        cleanup.append(Step.run("systemctl start " + " ".join(shlex.quote(u) for u in stop),
                                f"start {', '.join(stop)} again"))
    if pending != want:
        steps.append(Step.run(_smi("-i", index, "-mig", int(want))))
    if not hopper:
        query = _smi("-i", index, "--query-gpu=mig.mode.current", "--format=csv,noheader")
        expect = "Enabled" if want else "Disabled"
        steps.append(Step.run(f'[ "$({query})" = {expect} ] || {_smi("-i", index, "--gpu-reset")}',
                              f"reset GPU {index} unless the mode already took effect"))
    busy = _processes_on(gpu)
    if busy:
        blocked = f"{label}: {_describe_processes(gpu, busy)} would be stopped by the MIG mode change"
    return Change(
        id=f"mig/mode/gpu{index}", summary=f"{label}: {word} MIG mode ({state})", steps=tuple(steps),
        cleanup=tuple(cleanup), disruption=Disruption.GPU_RESET, blocked=blocked, warnings=tuple(warnings),
        before={"current": current, "pending": pending}, after={"current": want, "pending": want},
    )


# -- the boot unit -----------------------------------------------------------------------------------------------

def boot_files(host: str, gpus: Sequence[Mapping[str, Any]], templates: Templates) -> tuple[str, str]:
    """The rendered unit and script that re-create ``gpus``' planned layouts at boot."""
    unit = templates.render("gpuprov-mig.service.j2", host=host, script_path=SCRIPT_PATH, timeout=BOOT_TIMEOUT,
                            before=BOOT_BEFORE)
    script = templates.render("mig-apply.sh.j2", host=host, unit=UNIT_NAME, gpus=list(gpus))
    return unit, script


def boot_change(host: str, boot: Mapping[str, Any], gpus: Sequence[Mapping[str, Any]], settings: Mapping[str, Any],
                templates: Templates) -> Change | None:
    """Install, update or remove the boot unit so it matches the plan; ``None`` when it already does."""
    have_unit, have_script, enabled = boot.get("unit"), boot.get("script"), boot.get("enabled")
    if not settings.get("boot_unit", True) or not gpus:
        if have_unit is None and have_script is None:
            return None
        steps = []
        if enabled not in (None, "", "disabled"):
            steps.append(Step.run(f"systemctl disable {UNIT_NAME}"))
        if have_unit is not None:
            steps.append(Step.remove(UNIT_PATH, before=have_unit))
        if have_script is not None:
            steps.append(Step.remove(SCRIPT_PATH, before=have_script))
        steps.append(Step.run("systemctl daemon-reload"))
        why = "boot_unit: false" if not settings.get("boot_unit", True) else "no GPU has a MIG layout to keep"
        return Change(id="mig/boot", summary=f"remove the MIG boot unit {UNIT_NAME} ({why})", steps=tuple(steps),
                      before={"unit": UNIT_PATH, "script": SCRIPT_PATH}, after=None)
    unit, script = boot_files(host, gpus, templates)
    steps = []
    if have_script != script:
        steps.append(Step.write(SCRIPT_PATH, script, mode=0o755, owner="root", group="root", before=have_script))
    if have_unit != unit:
        steps.append(Step.write(UNIT_PATH, unit, mode=0o644, owner="root", group="root", before=have_unit))
        steps.append(Step.run("systemctl daemon-reload"))
    if enabled != "enabled":
        steps.append(Step.run(f"systemctl enable {UNIT_NAME}"))
    if not steps:
        return None
    layouts = ", ".join(f"gpu{g['index']}" for g in gpus)
    return Change(id="mig/boot", summary=f"keep the MIG layout across reboots ({UNIT_NAME} for {layouts})",
                  steps=tuple(steps), before={"unit": have_unit is not None, "enabled": enabled},
                  after={"unit": True, "enabled": "enabled"})


# -- the host ----------------------------------------------------------------------------------------------------

def plan_host(host: str, facts: Mapping[str, Any], settings: Mapping[str, Any], planned: dict[str, Any],
              templates: Templates, targets: Mapping[int, GpuTarget]) -> list[Change]:
    """All MIG changes of a host, GPU by GPU in index order, then the boot unit; updates ``planned`` in place."""
    mig = facts.get("mig") or {}
    units = mig.get("units") or {}
    changes: list[Change] = []
    boot_gpus: list[dict[str, Any]] = []
    planned_mig_gpus = []
    devices: list[dict[str, Any]] = []
    for gpu in mig.get("gpus") or ():
        target = targets.get(gpu["index"])
        if target is None:
            planned_mig_gpus.append(gpu)
            devices.extend(d for d in facts.get("mig_devices") or () if d["gpu"] == gpu["index"])
            continue
        result = plan_gpu(host, gpu, target, settings, units)
        changes.extend(result.changes)
        if result.boot is not None:
            boot_gpus.append(result.boot)
        planned_mig_gpus.append(result.planned_gpu)
        devices.extend(result.devices)
    boot = boot_change(host, mig.get("boot") or {}, boot_gpus, settings, templates)
    if boot is not None:
        changes.append(boot)
    # what a later plugin (MPS) plans against
    planned.setdefault("mig", {})["gpus"] = planned_mig_gpus
    by_index = {g["index"]: g for g in planned_mig_gpus}
    planned["gpus"] = [{**g, "mig_current": by_index[g["index"]]["mig_current"],
                        "mig_pending": by_index[g["index"]]["mig_pending"]} if g["index"] in by_index else g
                       for g in planned.get("gpus") or ()]
    planned["mig_devices"] = sorted(devices, key=lambda d: (d["gpu"], d["placement"][0], d["ci"]))
    return changes


# -- what the play asks of each GPU ------------------------------------------------------------------------------

def _product_matches(key: str, product: str) -> bool:
    """``A100-SXM4-80GB`` and ``nvidia a100-sxm4-80gb`` both name ``NVIDIA A100-SXM4-80GB``."""
    def norm(text: str) -> str:
        return text.strip().lower().removeprefix("nvidia ").strip()

    return norm(key) == norm(product)


_RANGE = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")


def layout_spec_for(gpu: Mapping[str, Any], settings: Mapping[str, Any]) -> tuple[Any, str] | None:
    """The layout value the play gives one GPU and where it came from; ``None`` leaves its instances alone.

    ``devices`` wins over ``layout``: an index first, then an index range, then the product name, so a play can
    say "the H100s all-max, except GPU 0".
    """
    if not settings.get("enabled", True):
        return "all-disabled", "enabled: false"
    devices = settings.get("devices") or {}
    index = gpu["index"]
    for key, value in devices.items():
        if isinstance(key, int) and not isinstance(key, bool) and key == index or \
                isinstance(key, str) and key.strip().isdigit() and int(key) == index:
            return value, f"devices[{key!r}]"
    for key, value in devices.items():
        m = _RANGE.match(str(key))
        if m and int(m.group(1)) <= index <= int(m.group(2)):
            return value, f"devices[{key!r}]"
    for key, value in devices.items():
        if isinstance(key, str) and not _RANGE.match(key) and not key.strip().isdigit() and \
                _product_matches(key, gpu["product"]):
            return value, f"devices[{key!r}]"
    if settings.get("layout") is not None:
        return settings["layout"], "layout"
    return None


def verify_layout(ti: Any, targets: Mapping[int, GpuTarget]) -> None:
    """testinfra check: every GPU's MIG mode, GPU instances (profile, placement) and compute instances as planned."""
    from .facts import mig_listing, parse_lci, parse_lgi

    modes = ti.run("nvidia-smi --query-gpu=index,mig.mode.current --format=csv,noheader")
    assert modes.rc == 0, f"nvidia-smi --query-gpu failed: {modes.stderr.strip() or modes.stdout.strip()}"
    mode_of = {}
    for line in modes.stdout.splitlines():
        if "," in line:
            i, mode = line.split(",", 1)
            mode_of[int(i)] = mode.strip()
    lgi = ti.run("nvidia-smi mig -lgi")
    gis = parse_lgi(mig_listing("nvidia-smi mig -lgi", lgi.stdout, lgi.stderr, lgi.rc))
    lci = ti.run("nvidia-smi mig -lci")
    cis = parse_lci(mig_listing("nvidia-smi mig -lci", lci.stdout, lci.stderr, lci.rc))
    problems = []
    for index, target in sorted(targets.items()):
        want = "Enabled" if target.mig else "Disabled"
        if mode_of.get(index) != want:
            problems.append(f"GPU {index}: MIG mode is {mode_of.get(index, 'unknown')}, planned {want}")
            continue
        if not target.mig or target.instances is None:
            continue
        have = {(r.profile_id, r.start, r.size): r for r in gis if r.gpu == index}
        wanted = {(t.profile_id, t.start, t.size): t for t in target.instances}
        if set(have) != set(wanted):
            def show(keys: Any) -> str:
                return ", ".join(f"profile {p} at {s}:{n}" for p, s, n in sorted(keys)) or "none"

            problems.append(f"GPU {index}: GPU instances are {show(have)}; planned {show(wanted)}")
            continue
        for key, row in have.items():
            names = sorted(c.name for c in cis if c.gpu == index and c.gi == row.gi)
            t = wanted[key]
            ok = (len(names) == 1 and _is_default_ci(names[0])) if t.cis is None else names == sorted(t.cis)
            if not ok:
                planned = "the default one" if t.cis is None else ", ".join(t.cis) or "none"
                problems.append(f"GPU {index}: {device_name(index, row.gi)} ({row.name}) has compute instances "
                                f"{', '.join(names) or 'none'}; planned {planned}")
    assert not problems, "; ".join(problems)


def verify_boot_unit(ti: Any) -> None:
    """testinfra check: the boot unit is installed and enabled, so a reboot brings the layout back."""
    result = ti.run(f"systemctl is-enabled {UNIT_NAME}")
    assert result.stdout.strip() == "enabled", \
        f"{UNIT_NAME} is {result.stdout.strip() or result.stderr.strip() or 'missing'}, not enabled: a reboot " \
        "would lose the MIG layout (run gpuprov apply)"
    assert ti.file(SCRIPT_PATH).exists, f"{SCRIPT_PATH} is missing: {UNIT_NAME} would fail at boot"


def profiles_for(gpu: Mapping[str, Any], driver: str | None) -> ProductProfiles | None:
    """The profile table to plan with: the GPU's own ``-lgip``/``-lgipp`` when it printed one (names and sizes
    drift between drivers, and the host is the truth), else the catalogue's entry for its product and driver."""
    if gpu.get("profiles"):
        return from_lgip(gpu["product"], gpu["profiles"], None)
    return catalogue(gpu["product"], driver)


def resolve_targets(host: str, facts: Mapping[str, Any], settings: Mapping[str, Any]) -> dict[int, GpuTarget]:
    """What the play asks of each GPU of ``host``; GPUs it leaves alone have no entry.

    Raises :class:`GpuprovError` naming host, GPU, product and what would fit when a layout cannot work there.
    """
    mig = facts.get("mig") or {}
    driver = mig.get("driver")
    parted: MigPartedConfig | None = None
    if settings.get("mig_parted_config"):
        try:
            parted = load_mig_parted_config(settings["mig_parted_config"], settings.get("config"))
        except LayoutError as exc:
            raise GpuprovError(f"{host}: mig.mig_parted_config: {exc}") from None
    targets: dict[int, GpuTarget] = {}
    for gpu in mig.get("gpus") or ():
        label = f"{host}: GPU {gpu['index']} ({gpu['product']}, driver {driver})"
        try:
            target = _target_for(gpu, settings, driver, parted, label)
        except LayoutError as exc:
            raise GpuprovError(f"{label}: {exc}") from None
        if target is not None:
            targets[gpu["index"]] = target
    return targets


def _target_for(gpu: Mapping[str, Any], settings: Mapping[str, Any], driver: str | None,
                parted: MigPartedConfig | None, label: str) -> GpuTarget | None:
    if parted is not None and settings.get("enabled", True):
        entry = parted.entry_for(gpu["index"], gpu.get("pci_device_id"), gpu["product"])
        if entry is None:
            return None  # mig-parted leaves GPUs its config does not mention as they are
        if not gpu["mig_capable"]:
            if entry.devices is not None and entry.mig_enabled:
                raise GpuprovError(f"{label} does not support MIG, but {entry.where} enables MIG on it")
            return None
        if not entry.mig_enabled:
            return GpuTarget(False, None, f"{parted.name} (MIG off)")
        product = _profiles_or_fail(gpu, driver, label)
        return _placed(gpu, product, entry.layout(product), parted.name)
    found = layout_spec_for(gpu, settings)
    if not gpu["mig_capable"]:
        if found is not None and found[1].startswith("devices") and found[0] != "all-disabled":
            raise GpuprovError(f"{label} does not support MIG, but mig.{found[1]} gives it a MIG layout; remove it "
                               "from mig.devices")
        return None  # a play's layout for every GPU skips the ones without MIG, as mig-parted's "devices: all"
    if found is None:
        return GpuTarget(True, None, "MIG on, instances as they are")
    value, source = found
    if isinstance(value, str) and value.strip().lower() in ("all-disabled", "all-enabled"):
        on = value.strip().lower() == "all-enabled"
        return GpuTarget(on, () if on else None, value.strip().lower())
    product = _profiles_or_fail(gpu, driver, label)
    try:
        layout = parse_layout(value, product)
    except LayoutError as exc:
        raise GpuprovError(f"{label}: mig.{source}: {exc}") from None
    return _placed(gpu, product, layout, value if isinstance(value, str) else format_layout(layout))


def _profiles_or_fail(gpu: Mapping[str, Any], driver: str | None, label: str) -> ProductProfiles:
    product = profiles_for(gpu, driver)
    if product is None:
        raise GpuprovError(f"{label}: gpuprov knows no MIG profiles for this product and the GPU lists none while "
                           "MIG mode is off; apply layout all-enabled first (the GPU then lists its own profiles), "
                           "then the layout")
    return product


def _placed(gpu: Mapping[str, Any], product: ProductProfiles, layout: Layout, name: str) -> GpuTarget:
    """A layout placed on one GPU by the solver, keeping the instances that already match where they are."""
    if not layout.enabled:
        return GpuTarget(False, None, name)
    existing = list(gpu.get("instances") or ())
    placement = plan_placements(product, layout, placed_from_facts(existing))
    by_gi = {g["gi"]: g for g in existing}
    wanted: list[TargetGi] = []
    for kept in placement.keep:
        g = by_gi[kept.gi_id]
        profile = product.by_id(kept.profile_id)
        default = profile is not None and profile.is_default_split(kept.ci_profile_ids)
        wanted.append(TargetGi(kept.profile_id, g["profile"], kept.start, kept.size,
                               None if default else tuple(c["profile"] for c in g.get("cis") or ())))
    for c in placement.create:
        default = len(c.compute) == 1 and c.compute[0].default
        wanted.append(TargetGi(c.profile.id, c.profile.name, c.start, c.profile.size,
                               None if default else tuple(ci.name for ci in c.compute)))
    return GpuTarget(True, tuple(wanted), name)


# -- export ------------------------------------------------------------------------------------------------------

def export_settings(facts: Mapping[str, Any]) -> dict[str, Any]:
    """A host's current MIG layouts as a play's ``mig:`` section, to paste into a playbook.

    Each instance is written with its placement (``3g.40gb@4``) and compute split, so applying the section to the
    same host plans nothing. GPUs with the same layout share ``layout:``; the others get ``devices:`` entries.
    """
    per_gpu: dict[int, Any] = {}
    for gpu in (facts.get("mig") or {}).get("gpus") or ():
        if not gpu["mig_capable"]:
            continue
        if not gpu["mig_current"]:
            per_gpu[gpu["index"]] = "all-disabled"
        elif not gpu["instances"]:
            per_gpu[gpu["index"]] = "all-enabled"
        else:
            per_gpu[gpu["index"]] = [_export_instance(i) for i in
                                     sorted(gpu["instances"], key=lambda i: (-i["placement"][1], i["placement"][0]))]
    if not per_gpu:
        return {}
    values = list(per_gpu.values())
    if all(v == values[0] for v in values):
        return {"mig": {"layout": values[0]}}
    common = max(values, key=values.count)
    section: dict[str, Any] = {"layout": common}
    section["devices"] = {i: v for i, v in per_gpu.items() if v != common}
    return {"mig": section}


def _export_instance(gi: Mapping[str, Any]) -> Any:
    text = f"{gi['profile']}@{gi['placement'][0]}"
    cis = [c["profile"] for c in gi.get("cis") or ()]
    if len(cis) == 1 and _is_default_ci(cis[0]):
        return text
    return {"profile": gi["profile"], "start": gi["placement"][0], "compute": cis}
