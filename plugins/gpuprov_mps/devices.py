"""Which devices get an MPS daemon, and the names a device goes by.

Why names need care: a MIG device's UUID changes every time its instance is re-created (and after every reboot),
and in ``planned`` a device the MIG plugin is about to create has neither a UUID nor a GPU-instance id yet. What
stays the same is where the MIG plugin placed it: the GPU and the first memory slice of its GPU instance (the
``@START`` of a MIG layout such as ``3g.40gb@4``), plus the compute instance's rank inside that GPU instance when it
is split. So a MIG device is named ``gpu0/mig@4`` (``gpu0/mig@4/ci1`` for the second compute instance of a split
GPU instance), a whole GPU ``gpu0``; the systemd instance names are the same with ``-`` for ``/`` and no ``@``
(``gpu0-mig4``, ``gpu0-mig4-ci1``), since ``@`` and ``/`` cannot appear in an instance name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

UNIT_TEMPLATE = "nvidia-mps@.service"


@dataclass(frozen=True)
class MpsDevice:
    """One device an MPS control daemon can serve: a whole GPU or one MIG device (a compute instance)."""

    gpu: int
    gpu_uuid: str
    mig_start: int | None = None  # first memory slice of the GPU instance; None: the whole GPU
    ci_rank: int = 0  # rank of the compute instance inside its GPU instance (by compute-instance id)
    split: bool = False  # the GPU instance holds more than one compute instance
    profile: str | None = None  # the compute instance's profile (MIG devices)
    gi: int | None = None  # GPU-instance id (None in a plan before the driver picked it)
    ci: int | None = None  # compute-instance id
    uuid: str | None = None  # the UUID CUDA knows it by now; None when it is yet to be created

    @property
    def is_mig(self) -> bool:
        return self.mig_start is not None

    @property
    def name(self) -> str:
        """``gpu0``, ``gpu0/mig@4`` or ``gpu0/mig@4/ci1``: what plans, summaries and ``mps-run`` use."""
        if self.mig_start is None:
            return f"gpu{self.gpu}"
        return f"gpu{self.gpu}/mig@{self.mig_start}" + (f"/ci{self.ci_rank}" if self.split else "")

    @property
    def instance(self) -> str:
        """The systemd instance name: ``gpu0``, ``gpu0-mig4``, ``gpu0-mig4-ci1``."""
        return instance_name(self.name)

    @property
    def unit(self) -> str:
        return f"nvidia-mps@{self.instance}.service"

    @property
    def key(self) -> tuple[int, int, int]:
        """What identifies the device across re-creation: GPU, placement start (-1: whole GPU), CI rank."""
        return (self.gpu, -1 if self.mig_start is None else self.mig_start, self.ci_rank)


def instance_name(name: str) -> str:
    """``gpu0/mig@4/ci1`` -> ``gpu0-mig4-ci1`` (a device name to its systemd instance name)."""
    return name.replace("@", "").replace("/", "-")


_NAME = re.compile(r"^gpu(\d+)(?:[/-]mig@?(\d+)(?:[/-]ci(\d+))?)?$")
_ALL_MIG = re.compile(r"^gpu(\d+)[/-]mig$")


def host_devices(state: Mapping[str, Any]) -> list[MpsDevice]:
    """Every device of a host in ``state`` (facts, or ``planned``): whole GPUs not in MIG mode, and MIG devices.

    A GPU whose MIG mode is on offers only its MIG devices (CUDA does not show a MIG-enabled GPU itself); one
    whose mode is off offers itself.
    """
    gpus = sorted(state.get("gpus") or (), key=lambda g: g["index"])
    uuid_of = {g["index"]: g["uuid"] for g in gpus}
    out: list[MpsDevice] = []
    for g in gpus:
        if not g.get("mig_current"):
            out.append(MpsDevice(gpu=g["index"], gpu_uuid=g["uuid"], uuid=g["uuid"]))
    by_gi: dict[tuple[int, int], list[Mapping[str, Any]]] = {}
    for d in state.get("mig_devices") or ():
        by_gi.setdefault((d["gpu"], d["placement"][0]), []).append(d)
    for (gpu, start), cis in sorted(by_gi.items()):
        ranked = sorted(cis, key=lambda d: (d["ci"] is None, d["ci"] if d["ci"] is not None else 0))
        for rank, d in enumerate(ranked):
            out.append(MpsDevice(gpu=gpu, gpu_uuid=uuid_of.get(gpu, ""), mig_start=start, ci_rank=rank,
                                 split=len(ranked) > 1, profile=d.get("profile"), gi=d.get("gi"), ci=d.get("ci"),
                                 uuid=d.get("uuid")))
    out.sort(key=lambda d: d.key)
    return out


class SelectionError(ValueError):
    """A ``devices`` entry that names nothing on the host; the message says what exists."""


def select(devices: Sequence[MpsDevice], wanted: Any, mig_gpus: Sequence[int] = ()) -> list[MpsDevice]:
    """The devices a play's ``mps.devices`` value picks out of ``devices`` (the host as planned).

    ``gpus``: every whole GPU; ``mig``: every MIG device; ``all``: both. A list names GPUs by index (``0``,
    ``"gpu0"``), all MIG devices of one GPU (``"gpu0/mig"``) or one MIG device (``"gpu0/mig@4"``,
    ``"gpu0/mig@4/ci1"``, or its instance name ``"gpu0-mig4"``). ``mig_gpus`` are the indexes of GPUs in MIG
    mode, to explain why such a GPU cannot be named whole.
    """
    if isinstance(wanted, str):
        word = wanted.strip().lower()
        if word == "gpus":
            return [d for d in devices if not d.is_mig]
        if word == "mig":
            return [d for d in devices if d.is_mig]
        if word == "all":
            return list(devices)
        wanted = [wanted]
    chosen: list[MpsDevice] = []
    for entry in wanted:
        for device in _pick(devices, entry, mig_gpus):
            if device not in chosen:
                chosen.append(device)
    chosen.sort(key=lambda d: d.key)
    return chosen


def _pick(devices: Sequence[MpsDevice], entry: Any, mig_gpus: Sequence[int]) -> list[MpsDevice]:
    text = str(entry).strip()
    if isinstance(entry, bool):
        raise SelectionError(f"{entry!r} names no device (use a GPU index such as 0 or a name such as gpu0/mig@4)")
    if isinstance(entry, int) or text.isdigit():
        text = f"gpu{int(text)}"
    known = ", ".join(d.name for d in devices) or "none"
    m = _ALL_MIG.match(text)
    if m:
        found = [d for d in devices if d.is_mig and d.gpu == int(m.group(1))]
        if not found:
            raise SelectionError(f"{entry!r}: GPU {m.group(1)} has no MIG devices (after this play's MIG changes); "
                                 f"devices: {known}")
        return found
    m = _NAME.match(text)
    if not m:
        raise SelectionError(f"{entry!r} is not a device name: use a GPU index (0), gpu0, gpu0/mig (all its MIG "
                             "devices) or gpu0/mig@4 (the MIG device whose GPU instance starts at memory slice 4)")
    gpu = int(m.group(1))
    if m.group(2) is None:
        found = [d for d in devices if not d.is_mig and d.gpu == gpu]
        if not found and gpu in mig_gpus:
            raise SelectionError(f"{entry!r}: GPU {gpu} is in MIG mode, so CUDA (and MPS) sees only its MIG devices; "
                                 f"name them (gpu{gpu}/mig, or one of: {known}) or use devices: mig")
    else:
        start, rank = int(m.group(2)), int(m.group(3) or 0)
        same_gi = [d for d in devices if d.is_mig and d.gpu == gpu and d.mig_start == start]
        if m.group(3) is None and len(same_gi) > 1:
            raise SelectionError(f"{entry!r}: that GPU instance is split into {len(same_gi)} compute instances; "
                                 f"name one: {', '.join(d.name for d in same_gi)}")
        found = [d for d in same_gi if d.ci_rank == rank]
    if not found:
        raise SelectionError(f"{entry!r} names no device of this host (after this play's MIG changes); devices: "
                             f"{known}")
    return found
