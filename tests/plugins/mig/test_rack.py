"""A mixed rack of simulated hosts driven through the real ``gpuprov`` command, as an operator would.

DGX A100s take ``all-balanced``, an A30 box ``all-1g`` and a DGX H100 stays whole (``all-disabled``), all from
one play whose layout comes from group variables. ``apply`` reaches the layouts and a second ``plan`` is empty;
changing one GPU's layout plans changes for that GPU only; a process on an instance that would be destroyed makes
``apply`` refuse without ``--force`` and leaves the host's instances as they were.
"""

from __future__ import annotations

import json
from pathlib import Path

from helpers import Gpuprov


def rack(tmp_path: Path) -> Path:
    inventory = tmp_path / "hosts"
    inventory.write_text(
        "[infer]\n"
        "infer[01:02] sim_preset=dgx-a100\n"
        "[small]\n"
        "a30-a sim_gpu='NVIDIA A30' sim_gpu_count=2 sim_numa_nodes=2\n"
        "[train]\n"
        "train01 sim_preset=dgx-h100\n"
        "[gpu:children]\ninfer\nsmall\ntrain\n"
        "[infer:vars]\nmig_layout=all-balanced\n"
        "[small:vars]\nmig_layout=all-1g\n"
        "[train:vars]\nmig_layout=all-disabled\n"
        "[all:vars]\nansible_connection=sim\n"
    )
    return inventory


def play(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "site.yml"
    path.write_text("- hosts: gpu\n  mig:\n    layout: \"{{ mig_layout }}\"\n" + extra)
    return path


def lgi(gpuprov: Gpuprov, inventory: Path, host: str) -> str:
    r = gpuprov("sim", "run", "-i", str(inventory), host, "--", "nvidia-smi", "mig", "-lgi")
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_rack_converges_changes_one_gpu_and_refuses_busy_instances(gpuprov: Gpuprov, tmp_path: Path) -> None:
    inventory = rack(tmp_path)
    site = play(tmp_path)

    r = gpuprov("plan", "-i", str(inventory), str(site))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "2 hosts: infer01, infer02" in r.stdout
    assert "layout to all-balanced: create 3g.40gb@4:4, 2g.20gb@2:2, 1g.10gb@0:1, 1g.10gb@1:1" in r.stdout
    assert "layout to all-1g: create 1g.6gb@0:1, 1g.6gb@1:1, 1g.6gb@2:1, 1g.6gb@3:1" in r.stdout
    assert "no changes: train01" in r.stdout

    r = gpuprov("apply", "-i", str(inventory), str(site))
    assert r.returncode == 0, r.stdout + r.stderr
    r = gpuprov("plan", "-i", str(inventory), str(site))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Plan: 0 change(s)" in r.stdout

    # the rack as it now is, exported as a playbook, plans nothing; identical hosts share a play
    r = gpuprov("export", "-i", str(inventory), "gpu")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "hosts: infer01:infer02" in r.stdout and "3g.40gb@4" in r.stdout
    (tmp_path / "exported.yml").write_text(r.stdout)
    r = gpuprov("plan", "-i", str(inventory), str(tmp_path / "exported.yml"))
    assert r.returncode == 0, r.stdout + r.stderr
    r = gpuprov("mig", "export", "-i", str(inventory), "a30-a")
    assert r.returncode == 0 and r.stdout.startswith("- name: as detected on 1 host(s)\n  hosts: a30-a\n  mig:\n")

    # what an operator sees on the host agrees: four instances on every A100, each with its placement
    listing = lgi(gpuprov, inventory, "infer01")
    assert listing.count("MIG 3g.40gb") == 8 and listing.count("MIG 1g.10gb") == 16
    assert "4:4" in listing and "2:2" in listing

    # one GPU of the A100s changes: only that GPU's change (and the boot unit that re-creates it) is planned
    site = play(tmp_path, "    devices:\n      3: [7g.80gb]\n")
    r = gpuprov("plan", "-i", str(inventory), str(site), "--json")
    assert r.returncode == 2, r.stdout + r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    plan = next(e for e in events if e.get("event") == "plan")
    changed = {h["host"]: sorted(c["id"] for c in h["changes"]) for h in plan["plan"]["hosts"] if h["changes"]}
    assert changed == {"infer01": ["mig/boot", "mig/gpu3"], "infer02": ["mig/boot", "mig/gpu3"],
                       # the H100 node's GPU 3 too (it has a 7g.80gb), with the MIG mode it needs; the A30 box has
                       # no GPU 3
                       "train01": ["mig/boot", "mig/gpu3", "mig/mode/gpu3"]}, changed

    # a process on GPU 3's 3g.40gb (to be destroyed for the 7g) blocks apply without --force
    state = tmp_path / "state" / "gpuprov" / "sim" / "infer01"  # the gpuprov fixture's XDG_STATE_HOME
    before = lgi(gpuprov, inventory, "infer01")
    gi = next(line.split()[4] for line in before.splitlines() if line.startswith("|   3  MIG 3g.40gb"))
    r = gpuprov("sim", "process", str(state), "--gpu", "3", "--gi", gi, "--name", "serve.py")
    assert r.returncode == 0, r.stderr
    pid = r.stdout.split()[2]
    r = gpuprov("apply", "-i", str(inventory), str(site), "--limit", "infer01")
    assert r.returncode == 1, r.stdout + r.stderr
    assert pid in r.stdout and "--force" in r.stdout and "GPU 3" in r.stdout, r.stdout
    assert lgi(gpuprov, inventory, "infer01") == before
