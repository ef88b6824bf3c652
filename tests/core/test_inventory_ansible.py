"""gpuprov reads inventories the way ``ansible-inventory --list`` does: same hosts, groups and variables."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from helpers import require_tool

from gpuprov.inventory import load_inventory

DATA = Path(__file__).resolve().parents[1] / "data" / "inventories"
CASES = {
    "ranges": "ranges/hosts",
    "children": "children/hosts",
    "nested": "nested/hosts.yml",
    "groupvars_dirs": "groupvars_dirs/hosts",
    "yaml": "yaml/inventory.yaml",
    "example": "../../../inventory.example",
}


def ansible_list(path: Path, tmp_path: Path) -> dict:
    tool = require_tool("ansible-inventory")
    cfg = tmp_path / "ansible.cfg"
    cfg.write_text("[defaults]\n")
    env = {**os.environ, "ANSIBLE_CONFIG": str(cfg), "ANSIBLE_HOME": str(tmp_path / "ansible"),
           "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp"), "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False"}
    out = subprocess.run([tool, "-i", str(path), "--list"], capture_output=True, text=True, env=env, check=True,
                         timeout=120)
    return json.loads(out.stdout)


def normalise(listing: dict) -> tuple[dict, dict]:
    """Groups as {name: (sorted hosts, sorted children)} and hostvars, the parts both tools must agree on."""
    groups = {name: (sorted(body.get("hosts", [])), sorted(body.get("children", [])))
              for name, body in listing.items() if name != "_meta"}
    groups = {k: v for k, v in groups.items() if v != ([], []) or k == "all"}
    return groups, listing["_meta"]["hostvars"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_ansible_inventory(case: str, tmp_path: Path) -> None:
    path = (DATA / CASES[case]).resolve()
    theirs = normalise(ansible_list(path, tmp_path))
    ours = normalise(json.loads(json.dumps(load_inventory([path]).to_ansible_list())))
    assert ours[0] == theirs[0]
    assert ours[1] == theirs[1]
