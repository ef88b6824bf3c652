"""The simulator's MIG hardware truth: which GPU- and compute-instance profiles a product offers on a driver.

The numbers live in ``mig_profiles.json`` beside this module, derived from ``shared/reference/mig-profiles.json``
(captures of ``nvidia-smi mig -lgip``/``-lgipp``/``-lcip``); values the captures lack are filled as the file's
``derived`` notes say. This table is kept apart from the MIG plugin's own catalogue on purpose: the plugin's
solver is tested against the simulator, and two copies of one table would agree with each other however wrong
they were.

Data is keyed by product *and* driver, because the same card lists different things on different drivers: memory
sizes moved (an A100-SXM4-40GB ``2g.10gb`` is 9856 MiB in the guide's older examples and 9984 MiB on 580.126.09),
and some profiles only appear from a driver on (``+me`` from R470; ``1g.10gb`` on an A100-PCIE-40GB from R525).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

__all__ = [
    "CiProfile",
    "GiProfile",
    "architecture",
    "ci_placements",
    "ci_profile",
    "driver_at_least",
    "gi_profile",
    "gi_profiles",
    "memory_slices",
    "mig_device_memory_mib",
    "mig_device_name",
    "products",
]

DATA = Path(__file__).with_name("mig_profiles.json")


@dataclass(frozen=True)
class CiProfile:
    """A compute-instance profile of one GI profile; ``slices`` are compute slices of the GI."""

    id: int  # as nvidia-smi prints it (= NVML_COMPUTE_INSTANCE_PROFILE_*: 1c 0, 2c 1, 3c 2, 4c 3, 7c 4, REV1 7)
    name: str  # without "MIG ": "1c.2g.10gb", or the GI's name for the full-size CI ("2g.10gb")
    slices: int
    sm_count: int
    max_count: int
    default: bool  # what ``-C`` creates (printed with ``*`` by ``-lcip``)


@dataclass(frozen=True)
class GiProfile:
    """A GPU-instance profile as ``-lgip``/``-lgipp`` show it on one product and driver."""

    id: int  # the ID nvidia-smi prints (19, 20, 15, 14, 9, 5, 0 on 8-slice parts), not NVML's profile index
    name: str  # without "MIG ": "3g.20gb"
    memory_mib: int
    sm_count: int
    slices: int  # compute (SM) slices: the "3" of 3g
    size: int  # memory slices it occupies (its placement size)
    starts: tuple[int, ...]  # possible placement starts, in memory slices
    max_count: int
    ce: int
    dec: int
    enc: int
    jpeg: int
    ofa: int
    ci_profiles: tuple[CiProfile, ...]


def _driver_key(driver: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", driver)) or (0,)


def driver_at_least(driver: str, version: str) -> bool:
    """Whether ``driver`` ("580.126.09") is ``version`` ("525" or "525.85.12") or newer."""
    return _driver_key(driver) >= _driver_key(version)


@cache
def _data() -> dict[str, Any]:
    with open(DATA, encoding="utf-8") as f:
        products: dict[str, Any] = json.load(f)["products"]
    return products


def _entry(product: str) -> dict[str, Any] | None:
    entry: dict[str, Any] | None = _data().get(product)
    while entry is not None and "same_as" in entry:
        entry = _data().get(entry["same_as"])
    return entry


def products() -> tuple[str, ...]:
    """Every product (as ``nvidia-smi -L`` prints it) that has MIG profiles here."""
    return tuple(name for name in _data() if _entry(name) is not None)


def architecture(product: str) -> str | None:
    """``"ampere"`` or ``"hopper"`` for a MIG product (it decides pending vs immediate mode changes), else None."""
    entry = _entry(product)
    return None if entry is None else str(entry["architecture"])


def memory_slices(product: str) -> int:
    """Memory slices of a MIG product (8, or 4 on an A30); 0 for a GPU without MIG."""
    entry = _entry(product)
    return 0 if entry is None else int(entry["memory_slices"])


def _ci(raw: dict[str, Any]) -> CiProfile:
    return CiProfile(id=raw["id"], name=raw["name"], slices=raw["slices"], sm_count=raw["sm_count"],
                     max_count=raw["max_count"], default=raw["default"])


@cache
def gi_profiles(product: str, driver: str) -> tuple[GiProfile, ...]:
    """The GI profiles ``product`` lists on ``driver``, in the order ``-lgip`` prints them; ``()``: no MIG."""
    entry = _entry(product)
    if entry is None:
        return ()
    memory: dict[str, int] = {}
    for variant in entry.get("by_driver", []):
        if not driver_at_least(driver, variant["below"]):
            memory.update(variant.get("memory_mib", {}))
    out = []
    for raw in entry["profiles"]:
        if raw.get("min_driver") and not driver_at_least(driver, raw["min_driver"]):
            continue
        out.append(GiProfile(
            id=raw["id"], name=raw["name"], memory_mib=memory.get(str(raw["id"]), raw["memory_mib"]),
            sm_count=raw["sm_count"], slices=raw["slices"], size=raw["size"], starts=tuple(raw["starts"]),
            max_count=raw["max_count"], ce=raw["ce"], dec=raw["dec"], enc=raw["enc"], jpeg=raw["jpeg"],
            ofa=raw["ofa"], ci_profiles=tuple(_ci(c) for c in raw["ci_profiles"])))
    return tuple(out)


def _strip_mig(name: str) -> str:
    name = name.strip()
    return name[4:].strip() if name.startswith("MIG ") else name


def gi_profile(product: str, driver: str, id_or_name: str | int) -> GiProfile | None:
    """The GI profile a user named as nvidia-smi accepts it: an ID (``9``), a name (``3g.20gb``, ``MIG 3g.20gb``)."""
    profiles = gi_profiles(product, driver)
    if isinstance(id_or_name, int) or str(id_or_name).strip().isdigit():
        wanted = int(id_or_name)
        return next((p for p in profiles if p.id == wanted), None)
    name = _strip_mig(str(id_or_name))
    return next((p for p in profiles if p.name == name), None)


def ci_profile(gi: GiProfile, id_or_name: str | int) -> CiProfile | None:
    """A CI profile of ``gi`` by ID (``0``) or name (``1c.2g.10gb``, ``MIG 2g.10gb``)."""
    if isinstance(id_or_name, int) or str(id_or_name).strip().isdigit():
        wanted = int(id_or_name)
        return next((c for c in gi.ci_profiles if c.id == wanted), None)
    name = _strip_mig(str(id_or_name))
    return next((c for c in gi.ci_profiles if c.name == name), None)


def ci_placements(gi: GiProfile, ci: CiProfile) -> tuple[int, ...]:
    """Starts (in the GI's compute slices) where ``ci`` may go: aligned to its size, as ``-lci`` shows (0:1, 1:1
    for 1c CIs on a 2g GI; 0:4 for the full CI of a 4g GI). A 3-slice CI is aligned to 4, as 3g GIs are: the R470
    ``-L`` example has a 1c, a 2c and a 3c CI on one 7g GI, which fit only with the 3c at 4."""
    step = 4 if ci.slices == 3 else ci.slices
    return tuple(range(0, gi.slices - ci.slices + 1, step))


def mig_device_name(gi: GiProfile, ci: CiProfile) -> str:
    """The MIG device's name as ``-L`` and ``-q`` print it after "MIG " (the CI's name: ``1c.2g.10gb``, ``4g.20gb``;
    a CI on a ``1g.10gb+me`` GI is ``1g.10gb``)."""
    return ci.name


def mig_device_memory_mib(gi: GiProfile) -> int:
    """Framebuffer of a MIG device (every CI of a GI shares the GI's memory): the GI profile's memory, which is what
    ``nvidia-smi``'s MIG-devices table shows as the total (20096MiB for a 4g.20gb on 580.126.09)."""
    return gi.memory_mib

