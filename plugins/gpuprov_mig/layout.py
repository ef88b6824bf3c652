"""MIG layouts: what a play asks of one GPU, checked against its product, and where each instance goes.

A layout is written in a playbook (``mig: {layout: ...}``) as a **named layout** or a **list of instances**. It is
resolved per product, because the same words mean different profiles on different GPUs.

Named layouts (mig-parted's meaning where mig-parted has the name; case-insensitive)::

    all-disabled      MIG off
    all-enabled       MIG on, no instances
    all-1g            as many of the smallest 1g profile as fit (7 on 8-slice parts, 4 on A30); likewise all-2g,
                      all-3g, all-4g, all-7g
    all-balanced      mig-parted's per-product mix (A100-40GB: 2 x 1g.5gb, 2g.10gb, 3g.20gb; A30: 2 x 1g.6gb,
                      2g.12gb; 80GB parts: 2 x 1g.10gb, 2g.20gb, 3g.40gb; ...)
    all-max           one full-size instance (7g on 8-slice parts, 4g.24gb on A30)
    all-<profile>     mig-parted's config names: as many of that profile as fit (all-1g.10gb, all-3g.20gb);
    all-<profile>.me  all-1g.5gb.me = one 1g.5gb+me

A list holds one item per instance or group of instances (a string of comma-separated items works too)::

    layout: ["3g.40gb", "2 x 1g.10gb", "1g.10gb+me"]    # counts: "N x PROFILE" or "NxPROFILE"
    layout: "3g.40gb, 2x1g.10gb"
    layout: [9, 19, 19]                                 # profile IDs as nvidia-smi prints them
    layout: ["3g.40gb@4", "2g.20gb@0"]                  # explicit placement: first memory slice
    layout:
      - profile: 3g.40gb                                # compute-instance split: the mapping form
        compute: [1c, 2c]                               #   CIs by short name ("1c"), full name ("1c.3g.40gb"),
      - {profile: 2g.20gb, count: 2, compute: ["2 x 1c"]}  # ID (0), or "N x CI"; [] = no compute instance
      - {profile: 1g.10gb, start: 6}

Without ``compute`` each GPU instance gets one default compute instance, as ``nvidia-smi mig -cgi ... -C`` does.
The placement is written with ``@`` — nvidia-smi's own ``-cgi 9:4`` colon form is refused with a hint, since YAML
makes ``a: b`` a mapping. Counts are ``N x PROFILE`` only (``PROFILE*N`` is refused with a hint).

A layout that cannot work on the product raises :class:`LayoutError` before anything touches a host: an unknown
profile, more instances than a profile allows, more than one ``+me`` instance, a placement the profile does not
offer, or a set of instances with no non-overlapping placement. The message names the product and what would fit
instead; the caller adds the host and GPU.

:func:`plan_placements` then decides, offline, where every instance goes and which instances already on the GPU
can stay. The search is exact (a GPU has at most 8 memory slices and 7 instances), so it finds a placement whenever
one exists — unlike creating instances and letting the driver place them, where the order decides success
("the 3g.20gb must be specified first", MIG User Guide).
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from .profiles import CiProfile, GiProfile, ProductProfiles, catalogue, normalise_pci_id, product_for_pci_id

__all__ = [
    "NAMED_LAYOUTS",
    "Creation",
    "Layout",
    "LayoutError",
    "MigPartedConfig",
    "MigPartedEntry",
    "Placed",
    "PlacementPlan",
    "WantedInstance",
    "all_placements",
    "fits",
    "format_layout",
    "load_mig_parted_config",
    "named_layout",
    "parse_layout",
    "parse_mig_parted_config",
    "placed_from_facts",
    "plan_placements",
]


class LayoutError(Exception):
    """A layout that cannot be applied to a product; the message says why and what would fit instead."""


@dataclass(frozen=True)
class WantedInstance:
    """One GPU instance a layout asks for."""

    profile: GiProfile
    start: int | None  # an explicit placement, or None to let the planner choose
    compute: tuple[CiProfile, ...]  # its compute instances (largest first); () = none


@dataclass(frozen=True)
class Layout:
    """What one GPU should look like: MIG mode, and the instances (in no particular order)."""

    enabled: bool
    instances: tuple[WantedInstance, ...] = ()


NAMED_LAYOUTS = ("all-disabled", "all-enabled", "all-1g", "all-2g", "all-3g", "all-4g", "all-7g", "all-balanced",
                 "all-max")


# -- parsing -------------------------------------------------------------------------------------------------------

_ITEM = re.compile(r"^\s*(?:(?P<count>\d+)\s*[xX]\s*)?(?P<profile>[^@\s][^@]*?)\s*(?:@\s*(?P<start>\d+))?\s*$")
_CI_SHORT = re.compile(r"^(\d+)c$", re.IGNORECASE)
_MAPPING_KEYS = {"profile", "count", "start", "compute"}


def parse_layout(spec: Any, product: ProductProfiles) -> Layout:
    """The :class:`Layout` a playbook value means on ``product``; raises :class:`LayoutError` if it cannot work.

    ``spec`` is a named layout, a comma-separated string, a profile ID, or a list of items (strings, IDs or
    mappings); see the module docstring.
    """
    if isinstance(spec, str):  # the common case, the same text for every GPU of a rack: worked out once
        return _parse_text_layout(spec, product)
    return _parse_layout(spec, product)


@functools.lru_cache(maxsize=256)
def _parse_text_layout(spec: str, product: ProductProfiles) -> Layout:
    return _parse_layout(spec, product)


def _parse_layout(spec: Any, product: ProductProfiles) -> Layout:
    if isinstance(spec, str) and spec.strip().lower().startswith("all-"):
        return named_layout(spec, product)
    if isinstance(spec, str):
        text = spec.strip()
        if text.startswith("[") and text.endswith("]"):  # a list written as text (an INI inventory variable)
            text = text[1:-1]
        items: list[Any] = [part for part in text.split(",") if part.strip()]
    elif isinstance(spec, bool) or spec is None:
        raise LayoutError(f"a MIG layout is a named layout ({', '.join(NAMED_LAYOUTS)}) or a list of profiles, "
                          f"not {spec!r}")
    elif isinstance(spec, int | Mapping):
        items = [spec]
    elif isinstance(spec, Sequence):
        items = list(spec)
    else:
        raise LayoutError(f"a MIG layout is a named layout or a list of profiles, not {type(spec).__name__}")
    wanted: list[WantedInstance] = []
    for item in items:
        wanted.extend(_parse_item(item, product))
    layout = Layout(enabled=True, instances=tuple(wanted))
    validate(layout, product)
    return layout


def _parse_item(item: Any, product: ProductProfiles) -> list[WantedInstance]:
    if isinstance(item, bool):
        raise LayoutError(f"{item!r} is not a MIG profile")
    if isinstance(item, int):
        profile = _profile(product, item)
        return [WantedInstance(profile, None, _default_compute(profile))]
    if isinstance(item, Mapping):
        return _parse_mapping(item, product)
    if not isinstance(item, str):
        raise LayoutError(f"{item!r} is not a MIG profile (write a name such as 3g.20gb, an ID, or a mapping with "
                          "profile:)")
    text = item.strip()
    if text.lower().startswith("all-"):
        raise LayoutError(f"{text!r}: a named layout is the whole layout (layout: {text}), not an item of a list")
    if "*" in text:
        raise LayoutError(f"{text!r}: write counts as 'N x PROFILE' (e.g. '2 x 1g.10gb')")
    m = _ITEM.match(text)
    if not m:
        raise LayoutError(f"{text!r} is not a MIG layout item (examples: '3g.20gb', '2 x 1g.5gb', '3g.20gb@4')")
    name = m.group("profile")
    if re.fullmatch(r"\S+:\s*\d+", name):
        profile_part, start_part = name.split(":")
        raise LayoutError(f"{text!r}: write the placement with '@' ('{profile_part.strip()}@{start_part.strip()}'); "
                          "nvidia-smi's colon form reads as a mapping in YAML")
    if ":" in name:
        raise LayoutError(f"{text!r}: give compute instances in the mapping form, e.g. "
                          f"{{profile: {name.split(':')[0].strip()}, compute: [1c, 2c]}}")
    count = int(m.group("count")) if m.group("count") is not None else 1
    start = int(m.group("start")) if m.group("start") is not None else None
    profile = _profile(product, int(name) if name.isdigit() else name)
    return _instances(product, profile, count, start, None, text)


def _parse_mapping(item: Mapping[str, Any], product: ProductProfiles) -> list[WantedInstance]:
    unknown = set(item) - _MAPPING_KEYS
    looks_like_profile = [k for k in unknown if isinstance(k, str) and product.by_name(k) is not None]
    if looks_like_profile:
        name = looks_like_profile[0]
        raise LayoutError(f"{dict(item)!r}: YAML read '{name}: ...' as a mapping; write '{name}@START' for a "
                          f"placement, or {{profile: {name}, compute: [1c, 2c]}} for compute instances")
    if unknown:
        raise LayoutError(f"{dict(item)!r}: unknown key(s) {', '.join(sorted(map(str, unknown)))} (a layout item "
                          f"mapping has {', '.join(sorted(_MAPPING_KEYS))})")
    if "profile" not in item:
        raise LayoutError(f"{dict(item)!r}: a layout item mapping needs profile:")
    raw = item["profile"]
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        raise LayoutError(f"{dict(item)!r}: profile: must be a profile name or ID")
    profile = _profile(product, int(raw) if isinstance(raw, str) and raw.strip().isdigit() else raw)
    count = item.get("count", 1)
    start = item.get("start")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise LayoutError(f"{dict(item)!r}: count: must be a whole number of at least 1")
    if start is not None and (isinstance(start, bool) or not isinstance(start, int)):
        raise LayoutError(f"{dict(item)!r}: start: must be a memory slice number")
    compute = item.get("compute")
    return _instances(product, profile, count, start, compute, repr(dict(item)))


def _instances(product: ProductProfiles, profile: GiProfile, count: int, start: int | None, compute: Any,
               what: str) -> list[WantedInstance]:
    if count < 1:
        raise LayoutError(f"{what}: the count must be at least 1")
    if start is not None:
        if count > 1:
            raise LayoutError(f"{what}: one placement cannot hold {count} instances; give each its own start")
        if start not in profile.starts:
            raise LayoutError(f"{product.product}: {profile.name} cannot start at memory slice {start}; it can start "
                              f"at {_starts(profile)}")
    cis = _default_compute(profile) if compute is None else _parse_compute(compute, profile, product)
    return [WantedInstance(profile, start, cis) for _ in range(count)]


def _default_compute(profile: GiProfile) -> tuple[CiProfile, ...]:
    default = profile.default_ci
    return (default,) if default is not None else ()


def _parse_compute(compute: Any, profile: GiProfile, product: ProductProfiles) -> tuple[CiProfile, ...]:
    if isinstance(compute, str | int) and not isinstance(compute, bool):
        compute = [compute]
    if not isinstance(compute, Sequence):
        raise LayoutError(f"compute: of {profile.name} must be a list of compute-instance profiles")
    cis: list[CiProfile] = []
    for entry in compute:
        count, token = 1, entry
        if isinstance(entry, str):
            m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\S+)\s*", entry)
            if m:
                count, token = int(m.group(1)), m.group(2)
            else:
                token = entry.strip()
        ci = _ci_profile(profile, token, product)
        cis.extend([ci] * count)
    for ci, n in Counter(cis).items():
        if n > ci.max_count:
            raise LayoutError(f"{product.product}: a {profile.name} instance holds at most {ci.max_count} x "
                              f"{ci.name}, not {n}")
    used = sum(c.slices for c in cis)
    if used > profile.slices:
        raise LayoutError(f"{product.product}: the compute instances {', '.join(c.name for c in cis)} need {used} "
                          f"compute slices; a {profile.name} instance has {profile.slices}")
    return tuple(sorted(cis, key=lambda c: (-c.slices, c.id)))


def _ci_profile(profile: GiProfile, token: Any, product: ProductProfiles) -> CiProfile:
    found: CiProfile | None = None
    if isinstance(token, int) and not isinstance(token, bool):
        found = profile.ci_by_id(token)
    elif isinstance(token, str):
        if token.isdigit():
            found = profile.ci_by_id(int(token))
        elif m := _CI_SHORT.match(token):
            found = next((c for c in profile.ci_profiles if c.slices == int(m.group(1))), None)
        else:
            found = profile.ci_by_name(token)
    if found is None:
        offered = ", ".join(f"{c.name} (ID {c.id}, {c.slices}c, up to {c.max_count})" for c in profile.ci_profiles)
        raise LayoutError(f"{product.product}: {profile.name} has no compute-instance profile {token!r}; it offers "
                          f"{offered}")
    return found


def _profile(product: ProductProfiles, key: str | int) -> GiProfile:
    found = product.by_id(key) if isinstance(key, int) else product.by_name(key)
    if found is None:
        what = f"profile ID {key}" if isinstance(key, int) else f"profile {key!r}"
        raise LayoutError(f"{product.product} has no MIG {what}; its profiles are:\n{product.describe()}")
    return found


def _starts(profile: GiProfile) -> str:
    return "{" + ",".join(map(str, profile.starts)) + "}" if profile.starts else "no known placement"


# -- named layouts -------------------------------------------------------------------------------------------------


def named_layout(name: str, product: ProductProfiles) -> Layout:
    """A named layout (see the module docstring) resolved for ``product``."""
    key = name.strip().lower()
    if key == "all-disabled":
        return Layout(enabled=False)
    if key == "all-enabled":
        return Layout(enabled=True)
    if key == "all-balanced":
        if not product.balanced:
            raise LayoutError(f"{product.product} has no all-balanced layout (mig-parted defines none for it); list "
                              f"the profiles instead. Its profiles are:\n{product.describe()}")
        return parse_layout([f"{n} x {p}" for p, n in product.balanced], product)
    if key == "all-max":
        top = max(product.profiles, key=lambda p: (p.slices, p.size, -p.media_extensions, p.memory_mib))
        return parse_layout([top.name], product)
    if m := re.fullmatch(r"all-(\d+)g", key):
        slices = int(m.group(1))
        candidates = [p for p in product.profiles if p.slices == slices and not p.media_extensions and p.starts]
        if not candidates:
            have = sorted({f"all-{p.slices}g" for p in product.profiles if not p.media_extensions})
            raise LayoutError(f"{product.product} has no {slices}g profile for {name}; it offers "
                              f"{', '.join(have)}, all-balanced and all-max")
        smallest = min(candidates, key=lambda p: (p.memory_mib, p.size, p.id))
        return _as_many_as_fit(smallest, product)
    if key.startswith("all-"):
        profile_name = key[4:]
        if profile_name.endswith(".me"):
            profile_name = profile_name[:-3] + "+me"
        profile = product.by_name(profile_name)
        if profile is None:
            raise LayoutError(f"{product.product} has no MIG profile {profile_name!r} for the layout {name!r}; named "
                              f"layouts are {', '.join(NAMED_LAYOUTS)} and all-<profile>; its profiles are:\n"
                              f"{product.describe()}")
        return _as_many_as_fit(profile, product)
    raise LayoutError(f"unknown named MIG layout {name!r}; named layouts are {', '.join(NAMED_LAYOUTS)} and "
                      "all-<profile> (e.g. all-1g.10gb)")


def _as_many_as_fit(profile: GiProfile, product: ProductProfiles) -> Layout:
    count = 0
    while count < profile.max_count and fits(product, [profile] * (count + 1)):
        count += 1
    if count == 0:
        raise LayoutError(f"{product.product}: {profile.name} has no known placement; its profiles are:\n"
                          f"{product.describe()}")
    instance = WantedInstance(profile, None, _default_compute(profile))
    return Layout(enabled=True, instances=(instance,) * count)


def format_layout(layout: Layout) -> str:
    """A short text for summaries: ``3g.40gb, 2 x 1g.10gb``; ``MIG off``; ``MIG on, no instances``."""
    if not layout.enabled:
        return "MIG off"
    if not layout.instances:
        return "MIG on, no instances"
    counts = Counter(layout.instances)
    parts = []
    for w in sorted(counts, key=_canonical):
        text = w.profile.name + (f"@{w.start}" if w.start is not None else "")
        if w.compute != _default_compute(w.profile):
            text += " [" + (", ".join(c.name for c in w.compute) or "no compute instances") + "]"
        parts.append(f"{counts[w]} x {text}" if counts[w] > 1 else text)
    return ", ".join(parts)


# -- validation ----------------------------------------------------------------------------------------------------


def validate(layout: Layout, product: ProductProfiles) -> None:
    """Raise :class:`LayoutError` unless the layout's instances can all exist on ``product`` at once."""
    if not layout.enabled:
        if layout.instances:
            raise LayoutError(f"{product.product}: a layout with MIG off cannot have instances")
        return
    wanted = layout.instances
    for w in wanted:
        if not w.profile.starts:
            raise LayoutError(f"{product.product}: {w.profile.name} has no known placement (neither the host's "
                              f"`nvidia-smi mig -lgipp` nor gpuprov's catalogue lists one); its profiles are:\n"
                              f"{product.describe()}")
        same = product.by_id(w.profile.id)
        if same is None or (same.size, same.starts) != (w.profile.size, w.profile.starts):
            raise LayoutError(f"{product.product} has no MIG profile {w.profile.name} (ID {w.profile.id}); its "
                              f"profiles are:\n{product.describe()}")
        if w.start is not None and w.start not in w.profile.starts:
            raise LayoutError(f"{product.product}: {w.profile.name} cannot start at memory slice {w.start}; it can "
                              f"start at {_starts(w.profile)}")
    for profile, n in Counter(w.profile for w in wanted).items():
        if n > profile.max_count:
            raise LayoutError(f"{product.product} holds at most {profile.max_count} x {profile.name}, not {n}"
                              f"{_instead(product, wanted)}")
    me = [w.profile.name for w in wanted if w.profile.media_extensions]
    if len(me) > 1:
        raise LayoutError(f"{product.product}: only one instance per GPU can have media extensions (+me), the layout "
                          f"asks for {len(me)} ({', '.join(me)}){_instead(product, wanted)}")
    if not _search(product, _ordered(wanted), (), first_only=True):
        raise LayoutError(_no_fit_message(product, wanted))


def _instead(product: ProductProfiles, wanted: Sequence[WantedInstance]) -> str:
    best = _largest_fitting(product, wanted)
    return f"; the most of this layout that fits is {_names(best)}" if best else ""


def _no_fit_message(product: ProductProfiles, wanted: Sequence[WantedInstance]) -> str:
    need = sum(w.profile.size for w in wanted)
    tables = ", ".join(sorted({f"{w.profile.name} {_starts(w.profile)}:{w.profile.size}" for w in wanted}))
    why = (f"they need {need} memory slices and the GPU has {product.memory_slices}" if need > product.memory_slices
           else f"no placements of them avoid each other ({tables})")
    best = _largest_fitting(product, wanted)
    left = Counter(_names_list(wanted))
    left.subtract(_names_list(best))
    dropped = ", ".join(f"{n} x {name}" if n > 1 else name for name, n in sorted(left.items()) if n > 0)
    free = _free_after(product, best)
    return (f"{product.product} cannot hold {_names(wanted)} together: {why}. The most of it that fits is "
            f"{_names(best) or 'nothing'} (without {dropped}){free}")


def _free_after(product: ProductProfiles, placed: Sequence[WantedInstance]) -> str:
    solution = _search(product, _ordered(placed), (), first_only=True)
    if not placed or not solution:
        return ""
    mask = 0
    for option in solution[0]:
        mask |= option.mask
    free = [i for i in range(product.memory_slices) if not mask >> i & 1]
    return f"; free memory slices after it: {', '.join(map(str, free)) or 'none'}"


def _names_list(wanted: Iterable[WantedInstance]) -> list[str]:
    return [w.profile.name + (f"@{w.start}" if w.start is not None else "") for w in wanted]


def _names(wanted: Sequence[WantedInstance]) -> str:
    counts = Counter(_names_list(_ordered(wanted)))
    return ", ".join(f"{n} x {name}" if n > 1 else name for name, n in counts.items())


def _largest_fitting(product: ProductProfiles, wanted: Sequence[WantedInstance]) -> list[WantedInstance]:
    """The sub-multiset of ``wanted`` that fits with the most instances, then the most memory slices."""
    groups = Counter(wanted)
    kinds = sorted(groups, key=_canonical)
    best: list[WantedInstance] = []
    best_key = (-1, -1)

    def rec(i: int, chosen: list[WantedInstance]) -> None:
        nonlocal best, best_key
        if i == len(kinds):
            key = (len(chosen), sum(w.profile.size for w in chosen))
            if key > best_key and _acceptable(product, chosen):
                best, best_key = list(chosen), key
            return
        for n in range(groups[kinds[i]], -1, -1):
            rec(i + 1, chosen + [kinds[i]] * n)

    rec(0, [])
    return best


def _acceptable(product: ProductProfiles, wanted: Sequence[WantedInstance]) -> bool:
    counts = Counter(w.profile for w in wanted)
    if any(n > p.max_count for p, n in counts.items()):
        return False
    if sum(1 for w in wanted if w.profile.media_extensions) > 1:
        return False
    return bool(_search(product, _ordered(wanted), (), first_only=True))


# -- placement -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Placed:
    """A GPU instance that exists on the GPU now (from ``nvidia-smi mig -lgi``/``-lci`` facts)."""

    gi_id: int
    profile_id: int
    start: int
    size: int
    ci_profile_ids: tuple[int, ...] = ()

    @property
    def mask(self) -> int:
        return ((1 << self.size) - 1) << self.start


class Creation(NamedTuple):
    """A GPU instance to create: ``nvidia-smi mig -cgi <profile.id>:<start>``, then its compute instances."""

    profile: GiProfile
    start: int
    compute: tuple[CiProfile, ...]


@dataclass(frozen=True)
class PlacementPlan:
    """What to do with one GPU's instances. Destroying a GI's compute instances first is the caller's job."""

    keep: tuple[Placed, ...]  # by start
    destroy: tuple[Placed, ...]  # by start
    create: tuple[Creation, ...]  # largest placement first, then by start

    @property
    def unchanged(self) -> bool:
        return not self.destroy and not self.create


def placed_from_facts(instances: Iterable[Mapping[str, Any]]) -> tuple[Placed, ...]:
    """:class:`Placed` from the MIG facts' ``instances`` of one GPU (``gi``, ``profile_id``, ``placement``,
    ``cis``)."""
    return tuple(
        Placed(gi_id=int(i["gi"]), profile_id=int(i["profile_id"]), start=int(i["placement"][0]),
               size=int(i["placement"][1]), ci_profile_ids=tuple(int(c["profile_id"]) for c in i.get("cis") or ()))
        for i in instances
    )


class _Option(NamedTuple):
    key: tuple[int, int]  # (0, existing index) to keep an instance, (1, -start) to create one: see plan_placements
    mask: int
    start: int


def _canonical(w: WantedInstance) -> tuple[Any, ...]:
    """Largest first; identical instances adjacent, so the search can treat them as interchangeable."""
    return (-w.profile.size, -w.profile.slices, w.profile.id, w.start is None, w.start or 0,
            tuple(c.id for c in w.compute))


def _ordered(wanted: Iterable[WantedInstance]) -> list[WantedInstance]:
    return sorted(wanted, key=_canonical)


def _matches(w: WantedInstance, e: Placed) -> bool:
    """Whether an existing GI is one the layout asks for: same profile, same compute split, same start if given."""
    if e.profile_id != w.profile.id or (w.start is not None and e.start != w.start):
        return False
    if sorted(c.id for c in w.compute) == sorted(e.ci_profile_ids):
        return True
    return len(w.compute) == 1 and w.compute[0].default and w.profile.is_default_split(e.ci_profile_ids)


def _search(product: ProductProfiles, wanted: Sequence[WantedInstance], existing: Sequence[Placed], *,
            first_only: bool, visit: Callable[[list[_Option]], None] | None = None) -> list[list[_Option]]:
    """Every assignment of ``wanted`` (in canonical order) to kept or new placements that do not overlap.

    Identical consecutive instances take strictly increasing option keys, so permutations of interchangeable
    instances are visited once. With ``first_only`` it stops at the first assignment found.
    """
    limit = (1 << product.memory_slices) - 1
    options: list[list[_Option]] = []
    for w in wanted:
        opts = [_Option((0, j), e.mask, e.start) for j, e in enumerate(existing)
                if _matches(w, e) and e.mask & ~limit == 0]
        starts = w.profile.starts if w.start is None else tuple(s for s in w.profile.starts if s == w.start)
        opts += [_Option((1, -s), w.profile.mask(s), s) for s in sorted(starts, reverse=True)
                 if w.profile.mask(s) & ~limit == 0]
        options.append(opts)
    same = [i > 0 and wanted[i] == wanted[i - 1] for i in range(len(wanted))]
    found: list[list[_Option]] = []
    chosen: list[_Option] = []

    def rec(i: int, mask: int, kept: int) -> bool:
        if i == len(wanted):
            if visit is not None:
                visit(list(chosen))
            else:
                found.append(list(chosen))
            return first_only
        for option in options[i]:
            if same[i] and option.key <= chosen[-1].key:
                continue
            if option.mask & mask:
                continue
            keep = option.key[0] == 0
            if keep and kept >> option.key[1] & 1:
                continue
            chosen.append(option)
            stop = rec(i + 1, mask | option.mask, kept | (1 << option.key[1]) if keep else kept)
            chosen.pop()
            if stop:
                return True
        return False

    rec(0, 0, 0)
    return found


def fits(product: ProductProfiles, profiles: Sequence[GiProfile | WantedInstance]) -> bool:
    """Whether these instances can exist on ``product`` at once: within each profile's limit, at most one ``+me``,
    and non-overlapping placements (a :class:`WantedInstance` keeps its explicit start)."""
    wanted = [p if isinstance(p, WantedInstance) else WantedInstance(p, None, ()) for p in profiles]
    return _acceptable(product, wanted)


def all_placements(product: ProductProfiles,
                   profiles: Sequence[GiProfile | WantedInstance]) -> list[tuple[tuple[GiProfile, int], ...]]:
    """Every valid placement of a multiset of profiles, as ``(profile, start)`` tuples largest first; identical
    profiles take increasing starts, so each distinct arrangement appears once. Limits and ``+me`` are not
    checked here (see :func:`fits`)."""
    wanted = _ordered(p if isinstance(p, WantedInstance) else WantedInstance(p, None, ()) for p in profiles)
    return [tuple((w.profile, o.start) for w, o in zip(wanted, solution, strict=True))
            for solution in _search(product, wanted, (), first_only=False)]


def _slot_masks(product: ProductProfiles) -> list[list[int]]:
    """Every placement any profile offers, grouped by size, largest first: the room a plan should leave free."""
    by_size: dict[int, set[int]] = {}
    for p in product.profiles:
        for s in p.starts:
            by_size.setdefault(p.size, set()).add(p.mask(s))
    return [sorted(by_size[size]) for size in sorted(by_size, reverse=True)]


def plan_placements(product: ProductProfiles, wanted: Layout, existing: Sequence[Placed]) -> PlacementPlan:
    """Where each wanted instance goes, which existing instances stay, and which go (see :func:`_plan_placements`).

    Memoized: the answer depends on these values alone (all immutable), and a rack asks the same question for
    every GPU of a model; the search is most of a plan's own time."""
    plan = _plan_placements(product, wanted, tuple(existing))
    own = {e: e for e in existing}  # the caller's own records, not the equal ones of an earlier call
    return PlacementPlan(keep=tuple(own[e] for e in plan.keep), destroy=tuple(own[e] for e in plan.destroy),
                         create=plan.create)


@functools.lru_cache(maxsize=1024)
def _plan_placements(product: ProductProfiles, wanted: Layout, existing: tuple[Placed, ...]) -> PlacementPlan:
    """Where each wanted instance goes, which existing instances stay, and which go.

    Among all valid assignments the plan keeps the most existing instances (then the most memory slices of them),
    never moving one; then it leaves the most room for later instances (free placements counted by size, largest
    first — so a lone 3g goes to slice 4, keeping the 4g placement free); then, so the answer is deterministic, it
    puts larger instances at higher starts (all-balanced on A100-40GB: 3g.20gb at 4, 2g.10gb at 2, 1g.5gb at 0
    and 1), which is also where the driver puts a lone 3g or 2g. Raises :class:`LayoutError` when the layout
    cannot fit.
    """
    validate(wanted, product)
    ex = sorted(existing, key=lambda e: (e.start, e.gi_id))
    if not wanted.enabled or not wanted.instances:
        return PlacementPlan(keep=(), destroy=tuple(ex), create=())
    ordered = _ordered(wanted.instances)
    slots = _slot_masks(product)
    best: tuple[tuple[Any, ...], list[_Option]] | None = None

    def score(solution: list[_Option]) -> None:
        nonlocal best
        mask = 0
        kept_count = kept_size = 0
        for option in solution:
            mask |= option.mask
            if option.key[0] == 0:
                kept_count += 1
                kept_size += ex[option.key[1]].size
        room = tuple(-sum(1 for m in group if not m & mask) for group in slots)
        key = (-kept_count, -kept_size, room, tuple(o.key for o in solution))
        if best is None or key < best[0]:
            best = (key, solution)

    _search(product, ordered, ex, first_only=False, visit=score)
    if best is None:  # validate() found a placement on an empty GPU, and destroying everything is always allowed
        raise LayoutError(_no_fit_message(product, wanted.instances))
    solution = best[1]
    kept_idx = {o.key[1] for o in solution if o.key[0] == 0}
    create = [Creation(w.profile, o.start, w.compute) for w, o in zip(ordered, solution, strict=True)
              if o.key[0] == 1]
    create.sort(key=lambda c: (-c.profile.size, c.start))
    return PlacementPlan(
        keep=tuple(e for j, e in enumerate(ex) if j in kept_idx),
        destroy=tuple(e for j, e in enumerate(ex) if j not in kept_idx),
        create=tuple(create),
    )


# -- mig-parted config files ---------------------------------------------------------------------------------------


class MigPartedConfigError(LayoutError):
    """A mig-parted config file gpuprov cannot use; the message names the file and the entry."""


_MP_PROFILE = re.compile(r"^(?:(\d+)c\.)?(\d+)g\.(\d+)gb((?:[+-][a-z][a-z.]*)*)$", re.IGNORECASE)
_MP_KEYS = {"device-filter", "devices", "mig-enabled", "mig-devices"}
_NVIDIA_VENDOR = 0x10DE


def _pci_pair(text: str) -> tuple[int, int]:
    """``0x20B010DE`` -> (0x20B0, 0x10DE); a bare device ID (``0x20B0``) is taken as NVIDIA's."""
    value = int(text, 0) if text.lower().startswith("0x") else int(text, 16)
    return (value >> 16, value & 0xFFFF) if value > 0xFFFF else (value, _NVIDIA_VENDOR)


@dataclass(frozen=True)
class MigPartedEntry:
    """One entry of a mig-parted config: which GPUs it selects and the layout it gives them."""

    devices: tuple[int, ...] | None  # GPU indexes; None = ``devices: all``
    mig_enabled: bool
    mig_devices: tuple[tuple[str, int], ...]  # ("1g.5gb", 7), as written
    device_filter: tuple[str, ...] = ()  # "0x20B010DE" or "0x20B010DE:0x134F10DE"; () = every GPU
    products: tuple[str, ...] = ()  # catalogue products the filter's PCI IDs name
    where: str = ""  # "config 'x' entry 2 in FILE", for messages

    def matches(self, index: int, pci_device_id: str | None = None, product: str | None = None,
                subsystem_id: str | None = None) -> bool:
        """Whether this entry selects GPU ``index`` with that PCI device ID (as the MIG facts give it, e.g.
        ``0x20B010DE``). Without a PCI ID the product's catalogue IDs stand in. A filter with a subsystem ID
        matches only a GPU whose subsystem ID is known and equal."""
        if self.devices is not None and index not in self.devices:
            return False
        if not self.device_filter:
            return True
        if pci_device_id is not None:
            ids = [_pci_pair(pci_device_id)]
        elif product is not None and (known := catalogue(product)) is not None:
            ids = [_pci_pair(p) for p in known.pci_device_ids]
        else:
            return False
        for text in self.device_filter:
            primary, _, sub = text.partition(":")
            if _pci_pair(primary) not in ids:
                continue
            if not sub or (subsystem_id is not None and _pci_pair(sub) == _pci_pair(subsystem_id)):
                return True
        return False

    def layout(self, product: ProductProfiles) -> Layout:
        """The entry's ``mig-devices`` as a :class:`Layout` on ``product``.

        ``"1c.3g.20gb": 3`` means compute instances packed into 3g.20gb GPU instances the way mig-parted packs them
        (largest CI first, each into the last GI of that profile while it has room, else a new GI).
        """
        if not self.mig_enabled:
            return Layout(enabled=False)
        full: list[WantedInstance] = []
        partial: dict[GiProfile, list[CiProfile]] = {}
        for text, count in self.mig_devices:
            m = _MP_PROFILE.match(text)
            assert m is not None  # checked when the file was read
            gi_name = f"{m.group(2)}g.{m.group(3)}gb{m.group(4)}"
            try:
                profile = _profile(product, gi_name)
                ci = _ci_profile(profile, f"{m.group(1)}c", product) if m.group(1) else None
            except LayoutError as exc:
                raise MigPartedConfigError(f"{self.where}: {exc}") from None
            if ci is None or ci.default:
                full.extend(WantedInstance(profile, None, _default_compute(profile)) for _ in range(count))
            else:
                partial.setdefault(profile, []).extend([ci] * count)
        for profile, cis in partial.items():
            gis: list[list[CiProfile]] = []
            for ci in sorted(cis, key=lambda c: (-c.slices, c.id)):
                last = gis[-1] if gis else None
                if last is not None and sum(c.slices for c in last) + ci.slices <= profile.slices and \
                        last.count(ci) < ci.max_count:
                    last.append(ci)
                else:
                    gis.append([ci])
            full.extend(WantedInstance(profile, None, tuple(g)) for g in gis)
        layout = Layout(enabled=True, instances=tuple(full))
        try:
            validate(layout, product)
        except LayoutError as exc:
            raise MigPartedConfigError(f"{self.where}: {exc}") from None
        return layout


@dataclass(frozen=True)
class MigPartedConfig:
    """One named configuration of a mig-parted file: its entries, in file order."""

    name: str
    entries: tuple[MigPartedEntry, ...]
    source: str = ""

    def entry_for(self, index: int, pci_device_id: str | None = None, product: str | None = None,
                  subsystem_id: str | None = None) -> MigPartedEntry | None:
        """The entry that decides GPU ``index``: mig-parted applies every matching entry in file order, so the last
        one wins. ``None``: the config does not mention this GPU, which mig-parted leaves as it is."""
        found = None
        for entry in self.entries:
            if entry.matches(index, pci_device_id, product, subsystem_id):
                found = entry
        return found

    def layout_for(self, index: int, product: ProductProfiles, pci_device_id: str | None = None,
                   subsystem_id: str | None = None) -> Layout | None:
        """The layout this config gives GPU ``index`` of ``product``, or ``None`` to leave the GPU alone."""
        entry = self.entry_for(index, pci_device_id, product.product, subsystem_id)
        return entry.layout(product) if entry is not None else None


def load_mig_parted_config(path: str | Path, config_name: str | None = None) -> MigPartedConfig:
    """Read a mig-parted config file (``version: v1``) and select one of its ``mig-configs``.

    ``config_name`` may be left out when the file has exactly one configuration, as with ``nvidia-mig-parted
    apply``. Checks what mig-parted checks (version, required and unknown keys, profile formats, counts).
    """
    import yaml  # PyYAML is a gpuprov dependency; imported here so parsing layouts never needs it

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise MigPartedConfigError(f"cannot read the mig-parted config {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise MigPartedConfigError(f"{path} is not valid YAML: {exc}") from None
    return parse_mig_parted_config(data, config_name, source=str(path))


def parse_mig_parted_config(data: Any, config_name: str | None = None, source: str = "<config>") -> MigPartedConfig:
    """:func:`load_mig_parted_config` for a document already parsed from YAML or JSON."""
    if not isinstance(data, Mapping):
        raise MigPartedConfigError(f"{source}: a mig-parted config is a mapping with version: v1 and mig-configs:")
    unknown = set(data) - {"version", "mig-configs"}
    if unknown:
        raise MigPartedConfigError(f"{source}: unexpected field: {', '.join(sorted(map(str, unknown)))}")
    if data.get("version") != "v1":
        raise MigPartedConfigError(f"{source}: unknown version: {data.get('version')!r} (mig-parted reads v1)")
    configs = data.get("mig-configs")
    if not isinstance(configs, Mapping) or not configs:
        raise MigPartedConfigError(f"{source}: at least one entry in 'mig-configs' is required")
    if config_name is None:
        if len(configs) != 1:
            raise MigPartedConfigError(f"{source} has {len(configs)} configurations ({', '.join(map(str, configs))});"
                                       " name the one to apply")
        config_name = str(next(iter(configs)))
    if config_name not in configs:
        raise MigPartedConfigError(f"{source} has no configuration {config_name!r}; it has "
                                   f"{', '.join(map(str, configs))}")
    raw = configs[config_name]
    if not isinstance(raw, Sequence) or isinstance(raw, str) or not raw:
        raise MigPartedConfigError(f"{source}: at least one entry in '{config_name}' is required")
    entries = tuple(_mp_entry(e, f"config {config_name!r} entry {i} in {source}") for i, e in enumerate(raw, 1))
    return MigPartedConfig(name=config_name, entries=entries, source=source)


def _mp_entry(raw: Any, where: str) -> MigPartedEntry:
    if not isinstance(raw, Mapping):
        raise MigPartedConfigError(f"{where}: an entry is a mapping with devices: and mig-enabled:")
    unknown = set(raw) - _MP_KEYS
    if unknown:
        raise MigPartedConfigError(f"{where}: unexpected field: {', '.join(sorted(map(str, unknown)))}")
    for key in ("devices", "mig-enabled"):
        if key not in raw:
            raise MigPartedConfigError(f"{where}: missing required field: {key}")
    devices_raw = raw["devices"]
    devices: tuple[int, ...] | None
    if devices_raw == "all":
        devices = None
    elif isinstance(devices_raw, list) and all(isinstance(d, int) and not isinstance(d, bool) for d in devices_raw):
        devices = tuple(devices_raw)
    else:
        raise MigPartedConfigError(f"{where}: devices: must be 'all' or a list of GPU indexes, not {devices_raw!r}")
    enabled = raw["mig-enabled"]
    if not isinstance(enabled, bool):
        raise MigPartedConfigError(f"{where}: mig-enabled: must be true or false")
    filters = _mp_filters(raw.get("device-filter"), where)
    mig_devices = raw.get("mig-devices")
    if enabled and mig_devices is None:
        raise MigPartedConfigError(f"{where}: missing required field 'mig-devices' when 'mig-enabled' is true")
    if not enabled and mig_devices:
        raise MigPartedConfigError(f"{where}: MIG devices included when 'mig-enabled' is false")
    pairs: list[tuple[str, int]] = []
    if mig_devices:
        if not isinstance(mig_devices, Mapping):
            raise MigPartedConfigError(f"{where}: mig-devices: maps profiles to counts, e.g. {{\"1g.5gb\": 7}}")
        for name, count in mig_devices.items():
            if not isinstance(name, str) or not _MP_PROFILE.match(name):
                raise MigPartedConfigError(f"{where}: invalid format for {name!r}: a MIG profile is written like "
                                           "1g.5gb, 1g.5gb+me or 1c.3g.20gb")
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise MigPartedConfigError(f"{where}: invalid count for {name!r}: {count!r}")
            if count:
                pairs.append((name, count))
        if not pairs:
            raise MigPartedConfigError(f"{where}: all counts for all MigProfiles are 0")
    products_ = tuple(dict.fromkeys(
        p for f in filters if (p := product_for_pci_id(normalise_pci_id(f.partition(":")[0]))) is not None))
    return MigPartedEntry(devices=devices, mig_enabled=enabled, mig_devices=tuple(pairs), device_filter=filters,
                          products=products_, where=where)


def _mp_filters(raw: Any, where: str) -> tuple[str, ...]:
    if raw is None or raw == "":
        return ()
    values = raw if isinstance(raw, list) else [raw]
    out: list[str] = []
    for v in values:
        if isinstance(v, int) and not isinstance(v, bool):  # YAML reads an unquoted 0x20B010DE as a number
            v = f"0x{v:08X}"
        if not isinstance(v, str):
            raise MigPartedConfigError(f"{where}: device-filter: {v!r} is not a PCI ID such as 0x20B010DE")
        parts = v.strip().split(":")
        try:
            if len(parts) > 2:
                raise ValueError
            pairs = [_pci_pair(hex(int(p.strip(), 0))) for p in parts]  # mig-parted: strconv.ParseUint(s, 0, 32)
        except ValueError:
            raise MigPartedConfigError(f"{where}: device-filter: {v!r} is not a PCI ID such as 0x20B010DE or "
                                       "0x20B010DE:0x134F10DE") from None
        out.append(":".join(f"0x{d:04X}{ven:04X}" for d, ven in pairs))
    return tuple(out)

