"""The simulator's MIG model: its profile tables against the real captures, and the engine's rules as properties.

The profile table (``gpuprov/sim/mig_profiles.json``) must print what the captured ``-lgip``/``-lgipp`` print; the
engine (``gpuprov/sim/mig.py``) must accept exactly the instance sets the placement tables allow, checked against a
brute-force oracle that knows nothing but the reference tables.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gpuprov.sim import migprofiles

# capture -> (product, driver the capture's layout stands for)
LGIP_CAPTURES = {
    "nvidia-smi/a100-sxm4-40gb-r580_mig_-i_0_-lgip.txt": ("NVIDIA A100-SXM4-40GB", "580.126.09"),
    "nvidia-smi/a100-sxm4-40gb_mig_-lgip.txt": ("NVIDIA A100-SXM4-40GB", "470.82.01"),
    "nvidia-smi/a30_mig_-lgip.txt": ("NVIDIA A30", "535.183.01"),
    "nvidia-smi/gh200_mig_-lgip.txt": ("NVIDIA GH200 480GB", "535.183.01"),
}
_ROW1 = re.compile(r"^\|\s+0\s+MIG (\S+)\s+(\d+)\s+\d+/(\d+)\s+([\d.]+)\s+No\s+(\d+)\s+(\d+)\s+(\d+)\s+\|$")
_ROW2 = re.compile(r"^\|\s+(\d+)\s+(\d+)\s+(\d+)\s+\|$")


@pytest.mark.parametrize("capture", sorted(LGIP_CAPTURES))
def test_profile_table_matches_captured_lgip(capture: str, fixtures_dir: Path) -> None:
    product, driver = LGIP_CAPTURES[capture]
    rows = []
    first = None
    for line in (fixtures_dir / capture).read_text().splitlines():
        if m := _ROW1.match(line):
            first = m.groups()
        elif first and (m := _ROW2.match(line)):
            name, pid, total, gib, sm, dec, enc = first
            rows.append((name, int(pid), int(total), gib, int(sm), int(dec), int(enc), *map(int, m.groups())))
            first = None
    assert rows, capture
    ours = [(p.name, p.id, p.max_count, f"{p.memory_mib / 1024:.2f}", p.sm_count, p.dec, p.enc, p.ce, p.jpeg, p.ofa)
            for p in migprofiles.gi_profiles(product, driver)]
    assert ours == rows


@pytest.mark.parametrize("capture,product", [
    ("nvidia-smi/a100-sxm4-40gb_mig_-lgipp.txt", "NVIDIA A100-SXM4-40GB"),
    ("nvidia-smi/a30_mig_-lgipp.txt", "NVIDIA A30"),
])
def test_placements_match_captured_lgipp(capture: str, product: str, fixtures_dir: Path) -> None:
    seen = {}
    for line in (fixtures_dir / capture).read_text().splitlines():
        m = re.match(r"GPU\s+0 Profile ID\s+(\d+) Placements? ?: \{([\d,]+)\}:(\d+)$", line)
        assert m, line
        seen[int(m.group(1))] = (tuple(int(s) for s in m.group(2).split(",")), int(m.group(3)))
    assert {p.id: (p.starts, p.size) for p in migprofiles.gi_profiles(product, "580.126.09")} == seen


def test_driver_keyed_profiles() -> None:
    # +me profiles appear from R470; an A100-PCIE-40GB lists 1g.10gb from R525 (absent in the 510.47.03 capture)
    assert migprofiles.gi_profile("NVIDIA A100-SXM4-40GB", "460.32.03", 20) is None
    assert migprofiles.gi_profile("NVIDIA A100-SXM4-40GB", "470.82.01", "1g.5gb+me") is not None
    assert migprofiles.gi_profile("NVIDIA A100-PCIE-40GB", "510.47.03", 15) is None
    assert migprofiles.gi_profile("NVIDIA A100-PCIE-40GB", "525.85.12", "MIG 1g.10gb") is not None
    # the same card, different memory by driver
    assert migprofiles.gi_profile("NVIDIA A100-SXM4-40GB", "470.82.01", 14).memory_mib == 9856  # type: ignore[union-attr]
    assert migprofiles.gi_profile("NVIDIA A100-SXM4-40GB", "580.126.09", 14).memory_mib == 9984  # type: ignore[union-attr]
    assert migprofiles.gi_profiles("NVIDIA L40S", "580.126.09") == ()
    for product in ("NVIDIA A100-SXM4-80GB", "NVIDIA A100 80GB PCIe", "NVIDIA H100 PCIe", "NVIDIA H100 80GB HBM3",
                    "NVIDIA H100 NVL", "NVIDIA H200", "NVIDIA GH200 480GB"):
        profiles = migprofiles.gi_profiles(product, "580.126.09")
        assert [p.id for p in profiles] == [19, 20, 15, 14, 9, 5, 0], product


def test_ci_profiles_match_captured_lcip() -> None:
    gi4 = migprofiles.gi_profile("NVIDIA A100-SXM4-40GB", "580.126.09", "4g.20gb")
    assert gi4 is not None
    assert [(c.name, c.id, c.max_count, c.sm_count, c.default) for c in gi4.ci_profiles] == [
        ("1c.4g.20gb", 0, 4, 14, False), ("2c.4g.20gb", 1, 2, 28, False), ("4g.20gb", 3, 1, 56, True)]
    gi15 = migprofiles.gi_profile("NVIDIA GH200 480GB", "580.126.09", 15)
    assert gi15 is not None and [(c.id, c.name, c.default) for c in gi15.ci_profiles] == [(7, "1g.24gb", True)]
    me = migprofiles.gi_profile("NVIDIA A100-SXM4-80GB", "580.126.09", "1g.10gb+me")
    assert me is not None and migprofiles.mig_device_name(me, me.ci_profiles[0]) == "1g.10gb"
