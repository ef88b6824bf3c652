"""The MIG plugin's solver against the simulator's MIG engine, an independent model of the driver.

The plugin plans from its own catalogue; the simulator enforces the placement tables of
``shared/reference/mig-profiles.json`` its own way. For each product both know:

- every layout the solver accepts is creatable in the simulator, instance by instance, with the planned starts
  and in the planned order (largest first), as ``nvidia-smi mig -cgi ID:START`` would do it;
- every layout the solver rejects, the simulator refuses too: a depth-first search over creations in the engine
  (each GI at each start the driver accepts, destroying to backtrack) finds no way to hold them all.
"""

from __future__ import annotations

from gpuprov_mig.layout import Layout, LayoutError, WantedInstance, fits, plan_placements
from gpuprov_mig.profiles import ProductProfiles, catalogue
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gpuprov.sim import mig, migprofiles
from gpuprov.sim.machine import Machine
from gpuprov.sim.presets import DEFAULT_DRIVER, new_machine

PRODUCTS = [name for name in migprofiles.products() if catalogue(name) is not None]
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def fresh(product: str) -> tuple[Machine, object]:
    machine = new_machine(gpu=product, count=1, hostname="solver")
    gpu = machine.gpu(0)
    gpu.mig_current = gpu.mig_pending = True
    return machine, gpu


def sim_profile(product: str, profile_id: int) -> migprofiles.GiProfile:
    prof = migprofiles.gi_profile(product, DEFAULT_DRIVER, profile_id)
    assert prof is not None, f"{product}: the simulator lacks GI profile {profile_id}"
    return prof


def simulator_holds(product: str, profile_ids: list[int]) -> bool:
    """Whether the engine can hold all these GIs at once: tries every start the driver accepts for each."""
    machine, gpu = fresh(product)
    wanted = sorted(profile_ids)

    def place(i: int) -> bool:
        if i == len(wanted):
            return True
        prof = sim_profile(product, wanted[i])
        for start in range(migprofiles.memory_slices(product)):
            try:
                gi = mig.create_gpu_instance(machine, gpu, prof, start)
            except mig.MigError:
                continue
            if place(i + 1):
                return True
            mig.destroy_gpu_instance(machine, gpu, gi)
        return False

    return place(0)


def layouts(draw: st.DrawFn) -> tuple[str, ProductProfiles, list[int]]:
    name = draw(st.sampled_from(PRODUCTS))
    product = catalogue(name)
    assert product is not None
    ids = [p.id for p in product.profiles if migprofiles.gi_profile(name, DEFAULT_DRIVER, p.id) is not None]
    chosen = draw(st.lists(st.sampled_from(ids), min_size=1, max_size=8))
    return name, product, chosen


@SETTINGS
@given(st.composite(layouts)())
def test_accepted_layouts_are_creatable_and_rejected_ones_are_refused(case: tuple[str, ProductProfiles, list[int]]
                                                                     ) -> None:
    name, product, ids = case
    profiles = [next(p for p in product.profiles if p.id == i) for i in ids]
    if not fits(product, profiles):
        event("rejected")
        assert not simulator_holds(name, ids), f"{name}: the solver rejects {ids} but the simulator holds them"
        return
    event("accepted")
    wanted = Layout(True, tuple(WantedInstance(p, None, ()) for p in profiles))
    try:
        plan = plan_placements(product, wanted, ())
    except LayoutError as exc:  # fits() and the planner must agree
        raise AssertionError(f"{name}: fits() accepts {ids} but the planner refuses: {exc}") from exc
    machine, gpu = fresh(name)
    for creation in plan.create:
        mig.create_gpu_instance(machine, gpu, sim_profile(name, creation.profile.id), creation.start)
    assert sorted(gi.profile_id for gi in gpu.gpu_instances) == sorted(ids)


def test_every_product_is_compared() -> None:
    # the products of the example rack and the captures, at least
    for name in ("NVIDIA A100-SXM4-40GB", "NVIDIA A100-SXM4-80GB", "NVIDIA A30", "NVIDIA H100 80GB HBM3",
                 "NVIDIA H100 NVL", "NVIDIA H200"):
        assert name in PRODUCTS
