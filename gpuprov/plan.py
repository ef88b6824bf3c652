"""Plans: what would change on each host, as ``Change``s made of ``Step``s, rendered for people and machines.

A plan is computed from facts alone (it never touches a host), so it can be reviewed, saved with ``plan --out`` and
applied later with ``apply FILE``; the fingerprint of the facts it came from lets ``apply`` refuse a host that
changed in between.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .errors import GpuprovError

PLAN_FORMAT = 1


class Disruption(StrEnum):
    """How much a change disturbs work on the host; ordered from harmless to a reboot."""

    NONE = "none"
    GPU_IDLE = "gpu-idle"  # needs no processes on the GPU (or MIG device) it touches
    GPU_RESET = "gpu-reset"  # resets the GPU
    REBOOT = "reboot"  # only a reboot completes it

    @property
    def rank(self) -> int:
        return list(Disruption).index(self)


@dataclass(frozen=True)
class Step:
    """One thing done on a host: run a command, write a file or remove one.

    ``before`` (for writes) is the file's current content when known, so the plan can show a diff; ``None`` means
    the file does not exist yet. Give it when you read the file: a file gpuprov did not write and would now
    replace is then kept as a backup first (:mod:`gpuprov.manifest`), as is one a person edited since gpuprov
    wrote it (that one needs no ``before``: the manifest's hash tells).
    """

    kind: str  # "run" | "write" | "remove"
    command: str | None = None
    path: str | None = None
    content: str | None = None
    mode: int = 0o644
    owner: str | None = None
    group: str | None = None
    before: str | None = None
    description: str | None = None

    @classmethod
    def run(cls, command: str, description: str | None = None) -> Step:
        return cls("run", command=command, description=description)

    @classmethod
    def write(cls, path: str, content: str, *, mode: int = 0o644, owner: str | None = None,
              group: str | None = None, before: str | None = None, description: str | None = None) -> Step:
        return cls("write", path=path, content=content, mode=mode, owner=owner, group=group, before=before,
                   description=description)

    @classmethod
    def remove(cls, path: str, before: str | None = None, description: str | None = None) -> Step:
        return cls("remove", path=path, before=before, description=description)

    def label(self) -> str:
        if self.description:
            return self.description
        if self.kind == "run":
            return f"run: {self.command}"
        if self.kind == "write":
            return f"write {self.path} (mode {self.mode:04o})"
        return f"remove {self.path}"

    def to_json(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if v is not None}
        data["mode"] = self.mode
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Step:
        return cls(**data)


@dataclass(frozen=True)
class Change:
    """One reviewable unit of change, owned by one plugin, with the steps that make it.

    ``id`` is stable across runs (``mig/gpu0``, ``mps/daemon/gpu0``) so plans can be compared and filtered.
    ``blocked`` explains why the change must not run without ``--force`` (e.g. processes on an instance it would
    destroy); ``warnings`` are shown with the plan but do not block.
    """

    id: str
    summary: str
    steps: tuple[Step, ...] = ()
    disruption: Disruption = Disruption.NONE
    before: Any = None
    after: Any = None
    plugin: str = ""
    blocked: str | None = None
    warnings: tuple[str, ...] = ()
    cleanup: tuple[Step, ...] = ()  # run after the steps whether they succeeded or not (e.g. restart services)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "summary": self.summary, "plugin": self.plugin, "disruption": self.disruption.value,
            "before": self.before, "after": self.after, "blocked": self.blocked, "warnings": list(self.warnings),
            "steps": [s.to_json() for s in self.steps], "cleanup": [s.to_json() for s in self.cleanup],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Change:
        return cls(
            id=data["id"], summary=data["summary"], plugin=data.get("plugin", ""),
            disruption=Disruption(data.get("disruption", "none")), before=data.get("before"),
            after=data.get("after"), blocked=data.get("blocked"), warnings=tuple(data.get("warnings", ())),
            steps=tuple(Step.from_json(s) for s in data.get("steps", ())),
            cleanup=tuple(Step.from_json(s) for s in data.get("cleanup", ())),
        )


def _settled(facts: Any) -> Any:
    """Facts without their ``_``-prefixed keys: readings that change by themselves (free memory, temperatures)
    are shown but are no drift."""
    if isinstance(facts, dict):
        return {k: _settled(v) for k, v in facts.items() if not (isinstance(k, str) and k.startswith("_"))}
    if isinstance(facts, (list, tuple)):
        return [_settled(v) for v in facts]
    return facts


def fingerprint(facts: Any) -> str:
    """A stable digest of a host's facts: ``apply FILE`` compares it to refuse hosts that drifted.

    Keys starting with ``_`` are left out (see :mod:`gpuprov.facts`): a saved plan must not be refused because a
    host's free memory moved between ``plan`` and the change window."""
    canonical = json.dumps(_settled(facts), sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class HostPlan:
    host: str
    changes: list[Change] = field(default_factory=list)
    fingerprint: str = ""
    warnings: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)  # the rendered settings the plan was made with

    @property
    def disruption(self) -> Disruption:
        return max((c.disruption for c in self.changes), key=lambda d: d.rank, default=Disruption.NONE)

    def to_json(self) -> dict[str, Any]:
        return {"host": self.host, "fingerprint": self.fingerprint, "warnings": self.warnings,
                "settings": self.settings,
                "disruption": self.disruption.value, "changes": [c.to_json() for c in self.changes]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HostPlan:
        return cls(host=data["host"], fingerprint=data.get("fingerprint", ""),
                   warnings=list(data.get("warnings", [])), settings=dict(data.get("settings", {})),
                   changes=[Change.from_json(c) for c in data.get("changes", [])])


@dataclass
class Plan:
    """The plans of every host of a run, in inventory order."""

    hosts: dict[str, HostPlan] = field(default_factory=dict)
    playbook: str = ""

    @property
    def changed_hosts(self) -> list[str]:
        return [h for h, p in self.hosts.items() if p.changes]

    def to_json(self) -> dict[str, Any]:
        return {"format": PLAN_FORMAT, "playbook": self.playbook,
                "hosts": [p.to_json() for p in self.hosts.values()]}

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str = "plan") -> Plan:
        if not isinstance(data, dict) or data.get("format") != PLAN_FORMAT:
            raise GpuprovError(f"{source}: not a gpuprov plan (format {PLAN_FORMAT}); make one with "
                               "`gpuprov plan --out FILE`")
        plan = cls(playbook=data.get("playbook", ""))
        for entry in data.get("hosts", []):
            hp = HostPlan.from_json(entry)
            plan.hosts[hp.host] = hp
        return plan

    def save(self, path: str) -> None:
        import os

        tmp = f"{path}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.to_json(), f, indent=1)
            f.write("\n")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str) -> Plan:
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except OSError as exc:
            raise GpuprovError(f"{path}: cannot read the plan: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise GpuprovError(f"{path}:{exc.lineno}:{exc.colno}: not a JSON plan: {exc.msg}") from None
        return cls.from_json(data, path)


def render_change(change: Change, verbose: bool = True) -> list[str]:
    """A change as diff-like lines: ``~`` modify, ``+`` create, ``-`` destroy, with steps and file diffs."""
    sign = "~"
    if change.before in (None, {}, []) and change.after not in (None, {}, []):
        sign = "+"
    elif change.after in (None, {}, []) and change.before not in (None, {}, []):
        sign = "-"
    tag = "" if change.disruption is Disruption.NONE else f"  [{change.disruption.value}]"
    lines = [f"{sign} {change.id}: {change.summary}{tag}"]
    if change.blocked:
        lines.append(f"    ! blocked without --force: {change.blocked}")
    for warning in change.warnings:
        lines.append(f"    ! warning: {warning}")
    if not verbose:
        return lines
    for step in change.steps:
        lines.append(f"    - {step.label()}")
        if step.kind == "write" and step.content is not None:
            before = (step.before or "").splitlines()
            after = step.content.splitlines()
            diff = difflib.unified_diff(before, after, "current", "planned", lineterm="", n=1)
            for line in list(diff)[2:]:
                lines.append(f"        {line}")
    return lines


_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def _fold_key(name: str, body: list[str]) -> str:
    """What must be equal for two hosts' blocks to fold: the text with the host's own name and UUIDs (of its GPUs,
    MIG devices...) blanked, since those differ on every machine of an otherwise identical rack.

    Substituted over the block joined into one string: neither pattern spans a line break, and two calls per host
    instead of two per line took folding from a third of a 1,000-host plan's time to almost nothing."""
    text = "\n".join(body)

    def host(m: re.Match[str]) -> str:  # the name alone, not inside a longer one (gpu1 in gpu10, a.gpu1)
        before = text[m.start() - 1] if m.start() else " "
        return m.group() if before.isalnum() or before in "_.-" else "<host>"

    # The name first, the boundary after: a pattern that starts with a literal is searched for at C speed, one
    # that starts with a look-behind is tried at every position (half of folding's time).
    pattern = re.compile(rf"{re.escape(name)}(?![\w-])")
    return _UUID.sub("<uuid>", pattern.sub(host, text))


def render_text(plan: Plan, verbose: bool = True) -> str:
    """The plan grouped by host; hosts whose changes read the same, but for their names and UUIDs, are folded into
    one block, shown as the first of them would get it."""
    blocks: dict[str, tuple[list[str], list[str]]] = {}
    for name, hp in plan.hosts.items():
        body: list[str] = []
        for warning in hp.warnings:
            body.append(f"! warning: {warning}")
        for change in hp.changes:
            body.extend(render_change(change, verbose))
        blocks.setdefault(_fold_key(name, body), (body, []))[1].append(name)
    out: list[str] = []
    for lines, names in blocks.values():
        if not lines:
            continue
        if len(names) == 1:
            out.append(names[0])
        else:
            out.append(f"{len(names)} hosts: {_fold_names(names)}")
            if verbose and any(_UUID.search(line) or names[0] in line for line in lines):
                out.append(f"  (as planned for {names[0]}; the others differ only in host name and UUIDs)")
        out.extend(f"  {line}" for line in lines)
        out.append("")
    unchanged = [n for n, hp in plan.hosts.items() if not hp.changes and not hp.warnings]
    if unchanged:
        out.append(f"no changes: {_fold_names(unchanged)}")
    changes = sum(len(hp.changes) for hp in plan.hosts.values())
    out.append(f"Plan: {changes} change(s) on {len(plan.changed_hosts)} of {len(plan.hosts)} host(s).")
    return "\n".join(out) + "\n"


def _fold_names(names: Iterable[str], limit: int = 8) -> str:
    names = list(names)
    if len(names) <= limit:
        return ", ".join(names)
    return ", ".join(names[:limit]) + f", ... (+{len(names) - limit})"
