"""The simulator's MIG engine: mode changes, resets, reboots, and GPU/compute instances over a :class:`Machine`.

Every rule here is one NVIDIA documents or a capture shows (``shared/reference/mig.md``); where the driver's
behaviour is undocumented the choice made is said where it is made.

- **Mode** (§3.1): on Ampere the driver resets the GPU itself, so ``-mig`` takes effect at once unless something
  holds the GPU (a process on it, or GPU instances when disabling): then the change stays *pending* until a GPU
  reset or a reboot. In a pass-through VM a reset is not possible, so only a reboot clears it. Ampere keeps the mode
  across reboots (an InfoROM bit); Hopper applies the mode at once (no reset) but forgets it when the driver
  reloads, so after a reboot a Hopper GPU is back to MIG disabled.
- **GPU instances** (§1.1-1.3): a GI occupies ``size`` memory slices from one of its profile's possible starts;
  GIs may not overlap and each profile has a maximum count. Without a start the driver chooses; the choice observed
  in every capture is the start that leaves the most placements of all profiles free (ties: the lowest start), so
  ``-cgi 19,14,5`` gives 1g 6:1, 2g 4:2, 4g 0:4 and ``-cgi 19,19,14,9`` fails on the 3g, as on real GPUs.
- **IDs** (§1.4): GI IDs come from per-size pools (8-slice parts: size 1 -> 7..14, 2 -> 3..6, 4 -> 1..2, 8 -> 0;
  an A30: 1 -> 3..6, 2 -> 1..2, 4 -> 0). Which ID of a pool the driver takes is undocumented (captures disagree),
  so the engine picks one with a generator seeded from the GPU and a per-host counter: stable for one host's
  history, not tied to placements. CI IDs are the lowest free number in their GI, from 0.
- **Compute instances**: at the lowest free start aligned to their size; each creation gets a new MIG device UUID.
- **Refusals** (NVML_ERROR_IN_USE): a GI with compute instances or processes, a CI with processes, creating a GI
  while a process holds the whole GPU, a reset while anything uses the GPU.
- **Free/Total** (§1.2.7): the profile's possible placements that overlap no GI, capped by its remaining count.
"""

from __future__ import annotations

import hashlib
import random
import uuid as uuidlib
from dataclasses import dataclass
from typing import Any

from . import migprofiles
from .machine import ComputeInstance, Gpu, GpuInstance, Machine, Process
from .migprofiles import CiProfile, GiProfile

__all__ = [
    "CODES",
    "IN_USE",
    "INSUFFICIENT_RESOURCES",
    "INVALID_ARGUMENT",
    "NOT_FOUND",
    "NOT_SUPPORTED",
    "MigError",
    "ModeChange",
    "auto_start",
    "ci_free_count",
    "ci_profile_of",
    "create_compute_instance",
    "create_gpu_instance",
    "destroy_compute_instance",
    "destroy_gpu_instance",
    "free_count",
    "gi_id_pool",
    "gi_profile_of",
    "holders",
    "is_hopper",
    "mig_devices",
    "profiles",
    "reboot",
    "reset_gpu",
    "set_mig_mode",
]

IN_USE = "In use by another client"
INSUFFICIENT_RESOURCES = "Insufficient Resources"
INVALID_ARGUMENT = "Invalid Argument"
NOT_FOUND = "Not Found"
NOT_SUPPORTED = "Not Supported"
# nvidia-smi's wording of an NVML error -> the NVML return code (nvml.h); nvidia-smi exits with it (no primary
# source gives nvidia-smi's exit codes for MIG errors; its man page maps 2, 3, 4 and 6 the same way).
CODES = {INVALID_ARGUMENT: 2, NOT_SUPPORTED: 3, "Insufficient Permissions": 4, NOT_FOUND: 6, IN_USE: 19,
         INSUFFICIENT_RESOURCES: 23}


class MigError(Exception):
    """An operation the driver refuses, carrying nvidia-smi's wording of the NVML error."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    @property
    def code(self) -> int:
        return CODES.get(self.reason, 255)


@dataclass(frozen=True)
class ModeChange:
    """What ``-mig`` did to one GPU: ``applied``, ``pending`` (with the NVML reason), or ``not-supported``."""

    outcome: str
    reason: str = ""  # for pending: IN_USE (something holds the GPU) or NOT_SUPPORTED (no reset in a VM)


# -- profiles ----------------------------------------------------------------------------------------------------


def profiles(machine: Machine, gpu: Gpu) -> tuple[GiProfile, ...]:
    """The GI profiles this GPU offers on this machine's driver (``()`` without MIG)."""
    return migprofiles.gi_profiles(gpu.product, machine.driver_version)


def is_hopper(gpu: Gpu) -> bool:
    return migprofiles.architecture(gpu.product) == "hopper"


def gi_profile_of(machine: Machine, gpu: Gpu, gi: GpuInstance) -> GiProfile:
    """The profile of an existing GI (it must be one the driver offers: the state was made through this engine)."""
    profile = migprofiles.gi_profile(gpu.product, machine.driver_version, gi.profile_id)
    if profile is None:
        raise KeyError(f"GPU {gpu.index}: GI {gi.id} has profile {gi.profile_id}, which {gpu.product} does not offer "
                       f"on driver {machine.driver_version}")
    return profile


def ci_profile_of(machine: Machine, gpu: Gpu, gi: GpuInstance, ci: ComputeInstance) -> CiProfile:
    profile = migprofiles.ci_profile(gi_profile_of(machine, gpu, gi), ci.profile_id)
    if profile is None:
        raise KeyError(f"GPU {gpu.index}: CI {ci.id} of GI {gi.id} has an unknown profile {ci.profile_id}")
    return profile


# -- who holds a GPU ---------------------------------------------------------------------------------------------


def holders(machine: Machine, gpu: Gpu) -> list[Process]:
    """Processes that hold this GPU (on the whole GPU or on one of its MIG devices)."""
    return [p for p in machine.processes if p.gpu == gpu.index]


# -- mode, reset, reboot -----------------------------------------------------------------------------------------


def set_mig_mode(machine: Machine, gpu: Gpu, enabled: bool) -> ModeChange:
    """``nvidia-smi -i N -mig 0|1`` on one GPU."""
    if not migprofiles.gi_profiles(gpu.product, machine.driver_version):
        return ModeChange("not-supported", NOT_SUPPORTED)
    gpu.mig_pending = enabled
    if enabled == gpu.mig_current:
        return ModeChange("applied")  # asking for the current mode again cancels a pending change
    busy = bool(holders(machine, gpu)) or (not enabled and bool(gpu.gpu_instances))
    if is_hopper(gpu):
        # Hopper needs no reset, but the driver cannot switch a GPU that a client holds (NVML: IN_USE when the
        # device is not idle); the change then waits like Ampere's.
        if busy:
            return ModeChange("pending", IN_USE)
    elif machine.passthrough_vm:
        return ModeChange("pending", NOT_SUPPORTED)
    elif busy:
        return ModeChange("pending", IN_USE)
    _apply_mode(gpu)
    return ModeChange("applied")


def _apply_mode(gpu: Gpu) -> None:
    gpu.mig_current = gpu.mig_pending
    gpu.gpu_instances.clear()  # a reset (the driver's own or nvidia-smi -r) ends every instance


def reset_gpu(machine: Machine, gpu: Gpu) -> str:
    """``nvidia-smi -r``: ``reset`` (a pending mode takes effect, instances are gone), ``in-use`` or
    ``not-supported`` (a pass-through VM)."""
    if machine.passthrough_vm:
        return "not-supported"
    if holders(machine, gpu):
        return "in-use"
    _apply_mode(gpu)
    return "reset"


def reboot(machine: Machine) -> None:
    """What a reboot does to the GPUs: processes and instances are gone; Ampere applies a pending mode (it is kept in
    the InfoROM); Hopper comes back with MIG disabled (its mode lives only in the loaded driver). ``boot_count`` is
    incremented, which tells the systemctl stand-in to boot its units on its next call."""
    machine.processes = []
    for gpu in machine.gpus:
        gpu.gpu_instances.clear()
        if is_hopper(gpu):
            gpu.mig_current = gpu.mig_pending = False
        else:
            gpu.mig_current = gpu.mig_pending
    machine.boot_count += 1


# -- GPU instances -----------------------------------------------------------------------------------------------


def _occupied(gpu: Gpu) -> set[int]:
    return {s for gi in gpu.gpu_instances for s in range(gi.start, gi.start + gi.size)}


def _fits(occupied: set[int], start: int, size: int) -> bool:
    return not occupied.intersection(range(start, start + size))


def free_count(machine: Machine, gpu: Gpu, profile: GiProfile) -> int:
    """``-lgip``'s Free: possible placements overlapping no GI, capped by the instances the profile has left."""
    occupied = _occupied(gpu)
    placeable = sum(1 for s in profile.starts if _fits(occupied, s, profile.size))
    left = profile.max_count - sum(1 for gi in gpu.gpu_instances if gi.profile_id == profile.id)
    return max(0, min(placeable, left))


def auto_start(machine: Machine, gpu: Gpu, profile: GiProfile) -> int | None:
    """Where the driver puts a GI of ``profile`` when no start is given; None when none is free.

    The start that blocks the fewest still-free placements of all the GPU's profiles, lowest start on a tie: this
    reproduces every observed choice (1g first at 6:1, a 2g at 4:2, a 3g at 4:4; then upwards from 0)."""
    occupied = _occupied(gpu)
    everyone = [(p.size, s) for p in profiles(machine, gpu) for s in p.starts if _fits(occupied, s, p.size)]
    best: tuple[int, int] | None = None
    for start in profile.starts:
        if not _fits(occupied, start, profile.size):
            continue
        span = set(range(start, start + profile.size))
        blocked = sum(1 for size, s in everyone if span.intersection(range(s, s + size)))
        if best is None or blocked < best[0]:
            best = (blocked, start)
    return None if best is None else best[1]


def gi_id_pool(machine: Machine, gpu: Gpu, size: int) -> range:
    """The GI IDs the driver gives instances of ``size`` memory slices (n slices: n/size - 1 .. 2n/size - 2)."""
    n = migprofiles.memory_slices(gpu.product)
    return range(n // size - 1, 2 * n // size - 1)


def _state(machine: Machine) -> dict[str, Any]:
    state: dict[str, Any] = machine.services.setdefault("mig", {})
    state.setdefault("serial", 0)
    return state


def _rng(machine: Machine, gpu: Gpu, what: str) -> random.Random:
    state = _state(machine)
    state["serial"] += 1
    seed = hashlib.sha256(f"{machine.hostname}\0{gpu.uuid}\0{what}\0{state['serial']}".encode()).digest()
    return random.Random(seed)


def create_gpu_instance(machine: Machine, gpu: Gpu, profile: GiProfile, start: int | None = None) -> GpuInstance:
    """Create a GI of ``profile`` at ``start`` (or where the driver would put it); raises :class:`MigError`."""
    if any(p.gi is None for p in holders(machine, gpu)):
        raise MigError(IN_USE)  # a process holding the whole GPU (e.g. a profiler on /dev/nvidia0)
    if start is not None and start not in profile.starts:
        raise MigError(INVALID_ARGUMENT)
    if free_count(machine, gpu, profile) == 0:
        raise MigError(INSUFFICIENT_RESOURCES)
    if start is None:
        start = auto_start(machine, gpu, profile)
    if start is None or not _fits(_occupied(gpu), start, profile.size):
        raise MigError(INSUFFICIENT_RESOURCES)
    taken = {gi.id for gi in gpu.gpu_instances}
    pool = [i for i in gi_id_pool(machine, gpu, profile.size) if i not in taken]
    if not pool:
        raise MigError(INSUFFICIENT_RESOURCES)
    gi = GpuInstance(id=_rng(machine, gpu, "gi").choice(pool), profile_id=profile.id, start=start, size=profile.size)
    gpu.gpu_instances.append(gi)
    return gi


def destroy_gpu_instance(machine: Machine, gpu: Gpu, gi: GpuInstance) -> None:
    """Destroy a GI: refused while it has compute instances or processes (NVML_ERROR_IN_USE)."""
    if gi.compute_instances or any(p.gi == gi.id for p in holders(machine, gpu)):
        raise MigError(IN_USE)
    gpu.gpu_instances.remove(gi)


# -- compute instances -------------------------------------------------------------------------------------------


def _ci_occupied(gi: GpuInstance) -> set[int]:
    return {s for ci in gi.compute_instances for s in range(ci.start, ci.start + ci.size)}


def ci_free_count(machine: Machine, gpu: Gpu, gi: GpuInstance, profile: CiProfile) -> int:
    """``-lcip``'s Free, by the same rule as GIs, over the GI's compute slices."""
    occupied = _ci_occupied(gi)
    placeable = sum(1 for s in migprofiles.ci_placements(gi_profile_of(machine, gpu, gi), profile)
                    if _fits(occupied, s, profile.slices))
    left = profile.max_count - sum(1 for ci in gi.compute_instances if ci.profile_id == profile.id)
    return max(0, min(placeable, left))


def create_compute_instance(machine: Machine, gpu: Gpu, gi: GpuInstance, profile: CiProfile) -> ComputeInstance:
    """Create a CI of ``profile`` in ``gi`` at its lowest free aligned start, with a new MIG device UUID."""
    gi_profile = gi_profile_of(machine, gpu, gi)
    if ci_free_count(machine, gpu, gi, profile) == 0:
        raise MigError(INSUFFICIENT_RESOURCES)
    occupied = _ci_occupied(gi)
    start = next(s for s in migprofiles.ci_placements(gi_profile, profile) if _fits(occupied, s, profile.slices))
    taken = {ci.id for ci in gi.compute_instances}
    ci_id = next(i for i in range(len(taken) + 1) if i not in taken)
    rng = _rng(machine, gpu, "ci")
    uuid = f"MIG-{uuidlib.UUID(int=rng.getrandbits(128), version=5)}"
    ci = ComputeInstance(id=ci_id, profile_id=profile.id, start=start, size=profile.slices, uuid=uuid)
    gi.compute_instances.append(ci)
    gi.compute_instances.sort(key=lambda c: c.id)
    return ci


def destroy_compute_instance(machine: Machine, gpu: Gpu, gi: GpuInstance, ci: ComputeInstance) -> None:
    """Destroy a CI: refused while a process runs on it (NVML_ERROR_IN_USE)."""
    if any(p.gi == gi.id and p.ci == ci.id for p in holders(machine, gpu)):
        raise MigError(IN_USE)
    gi.compute_instances.remove(ci)


# -- MIG devices -------------------------------------------------------------------------------------------------


def mig_devices(gpu: Gpu) -> list[tuple[int, GpuInstance, ComputeInstance]]:
    """The GPU's MIG devices as nvidia-smi numbers them: from 0 in ascending (GI ID, CI ID) order (§3.2)."""
    pairs = sorted(((gi, ci) for gi in gpu.gpu_instances for ci in gi.compute_instances),
                   key=lambda pair: (pair[0].id, pair[1].id))
    return [(n, gi, ci) for n, (gi, ci) in enumerate(pairs)]
