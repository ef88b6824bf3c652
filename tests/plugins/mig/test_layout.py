"""The MIG catalogue, layout specs, named layouts, the placement planner and mig-parted import, by example.

Properties that must hold for every layout (acceptance matches a brute-force search, plans never overlap, kept
instances never move, a second plan is empty) are in ``test_layout_props.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from gpuprov_mig import facts
from gpuprov_mig.layout import (
    Layout,
    LayoutError,
    MigPartedConfigError,
    Placed,
    WantedInstance,
    all_placements,
    fits,
    format_layout,
    load_mig_parted_config,
    named_layout,
    parse_layout,
    parse_mig_parted_config,
    placed_from_facts,
    plan_placements,
)
from gpuprov_mig.profiles import (
    ProductProfiles,
    catalogue,
    from_lgip,
    normalise_pci_id,
    product_for_pci_id,
    products,
)
from helpers import FIXTURES

DATA = Path(__file__).parent / "data"
MIG_PARTED = DATA / "mig-parted-config.yaml"

A100 = "NVIDIA A100-SXM4-40GB"
A30 = "NVIDIA A30"
H100 = "NVIDIA H100 80GB HBM3"


def product(name: str, driver: str | None = None) -> ProductProfiles:
    found = catalogue(name, driver)
    assert found is not None, name
    return found


def placements(plan_create: tuple) -> list[tuple[str, int]]:
    return [(c.profile.name, c.start) for c in plan_create]


def created(name: str, spec: object) -> list[tuple[str, int]]:
    p = product(name)
    return placements(plan_placements(p, parse_layout(spec, p), []).create)


# -- catalogue -----------------------------------------------------------------------------------------------------


REQUIRED_PRODUCTS = [
    "NVIDIA A100-SXM4-40GB", "A100-SXM4-40GB", "NVIDIA A100-PCIE-40GB", "NVIDIA A100-SXM4-80GB",
    "NVIDIA A100 80GB PCIe", "NVIDIA A30", "NVIDIA H100 PCIe", "NVIDIA H100 80GB HBM3", "NVIDIA H100 NVL",
    "NVIDIA H200", "NVIDIA GH200 120GB", "NVIDIA GH200 480GB", "NVIDIA GH200 144G HBM3e",
]


@pytest.mark.parametrize("name", REQUIRED_PRODUCTS)
def test_catalogue_knows_the_products_nvidia_smi_prints(name: str) -> None:
    p = product(name)
    assert p.product == name
    assert p.memory_slices == (4 if "A30" in name else 8)
    assert all(g.starts and g.ci_profiles and g.memory_mib > 0 for g in p.profiles)
    assert sum(1 for g in p.profiles if g.default_ci is not None) == len(p.profiles)


@pytest.mark.parametrize("name", ["Tesla T4", "NVIDIA L40S", "Tesla P100-PCIE-16GB", ""])
def test_a_product_without_mig_has_no_catalogue(name: str) -> None:
    assert catalogue(name) is None


def test_lookup_tolerates_case_and_the_nvidia_prefix() -> None:
    assert product("nvidia a30").product == "NVIDIA A30"
    assert product("A30").product == "A30"
    assert product("H100 NVL").by_name("3g.47gb") is not None


def test_a100_40gb_table_is_the_captured_one() -> None:
    p = product(A100)
    table = [(g.name, g.id, g.slices, g.size, g.starts, g.max_count) for g in p.profiles]
    assert table == [
        ("1g.5gb", 19, 1, 1, (0, 1, 2, 3, 4, 5, 6), 7),
        ("1g.5gb+me", 20, 1, 1, (0, 1, 2, 3, 4, 5, 6), 1),
        ("1g.10gb", 15, 1, 2, (0, 2, 4, 6), 4),
        ("2g.10gb", 14, 2, 2, (0, 2, 4), 3),
        ("3g.20gb", 9, 3, 4, (0, 4), 2),
        ("4g.20gb", 5, 4, 4, (0,), 1),
        ("7g.40gb", 0, 7, 8, (0,), 1),
    ]
    assert p.placements_verified and p.pci_device_ids == ("0x20B0",)
    assert [(c.name, c.id, c.slices, c.max_count, c.default) for c in p.by_name("3g.20gb").ci_profiles] == [
        ("1c.3g.20gb", 0, 1, 3, False), ("2c.3g.20gb", 1, 2, 1, False), ("3g.20gb", 2, 3, 1, True)]


def test_a30_is_a_four_slice_part() -> None:
    p = product(A30)
    assert [(g.name, g.id, g.size, g.starts, g.max_count) for g in p.profiles] == [
        ("1g.6gb", 14, 1, (0, 1, 2, 3), 4), ("1g.6gb+me", 21, 1, (0, 1, 2, 3), 1), ("2g.12gb", 5, 2, (0, 2), 2),
        ("4g.24gb", 0, 4, (0,), 1)]


def test_products_without_a_placement_capture_take_their_family_table() -> None:
    h200 = product("NVIDIA H200")
    assert not h200.placements_verified
    assert h200.by_name("3g.71gb").starts == (0, 4) and h200.by_name("1g.35gb").starts == (0, 2, 4, 6)
    assert product("NVIDIA H100 NVL").placements_verified


def test_memory_follows_the_driver() -> None:
    assert product(A100, "580.126.09").by_name("7g.40gb").memory_mib == 40320
    assert product(A100, "510.47.03").by_name("7g.40gb").memory_mib == 40448
    assert product(A100, "450.80.02").by_name("2g.10gb").memory_mib == 9856
    assert product(A100, "535.104.05").by_name("2g.10gb").memory_mib == 9984
    assert product(A100, "418.1").by_name("2g.10gb").memory_mib == 9856  # older than every capture: the oldest
    assert product(A100).by_name("7g.40gb").memory_mib == 40320  # no driver: the newest capture


def test_profiles_a_driver_predates_are_left_out() -> None:
    assert product(A100, "470.82.01").by_name("1g.10gb") is None
    assert product(A100, "525.60.13").by_name("1g.10gb") is not None
    assert product(A100, "460.32.03").by_name("1g.5gb+me") is None


def test_derived_compute_profiles_agree_with_the_captured_ones() -> None:
    gh200 = product("NVIDIA GH200 120GB")
    assert [(c.name, c.id, c.default) for c in gh200.by_name("1g.24gb").ci_profiles] == [("1g.24gb", 7, True)]
    h100 = product("NVIDIA H100 PCIe")
    assert h100.by_name("1g.10gb").default_ci.id == 0
    assert [(c.name, c.id) for c in h100.by_name("3g.40gb").ci_profiles] == [
        ("1c.3g.40gb", 0), ("2c.3g.40gb", 1), ("3g.40gb", 2)]
    assert [(c.name, c.max_count) for c in h100.by_name("7g.80gb").ci_profiles] == [
        ("1c.7g.80gb", 7), ("2c.7g.80gb", 3), ("3c.7g.80gb", 2), ("4c.7g.80gb", 1), ("7g.80gb", 1)]
    assert product("NVIDIA A100-SXM4-80GB").by_name("1g.10gb+me").default_ci.name == "1g.10gb"


def test_pci_ids_name_products() -> None:
    assert normalise_pci_id("0x20B010DE") == normalise_pci_id("20b0") == "0x20B0"
    assert product_for_pci_id("0x20B010DE") == A100
    assert product_for_pci_id("0x20B7") == A30
    assert product_for_pci_id("0x233010DE") == H100
    assert product_for_pci_id("0x2BB510DE") is None
    assert len(set(products())) == len(products()) >= 13


CAPTURES = [
    ("a100-sxm4-40gb-r580_mig_-i_0_-lgip.txt", A100, "580.126.09", True),
    ("a100-sxm4-40gb_mig_-lgip.txt", A100, None, False),  # the guide's example: older memory sizes
    ("a30_mig_-lgip.txt", A30, None, True),
    ("gh200_mig_-lgip.txt", "NVIDIA GH200 120GB", None, True),
]


@pytest.mark.parametrize(("capture", "name", "driver", "memory"), CAPTURES, ids=[c[0] for c in CAPTURES])
def test_catalogue_matches_real_lgip_captures(capture: str, name: str, driver: str | None, memory: bool) -> None:
    rows = facts.parse_lgip((FIXTURES / "nvidia-smi" / capture).read_text())
    p = product(name, driver)
    assert [(r.id, r.name, r.total) for r in rows] == [(g.id, g.name, g.max_count) for g in p.profiles]
    if memory:
        assert [r.memory_mib for r in rows] == [g.memory_mib for g in p.profiles]


@pytest.mark.parametrize(("capture", "name"), [("a100-sxm4-40gb_mig_-lgipp.txt", A100), ("a30_mig_-lgipp.txt", A30)])
def test_catalogue_matches_real_lgipp_captures(capture: str, name: str) -> None:
    listed = facts.parse_lgipp((FIXTURES / "nvidia-smi" / capture).read_text())
    p = product(name)
    assert {pid: pl for (_, pid), pl in listed.items()} == {
        g.id: tuple((s, g.size) for s in g.starts) for g in p.profiles}


# -- a host's own listing ------------------------------------------------------------------------------------------


def lgip_rows(rows: list[tuple[int, str, int, int]]) -> list[dict[str, object]]:
    return [{"id": i, "name": n, "total": t, "memory_mib": m} for i, n, t, m in rows]


def test_from_lgip_takes_names_and_memory_from_the_host() -> None:
    rows = lgip_rows([(19, "1g.10gb", 7, 9728), (14, "2g.20gb", 3, 19968), (9, "3g.40gb", 2, 40192),
                      (0, "7g.79gb", 1, 80896)])
    p = from_lgip("NVIDIA A100-SXM4-80GB", rows, {19: (0, 1, 2, 3, 4, 5, 6), 14: [(0, 2), (2, 2), (4, 2)],
                                                    9: [(0, 4), (4, 4)], 0: [(0, 8)]})
    seven = p.by_name("7g.79gb")
    assert seven is not None and seven.memory_mib == 80896 and seven.starts == (0,) and seven.size == 8
    assert seven.default_ci.name == "7g.79gb" and seven.default_ci.id == 4  # CIs follow the host's name
    assert p.by_name("7g.80gb") is None and p.memory_slices == 8 and p.placements_verified
    assert p.balanced  # the catalogue's extras stay


def test_from_lgip_without_lgipp_falls_back_to_the_catalogue_placements() -> None:
    rows = lgip_rows([(14, "1g.6gb", 4, 5952), (21, "1g.6gb+me", 1, 5952), (5, "2g.12gb", 2, 11968),
                      (6, "2g.12gb+me", 1, 11968), (0, "4g.24gb", 1, 24064)])
    p = from_lgip("NVIDIA A30", rows, None)
    me = p.by_name("2g.12gb+me")
    assert me is not None and (me.id, me.starts, me.size, me.max_count) == (6, (0, 2), 2, 1)
    assert p.by_name("4g.24gb").starts == (0,) and p.memory_slices == 4 and not p.placements_verified


def test_from_lgip_uses_placements_in_the_fact_rows() -> None:
    rows = [{"id": 19, "name": "1g.5gb", "total": 7, "memory_mib": 4864,
             "placements": [[s, 1] for s in range(7)]}]
    p = from_lgip("NVIDIA A100-SXM4-40GB", rows, None)
    assert p.by_id(19).starts == tuple(range(7)) and p.placements_verified


def test_from_lgip_for_a_product_the_catalogue_lacks() -> None:
    rows = lgip_rows([(14, "1g.24gb", 4, 23680), (5, "2g.48gb", 2, 47616), (32, "4g.96gb", 1, 95232),
                      (99, "9g.1gb", 1, 1024)])
    p = from_lgip("NVIDIA RTX PRO 6000 Blackwell Server Edition", rows,
                  {14: (0, 1, 2, 3), 5: [(0, 2), (2, 2)], 32: [(0, 4)]})
    assert p.memory_slices == 4 and p.by_name("2g.48gb").starts == (0, 2)
    assert p.by_name("9g.1gb").starts == ()  # no placement known anywhere: cannot be planned
    assert named_layout("all-1g", p).instances[0].profile.name == "1g.24gb"
    with pytest.raises(LayoutError, match="9g.1gb has no known placement"):
        parse_layout(["9g.1gb"], p)


# -- layout specs --------------------------------------------------------------------------------------------------


def test_list_items_counts_ids_and_placements() -> None:
    p = product(H100)
    layout = parse_layout(["3g.40gb@4", "2 x 1g.10gb", "1x2g.20gb"], p)
    names = sorted((w.profile.name, w.start) for w in layout.instances)
    assert names == [("1g.10gb", None), ("1g.10gb", None), ("2g.20gb", None), ("3g.40gb", 4)]
    assert sorted(w.profile.name for w in parse_layout([20, 15, "19"], p).instances) == [
        "1g.10gb", "1g.10gb+me", "1g.20gb"]
    assert layout.enabled
    assert all(w.compute == (w.profile.default_ci,) for w in layout.instances)


def test_a_comma_separated_string_and_nvidia_smi_names() -> None:
    p = product(A100)
    assert parse_layout("3g.20gb, 2X1g.5gb, MIG 2g.10gb", p) == parse_layout(["3g.20gb", "2 x 1g.5gb", "2g.10gb"], p)
    assert parse_layout("9, 19", p) == parse_layout([9, "19"], p) == parse_layout(["3G.20GB", "1g.5gb"], p)


def test_compute_splits_in_the_mapping_form() -> None:
    p = product(H100)
    layout = parse_layout([
        {"profile": "3g.40gb", "compute": ["1c", "2c.3g.40gb"]},
        {"profile": "2g.20gb", "count": 1, "compute": ["2 x 1c"]},
        {"profile": 19, "compute": []},
        {"profile": "1g.10gb", "start": 0},
    ], p)
    by_name = {}
    for w in layout.instances:
        by_name.setdefault(w.profile.name, []).append(w)
    assert [c.name for c in by_name["3g.40gb"][0].compute] == ["2c.3g.40gb", "1c.3g.40gb"]  # largest first
    assert [[c.name for c in w.compute] for w in by_name["2g.20gb"]] == [["1c.2g.20gb"] * 2]
    assert [(w.start, w.compute) for w in by_name["1g.10gb"]] == [(None, ()), (0, (w.profile.default_ci,))]
    assert format_layout(layout) == ("3g.40gb [2c.3g.40gb, 1c.3g.40gb], 2g.20gb [1c.2g.20gb, 1c.2g.20gb], "
                                     "1g.10gb@0, 1g.10gb [no compute instances]")


def test_compute_by_id_and_full_name() -> None:
    p = product(A100)
    four = parse_layout([{"profile": "4g.20gb", "compute": [1, "1c.4g.20gb", 0]}], p).instances[0]
    assert [c.name for c in four.compute] == ["2c.4g.20gb", "1c.4g.20gb", "1c.4g.20gb"]
    assert parse_layout([{"profile": "4g.20gb", "compute": ["4g.20gb"]}], p) == parse_layout(["4g.20gb"], p)


BAD_SPECS = [
    (["5g.25gb"], r"NVIDIA A100-SXM4-40GB has no MIG profile '5g.25gb'; its profiles are:\n  1g.5gb +ID 19"),
    ([42], "has no MIG profile ID 42"),
    (["8 x 1g.5gb"], "holds at most 7 x 1g.5gb, not 8; the most of this layout that fits is 7 x 1g.5gb"),
    (["2 x 1g.5gb+me"], "holds at most 1 x 1g.5gb\\+me, not 2"),
    (["4g.20gb", "3g.20gb", "2g.10gb"],
     "cannot hold 4g.20gb, 3g.20gb, 2g.10gb together: they need 10 memory slices and the GPU has 8. The most of it "
     "that fits is 4g.20gb, 3g.20gb \\(without 2g.10gb\\)"),
    (["3g.20gb@0", "4g.20gb"], "no placements of them avoid each other .*The most of it that fits is 4g.20gb"),
    (["4g.20gb", "2 x 2g.10gb"],
     "no placements of them avoid each other .*without 2g.10gb\\); free memory slices after it: 6, 7"),
    (["2g.10gb@6"], "2g.10gb cannot start at memory slice 6; it can start at \\{0,2,4\\}"),
    (["2 x 3g.20gb@4"], "one placement cannot hold 2 instances"),
    (["3g.20gb:4"], "write the placement with '@' \\('3g.20gb@4'\\)"),
    (["1g.5gb*2"], "write counts as 'N x PROFILE'"),
    (["3g.20gb: 3 x 1c"], "mapping form"),
    ([{"profile": "3g.20gb", "compute": ["3 x 2c"]}], "holds at most 1 x 2c.3g.20gb, not 3"),
    ([{"profile": "3g.20gb", "compute": ["2c", "2 x 1c"]}], "need 4 compute slices"),
    ([{"profile": "3g.20gb", "compute": ["5c"]}], "has no compute-instance profile '5c'; it offers 1c.3g.20gb"),
    ([{"profile": "3g.20gb", "cores": 3}], "unknown key\\(s\\) cores"),
    ([{"3g.20gb": "3 x 1c"}], "YAML read '3g.20gb: ...' as a mapping; write '3g.20gb@START' for a placement, or "
                              "\\{profile: 3g.20gb, compute: \\[1c, 2c\\]\\}"),
    (["all-balanced"], "a named layout is the whole layout"),
    ([{"compute": ["1c"]}], "needs profile:"),
    ([{"profile": "3g.20gb", "count": 0}], "count: must be a whole number"),
    ([True], "not a MIG profile"),
    (None, "named layout"),
    ("all-5g", "has no 5g profile for all-5g; it offers all-1g, all-2g, all-3g, all-4g, all-7g"),
    ("all-sideways", "no MIG profile 'sideways' for the layout 'all-sideways'"),
]


@pytest.mark.parametrize(("spec", "message"), BAD_SPECS, ids=[str(s) for s, _ in BAD_SPECS])
def test_bad_layouts_say_what_fits(spec: object, message: str) -> None:
    with pytest.raises(LayoutError, match=message):
        parse_layout(spec, product(A100))


def test_more_than_one_media_extension_instance_on_a30() -> None:
    rows = lgip_rows([(14, "1g.6gb", 4, 5952), (21, "1g.6gb+me", 1, 5952), (5, "2g.12gb", 2, 11968),
                      (6, "2g.12gb+me", 1, 11968), (0, "4g.24gb", 1, 24064)])
    p = from_lgip(A30, rows, None)
    with pytest.raises(LayoutError, match=r"only one instance per GPU can have media extensions \(\+me\), the layout "
                                          r"asks for 2 \(2g.12gb\+me, 1g.6gb\+me\); the most of this layout that fits "
                                          r"is 2g.12gb\+me, 1g.6gb"):
        parse_layout(["2g.12gb+me", "1g.6gb+me", "1g.6gb"], p)


# -- named layouts -------------------------------------------------------------------------------------------------


# product -> (all-1g, all-2g, all-3g, all-max, all-balanced), as "N x profile" strings; None = LayoutError
NAMED = {
    "NVIDIA A100-SXM4-40GB": ("7 x 1g.5gb", "3 x 2g.10gb", "2 x 3g.20gb", "7g.40gb", "3g.20gb, 2g.10gb, 2 x 1g.5gb"),
    "NVIDIA A100-PCIE-40GB": ("7 x 1g.5gb", "3 x 2g.10gb", "2 x 3g.20gb", "7g.40gb", "3g.20gb, 2g.10gb, 2 x 1g.5gb"),
    "NVIDIA A100-SXM4-80GB": ("7 x 1g.10gb", "3 x 2g.20gb", "2 x 3g.40gb", "7g.80gb",
                              "3g.40gb, 2g.20gb, 2 x 1g.10gb"),
    "NVIDIA A100 80GB PCIe": ("7 x 1g.10gb", "3 x 2g.20gb", "2 x 3g.40gb", "7g.80gb",
                              "3g.40gb, 2g.20gb, 2 x 1g.10gb"),
    "NVIDIA A30": ("4 x 1g.6gb", "2 x 2g.12gb", None, "4g.24gb", "2g.12gb, 2 x 1g.6gb"),
    "NVIDIA H100 PCIe": ("7 x 1g.10gb", "3 x 2g.20gb", "2 x 3g.40gb", "7g.80gb", "3g.40gb, 2g.20gb, 2 x 1g.10gb"),
    "NVIDIA H100 80GB HBM3": ("7 x 1g.10gb", "3 x 2g.20gb", "2 x 3g.40gb", "7g.80gb",
                              "3g.40gb, 2g.20gb, 2 x 1g.10gb"),
    "NVIDIA H100 NVL": ("7 x 1g.12gb", "3 x 2g.24gb", "2 x 3g.47gb", "7g.94gb", "3g.47gb, 2g.24gb, 2 x 1g.12gb"),
    "NVIDIA H200": ("7 x 1g.18gb", "3 x 2g.35gb", "2 x 3g.71gb", "7g.141gb", "3g.71gb, 2g.35gb, 2 x 1g.18gb"),
    "NVIDIA H200 NVL": ("7 x 1g.18gb", "3 x 2g.35gb", "2 x 3g.71gb", "7g.141gb", "3g.71gb, 2g.35gb, 2 x 1g.18gb"),
    "NVIDIA GH200 120GB": ("7 x 1g.12gb", "3 x 2g.24gb", "2 x 3g.48gb", "7g.96gb", "3g.48gb, 2g.24gb, 2 x 1g.12gb"),
    "NVIDIA GH200 144G HBM3e": ("7 x 1g.18gb", "3 x 2g.36gb", "2 x 3g.72gb", "7g.144gb",
                                "3g.72gb, 2g.36gb, 2 x 1g.18gb"),
    "NVIDIA B200": ("7 x 1g.23gb", "3 x 2g.45gb", "2 x 3g.90gb", "7g.180gb", "3g.90gb, 2g.45gb, 2 x 1g.23gb"),
    "NVIDIA GB200": ("7 x 1g.23gb", "3 x 2g.47gb", "2 x 3g.93gb", "7g.186gb", "3g.93gb, 2g.47gb, 2 x 1g.23gb"),
}


def test_the_named_layout_table_covers_the_catalogue() -> None:
    assert set(NAMED) == set(products())


@pytest.mark.parametrize("name", sorted(NAMED))
def test_named_layouts_per_product(name: str) -> None:
    p = product(name)
    assert named_layout("all-disabled", p) == Layout(enabled=False)
    assert named_layout("All-Enabled", p) == Layout(enabled=True)
    for layout_name, expected in zip(("all-1g", "all-2g", "all-3g", "all-max", "all-balanced"), NAMED[name],
                                     strict=True):
        if expected is None:
            with pytest.raises(LayoutError, match=f"{name} has no 3g profile"):
                named_layout(layout_name, p)
            continue
        layout = named_layout(layout_name, p)
        assert format_layout(layout) == expected, layout_name
        assert parse_layout(layout_name, p) == layout
        plan = plan_placements(p, layout, [])
        assert len(plan.create) == len(layout.instances) and not plan.keep and not plan.destroy


def test_mig_parted_config_names_work_as_layouts() -> None:
    a100, h100 = product(A100), product(H100)
    assert format_layout(named_layout("all-1g.10gb", a100)) == "4 x 1g.10gb"  # mig-parted: 4 on 40GB parts
    assert format_layout(named_layout("all-1g.10gb", h100)) == "7 x 1g.10gb"  # and 7 on 80GB parts
    assert format_layout(named_layout("all-1g.5gb.me", a100)) == "1g.5gb+me"
    assert format_layout(named_layout("all-4g.20gb", a100)) == "4g.20gb"
    with pytest.raises(LayoutError, match="has no MIG profile '2g.10gb' for the layout 'all-2g.10gb'"):
        named_layout("all-2g.10gb", h100)  # 80GB parts have no 2g.10gb (mig-parted#18)


def test_all_balanced_placements() -> None:
    assert created(A100, "all-balanced") == [("3g.20gb", 4), ("2g.10gb", 2), ("1g.5gb", 0), ("1g.5gb", 1)]
    assert created(A30, "all-balanced") == [("2g.12gb", 2), ("1g.6gb", 0), ("1g.6gb", 1)]
    assert created(H100, "all-balanced") == [("3g.40gb", 4), ("2g.20gb", 2), ("1g.10gb", 0), ("1g.10gb", 1)]


def test_all_balanced_needs_a_definition() -> None:
    p = from_lgip("Some GPU", lgip_rows([(19, "1g.5gb", 7, 4864)]), {19: tuple(range(7))})
    with pytest.raises(LayoutError, match="Some GPU has no all-balanced layout"):
        named_layout("all-balanced", p)


# -- placement -----------------------------------------------------------------------------------------------------


def test_placements_leave_room_for_large_instances() -> None:
    assert created(A100, ["1g.5gb"]) == [("1g.5gb", 6)]
    assert created(A100, ["3g.20gb"]) == [("3g.20gb", 4)]  # 4g's only placement stays free
    assert created(A100, ["2g.10gb"]) == [("2g.10gb", 4)]
    assert created(A100, ["3g.20gb", "2 x 1g.10gb"]) == [("3g.20gb", 4), ("1g.10gb", 0), ("1g.10gb", 2)]
    assert created(A100, ["1g.5gb", "2g.10gb", "4g.20gb"]) == [("4g.20gb", 0), ("2g.10gb", 4), ("1g.5gb", 6)]


def test_an_order_the_driver_refuses_is_placed() -> None:
    # `nvidia-smi mig -cgi 19,19,14,9` fails with Insufficient Resources (MIG User Guide); placed offline it fits.
    assert created(A100, [19, 19, 14, 9]) == [("3g.20gb", 4), ("2g.10gb", 2), ("1g.5gb", 0), ("1g.5gb", 1)]


def test_explicit_placements_are_honoured() -> None:
    assert created(A100, ["3g.20gb@0", "1g.5gb@4"]) == [("3g.20gb", 0), ("1g.5gb", 4)]


def default_ci(p: ProductProfiles, name: str) -> tuple[int, ...]:
    return (p.by_name(name).default_ci.id,)


def test_matching_instances_stay_where_they_are() -> None:
    p = product(A100)
    # all-balanced as mig-parted left it (DCGM#138): not where gpuprov would put it, but nothing moves
    existing = [Placed(2, 9, 4, 4, (2,)), Placed(3, 14, 0, 2, (1,)), Placed(9, 19, 2, 1, (0,)),
                Placed(10, 19, 3, 1, (0,))]
    plan = plan_placements(p, named_layout("all-balanced", p), existing)
    assert plan.unchanged and plan.keep == tuple(sorted(existing, key=lambda e: e.start))


def test_adding_next_to_a_busy_instance_keeps_it() -> None:
    p = product(A100)
    busy = Placed(1, 9, 4, 4, default_ci(p, "3g.20gb"))
    plan = plan_placements(p, parse_layout(["3g.20gb", "2 x 2g.10gb"], p), [busy])
    assert plan.keep == (busy,) and not plan.destroy
    assert placements(plan.create) == [("2g.10gb", 0), ("2g.10gb", 2)]


def test_an_instance_in_the_way_is_destroyed() -> None:
    p = product(A100)
    in_the_way = Placed(1, 9, 0, 4, default_ci(p, "3g.20gb"))
    plan = plan_placements(p, parse_layout(["4g.20gb", "3g.20gb"], p), [in_the_way])
    assert plan.destroy == (in_the_way,) and not plan.keep
    assert placements(plan.create) == [("4g.20gb", 0), ("3g.20gb", 4)]  # largest placement first, then by start


def test_keeps_as_many_as_still_fit() -> None:
    p = product(A100)
    one = default_ci(p, "1g.5gb")
    a, b, c = Placed(7, 19, 0, 1, one), Placed(8, 19, 4, 1, one), Placed(9, 19, 5, 1, one)
    # 3g + 4 x 1g only fits with the 3g at 4: the 1g at 0 stays, those at 4 and 5 make way
    plan = plan_placements(p, parse_layout(["3g.20gb", "4 x 1g.5gb"], p), [b, a, c])
    assert plan.keep == (a,) and plan.destroy == (b, c)
    assert placements(plan.create) == [("3g.20gb", 4), ("1g.5gb", 1), ("1g.5gb", 2), ("1g.5gb", 3)]


def test_among_equally_many_keeps_the_larger_instances() -> None:
    p = product(A100)
    two, ten, five = Placed(1, 14, 4, 2, (1,)), Placed(2, 15, 0, 2, (7,)), Placed(3, 19, 3, 1, (0,))
    # two of the three can stay: 2g + 1g.10gb (4 slices) beats 2g + 1g.5gb (3 slices)
    plan = plan_placements(p, parse_layout(["1g.10gb", "1g.5gb", "2 x 2g.10gb"], p), [two, ten, five])
    assert plan.keep == (ten, two) and plan.destroy == (five,)
    assert placements(plan.create) == [("2g.10gb", 2), ("1g.5gb", 6)]


def test_a_different_compute_split_or_start_is_recreated() -> None:
    p = product(A100)
    split = Placed(1, 9, 4, 4, (0, 0, 0))
    plan = plan_placements(p, parse_layout(["3g.20gb"], p), [split])
    assert plan.destroy == (split,) and placements(plan.create) == [("3g.20gb", 4)]
    plan = plan_placements(p, parse_layout([{"profile": "3g.20gb", "compute": ["3 x 1c"]}], p), [split])
    assert plan.unchanged
    moved = Placed(1, 9, 0, 4, (2,))
    plan = plan_placements(p, parse_layout(["3g.20gb@4"], p), [moved])
    assert plan.destroy == (moved,) and placements(plan.create) == [("3g.20gb", 4)]


def test_a_single_full_compute_instance_counts_as_the_default_whatever_its_id() -> None:
    p = product(A100)
    # the catalogue derives 1g.10gb's full CI as ID 7; a driver printing another ID must not cause a rebuild
    plan = plan_placements(p, parse_layout(["1g.10gb"], p), [Placed(3, 15, 6, 2, (0,))])
    assert plan.unchanged
    plan = plan_placements(p, parse_layout(["2g.10gb"], p), [Placed(3, 14, 4, 2, (0,))])  # one 1c is not the default
    assert not plan.unchanged


def test_mig_off_or_no_instances_destroys_everything() -> None:
    p = product(A100)
    existing = [Placed(9, 19, 6, 1, (0,)), Placed(1, 0, 0, 8, (4,)), Placed(5, 99, 2, 2, ())]
    for layout in (Layout(enabled=False), Layout(enabled=True)):
        plan = plan_placements(p, layout, existing)
        assert plan.destroy == (existing[1], existing[2], existing[0]) and not plan.create and not plan.keep


def test_an_unknown_existing_profile_is_replaced() -> None:
    p = product(A100)
    odd = Placed(5, 99, 0, 2, ())
    plan = plan_placements(p, parse_layout(["2g.10gb"], p), [odd])
    assert plan.destroy == (odd,) and placements(plan.create) == [("2g.10gb", 4)]


def test_planning_from_the_result_changes_nothing() -> None:
    p = product(H100)
    layout = parse_layout(["3g.40gb", {"profile": "2g.20gb", "compute": ["2 x 1c"]}, "1g.10gb+me", "1g.10gb"], p)
    plan = plan_placements(p, layout, [])
    after = [Placed(i, c.profile.id, c.start, c.profile.size, tuple(x.id for x in c.compute))
             for i, c in enumerate(plan.create)]
    again = plan_placements(p, layout, after)
    assert again.unchanged and len(again.keep) == 4


def test_a_layout_that_does_not_fit_is_refused_by_the_planner_too() -> None:
    p = product(A100)
    seven = p.by_name("7g.40gb")
    layout = Layout(enabled=True, instances=(WantedInstance(seven, None, ()),) * 2)
    with pytest.raises(LayoutError, match="holds at most 1 x 7g.40gb"):
        plan_placements(p, layout, [])
    other = product(A30).by_name("4g.24gb")
    with pytest.raises(LayoutError, match="has no MIG profile 4g.24gb"):
        plan_placements(p, Layout(True, (WantedInstance(other, None, ()),)), [])


def test_fits_and_all_placements() -> None:
    p = product(A100)
    three, two, one = p.by_name("3g.20gb"), p.by_name("2g.10gb"), p.by_name("1g.5gb")
    assert fits(p, [three, two, one, one])
    assert not fits(p, [three, three, one])
    assert not fits(p, [one] * 8)
    assert fits(p, [WantedInstance(three, 0, ()), WantedInstance(one, 4, ())])
    assert not fits(p, [WantedInstance(three, 4, ()), WantedInstance(one, 4, ())])
    assert sorted(tuple(s for _, s in a) for a in all_placements(p, [three, two])) == [(0, 4), (4, 0), (4, 2)]
    assert len(all_placements(p, [one] * 7)) == 1 and len(all_placements(p, [one] * 2)) == 21
    assert all_placements(p, [three] * 3) == []


def test_placed_from_facts() -> None:
    instances = [{"gi": 2, "profile_id": 9, "profile": "3g.20gb", "placement": [4, 4],
                  "cis": [{"ci": 0, "profile_id": 2, "profile": "3g.20gb", "placement": [0, 3], "uuid": None}]},
                 {"gi": 7, "profile_id": 19, "profile": "1g.5gb", "placement": [0, 1], "cis": []}]
    assert placed_from_facts(instances) == (Placed(2, 9, 4, 4, (2,)), Placed(7, 19, 0, 1, ()))


# -- mig-parted config files ---------------------------------------------------------------------------------------


def test_mig_parted_device_filters_pick_the_product() -> None:
    config = load_mig_parted_config(MIG_PARTED, "rack-balanced")
    assert [e.products for e in config.entries] == [
        ("NVIDIA A100-SXM4-40GB", "NVIDIA A100-PCIE-40GB"), ("NVIDIA A30",),
        ("NVIDIA H100 80GB HBM3", "NVIDIA H100 PCIe")]
    assert config.entries[2].device_filter == ("0x233010DE", "0x233110DE")  # YAML numbers read back as IDs
    a100 = config.layout_for(0, product(A100), "0x20B010DE")
    assert a100 == named_layout("all-balanced", product(A100))
    a30 = config.layout_for(1, product(A30), "0x20B710DE")
    assert format_layout(a30) == "2g.12gb, 2 x 1g.6gb"
    h100 = config.layout_for(0, product("NVIDIA H100 PCIe"))  # no PCI ID in the facts: the catalogue's stands in
    assert format_layout(h100) == "3g.40gb, 2g.20gb, 2 x 1g.10gb"
    assert config.entry_for(0, "0x2BB510DE") is None  # not mentioned: mig-parted leaves such a GPU alone


def test_mig_parted_later_entries_override_earlier_ones() -> None:
    config = load_mig_parted_config(MIG_PARTED, "per-gpu")
    p = product(A100)
    layouts = [config.layout_for(i, p, "0x20B010DE") for i in range(5)]
    assert [format_layout(x) for x in layouts] == [
        "MIG off", "MIG off", "2 x 3g.20gb", "4g.20gb, 1g.5gb+me", "7 x 1g.5gb"]
    assert config.entries[3].mig_devices == (("1g.5gb+me", 1), ("4g.20gb", 1))  # zero counts dropped


def test_mig_parted_compute_profiles_are_packed_like_mig_parted() -> None:
    config = load_mig_parted_config(MIG_PARTED, "compute-split")
    layout = config.layout_for(0, product(A100), "0x20B010DE")
    assert format_layout(layout) == "3g.20gb [1c.3g.20gb, 1c.3g.20gb, 1c.3g.20gb], 3g.20gb [2c.3g.20gb, 1c.3g.20gb]"
    plan = plan_placements(product(A100), layout, [])
    assert sorted((c.start, tuple(x.id for x in c.compute)) for c in plan.create) == [(0, (1, 0)), (4, (0, 0, 0))]


def test_mig_parted_subsystem_filters_need_the_subsystem() -> None:
    config = load_mig_parted_config(MIG_PARTED, "subsystem")
    assert config.entry_for(0, "0x20B010DE") is None
    assert config.entry_for(0, "0x20B010DE", subsystem_id="0x145F10DE") is None
    assert format_layout(config.layout_for(0, product(A100), "0x20B010DE", "0x134F10DE")) == "7g.40gb"


def test_mig_parted_all_disabled_and_all_enabled() -> None:
    assert load_mig_parted_config(MIG_PARTED, "all-disabled").layout_for(3, product(A30)) == Layout(enabled=False)
    assert load_mig_parted_config(MIG_PARTED, "all-enabled").layout_for(0, product(A30)) == Layout(enabled=True)


def test_mig_parted_layout_on_the_wrong_product_names_the_entry() -> None:
    config = load_mig_parted_config(MIG_PARTED, "per-gpu")
    with pytest.raises(MigPartedConfigError, match=r"config 'per-gpu' entry 3 in .*mig-parted-config.yaml: NVIDIA "
                                                    r"A30 has no MIG profile '3g.20gb'"):
        config.layout_for(2, product(A30))


def test_mig_parted_config_selection() -> None:
    with pytest.raises(MigPartedConfigError, match="has 6 configurations .*name the one to apply"):
        load_mig_parted_config(MIG_PARTED)
    with pytest.raises(MigPartedConfigError, match="has no configuration 'nope'; it has all-disabled, all-enabled"):
        load_mig_parted_config(MIG_PARTED, "nope")
    single = parse_mig_parted_config({"version": "v1", "mig-configs": {"only": [
        {"devices": "all", "mig-enabled": True, "mig-devices": {"7g.40gb": 1}}]}})
    assert single.name == "only"
    with pytest.raises(MigPartedConfigError, match="cannot read the mig-parted config"):
        load_mig_parted_config(DATA / "missing.yaml", "x")


def entry(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {"devices": "all", "mig-enabled": True, "mig-devices": {"1g.5gb": 1}}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


BAD_CONFIGS = [
    ({"version": "v2", "mig-configs": {"c": [entry()]}}, "unknown version: 'v2'"),
    ({"mig-configs": {"c": [entry()]}}, "unknown version: None"),
    ({"version": "v1", "mig-configs": {"c": [entry()]}, "extra": 1}, "unexpected field: extra"),
    ({"version": "v1", "mig-configs": {}}, "at least one entry in 'mig-configs' is required"),
    ({"version": "v1", "mig-configs": {"c": []}}, "at least one entry in 'c' is required"),
    ({"version": "v1", "mig-configs": {"c": [entry(devices=None)]}}, "entry 1 in <config>: missing required field: "
                                                                     "devices"),
    ({"version": "v1", "mig-configs": {"c": [entry(**{"mig-enabled": None})]}}, "missing required field: mig-enabled"),
    ({"version": "v1", "mig-configs": {"c": [entry(devices="some")]}}, "devices: must be 'all' or a list"),
    ({"version": "v1", "mig-configs": {"c": [entry(**{"mig-enabled": False})]}},
     "MIG devices included when 'mig-enabled' is false"),
    ({"version": "v1", "mig-configs": {"c": [entry(**{"mig-devices": None})]}},
     "missing required field 'mig-devices' when 'mig-enabled' is true"),
    ({"version": "v1", "mig-configs": {"c": [entry(**{"mig-devices": {"3g-20gb": 1}})]}}, "invalid format for "
                                                                                            "'3g-20gb'"),
    ({"version": "v1", "mig-configs": {"c": [entry(**{"mig-devices": {"1g.5gb": -1}})]}}, "invalid count"),
    ({"version": "v1", "mig-configs": {"c": [entry(**{"mig-devices": {"1g.5gb": 0}})]}},
     "all counts for all MigProfiles are 0"),
    ({"version": "v1", "mig-configs": {"c": [entry(**{"device-filter": "A100"})]}}, "is not a PCI ID"),
    ({"version": "v1", "mig-configs": {"c": [entry(gpus=[0])]}}, "unexpected field: gpus"),
]


@pytest.mark.parametrize(("data", "message"), BAD_CONFIGS, ids=[m for _, m in BAD_CONFIGS])
def test_mig_parted_config_errors(data: dict[str, object], message: str) -> None:
    with pytest.raises(MigPartedConfigError, match=message):
        parse_mig_parted_config(data, "c")
