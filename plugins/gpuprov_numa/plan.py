"""Planning NUMA placement: from the topology facts and the play's ``numa:`` settings to wrappers and drop-ins.

Pure: nothing here touches a host. For every GPU (and every MIG device the MIG plugin leaves or is about to
create, read from ``planned``) the plan works out one :class:`Placement` — the CPUs and the memory nodes its work
should use — and renders it twice: as a ``numactl`` wrapper users run jobs through, and as a systemd drop-in for the
MPS daemon serving that device. Rules (``reference/numa.md`` §3, §5, §8):

- CPUs come from the GPU's node; a CPU-less node (HBM, CXL, a coherent GPU's own memory) is never used for CPUs:
  the nearest node that has CPUs (by the distance table, then the lower id) serves instead.
- Memory is bound only to nodes that have memory (``--membind`` to a memory-less node fails); a memory-less node's
  GPU gets the nearest node with memory.
- CPUs are bound by explicit list (``--physcpubind``), never ``--cpunodebind``, which refuses nodes outside
  ``Mems_allowed`` even when only CPUs are wanted.
- A GPU whose locality is unknown (``numa_node`` -1 and no other source) is not pinned; the plan says so.

Change ids: ``numa/wrapper/<name>`` (one per wrapper; a MIG device's wrapper finds the device's current UUID
itself, each time it runs), ``numa/mps/<instance>`` (a drop-in per MPS unit instance), ``numa/balancing``
(``kernel.numa_balancing``) and ``numa/remove/<path>`` for files this plugin wrote earlier that no device needs.
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

from .facts import (
    BALANCING_PATH,
    DROPIN_NAME,
    MPS_UNIT_DIR,
    SYSCTL_PATH,
    format_cpulist,
    parse_cpulist,
    parse_numactl_show,
)

SYSTEMD_NUMA = 243  # NUMAPolicy= and NUMAMask= (systemd PR #12764)
NAME_FIELDS = {"gpu", "device"}


@dataclass(frozen=True)
class Placement:
    """Where one device's work runs. ``cpus`` empty: CPUs not bound; ``memory_nodes`` empty with a ``bind``/
    ``preferred``/``interleave`` policy cannot happen (the policy is then ``None``: memory left alone)."""

    node: int | None  # the device's own node (None: unknown)
    cpus: tuple[int, ...]
    cpu_node: int | None  # the node the CPUs come from (differs from node when node has no CPUs)
    policy: str | None  # bind | preferred | interleave | local | None
    memory_nodes: tuple[int, ...]
    notes: tuple[str, ...] = ()

    def numactl_args(self) -> list[str]:
        args = []
        if self.cpus:
            args.append(f"--physcpubind={format_cpulist(self.cpus)}")
        nodes = ",".join(str(n) for n in self.memory_nodes)
        if self.policy == "bind":
            args.append(f"--membind={nodes}")
        elif self.policy == "preferred":
            args.append(f"--preferred={nodes}")
        elif self.policy == "interleave":
            args.append(f"--interleave={nodes}")
        elif self.policy == "local":
            args.append("--localalloc")
        return args

    def describe(self) -> str:
        if not self.cpus and self.policy is None:
            return "not pinned"
        parts = []
        if self.cpus:
            parts.append(f"CPUs {format_cpulist(self.cpus)}" + (f" (node {self.cpu_node})"
                                                                 if self.cpu_node is not None else ""))
        if self.policy == "local":
            parts.append("memory local")
        elif self.policy is not None:
            parts.append(f"memory {self.policy} {','.join(str(n) for n in self.memory_nodes)}")
        return ", ".join(parts)


@dataclass(frozen=True)
class Device:
    """A GPU or a MIG device the plan places: what its wrapper is called and how it selects the device."""

    key: str  # gpu0, gpu0-mig4, gpu0-mig4-ci1: change ids, and the MPS plugin's unit instance names
    gpu: int
    uuid: str | None  # the GPU's UUID
    mig: str | None  # where the MIG device is: "4" (its GI's first slice), "4-ci1" (split GI); None: whole GPU
    profile: str | None = None
    gi_start: int | None = None  # the GPU instance's first memory slice
    ci_position: int | None = None  # the compute instance's rank inside its GPU instance

    @property
    def label(self) -> str:
        if self.mig is None:
            return f"GPU {self.gpu}"
        name = f"gpu{self.gpu}/mig@{self.gi_start}" + (f"/ci{self.ci_position}" if "-ci" in self.mig else "")
        return f"MIG device {name} ({self.profile})"


# -- placement ---------------------------------------------------------------------------------------------------

def _nearest(origin: Mapping[str, Any], candidates: Sequence[Mapping[str, Any]],
             then: Mapping[str, Any] | None = None) -> Mapping[str, Any] | None:
    """The candidate closest to ``origin`` by the distance table; ties go to the one closest to ``then`` (the
    device's own node), then to the lower id."""
    if not candidates:
        return None
    first = origin.get("distances") or {}
    second = (then or {}).get("distances") or {}
    return min(candidates, key=lambda n: (first.get(str(n["id"]), 10**6), second.get(str(n["id"]), 10**6), n["id"]))


def _has_memory(node: Mapping[str, Any]) -> bool:
    return node.get("memory_mb") is None or node["memory_mb"] > 0


def cpu_setting(value: Any) -> str | list[int]:
    """``cpu_binding`` as ``"node"``, ``"none"`` or an explicit CPU list (``"0-7,64-71"`` or ``[0, 1]``)."""
    if isinstance(value, str) and value.strip().lower() in ("node", "none"):
        return value.strip().lower()
    if isinstance(value, list):
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value) or not value:
            raise ValueError("a CPU list holds CPU numbers, e.g. [0, 1, 2]")
        return sorted(set(value))
    if isinstance(value, int) and not isinstance(value, bool):
        return [value]
    if isinstance(value, str):
        try:
            cpus = parse_cpulist(value, "a CPU list")
        except ValueError as exc:
            raise ValueError(f"expected node, none or a CPU list like 0-7,64-71, got {value!r} ({exc})") from None
        if not cpus:
            raise ValueError("an empty CPU list: give node, none or CPUs like 0-7,64-71")
        return cpus
    raise ValueError(f"expected node, none or a CPU list like 0-7,64-71, got {value!r}")


def place(host: str, label: str, node_id: int | None, numa: Mapping[str, Any],
          settings: Mapping[str, Any]) -> Placement:
    """The placement of a device local to ``node_id`` under the play's ``cpu_binding`` and ``memory_policy``."""
    nodes = list(numa.get("nodes") or ())
    by_id = {n["id"]: n for n in nodes}
    online = sorted({c for n in nodes for c in n["cpus"]})
    binding = cpu_setting(settings.get("cpu_binding", "node"))
    policy = str(settings.get("memory_policy") or "bind")
    notes: list[str] = []
    node = by_id.get(node_id) if node_id is not None else None

    cpu_node = None
    if node is not None:
        cpu_node = node if node["cpus"] else _nearest(node, [n for n in nodes if n["cpus"]])
        if cpu_node is not None and cpu_node is not node:
            notes.append(f"node {node['id']} has no CPUs; CPUs of the nearest node {cpu_node['id']} are used")
    if isinstance(binding, str):  # "node" or "none"
        cpus: tuple[int, ...] = tuple(cpu_node["cpus"]) if cpu_node is not None and binding == "node" else ()
    else:
        unknown = sorted(set(binding) - set(online))
        if unknown:
            raise GpuprovError(f"{host}: {label}: numa.cpu_binding names CPUs {format_cpulist(unknown)}, which the "
                               f"host does not have (online CPUs: {format_cpulist(online) or 'none'})")
        cpus = tuple(binding)

    memory_nodes: tuple[int, ...] = ()
    with_memory = [n for n in nodes if _has_memory(n)]
    chosen_policy: str | None = policy
    if policy in ("bind", "preferred"):
        home = node
        if home is not None and not home["cpus"] and cpu_node is not None:
            home = cpu_node  # a CPU-less node's GPU: the process's memory goes next to its CPUs
        if home is not None and not _has_memory(home):
            near = _nearest(home, with_memory, node)
            if near is not None:
                notes.append(f"node {home['id']} has no memory; memory goes to the nearest node {near['id']}")
            home = near
        if home is None:
            chosen_policy = None
        else:
            memory_nodes = (home["id"],)
    elif policy == "interleave":
        memory_nodes = tuple(n["id"] for n in with_memory if n["cpus"]) or tuple(n["id"] for n in with_memory)
        if not memory_nodes:
            chosen_policy = None
    if node is None and policy in ("bind", "preferred"):
        chosen_policy, memory_nodes = None, ()
    return Placement(node_id if node is not None else None, cpus,
                     cpu_node["id"] if cpu_node is not None and cpus and binding == "node" else None,
                     chosen_policy, memory_nodes, tuple(notes))


# -- devices -----------------------------------------------------------------------------------------------------

def devices(planned: Mapping[str, Any]) -> list[Device]:
    """Every GPU and MIG device of the host as planned (MIG devices the MIG plugin is about to create included).

    A MIG device is named by where it is, as the MPS plugin names its units: its GPU and the first memory slice of
    its GPU instance (``gpu0-mig4``), plus ``-ciN`` for the N-th compute instance (by id) of a split GPU instance
    (``gpu0-mig4-ci1``). Neither changes when the driver re-creates the device with a new UUID and new instance
    ids, so wrapper names and MPS drop-ins stay put across re-creation and reboots.
    """
    out: list[Device] = []
    by_gi: dict[tuple[int, int], list[Mapping[str, Any]]] = {}
    for d in planned.get("mig_devices") or ():
        by_gi.setdefault((d["gpu"], d["placement"][0]), []).append(d)
    for g in sorted(planned.get("gpus") or (), key=lambda g: g["index"]):
        if not g.get("mig_current"):  # CUDA shows a GPU in MIG mode only through its MIG devices
            out.append(Device(f"gpu{g['index']}", g["index"], g.get("uuid"), None))
        for (gpu, start), cis in sorted(by_gi.items()):
            if gpu != g["index"]:
                continue
            ordered = sorted(cis, key=lambda d: d["ci"] if d["ci"] is not None else 0)
            for rank, d in enumerate(ordered):
                where = f"{start}-ci{rank}" if len(ordered) > 1 else str(start)
                out.append(Device(f"gpu{gpu}-mig{where}", gpu, g.get("uuid"), where, d["profile"], start, rank))
    return out


def wrapper_name(pattern: str, device: Device) -> str:
    """The file name a pattern gives a device: ``gpu{gpu}-run`` -> ``gpu0-run``."""
    try:
        name = pattern.format(gpu=device.gpu, device=device.mig if device.mig is not None else "")
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"pattern {pattern!r}: {exc}; use the fields {{gpu}} and {{device}}") from None
    return name


def check_name_pattern(pattern: str, mig: bool) -> str | None:
    """Why a ``wrapper_name`` pattern cannot work, or ``None``."""
    fields = set(re.findall(r"{([^{}]*)}", pattern))
    unknown = fields - NAME_FIELDS
    if unknown:
        return f"unknown field(s) {', '.join(sorted(unknown))}; use {{gpu}} (and {{device}} for MIG devices)"
    if "gpu" not in fields:
        return "must contain {gpu}, or every GPU's wrapper would get the same name"
    if mig and "device" not in fields:
        return "must contain {device}, or every MIG device of a GPU would get the same name"
    if "/" in pattern or pattern.startswith(".") or not re.fullmatch(r"[A-Za-z0-9._{}+-]+", pattern):
        return "a file name of letters, digits, '.', '_', '+' and '-' (no '/')"
    return None


# -- rendering ---------------------------------------------------------------------------------------------------

def render_wrapper(templates: Templates, host: str, name: str, device: Device, placement: Placement) -> str:
    return templates.render("gpu-run.sh.j2", host=host, name=name, device=device, placement=placement,
                            numactl=placement.numactl_args())


def render_dropin(templates: Templates, host: str, device: Device, placement: Placement, systemd: int | None,
                  exec_start: Sequence[str]) -> str:
    """The MPS unit's drop-in: ``NUMAPolicy=``/``NUMAMask=``/``CPUAffinity=`` on systemd 243+, else ``numactl``
    around the unit's own ``ExecStart=`` lines (``exec_start``)."""
    native = systemd is None or systemd >= SYSTEMD_NUMA
    policy = placement.policy
    return templates.render(
        "mps-numa.conf.j2", host=host, device=device, placement=placement, native=native,
        cpus=format_cpulist(placement.cpus), policy=policy,
        mask=",".join(str(n) for n in placement.memory_nodes),
        exec_start=[_wrap_exec(line, placement) for line in exec_start] if not native else [],
        systemd=systemd,
    )


def _wrap_exec(line: str, placement: Placement) -> str:
    """``ExecStart=-/usr/bin/x a`` -> ``ExecStart=-/usr/bin/numactl --physcpubind=... -- /usr/bin/x a`` (systemd's
    command prefixes stay in front)."""
    m = re.match(r"^([-@:+!]*)(.*)$", line.strip())
    assert m is not None
    prefix, command = m.group(1), m.group(2)
    return f"{prefix}/usr/bin/numactl {' '.join(placement.numactl_args())} -- {command}"


def exec_start_lines(unit: str | None) -> list[str]:
    """The ``ExecStart=`` values of a unit file (the last reset wins, as systemd merges them)."""
    lines: list[str] = []
    section = None
    for raw in (unit or "").splitlines():
        line = raw.strip()
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]" and line.startswith("ExecStart="):
            value = line.split("=", 1)[1]
            if value:
                lines.append(value)
            else:
                lines = []
    return lines


def render_sysctl(templates: Templates, host: str, value: int) -> str:
    return templates.render("sysctl-numa.conf.j2", host=host, value=value)


# -- the plan ----------------------------------------------------------------------------------------------------

def wrapper_paths(host: str, devs: Sequence[Device], settings: Mapping[str, Any]) -> list[tuple[Device, str, str]]:
    """``(device, file name, path)`` of every wrapper the settings ask for."""
    wrapper_dir = str(settings.get("wrapper_dir") or "/usr/local/bin").rstrip("/") or "/"
    out: list[tuple[Device, str, str]] = []
    seen: set[str] = set()
    for dev in devs:
        pattern = settings.get("mig_wrapper_name" if dev.mig is not None else "wrapper_name") or (
            "gpu{gpu}-mig{device}-run" if dev.mig is not None else "gpu{gpu}-run")
        name = wrapper_name(str(pattern), dev)
        path = f"{wrapper_dir}/{name}" if wrapper_dir != "/" else f"/{name}"
        if path in seen:
            raise GpuprovError(f"{host}: two devices get the wrapper {path}; give numa.wrapper_name and "
                               "numa.mig_wrapper_name patterns that differ")
        seen.add(path)
        out.append((dev, name, path))
    return out


def wrapper_targets(host: str, facts: Mapping[str, Any], settings: Mapping[str, Any]) -> list[tuple[str, Placement]]:
    """``(path, placement)`` of every wrapper the host should have now (for ``gpuprov verify``)."""
    if not settings.get("wrappers", True):
        return []
    numa = facts.get("numa") or {}
    node_of = {g["index"]: g["node"] for g in numa.get("gpus") or ()}
    return [(path, place(host, dev.label, node_of.get(dev.gpu), numa, settings))
            for dev, _, path in wrapper_paths(host, devices(facts), settings)]


def verify_wrappers(ti: Any, targets: Sequence[tuple[str, Placement]]) -> None:
    """testinfra check: each wrapper runs ``numactl --show`` under the planned CPUs and memory policy."""
    problems = []
    for path, p in targets:
        r = ti.run(f"{shlex.quote(path)} numactl --show")
        if r.rc != 0:
            problems.append(f"{path} exited {r.rc}: {(r.stderr or r.stdout).strip()[:200]}")
            continue
        shown = parse_numactl_show(r.stdout)
        nodes = tuple(p.memory_nodes)
        if p.cpus and tuple(shown.physcpubind) != p.cpus:
            problems.append(f"{path} runs on CPUs {format_cpulist(shown.physcpubind)}, planned "
                            f"{format_cpulist(p.cpus)}")
        wrong = {
            "bind": shown.policy != "bind" or shown.membind != nodes,
            "preferred": shown.policy != "preferred" or shown.preferred != ",".join(map(str, nodes)),
            "interleave": shown.policy != "interleave" or shown.interleave != nodes,
            "local": shown.policy != "local",
        }.get(p.policy or "", False)
        if wrong:
            problems.append(f"{path} runs with memory policy {shown.policy} (membind "
                            f"{format_cpulist(shown.membind) or '-'}), planned {p.describe()}")
    assert not problems, "; ".join(problems)


def _file_change(change_id: str, summary: str, path: str, content: str, mode: int,
                 files: Mapping[str, Mapping[str, Any]], after: Any, extra: Sequence[Step] = ()) -> Change | None:
    have = files.get(path)
    if have is not None and have["content"] == content and have["mode"] == mode:
        return None
    steps = [Step.write(path, content, mode=mode, owner="root", group="root",
                        before=have["content"] if have else None), *extra]
    return Change(change_id, summary, steps=tuple(steps), before=None if have is None else {"path": path},
                  after=after)


def mps_instances(planned: Mapping[str, Any], keys: Sequence[str]) -> list[str]:
    """The MPS unit instances to place, from what the MPS plugin put in ``planned``.

    The MPS plugin lists them as ``planned["mps"]["devices"]`` records with an ``instance`` (``gpu0``,
    ``gpu0-mig4``); unit names (``nvidia-mps@gpu0.service``) and plain instance names are read too. Only instances
    naming a device this plan knows get a drop-in.
    """
    mps = planned.get("mps") or {}
    found: list[str] = []
    for key in ("devices", "units", "instances"):
        for item in mps.get(key) or ():
            name = item
            if isinstance(item, Mapping):
                name = item.get("instance") or item.get("unit") or item.get("device") or ""
            name = str(name)
            m = re.fullmatch(r"nvidia-mps@(.+)\.service", name)
            if m:
                name = m.group(1)
            name = name.replace("@", "").replace("/", "-")
            if name in keys and name not in found:
                found.append(name)
    return found


def plan_host(host: str, facts: Mapping[str, Any], settings: Mapping[str, Any], planned: dict[str, Any],
              templates: Templates) -> list[Change]:
    """All NUMA changes of a host; records the placements in ``planned["numa"]["placements"]``."""
    numa = facts.get("numa") or {}
    files: Mapping[str, Mapping[str, Any]] = numa.get("files") or {}
    node_of = {g["index"]: g["node"] for g in numa.get("gpus") or ()}
    disagree = {g["index"]: g["disagree"] for g in numa.get("gpus") or () if g.get("disagree")}
    changes: list[Change] = []
    wanted_paths: set[str] = set()
    placements: dict[str, dict[str, Any]] = {}
    devs = devices(planned)
    need_numactl = False

    placed: dict[str, Placement] = {}
    for dev in devs:
        node = node_of.get(dev.gpu)
        p = place(host, dev.label, node, numa, settings)
        placed[dev.key] = p
        placements[dev.key] = {"node": p.node, "cpus": list(p.cpus), "policy": p.policy,
                               "memory_nodes": list(p.memory_nodes)}
        if p.numactl_args():
            need_numactl = True

    if settings.get("wrappers", True) and devs:
        if need_numactl and not numa.get("numactl"):
            raise GpuprovError(f"{host}: numactl is not installed, and the wrappers exec it; install it "
                               "(apt-get install numactl / dnf install numactl) or set numa.wrappers: false")
        for dev, name, path in wrapper_paths(host, devs, settings):
            p = placed[dev.key]
            wanted_paths.add(path)
            content = render_wrapper(templates, host, name, dev, p)
            warnings = tuple(p.notes) + ((disagree[dev.gpu],) if dev.gpu in disagree else ())
            if not p.numactl_args():
                why = "its NUMA node is unknown" if p.node is None else "cpu_binding: none and no memory policy"
                warnings += (f"{dev.label}: the wrapper selects the device but does not pin ({why})",)
            c = _file_change(f"numa/wrapper/{name}", f"{dev.label}: wrapper {path} ({p.describe()})", path,
                             content, 0o755, files, {"path": path, **placements[dev.key]})
            if c is not None:
                changes.append(Change(c.id, c.summary, c.steps, before=c.before, after=c.after,
                                      warnings=warnings))

    if settings.get("place_mps", True):
        keys = [d.key for d in devs]
        instances = mps_instances(planned, keys)
        systemd = numa.get("systemd")
        native = systemd is None or systemd >= SYSTEMD_NUMA
        exec_start: list[str] = []
        mps_facts = facts.get("mps") or {}
        if instances and not native:
            unit = (planned.get("mps") or {}).get("unit_template") or (mps_facts.get("files") or {}).get("unit") \
                or numa.get("mps_unit")
            exec_start = exec_start_lines(unit)
            if not exec_start:
                raise GpuprovError(f"{host}: systemd {systemd} is older than {SYSTEMD_NUMA} (no NUMAPolicy=), so the "
                                   "MPS units must run numactl around their ExecStart=, but nvidia-mps@.service is "
                                   "not installed yet to wrap; apply once with numa.place_mps: false, then with "
                                   "place_mps again")
            if not numa.get("numactl"):
                raise GpuprovError(f"{host}: systemd {systemd} needs numactl in the MPS units (no NUMAPolicy= "
                                   "before 243), and numactl is not installed; install it or set numa.place_mps: "
                                   "false")
        running = {d.get("instance"): d for d in mps_facts.get("daemons") or () if isinstance(d, Mapping)}
        by_key = {d.key: d for d in devs}
        for inst in instances:
            dev, p = by_key[inst], placed[inst]
            path = f"{MPS_UNIT_DIR}/nvidia-mps@{inst}.service.d/{DROPIN_NAME}"
            unit_name = f"nvidia-mps@{inst}.service"
            wanted_paths.add(path)
            content = render_dropin(templates, host, dev, p, systemd, exec_start)
            # A drop-in takes effect when the daemon starts: restart it if it runs (the MPS plugin may have started
            # it earlier in this very apply, before the drop-in existed).
            now = running.get(inst) or {}
            active = (now.get("unit") or {}).get("active") == "active"
            restart = Step.run(f"systemctl try-restart {shlex.quote(unit_name)}",
                               f"restart {unit_name} if it runs, so the placement takes effect")
            c = _file_change(f"numa/mps/{inst}", f"{dev.label}: MPS unit {unit_name} placed ({p.describe()})",
                             path, content, 0o644, files, {"path": path, **placements[inst]},
                             extra=(Step.run("systemctl daemon-reload"), restart))
            if c is None:
                continue
            blocked = None
            if active and now.get("servers"):
                blocked = (f"{host}: {dev.label}: the MPS daemon {unit_name} serves clients (server PIDs "
                           f"{', '.join(map(str, now['servers']))}); restarting it to apply the placement would cut "
                           "them off: stop them or use --force")
            changes.append(Change(c.id, c.summary + (" and restarted" if active else ""), c.steps,
                                  disruption=Disruption.GPU_IDLE if active else Disruption.NONE, before=c.before,
                                  after=c.after, warnings=tuple(p.notes), blocked=blocked))

    balancing = settings.get("numa_balancing", "unchanged")
    if isinstance(balancing, bool):
        value = 1 if balancing else 0
        wanted_paths.add(SYSCTL_PATH)
        content = render_sysctl(templates, host, value)
        extra: list[Step] = []
        if numa.get("balancing") != value:
            extra.append(Step.run(f"printf '%s\\n' {value} > {shlex.quote(BALANCING_PATH)}",
                                  f"set kernel.numa_balancing to {value} now"))
        c = _file_change("numa/balancing", f"kernel.numa_balancing = {value} (now and at boot, {SYSCTL_PATH})",
                         SYSCTL_PATH, content, 0o644, files, {"numa_balancing": value})
        if c is None and extra:
            c = Change("numa/balancing", f"kernel.numa_balancing = {value} (was {numa.get('balancing')})",
                       steps=tuple(extra), before={"numa_balancing": numa.get("balancing")},
                       after={"numa_balancing": value})
        elif c is not None:
            c = Change(c.id, c.summary, (*c.steps, *extra), before=c.before, after=c.after)
        if c is not None:
            changes.append(c)
    elif SYSCTL_PATH in files:
        wanted_paths.add(SYSCTL_PATH)  # unchanged: the file from an earlier play stays, as the setting says

    for path in sorted(set(files) - wanted_paths):
        # a file this plugin wrote (it carries the marker) that no device needs: a GPU gone, a MIG device destroyed,
        # wrappers or place_mps turned off
        steps = [Step.remove(path, before=files[path]["content"])]
        if path.startswith(MPS_UNIT_DIR + "/"):
            steps.append(Step.run("systemctl daemon-reload"))
        changes.append(Change(f"numa/remove{path}", f"remove {path} (no device needs it any more)",
                              steps=tuple(steps), before={"path": path}, after=None))

    planned.setdefault("numa", {})["placements"] = placements
    return changes
