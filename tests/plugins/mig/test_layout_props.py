"""Properties of the MIG placement planner, checked against a brute-force search over the placement tables.

The oracle here shares nothing with the planner but the catalogue: it tries every start of every instance in turn
(no bit masks, no symmetry breaking, no scoring), with the rules written out once more — placements from the
profile's table, no shared memory slice, per-profile limits, at most one ``+me`` instance.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from itertools import combinations

from gpuprov_mig.layout import (
    Layout,
    LayoutError,
    Placed,
    PlacementPlan,
    WantedInstance,
    all_placements,
    fits,
    plan_placements,
)
from gpuprov_mig.profiles import CiProfile, GiProfile, ProductProfiles, catalogue, products
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

PRODUCTS: list[ProductProfiles] = [p for p in (catalogue(n) for n in products()) if p is not None]
SETTINGS = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- the oracle ----------------------------------------------------------------------------------------------------


def slices_of(start: int, size: int) -> set[int]:
    return set(range(start, start + size))


def within_limits(profiles: Sequence[GiProfile]) -> bool:
    counts = Counter(p.id for p in profiles)
    if any(counts[p.id] > p.max_count for p in profiles):
        return False
    return sum(1 for p in profiles if "+me" in p.name and "+me." not in p.name) <= 1


def brute_fits(product: ProductProfiles, wanted: Sequence[tuple[GiProfile, int | None]],
               blocked: set[int] | None = None) -> bool:
    """Some non-overlapping start for every (profile, explicit start or None), avoiding ``blocked`` slices."""
    if not within_limits([p for p, _ in wanted]):
        return False
    used = set(blocked or ())
    if sum(p.size for p, _ in wanted) + len(used) > product.memory_slices:
        return False

    def place(i: int) -> bool:
        if i == len(wanted):
            return True
        profile, fixed = wanted[i]
        for start in profile.starts:
            if fixed is not None and start != fixed:
                continue
            cells = slices_of(start, profile.size)
            if max(cells) >= product.memory_slices or cells & used:
                continue
            used.update(cells)
            if place(i + 1):
                return True
            used.difference_update(cells)
        return False

    return place(0)


def kind(profile: GiProfile, ci_ids: Sequence[int]) -> tuple[int, tuple[int, ...]]:
    return profile.id, tuple(sorted(ci_ids))


def brute_best_keep(product: ProductProfiles, wanted: Sequence[WantedInstance],
                    existing: Sequence[Placed]) -> tuple[int, int]:
    """The most existing instances (then memory slices) that can stay while the rest of ``wanted`` still fits."""
    want = Counter(kind(w.profile, [c.id for c in w.compute]) for w in wanted)
    best = (0, 0)
    for n in range(len(existing), 0, -1):
        for subset in combinations(existing, n):
            have = Counter((e.profile_id, tuple(sorted(e.ci_profile_ids))) for e in subset)
            if any(have[k] > want[k] for k in have):
                continue
            cells: set[int] = set()
            overlap = False
            for e in subset:
                mine = slices_of(e.start, e.size)
                overlap = overlap or bool(mine & cells)
                cells |= mine
            if overlap:
                continue
            rest = want - have
            remaining: list[tuple[GiProfile, int | None]] = []
            for w in wanted:
                k = kind(w.profile, [c.id for c in w.compute])
                if rest[k] > 0:
                    rest[k] -= 1
                    remaining.append((w.profile, None))
            if brute_fits(product, remaining, cells):
                best = max(best, (n, sum(e.size for e in subset)))
        if best[0] == n:
            break
    return best


# -- strategies ----------------------------------------------------------------------------------------------------


def default(profile: GiProfile) -> tuple[CiProfile, ...]:
    ci = profile.default_ci
    return (ci,) if ci is not None else ()


def splits(profile: GiProfile) -> list[tuple[CiProfile, ...]]:
    """A few compute splits a GI of this profile can have: the default, none, and all-1c."""
    out = [default(profile), ()]
    one = next((c for c in profile.ci_profiles if c.slices == 1 and not c.default), None)
    if one is not None:
        out.append((one,) * one.max_count)
    return out


@st.composite
def product_and_profiles(draw: st.DrawFn, max_size: int = 9) -> tuple[ProductProfiles, list[GiProfile]]:
    """A product and a multiset of its profiles: half the time any profiles, half the time a GPU-full that fits
    plus up to two more, so both sides of the fit/no-fit boundary are well covered."""
    product = draw(st.sampled_from(PRODUCTS))
    if draw(st.booleans()):
        return product, draw(st.lists(st.sampled_from(product.profiles), max_size=max_size))
    base = [product.by_id(e.profile_id) for e in draw(existing_state(product))]
    more = draw(st.lists(st.sampled_from(product.profiles), max_size=2))
    profiles = [p for p in base + more if p is not None][:max_size]
    return product, draw(st.permutations(profiles))


@st.composite
def existing_state(draw: st.DrawFn, product: ProductProfiles) -> list[Placed]:
    """GPU instances as a GPU could have them: random profiles, each at a random start still free (a profile with
    none left, or over its limit, is skipped), so most GPUs come out well filled."""
    placed: list[Placed] = []
    used: set[int] = set()
    for profile in draw(st.lists(st.sampled_from(product.profiles), min_size=4, max_size=12)):
        free = [s for s in profile.starts if not slices_of(s, profile.size) & used]
        if not free or not within_limits([product.by_id(e.profile_id) for e in placed] + [profile]):
            continue
        start = draw(st.sampled_from(free))
        used |= slices_of(start, profile.size)
        compute = draw(st.sampled_from(splits(profile)))
        placed.append(Placed(gi_id=len(placed) + 1, profile_id=profile.id, start=start, size=profile.size,
                             ci_profile_ids=tuple(c.id for c in compute)))
    return placed


def wanted_of(product: ProductProfiles, e: Placed) -> WantedInstance:
    profile = product.by_id(e.profile_id)
    assert profile is not None
    return WantedInstance(profile, None, tuple(profile.ci_by_id(i) for i in e.ci_profile_ids))  # type: ignore[misc]


def assert_valid_plan(product: ProductProfiles, wanted: Sequence[WantedInstance], existing: Sequence[Placed],
                      plan: PlacementPlan) -> None:
    assert sorted(plan.keep + plan.destroy, key=lambda e: e.gi_id) == sorted(existing, key=lambda e: e.gi_id)
    assert not set(plan.keep) & set(plan.destroy)
    used: set[int] = set()
    for e in plan.keep:
        cells = slices_of(e.start, e.size)
        assert not cells & used
        used |= cells
    for c in plan.create:
        assert c.start in c.profile.starts
        cells = slices_of(c.start, c.profile.size)
        assert max(cells) < product.memory_slices and not cells & used, (c, used)
        used |= cells
    assert [c.profile.size for c in plan.create] == sorted((c.profile.size for c in plan.create), reverse=True)
    got = Counter([(e.profile_id, tuple(sorted(e.ci_profile_ids))) for e in plan.keep]
                  + [kind(c.profile, [x.id for x in c.compute]) for c in plan.create])
    assert got == Counter(kind(w.profile, [c.id for c in w.compute]) for w in wanted)
    for w in wanted:
        if w.start is not None:
            assert any(c.profile == w.profile and c.start == w.start for c in plan.create) or any(
                e.profile_id == w.profile.id and e.start == w.start for e in plan.keep)


def as_placed(plan: PlacementPlan) -> list[Placed]:
    """The GPU after the plan: the kept instances and the created ones, with new GI IDs."""
    new = [Placed(100 + i, c.profile.id, c.start, c.profile.size, tuple(x.id for x in c.compute))
           for i, c in enumerate(plan.create)]
    return list(plan.keep) + new


# -- properties ----------------------------------------------------------------------------------------------------


@SETTINGS
@given(product_and_profiles())
def test_accepts_exactly_what_brute_force_places(case: tuple[ProductProfiles, list[GiProfile]]) -> None:
    product, profiles = case
    expected = brute_fits(product, [(p, None) for p in profiles])
    event("fits" if expected else "does not fit")
    assert fits(product, profiles) == expected
    wanted = tuple(WantedInstance(p, None, default(p)) for p in profiles)
    try:
        plan = plan_placements(product, Layout(True, wanted), [])
    except LayoutError as exc:
        assert not expected, str(exc)
        assert product.product in str(exc)
        return
    assert expected
    assert not plan.keep and not plan.destroy
    assert_valid_plan(product, wanted, [], plan)


@SETTINGS
@given(st.data())
def test_explicit_starts_are_kept_or_refused_like_brute_force(data: st.DataObject) -> None:
    product, profiles = data.draw(product_and_profiles(max_size=6))
    starts = [data.draw(st.one_of(st.none(), st.sampled_from(p.starts))) for p in profiles]
    wanted = tuple(WantedInstance(p, s, default(p)) for p, s in zip(profiles, starts, strict=True))
    expected = brute_fits(product, list(zip(profiles, starts, strict=True)))
    event("fits" if expected else "does not fit")
    assert fits(product, wanted) == expected
    try:
        plan = plan_placements(product, Layout(True, wanted), [])
    except LayoutError:
        assert not expected
        return
    assert expected
    assert_valid_plan(product, wanted, [], plan)


@SETTINGS
@given(st.data())
def test_plans_keep_the_most_existing_instances_without_moving_them(data: st.DataObject) -> None:
    product = data.draw(st.sampled_from(PRODUCTS))
    existing = data.draw(existing_state(product))
    reused = data.draw(st.lists(st.sampled_from(existing), unique=True, min_size=len(existing) // 2)) \
        if existing else []
    extra = data.draw(st.lists(st.sampled_from(product.profiles), max_size=3))
    compute = [data.draw(st.sampled_from(splits(p))) for p in extra]
    wanted = tuple([wanted_of(product, e) for e in reused]
                   + [WantedInstance(p, None, c) for p, c in zip(extra, compute, strict=True)])
    if not brute_fits(product, [(w.profile, None) for w in wanted]):
        event("layout does not fit")
        return
    plan = plan_placements(product, Layout(True, wanted), existing)
    event(f"kept {len(plan.keep)} of {len(existing)}, destroyed {len(plan.destroy)}")
    assert_valid_plan(product, wanted, existing, plan)
    for e in plan.keep:  # kept means untouched: the very instance, same GI ID, same placement
        assert any(e is x for x in existing)
    assert (len(plan.keep), sum(e.size for e in plan.keep)) == brute_best_keep(product, wanted, existing)


@SETTINGS
@given(st.data())
def test_planning_again_from_the_result_changes_nothing(data: st.DataObject) -> None:
    product = data.draw(st.sampled_from(PRODUCTS))
    existing = data.draw(existing_state(product))
    profiles = data.draw(st.lists(st.sampled_from(product.profiles), max_size=8))
    wanted = tuple(WantedInstance(p, data.draw(st.one_of(st.none(), st.sampled_from(p.starts))),
                                  data.draw(st.sampled_from(splits(p)))) for p in profiles)
    try:
        plan = plan_placements(product, Layout(True, wanted), existing)
    except LayoutError:
        assert not fits(product, wanted)
        return
    after = as_placed(plan)
    again = plan_placements(product, Layout(True, wanted), after)
    assert again.unchanged
    assert sorted(again.keep, key=lambda e: e.gi_id) == sorted(after, key=lambda e: e.gi_id)


@SETTINGS
@given(product_and_profiles(max_size=5))
def test_all_placements_lists_every_arrangement_once(case: tuple[ProductProfiles, list[GiProfile]]) -> None:
    product, profiles = case
    found = all_placements(product, profiles)
    arrangements = [Counter((p.id, s) for p, s in a) for a in found]
    for a in found:
        assert sorted(p.id for p, _ in a) == sorted(p.id for p in profiles)
        cells: set[int] = set()
        for p, s in a:
            assert s in p.starts and not slices_of(s, p.size) & cells
            cells |= slices_of(s, p.size)
    assert len({frozenset(c.items()) for c in arrangements}) == len(found)

    expected: set[frozenset[tuple[tuple[int, int], int]]] = set()

    def every(i: int, used: set[int], chosen: list[tuple[int, int]]) -> None:
        if i == len(profiles):
            expected.add(frozenset(Counter(chosen).items()))
            return
        for s in profiles[i].starts:
            cells = slices_of(s, profiles[i].size)
            if not cells & used and max(cells) < product.memory_slices:
                every(i + 1, used | cells, chosen + [(profiles[i].id, s)])

    every(0, set(), [])
    assert {frozenset(c.items()) for c in arrangements} == expected
