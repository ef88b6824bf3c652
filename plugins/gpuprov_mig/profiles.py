"""What each MIG product offers: GPU-instance profiles, their placements and their compute-instance profiles.

The planner must know, without touching a host, which instances a GPU can hold and where: a host whose MIG mode is
off lists no profiles, and a plan is computed before anything is enabled. So the plugin ships a catalogue
(``profiles.json``, derived from ``shared/reference/mig-profiles.json`` — public ``nvidia-smi mig -lgip/-lgipp``
captures and the MIG User Guide — plus mig-parted's ``config-default.yaml`` for ``all-balanced`` and PCI IDs).
When a host *does* print its own ``-lgip``/``-lgipp``, :func:`from_lgip` builds the table from that output instead:
names and memory sizes drift between drivers (``7g.80gb`` vs ``7g.79gb``, ``1g.23gb`` vs ``1g.24gb``), and the host
is the truth.

Where the catalogue is derived rather than captured, it says so:

- **Placements** come from the product's *placement family*. Every ``-lgipp`` captured on an 8-memory-slice part
  (A100-SXM4-40GB, H100 PCIe, H100 NVL) prints the same table — ``{0..6}:1`` for 1g and 1g+me, ``{0,2,4,6}:2`` for
  the two-slice 1g, ``{0,2,4}:2`` for 2g, ``{0,4}:4`` for 3g, ``{0}:4`` for 4g, ``{0}:8`` for 7g — and the A30
  prints its own 4-slice table (``{0..3}:1``, ``{0,2}:2``, ``{0}:4``). Products without a capture (A100-PCIE-40GB,
  A100 80GB, H100 80GB HBM3, H200, GH200, B200, GB200) take their family's table; ``placements_verified`` is
  ``False`` for them.
- **Compute-instance profiles** are captured only for A100-SXM4-40GB. Elsewhere they follow the same pattern,
  with the NVML constants nvidia-smi prints as IDs: on a GI of *g* compute slices, ``Nc`` CIs for N in
  {1, 2} (plus 3 and 4 on 7g) with ``g // N`` of each, and one full-size CI, the default (what ``-C`` creates),
  ID 0/1/2/3/4 for 1/2/3/4/7 slices — except the two-memory-slice 1g GI, whose full CI is ``1_SLICE_REV1`` (ID 7,
  captured on GH200). Every CI captured outside A100-40GB agrees with this rule.
- **Memory** the reference lacks is filled from a sibling of the same placement size, or estimated as twice the
  profile of half the size; the JSON says which (``note``). Memory only informs; placements decide what fits.
- RTX PRO Blackwell parts are not in the catalogue: their ``+me.all``/``-me``/``+gfx`` profiles exclude each other
  by rules this model does not have, and their placements were not captured. A host's own listing is needed there.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

__all__ = [
    "CiProfile",
    "GiProfile",
    "ProductProfiles",
    "catalogue",
    "from_lgip",
    "normalise_pci_id",
    "product_for_pci_id",
    "products",
]


@dataclass(frozen=True)
class CiProfile:
    """A compute-instance profile of one GPU-instance profile (``nvidia-smi mig -lcip``)."""

    id: int  # the ID nvidia-smi prints (= the NVML_COMPUTE_INSTANCE_PROFILE_* constant)
    name: str  # "1c.3g.20gb"; the full-size CI is named like its GI without attributes ("3g.20gb")
    slices: int  # compute slices
    max_count: int  # how many fit in one GI
    default: bool  # what `nvidia-smi mig -cgi ... -C` creates


@dataclass(frozen=True)
class GiProfile:
    """A GPU-instance profile: what ``-cgi`` creates and where it may go."""

    id: int  # the profile ID nvidia-smi prints (19 for 1g.5gb), not the NVML_GPU_INSTANCE_PROFILE_* index
    name: str  # "3g.20gb", "1g.5gb+me"
    slices: int  # compute slices (the "3" of 3g)
    size: int  # memory slices one instance occupies (its placement size)
    starts: tuple[int, ...]  # memory slices an instance may start at; () when unknown (cannot be planned)
    max_count: int
    memory_mib: int
    ci_profiles: tuple[CiProfile, ...]

    @property
    def base_name(self) -> str:
        """The name without attributes: ``1g.10gb+me`` -> ``1g.10gb``."""
        m = _NAME.match(self.name)
        return m.group(1) if m else self.name

    @property
    def media_extensions(self) -> bool:
        """A ``+me`` profile; a GPU holds at most one such instance ("a single 1g profile can include media
        extensions", MIG User Guide)."""
        return "me" in re.findall(r"\+([a-z.]+)", self.name[len(self.base_name):].lower())

    @property
    def default_ci(self) -> CiProfile | None:
        return next((c for c in self.ci_profiles if c.default), None)

    def ci_by_name(self, name: str) -> CiProfile | None:
        want = name.strip().lower()
        want = want[4:].strip() if want.startswith("mig ") else want
        return next((c for c in self.ci_profiles if c.name.lower() == want), None)

    def ci_by_id(self, id: int) -> CiProfile | None:
        return next((c for c in self.ci_profiles if c.id == id), None)

    def mask(self, start: int) -> int:
        """The memory slices an instance at ``start`` occupies, as a bit mask (bit i = slice i)."""
        return ((1 << self.size) - 1) << start

    def is_default_split(self, ci_profile_ids: Sequence[int]) -> bool:
        """Whether a GI's compute instances are "one default CI".

        A single CI that is not one of this profile's *partial* CIs covers the whole GI, whatever ID a driver gave
        it; matching on that (rather than on the catalogue's default ID alone) keeps a wrong derived CI ID from
        making the planner recreate a correct instance on every run.
        """
        if len(ci_profile_ids) != 1:
            return False
        partial = {c.id for c in self.ci_profiles if not c.default}
        return ci_profile_ids[0] not in partial


@dataclass(frozen=True)
class ProductProfiles:
    """Every GI profile of one product, as the planner sees it."""

    product: str  # the name as the catalogue spells it (the key, or the alias that matched), or as the host printed
    memory_slices: int
    profiles: tuple[GiProfile, ...]
    pci_device_ids: tuple[str, ...] = ()  # "0x20B0" (device only; the vendor is NVIDIA's 0x10DE)
    balanced: tuple[tuple[str, int], ...] = ()  # mig-parted's all-balanced for this product
    placements_verified: bool = False  # the product's own -lgipp was captured (else its family's table is assumed)

    def __hash__(self) -> int:
        # The planner's caches are keyed by the product; hashing its profile tables anew for every GPU of a rack
        # was a twentieth of planning. Immutable, so the hash is kept.
        cached: int | None = self.__dict__.get("_hash")
        if cached is None:
            cached = hash((self.product, self.memory_slices, self.profiles, self.pci_device_ids, self.balanced,
                           self.placements_verified))
            object.__setattr__(self, "_hash", cached)
        return cached

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_hash"}  # str hashes differ between processes

    def by_name(self, name: str) -> GiProfile | None:
        """The profile called ``name`` (case-insensitive; ``MIG 3g.20gb`` as nvidia-smi prints it works too)."""
        want = name.strip().lower()
        want = want[4:].strip() if want.startswith("mig ") else want
        return next((p for p in self.profiles if p.name.lower() == want), None)

    def by_id(self, id: int) -> GiProfile | None:
        return next((p for p in self.profiles if p.id == id), None)

    def describe(self) -> str:
        """One line per profile, for error messages that must say what the GPU offers."""
        lines = []
        for p in self.profiles:
            where = "{" + ",".join(map(str, p.starts)) + "}" if p.starts else "{?}"
            lines.append(f"  {p.name:<12} ID {p.id:>2}: {where}:{p.size}, up to {p.max_count}")
        return "\n".join(lines)


_NAME = re.compile(r"^(\d+g\.\d+gb)", re.IGNORECASE)
_SLICES = re.compile(r"^(\d+)g\.", re.IGNORECASE)

# Partial compute instances by GI compute slices (captured on A100-40GB: 2g -> 1c; 3g -> 1c, 2c; 4g -> 1c, 2c;
# 7g -> 1c, 2c, 3c, 4c), and the NVML CI constant for each CI size.
_PARTIAL_CI: dict[int, tuple[int, ...]] = {2: (1,), 3: (1, 2), 4: (1, 2), 7: (1, 2, 3, 4)}
_CI_ID = {1: 0, 2: 1, 3: 2, 4: 3, 7: 4, 8: 5, 6: 6}
_CI_1_SLICE_REV1 = 7


def derived_ci_profiles(name: str, slices: int, size: int) -> tuple[CiProfile, ...]:
    """Compute-instance profiles by the rule in the module docstring, for GIs whose ``-lcip`` was not captured."""
    base = (_NAME.match(name).group(1) if _NAME.match(name) else name).lower()  # type: ignore[union-attr]
    cis = [CiProfile(_CI_ID[c], f"{c}c.{base}", c, slices // c, False) for c in _PARTIAL_CI.get(slices, ())]
    full_id = _CI_1_SLICE_REV1 if slices == 1 and size == 2 else _CI_ID.get(slices, slices)
    cis.append(CiProfile(full_id, base, slices, 1, True))
    return tuple(cis)


# -- the catalogue ------------------------------------------------------------------------------------------------


@cache
def _data() -> dict[str, Any]:
    text = resources.files(__package__ or "gpuprov_mig").joinpath("profiles.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text))


def _memory(entry: Mapping[str, Any], driver: str | None) -> int:
    """The profile's memory for ``driver``: the capture from the newest driver not newer than it.

    Sizes move by a few hundred MiB between drivers (A100-40GB 7g.40gb: 40192, 40448, 40320 MiB); with no driver,
    or one older than every capture, the newest resp. the oldest capture is the best guess.
    """
    by_driver: Mapping[str, int] = entry.get("mib_by_driver") or {}
    if driver is None or not by_driver:
        return int(entry["mib"])
    known = sorted(by_driver.items(), key=lambda kv: _version(kv[0]))
    older = [mib for version, mib in known if _version(version) <= _version(driver)]
    return int(older[-1] if older else known[0][1])


@cache
def _lookup(product: str) -> tuple[str, str] | None:
    """(matched spelling, catalogue key) for a product name; tolerant of case and of a missing "NVIDIA " prefix."""
    products_ = _data()["products"]

    def norm(name: str) -> str:
        name = " ".join(name.strip().lower().split())
        return name[7:] if name.startswith("nvidia ") else name

    def exact(name: str) -> str:
        return " ".join(name.strip().lower().split())

    for form in (exact, norm):  # an exact spelling first: "A100-SXM4-40GB" is an alias, not the key
        want = form(product)
        for key, entry in products_.items():
            for spelling in (key, *entry.get("aliases", ())):
                if form(spelling) == want:
                    return str(spelling), str(key)
    return None


def products() -> tuple[str, ...]:
    """Every product in the catalogue, by the name ``nvidia-smi -L`` prints."""
    return tuple(_data()["products"])


def normalise_pci_id(pci_id: str) -> str:
    """``0x20B010DE``, ``0x20b0``, ``20B0`` -> ``0x20B0`` (the device half; NVIDIA's vendor half is dropped)."""
    text = pci_id.strip().lower()
    text = text[2:] if text.startswith("0x") else text
    if len(text) == 8:
        text = text[:4]
    return "0x" + text.upper().rjust(4, "0")


def product_for_pci_id(pci_id: str) -> str | None:
    """The catalogue product a PCI device ID names (mig-parted's ``device-filter`` values), or ``None``."""
    want = normalise_pci_id(pci_id)
    for key, entry in _data()["products"].items():
        if want in (normalise_pci_id(p) for p in entry.get("pci_device_ids", ())):
            return str(key)
    return None


def catalogue(product: str, driver: str | None = None) -> ProductProfiles | None:
    """The shipped profiles of ``product`` (as ``nvidia-smi -L`` prints it), or ``None`` for a GPU without MIG.

    ``driver`` picks the memory sizes captured closest to it and leaves out profiles the driver predates (1g.10gb
    on A100 needs R525, ``+me`` profiles R470).
    """
    found = _lookup(product)
    if found is None:
        return None
    return _build(found[0], found[1], driver)


@cache
def _build(spelling: str, key: str, driver: str | None) -> ProductProfiles:
    entry = _data()["products"][key]
    source = _data()["products"][entry["profiles_from"]] if "profiles_from" in entry else entry
    family = _data()["families"][source["family"]]
    profiles: list[GiProfile] = []
    for p in source["profiles"]:
        if driver is not None and "min_driver" in p and _version(driver) < _version(p["min_driver"]):
            continue
        table = family["placements"][str(p["id"])]
        if "ci" in p:
            cis = tuple(CiProfile(c[1], c[0], c[2], c[3], c[4]) for c in p["ci"])
        else:
            cis = derived_ci_profiles(p["name"], p["slices"], table["size"])
        profiles.append(GiProfile(
            id=p["id"], name=p["name"], slices=p["slices"], size=table["size"], starts=tuple(table["starts"]),
            max_count=p["max"], memory_mib=_memory(p, driver), ci_profiles=cis,
        ))
    return ProductProfiles(
        product=spelling, memory_slices=family["memory_slices"], profiles=tuple(profiles),
        pci_device_ids=tuple(normalise_pci_id(x) for x in entry.get("pci_device_ids", ())),
        balanced=tuple((source.get("balanced") or {}).items()),
        placements_verified=bool(source.get("placements_verified")) and "profiles_from" not in entry,
    )


# -- a host's own listing ------------------------------------------------------------------------------------------


def _placements_of(values: Sequence[Any]) -> tuple[tuple[int, ...], int | None]:
    """Starts and size from ``-lgipp`` values given as starts (``[0, 4]``) or as ``(start, size)`` pairs."""
    starts: list[int] = []
    size: int | None = None
    for v in values:
        if isinstance(v, int):
            starts.append(v)
        else:
            starts.append(int(v[0]))
            size = int(v[1])
    return tuple(sorted(set(starts))), size


def from_lgip(product: str, lgip_rows: Sequence[Mapping[str, Any]],
              lgipp: Mapping[int, Sequence[Any]] | None) -> ProductProfiles:
    """Profiles as a host printed them (``nvidia-smi mig -lgip`` rows, ``-lgipp`` placements), which win over the
    catalogue: names, IDs, memory and limits come from the host.

    ``lgip_rows`` are the MIG facts' profile dicts (``id``, ``name``, ``memory_mib``, ``total``, optionally
    ``placements``). ``lgipp`` maps a profile ID to its placements, as starts or ``(start, size)`` pairs (what
    ``facts.parse_lgipp`` gives per GPU). A profile without listed placements takes them from the catalogue —
    the product's profile with the same ID, else one with the same name without attributes (A30's ``2g.12gb+me``
    places like ``2g.12gb``) — and is left with no starts (cannot be planned) when neither knows it. Compute-instance
    profiles are not in ``-lgip``; they come from the catalogue or the derivation rule.
    """
    known = catalogue(product)
    rows = list(lgip_rows)
    profiles: list[GiProfile] = []
    for row in rows:
        pid, name = int(row["id"]), str(row["name"])
        name = name[4:].strip() if name.lower().startswith("mig ") else name
        m = _SLICES.match(name)
        slices = int(m.group(1)) if m else 1
        listed = (lgipp or {}).get(pid) if lgipp is not None else row.get("placements")
        starts, size = _placements_of(listed or ())
        twin = _twin(known, pid, name, slices) if known is not None else None
        if not starts and twin is not None:
            starts, size = twin.starts, twin.size
        if size is None:
            size = twin.size if twin is not None else slices
        if twin is not None and twin.slices == slices and twin.size == size:
            renamed = twin.name.lower() != name.lower()
            cis = tuple(
                CiProfile(c.id, c.name.replace(twin.base_name, _base(name)) if renamed else c.name, c.slices,
                          c.max_count, c.default)
                for c in twin.ci_profiles
            )
        else:
            cis = derived_ci_profiles(name, slices, size)
        profiles.append(GiProfile(
            id=pid, name=name, slices=slices, size=size, starts=starts,
            max_count=int(row.get("total") or row.get("max_count") or (twin.max_count if twin else len(starts))),
            memory_mib=int(row.get("memory_mib") or (twin.memory_mib if twin else 0)), ci_profiles=cis,
        ))
    if known is not None:
        memory_slices = known.memory_slices
    else:
        ends = [s + p.size for p in profiles for s in p.starts]
        memory_slices = max(ends) if ends else 8
    return ProductProfiles(
        product=known.product if known is not None else product, memory_slices=memory_slices,
        profiles=tuple(profiles),
        pci_device_ids=known.pci_device_ids if known is not None else (),
        balanced=known.balanced if known is not None else (),
        placements_verified=lgipp is not None or any(r.get("placements") for r in rows),
    )


def _twin(known: ProductProfiles, pid: int, name: str, slices: int) -> GiProfile | None:
    """The catalogue's profile for a listed one: same ID (names drift between drivers, IDs do not), else the same
    name without attributes."""
    same_id = known.by_id(pid)
    if same_id is not None and same_id.slices == slices:
        return same_id
    return next((p for p in known.profiles if p.base_name.lower() == _base(name).lower() and p.slices == slices), None)


def _base(name: str) -> str:
    m = _NAME.match(name)
    return m.group(1) if m else name
