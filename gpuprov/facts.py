"""The shared fact model: the parts of a host's facts that more than one plugin reads.

Facts are plain JSON data (so plans can fingerprint them and ``--json`` can print them), keyed by section. Each
plugin owns its own section (``facts["mig"]``, ``facts["mps"]``, ``facts["numa"]``); the sections below are the
shared vocabulary, written by the plugin that detects them and read by the others through these helpers:

``facts["gpus"]``         list of :class:`Gpu` (written by the MIG plugin, which parses ``nvidia-smi -q -x``)
``facts["mig_devices"]``  list of :class:`MigDevice` (MIG plugin)
``facts["numa_nodes"]``   list of :class:`NumaNode` (NUMA plugin)

A key starting with ``_`` holds a reading that changes by itself (free memory, a temperature): it is shown and
may be read, but it is left out of the fingerprint that ``apply PLAN.json`` compares, so it never counts as drift,
and a plan must not depend on it.

In ``planned`` (see ``gpuprov_plan``) the same sections describe the host as it will be after earlier plugins'
changes; a planned MIG device has ``uuid`` ``None`` because the driver assigns it at creation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str  # product as nvidia-smi prints it
    uuid: str
    bus_id: str  # NVML form, 8-digit domain, upper case
    mig_capable: bool = False
    mig_current: bool = False
    mig_pending: bool = False
    compute_mode: str = "Default"
    memory_mib: int = 0
    numa_node: int | None = None  # filled in by the NUMA plugin's view of the host; None when unknown


@dataclass(frozen=True)
class MigDevice:
    """A MIG device: one compute instance of one GPU instance, as CUDA sees it."""

    gpu: int
    gi: int
    ci: int
    profile: str  # e.g. "3g.40gb" or "1c.3g.40gb"
    uuid: str | None  # MIG-...; None in a plan before the driver created it
    placement: tuple[int, int] = (0, 0)  # GI placement (start, size) in memory slices

    @property
    def name(self) -> str:
        """The stable name users write in playbooks and wrappers use: ``gpu0/gi1/ci0``."""
        return f"gpu{self.gpu}/gi{self.gi}/ci{self.ci}"


@dataclass(frozen=True)
class NumaNode:
    id: int
    cpus: tuple[int, ...] = ()
    memory_mb: int = 0
    distances: tuple[int, ...] = field(default_factory=tuple)


def _load(cls: type[T], items: Any) -> list[T]:
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    out = []
    for item in items or ():
        data = {k: (tuple(v) if isinstance(v, list) else v) for k, v in item.items() if k in names}
        out.append(cls(**data))
    return out


def gpus(facts: Mapping[str, Any]) -> list[Gpu]:
    return _load(Gpu, facts.get("gpus"))


def mig_devices(facts: Mapping[str, Any]) -> list[MigDevice]:
    return _load(MigDevice, facts.get("mig_devices"))


def numa_nodes(facts: Mapping[str, Any]) -> list[NumaNode]:
    return _load(NumaNode, facts.get("numa_nodes"))


def dump(items: list[Any]) -> list[dict[str, Any]]:
    """Dataclasses back to the JSON form stored in facts."""
    return [asdict(i) for i in items]
