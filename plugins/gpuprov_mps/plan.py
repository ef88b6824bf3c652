"""Planning MPS changes: from facts, the MIG plugin's ``planned`` devices and the ``mps:`` settings to ``Change``s.

Pure: nothing here touches a host. Per device the play selects, the plan writes its environment file, enables its
``nvidia-mps@DEVICE`` instance and starts it — or restarts it only when something it reads at start changed: its
environment file, the unit or helper, a UUID the daemon was bound to that the device no longer has, or a device the
MIG plugin is about to re-create. A restart cuts off connected clients, so it is marked gpu-idle and blocked while
clients are connected (``--force`` overrides). Defaults a running daemon forgot are sent again without a restart;
a whole GPU whose compute mode drifted gets it set again. Devices no longer selected lose their daemon, unit
instance and environment file, and a whole GPU gets the DEFAULT compute mode back.

Change ids: ``mps/files`` (the unit template, target, helper and ``mps-run``), ``mps/daemon/INSTANCE`` (one device:
``mps/daemon/gpu0``, ``mps/daemon/gpu0-mig4``), ``mps/release/INSTANCE`` (stop a daemon whose MIG device is about to
be re-created; :func:`order_around_mig` moves it, and removals on GPUs the MIG plugin changes, before the MIG
plugin's ``mig/gpuN``/``mig/mode/gpuN`` changes).
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

from .devices import MpsDevice, SelectionError, host_devices, select
from .facts import (
    ENV_DIR,
    FILES,
    HELPER_PATH,
    MIG_UNIT,
    START_LINE,
    TARGET,
    UNIT_TEMPLATE,
    WRAPPER_PATH,
)
from .schema import COMPUTE_MODES, PLACEHOLDER, SCHEMA

SCHEMA_DEFAULTS = SCHEMA.defaults()

START_TIMEOUT = 60
SMI_MODES = {"EXCLUSIVE_PROCESS": "Exclusive_Process", "DEFAULT": "Default"}  # -c value -> how -q -x prints it
SERVER = "nvidia-cuda-mps-server"


def env_path(instance: str) -> str:
    return f"{ENV_DIR}/{instance}.env"


def _q(*words: Any) -> str:
    return " ".join(shlex.quote(str(w)) for w in words)


def _percentage_text(value: float | int | None) -> str:
    if value is None:
        return ""
    return f"{float(value):g}"


@dataclass(frozen=True)
class Rendered:
    """The files every host with MPS daemons shares (the same for all its devices)."""

    unit: str
    target: str
    helper: str
    wrapper: str

    def by_key(self) -> dict[str, str]:
        return {"unit": self.unit, "target": self.target, "helper": self.helper, "wrapper": self.wrapper}


def render_files(host: str, settings: Mapping[str, Any], templates: Templates) -> Rendered:
    common = {"host": host, "env_dir": ENV_DIR, "helper": HELPER_PATH, "target": TARGET, "mig_unit": MIG_UNIT,
              "unit_template": UNIT_TEMPLATE, "start_line": START_LINE}
    return Rendered(
        unit=templates.render("nvidia-mps@.service.j2", **common, user=settings.get("user") or "root",
                              start_timeout=START_TIMEOUT, stop_timeout=int(settings.get("stop_timeout") or 10)),
        target=templates.render("gpuprov-mps.target.j2", **common),
        helper=templates.render("mps-device.sh.j2", **common),
        wrapper=templates.render("mps-run.sh.j2", **common),
    )


def render_env(host: str, device: MpsDevice, settings: Mapping[str, Any], templates: Templates) -> str:
    mode = COMPUTE_MODES[settings.get("compute_mode") or "exclusive"]
    return templates.render(
        "device.env.j2", host=host, device=device, compute_mode=None if device.is_mig else mode,
        percentage=_percentage_text(settings.get("active_thread_percentage")),
        pinned_mem_limit=settings.get("pinned_mem_limit"), multiuser=bool(settings.get("multiuser")),
        stop_timeout=int(settings.get("stop_timeout") or 10),
        pipe_dir=str(settings.get("pipe_dir") or "/run/nvidia-mps/{device}").replace(PLACEHOLDER, device.instance),
        log_dir=str(settings.get("log_dir") or "/var/log/nvidia-mps/{device}").replace(PLACEHOLDER, device.instance),
    )


# -- what runs on a device now ------------------------------------------------------------------------------------

def _processes(facts: Mapping[str, Any], device: MpsDevice | None) -> list[Mapping[str, Any]]:
    """The processes nvidia-smi shows on ``device`` now (a whole GPU: those not on a MIG device)."""
    if device is None:
        return []
    for gpu in (facts.get("mig") or {}).get("gpus") or ():
        if gpu["index"] != device.gpu:
            continue
        if device.is_mig:
            return [p for p in gpu.get("processes") or () if p.get("gi") == device.gi and p.get("ci") == device.ci
                    and device.gi is not None]
        return [p for p in gpu.get("processes") or () if p.get("gi") is None]
    return []


def _clients(procs: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [p for p in procs if "M" in str(p.get("type", ""))]


def _others(procs: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [p for p in procs if "M" not in str(p.get("type", "")) and
            not str(p.get("name", "")).endswith(SERVER)]


def _describe(procs: Sequence[Mapping[str, Any]]) -> str:
    return ", ".join(f"{p['pid']}" + (f" ({str(p['name']).rsplit('/', 1)[-1]})" if p.get("name") else "")
                     for p in procs)


def _compute_mode(facts: Mapping[str, Any], gpu: int) -> str | None:
    for g in facts.get("gpus") or ():
        if g["index"] == gpu:
            return str(g.get("compute_mode") or "Default")
    return None


# -- the plan ----------------------------------------------------------------------------------------------------

def plan_host(host: str, facts: Mapping[str, Any], settings: Mapping[str, Any], planned: dict[str, Any],
              templates: Templates) -> list[Change]:
    """Every MPS change of ``host``: shared files first, then each device's daemon; updates ``planned``."""
    mps = facts.get("mps") or {}
    installed = {d["instance"]: d for d in mps.get("daemons") or ()}
    now = {d.instance: d for d in host_devices(facts)}
    chosen: list[MpsDevice] = []
    after = host_devices(planned)
    if settings.get("enabled", True):
        mig_gpus = [g["index"] for g in planned.get("gpus") or () if g.get("mig_current")]
        try:
            chosen = select(after, settings.get("devices") or "all", mig_gpus)
        except SelectionError as exc:
            raise GpuprovError(f"{host}: mps.devices: {exc}") from None
        user = settings.get("user") or "root"
        mig_device = next((d.name for d in chosen if d.is_mig), None)
        if user != "root" and mig_device is not None:
            raise GpuprovError(f"{host}: mps.user: the daemon of a MIG device ({mig_device}) must run as root, not "
                               f"{user}: it finds its device's current UUID with nvidia-smi "
                               "mig, which needs root; use user: root (with multiuser: true every user's jobs share "
                               "it), or select only whole GPUs")
    changes: list[Change] = []
    warnings = _warnings(host, facts, settings, mps) if chosen else []
    files_change, files_changed = _files_change(host, mps, settings, templates, bool(chosen), installed)
    have_unit = (mps.get("files") or {}).get("unit")
    relink = have_unit is not None and bool(chosen) and \
        install_section(have_unit) != install_section(render_files(host, settings, templates).unit)
    if files_change is not None and chosen:  # installed before the daemons that use them
        changes.append(replace_warnings(files_change, warnings))
        warnings = []
    wanted = {d.instance for d in chosen}
    for device in chosen:
        env = render_env(host, device, settings, templates)
        change = _daemon_change(host, facts, settings, device, now.get(device.instance), installed.get(device.instance),
                                env, files_changed, relink)
        changes.extend(change)
    for instance, record in sorted(installed.items()):
        if instance not in wanted:
            changes.append(_removal(host, facts, settings, record, now.get(instance),
                                    kept=instance in {d.instance for d in after}))
    if files_change is not None and not chosen:  # removed once no daemon uses them
        changes.append(files_change)
    if warnings and changes:
        changes[0] = replace_warnings(changes[0], warnings)
    # what later plugins plan against: the NUMA plugin places each daemon (a drop-in per instance) and, on a
    # systemd without NUMAPolicy=, wraps the template's ExecStart= lines in numactl
    planned["mps"] = {"devices": [{"name": d.name, "instance": d.instance, "unit": d.unit, "gpu": d.gpu,
                                   "pipe_dir": str(settings.get("pipe_dir")).replace(PLACEHOLDER, d.instance)}
                                  for d in chosen],
                      "unit_template": render_files(host, settings, templates).unit if chosen else None}
    return changes


def replace_warnings(change: Change, warnings: Sequence[str]) -> Change:
    if not warnings:
        return change
    from dataclasses import replace

    return replace(change, warnings=(*change.warnings, *warnings))


def _warnings(host: str, facts: Mapping[str, Any], settings: Mapping[str, Any], mps: Mapping[str, Any]) -> list[str]:
    out = []
    user = settings.get("user") or "root"
    if user != "root" and not settings.get("multiuser"):
        out.append(f"the daemons run as {user}: jobs of any other user connect and then wait forever (MPS queues "
                   "a client whose user has no server); run them as root, or run only {user}'s jobs through MPS"
                   .replace("{user}", user))
    if mps.get("default_daemon"):
        out.append("an MPS daemon not managed by gpuprov answers on /tmp/nvidia-mps, where CUDA programs that never "
                   "asked for MPS find it; stop it (echo quit | nvidia-cuda-mps-control)")
    return out


def install_section(unit: str) -> list[str]:
    """The ``[Install]`` lines of a unit file: what ``systemctl enable`` made links from."""
    lines, inside = [], False
    for line in unit.splitlines():
        if line.strip().startswith("["):
            inside = line.strip() == "[Install]"
        elif inside and line.strip() and not line.lstrip().startswith(("#", ";")):
            lines.append(line.strip())
    return lines


def _files_change(host: str, mps: Mapping[str, Any], settings: Mapping[str, Any], templates: Templates, needed: bool,
                  installed: Mapping[str, Any]) -> tuple[Change | None, bool]:
    """Install, update or remove the shared files; returns the change and whether the unit or helper changed."""
    have = mps.get("files") or {}
    target_enabled = (mps.get("target") or {}).get("enabled", "")
    if not needed:
        present = [key for key in FILES if have.get(key) is not None]
        if not present:
            return None, False
        steps: list[Step] = []
        if target_enabled not in ("", "disabled"):
            steps.append(Step.run(f"systemctl disable {TARGET}"))
        steps.extend(Step.remove(FILES[key], before=have[key]) for key in present)
        steps.append(Step.run("systemctl daemon-reload"))
        return Change("mps/files", "remove the MPS unit, target, helper and mps-run (no device has a daemon)",
                      steps=tuple(steps), before={"files": present}, after=None), False
    rendered = render_files(host, settings, templates).by_key()
    modes = {"unit": 0o644, "target": 0o644, "helper": 0o755, "wrapper": 0o755}
    steps = [Step.write(FILES[key], rendered[key], mode=modes[key], owner="root", group="root", before=have.get(key))
             for key in ("helper", "wrapper", "unit", "target") if have.get(key) != rendered[key]]
    units_changed = any(have.get(k) != rendered[k] for k in ("unit", "target"))
    if units_changed:
        steps.append(Step.run("systemctl daemon-reload"))
    if target_enabled != "enabled":
        steps.append(Step.run(f"systemctl enable {TARGET}"))
    if not steps:
        return None, False
    changed = [key for key in ("unit", "target", "helper", "wrapper") if have.get(key) != rendered[key]]
    what = ", ".join({"unit": UNIT_TEMPLATE, "target": TARGET, "helper": HELPER_PATH, "wrapper": WRAPPER_PATH}[k]
                     for k in changed) or f"enable {TARGET}"
    present = [k for k in FILES if have.get(k) is not None]
    return Change("mps/files", f"MPS units and helpers: {what}", steps=tuple(steps),
                  before={"files": present} if present else None,
                  after={"files": list(FILES)}), bool({"unit", "helper"} & set(changed)) and bool(installed)


def _daemon_change(host: str, facts: Mapping[str, Any], settings: Mapping[str, Any], device: MpsDevice,
                   current: MpsDevice | None, record: Mapping[str, Any] | None, env: str,
                   files_changed: bool, relink: bool = False) -> list[Change]:
    """The changes for one selected device: a release before the MIG plugin re-creates it (when it must), then
    the daemon's own change; empty when the daemon runs as asked."""
    unit = device.unit
    label = f"MPS daemon for {device.name}" + (f" ({device.profile})" if device.profile else "")
    procs = _processes(facts, current)
    clients = _clients(procs)
    active = bool(record) and (record or {}).get("unit", {}).get("active") == "active"
    env_changed = record is None or record.get("env_text") != env
    recreated = current is not None and device.uuid is None  # the MIG plugin re-creates it in this run
    created = current is None  # a device the MIG plugin creates in this run (or the daemon's first start)
    stale = active and current is not None and current.uuid is not None and \
        (record or {}).get("bound_uuid") not in (None, current.uuid)
    steps: list[Step] = []
    reasons: list[str] = []
    if env_changed:
        steps.append(Step.write(env_path(device.instance), env, mode=0o644, owner="root", group="root",
                                before=(record or {}).get("env_text")))
    enabled = (record or {}).get("unit", {}).get("enabled") == "enabled"
    if enabled and relink:  # the unit's [Install] changed: its links must follow (systemctl reenable)
        steps.append(Step.run(f"systemctl disable {_q(unit)}"))
    if not enabled or relink:
        steps.append(Step.run(f"systemctl enable {_q(unit)}"))
    restart = False
    if not active:
        steps.append(_start_step("start", unit, device))
        reasons.append("start")
    else:
        if env_changed:
            reasons.append("settings changed")
        if files_changed:
            reasons.append("unit or helper changed")
        if record is not None and record.get("answers") is not True:
            reasons.append(f"its daemon does not answer on {record.get('env', {}).get('CUDA_MPS_PIPE_DIRECTORY')}")
        running_as = (record or {}).get("unit", {}).get("user")
        if running_as and running_as != (settings.get("user") or "root") and not env_changed and not files_changed:
            reasons.append(f"runs as {running_as}")
        if recreated:
            reasons.append("its MIG device is re-created")
        if stale:
            reasons.append(f"bound to {record.get('bound_uuid') if record else '?'}, the device is now "
                           f"{current.uuid if current else '?'}")
        restart = bool(reasons)
        if restart:
            steps.append(_start_step("restart", unit, device))
    if active and not restart and record is not None:
        steps.extend(_refresh(device, settings, record, facts, reasons))
    if not steps:
        return []
    disruption = Disruption.GPU_IDLE if restart else Disruption.NONE
    blocked = None
    if restart and clients and not recreated:
        blocked = (f"{host}: {device.name}: PID {_describe(clients)} are clients of its MPS daemon; a restart cuts "
                   "them off: let them finish or use --force")
    warnings: list[str] = []
    others = _others(procs)
    if not device.is_mig and others and COMPUTE_MODES[settings.get("compute_mode") or "exclusive"] == \
            "EXCLUSIVE_PROCESS" and (not active or restart):
        warnings.append(f"{device.name}: PID {_describe(others)} hold the GPU outside MPS: with EXCLUSIVE_PROCESS "
                        "the MPS server cannot start until they exit")
    summary = f"{label}: " + ", ".join(reasons or ["update"])
    if created and not active:
        summary = f"{label}: start" + (" once the MIG plugin created the device" if device.uuid is None else "")
    after = {"device": device.name, "gpu": device.gpu, "unit": unit, "state": "running"}
    before = {"device": device.name, "gpu": device.gpu, "unit": unit, "state": "running" if active else "stopped"}
    out = [Change(f"mps/daemon/{device.instance}", summary, steps=tuple(steps), disruption=disruption,
                  before=before if record else None, after=after, blocked=blocked, warnings=tuple(warnings))]
    if recreated and active:
        release = Change(f"mps/release/{device.instance}",
                         f"stop the MPS daemon for {device.name} while its MIG device is re-created",
                         steps=(Step.run(f"systemctl stop {_q(unit)}"),),
                         disruption=Disruption.GPU_IDLE, before=before, after={**before, "state": "stopped"},
                         warnings=_idle_server_note(procs, clients))
        out.insert(0, release)
    return out


def _start_step(verb: str, unit: str, device: MpsDevice) -> Step:
    """``systemctl start|restart UNIT``; when it fails, the unit's last journal lines go with the error, so the
    helper's reason (a device that is not there, a GPU that changed) reaches the plan's output."""
    return Step.run(f"systemctl {verb} {_q(unit)} || {{ journalctl -u {_q(unit)} -n 8 -o cat --no-pager >&2; "
                    "exit 1; }", f"{verb} {unit} ({device.name})")


def _idle_server_note(procs: Sequence[Mapping[str, Any]], clients: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    """Why ``--force`` is safe when the only process on a device the MIG plugin re-creates is its idle MPS server."""
    servers = [p for p in procs if str(p.get("name", "")).endswith(SERVER)]
    if not servers or clients or _others(procs):
        return ()
    return (f"PID {_describe(servers)} is this daemon's MPS server without clients: the MIG change counts it as "
            "busy, but this change stops it first, so --force loses no work here",)


def _refresh(device: MpsDevice, settings: Mapping[str, Any], record: Mapping[str, Any], facts: Mapping[str, Any],
             reasons: list[str]) -> list[Step]:
    """Steps for a daemon that runs as configured but lost a default or its GPU's compute mode (no restart)."""
    steps: list[Step] = []
    percentage = settings.get("active_thread_percentage")
    limit = settings.get("pinned_mem_limit")
    reported_pct = record.get("active_thread_percentage")
    reported_limit = record.get("pinned_mem_limit")
    lost = (percentage is not None and reported_pct is not None and abs(float(percentage) - reported_pct) > 0.05) \
        or (limit is not None and record.get("answers") and reported_limit != limit)
    if lost:
        steps.append(Step.run(f"{_q(HELPER_PATH, 'ready', env_path(device.instance))}",
                              f"set the defaults of the daemon for {device.name} again"))
        reasons.append("defaults set again")
    mode = COMPUTE_MODES[settings.get("compute_mode") or "exclusive"]
    if not device.is_mig and mode is not None:
        have = _compute_mode(facts, device.gpu)
        if have is not None and have != SMI_MODES[mode]:
            steps.append(Step.run(_q("nvidia-smi", "-i", device.gpu, "-c", mode),
                                  f"set compute mode {mode} on GPU {device.gpu} again (was {have})"))
            reasons.append(f"compute mode {mode} again")
    return steps


def _removal(host: str, facts: Mapping[str, Any], settings: Mapping[str, Any], record: Mapping[str, Any],
             current: MpsDevice | None, *, kept: bool) -> Change:
    """Stop and remove the daemon of a device no longer selected (or gone), restoring a whole GPU's compute mode."""
    instance = record["instance"]
    env = record.get("env") or {}
    name = env.get("GPUPROV_MPS_DEVICE") or instance
    unit = f"nvidia-mps@{instance}.service"
    steps: list[Step] = []
    active = record.get("unit", {}).get("active") in ("active", "activating", "reloading", "failed")
    if active:
        steps.append(Step.run(f"systemctl stop {_q(unit)}"))
    if record.get("unit", {}).get("enabled") not in ("", "disabled", None):
        steps.append(Step.run(f"systemctl disable {_q(unit)}"))
    steps.append(Step.remove(env_path(instance), before=record.get("env_text")))
    gpu_text = env.get("GPUPROV_MPS_GPU", "")
    if not env.get("GPUPROV_MPS_MIG_START") and gpu_text.isdigit() and \
            env.get("GPUPROV_MPS_COMPUTE_MODE") == "EXCLUSIVE_PROCESS":  # only what gpuprov set (not "unchanged")
        have = _compute_mode(facts, int(gpu_text))
        if have not in (None, "Default") and not _gpu_in_mig(facts, int(gpu_text)):
            steps.append(Step.run(_q("nvidia-smi", "-i", gpu_text, "-c", "DEFAULT"),
                                  f"restore the DEFAULT compute mode of GPU {gpu_text} (was {have})"))
    clients = _clients(_processes(facts, current))
    if not settings.get("enabled", True):
        why = "MPS is off"
    elif kept:
        why = "no longer selected in mps.devices"
    elif current is not None:
        why = "the MIG changes of this play remove the device"
    else:
        why = "the device is gone"
    blocked = None
    if clients:
        blocked = (f"{host}: {name}: PID {_describe(clients)} are clients of its MPS daemon; stopping it cuts them "
                   "off: let them finish or use --force")
    return Change(f"mps/daemon/{instance}", f"remove the MPS daemon for {name} ({why})", steps=tuple(steps),
                  disruption=Disruption.GPU_IDLE if active else Disruption.NONE, blocked=blocked,
                  before={"device": name, "gpu": int(gpu_text) if gpu_text.isdigit() else None, "unit": unit,
                          "state": "running" if active else "stopped"}, after=None)


def _gpu_in_mig(facts: Mapping[str, Any], gpu: int) -> bool:
    return any(g["index"] == gpu and g.get("mig_current") for g in facts.get("gpus") or ())


# -- around the MIG plugin's changes -----------------------------------------------------------------------------

_MIG_CHANGE = re.compile(r"^mig/(?:mode/)?gpu(\d+)$")


def order_around_mig(changes: list[Change]) -> None:
    """Move MPS releases and removals on a GPU before the MIG plugin's first change of that GPU (in place).

    A daemon must let go of a MIG device before the device is destroyed, and of a whole GPU before its MIG mode
    changes (a GPU reset needs it idle); the daemons for the new devices start after, in MPS's own changes."""
    first_mig: dict[int, int] = {}
    for i, change in enumerate(changes):
        m = _MIG_CHANGE.match(change.id)
        if m and int(m.group(1)) not in first_mig:
            first_mig[int(m.group(1))] = i
    if not first_mig:
        return
    movers = [c for c in changes if c.plugin in ("", "mps") and isinstance(c.before, dict)
              and c.before.get("gpu") in first_mig
              and (c.id.startswith("mps/release/") or (c.id.startswith("mps/daemon/") and c.after is None))]
    if not movers:
        return
    rest = [c for c in changes if c not in movers]
    for mover in movers:
        gpu = mover.before["gpu"]
        target = next(c for c in rest if (m := _MIG_CHANGE.match(c.id)) and int(m.group(1)) == gpu)
        rest.insert(rest.index(target), mover)
    changes[:] = rest


# -- verify ------------------------------------------------------------------------------------------------------

def verify_daemons(ti: Any, facts: Mapping[str, Any], settings: Mapping[str, Any]) -> None:
    """testinfra check: every selected device's unit is active and its daemon answers on its pipe directory."""
    try:
        devices = select(host_devices(facts), settings.get("devices") or "all",
                         [g["index"] for g in facts.get("gpus") or () if g.get("mig_current")])
    except SelectionError as exc:
        raise AssertionError(f"mps.devices: {exc}") from None
    problems = []
    for device in devices:
        state = ti.run(f"systemctl is-active {_q(device.unit)}").stdout.strip()
        if state != "active":
            problems.append(f"{device.unit} is {state or 'unknown'}, not active")
            continue
        pipe = str(settings.get("pipe_dir") or "/run/nvidia-mps/{device}").replace(PLACEHOLDER, device.instance)
        answer = ti.run(f"printf 'get_server_list\\n' | CUDA_MPS_PIPE_DIRECTORY={_q(pipe)} timeout 10 "
                        "nvidia-cuda-mps-control")
        if answer.rc != 0:
            problems.append(f"{device.name}: no MPS daemon answers on {pipe}: {answer.stdout.strip()}")
    assert not problems, "; ".join(problems)


def verify_none(ti: Any) -> None:
    """testinfra check: no environment file (and so no daemon) gpuprov installed is left."""
    left = ti.run(f"ls {_q(ENV_DIR)}").stdout.split()
    assert not [f for f in left if f.endswith(".env")], f"MPS daemons still configured in {ENV_DIR}: {left}"


# -- export ------------------------------------------------------------------------------------------------------

def export_settings(facts: Mapping[str, Any]) -> dict[str, Any] | None:
    """The daemons gpuprov runs on a host now, as a play's ``mps:`` section that plans nothing on that host.

    Read back from the environment files (what the daemons start with): the devices (``all``/``mig``/``gpus``
    when they are exactly those), limits, multi-user, compute mode, directory patterns; the user from the unit."""
    daemons = [d for d in (facts.get("mps") or {}).get("daemons") or () if d.get("env")]
    if not daemons:
        return None
    by_name = {d["env"].get("GPUPROV_MPS_DEVICE", d["instance"]): d for d in daemons}
    devices = host_devices(facts)
    names = [d.name for d in devices if d.name in by_name]
    section: dict[str, Any] = {}
    if names == [d.name for d in devices]:
        section["devices"] = "all"
    elif names == [d.name for d in devices if d.is_mig]:
        section["devices"] = "mig"
    elif names == [d.name for d in devices if not d.is_mig]:
        section["devices"] = "gpus"
    else:
        section["devices"] = [int(n[3:]) if n[3:].isdigit() else n for n in names]
    env = daemons[0]["env"]
    percentage = env.get("GPUPROV_MPS_ACTIVE_THREAD_PERCENTAGE")
    if percentage:
        value = float(percentage)
        section["active_thread_percentage"] = int(value) if value.is_integer() else value
    if env.get("GPUPROV_MPS_PINNED_MEM_LIMIT"):
        section["pinned_mem_limit"] = env["GPUPROV_MPS_PINNED_MEM_LIMIT"]
    user = daemons[0].get("unit", {}).get("user") or "root"
    if user != "root":
        section["user"] = user
    if env.get("GPUPROV_MPS_MULTIUSER") == "yes":
        section["multiuser"] = True
    whole = [d["env"] for d in daemons if not d["env"].get("GPUPROV_MPS_MIG_START")]
    if whole:
        mode = whole[0].get("GPUPROV_MPS_COMPUTE_MODE", "")
        section["compute_mode"] = {"EXCLUSIVE_PROCESS": "exclusive", "DEFAULT": "default"}.get(mode, "unchanged")
    for key, var in (("pipe_dir", "CUDA_MPS_PIPE_DIRECTORY"), ("log_dir", "CUDA_MPS_LOG_DIRECTORY")):
        path = env.get(var, "")
        instance = daemons[0]["instance"]
        pattern = path.replace(instance, PLACEHOLDER, 1) if instance in path else path
        if pattern and pattern != SCHEMA_DEFAULTS[key]:
            section[key] = pattern
    timeout = env.get("GPUPROV_MPS_CONTROL_TIMEOUT", "")
    if timeout.isdigit() and int(timeout) != SCHEMA_DEFAULTS["stop_timeout"]:
        section["stop_timeout"] = int(timeout)
    return {"mps": section}
