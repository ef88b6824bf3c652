"""MIG layouts survive reboots, and a mode change that needs one is finished by the re-run after it.

Simulated hosts are rebooted with ``gpuprov sim reboot``: processes and MIG instances are gone, a Hopper GPU
comes back with MIG mode off (its mode lives in the loaded driver), an Ampere GPU keeps its mode (InfoROM) and
applies a pending change; then the simulated systemd starts the enabled units, gpuprov's boot unit among them,
whose script runs the real ``nvidia-smi`` stand-in. A pass-through VM cannot reset a GPU: the host ends
``reboot-required`` and the run after the reboot completes the layout.
"""

from __future__ import annotations

from pathlib import Path

from helpers import Gpuprov

INVENTORY = """\
h100 sim_preset=dgx-h100 mig_layout='[3g.40gb, 3g.40gb]'
a30 sim_gpu='NVIDIA A30' sim_gpu_count=2 mig_layout=all-1g
vm sim_gpu='NVIDIA A100-SXM4-40GB' sim_gpu_count=1 sim_mig_passthrough=true mig_layout=all-balanced
[all:vars]
ansible_connection=sim
"""

PLAY = '- hosts: all\n  mig:\n    layout: "{{ mig_layout }}"\n'


def placements(gpuprov: Gpuprov, host: str) -> list[str]:
    r = gpuprov("sim", "run", "-i", "hosts", host, "--", "nvidia-smi", "mig", "-lgi")
    if (r.returncode, r.stdout) == (6, "No MIG-enabled devices found.\n"):
        return []
    assert r.returncode == 0, r.stdout + r.stderr
    return sorted(" ".join(line.split()[2:3] + line.split()[6:7]) for line in r.stdout.splitlines()
                  if line.startswith("|") and "MIG" in line)


def uuids(gpuprov: Gpuprov, host: str) -> list[str]:
    r = gpuprov("sim", "run", "-i", "hosts", host, "--", "nvidia-smi", "-L")
    return [line.split("UUID: ")[1].rstrip(")") for line in r.stdout.splitlines() if "MIG-" in line]


def test_layouts_come_back_after_a_reboot(gpuprov: Gpuprov, tmp_path: Path) -> None:
    (tmp_path / "hosts").write_text(INVENTORY)
    (tmp_path / "site.yml").write_text(PLAY)
    r = gpuprov("apply", "-i", "hosts", "site.yml", "--limit", "h100:a30")
    assert r.returncode == 0, r.stdout + r.stderr
    before = {h: (placements(gpuprov, h), uuids(gpuprov, h)) for h in ("h100", "a30")}
    assert len(before["h100"][0]) == 16 and len(before["a30"][0]) == 8

    for host in ("h100", "a30"):
        r = gpuprov("sim", "reboot", "-i", "hosts", host)
        assert r.returncode == 0, r.stdout + r.stderr
        state = gpuprov("sim", "run", "-i", "hosts", host, "--", "systemctl", "is-active", "gpuprov-mig.service")
        assert state.stdout == "active\n", state.stdout + state.stderr
        after = (placements(gpuprov, host), uuids(gpuprov, host))
        assert after[0] == before[host][0], host  # the same instances at the same places ...
        assert not set(after[1]) & set(before[host][1]), host  # ... as new MIG devices

    r = gpuprov("plan", "-i", "hosts", "site.yml", "--limit", "h100:a30")
    assert r.returncode == 0, r.stdout + r.stderr


def test_a_pass_through_vm_needs_a_reboot_and_the_rerun_finishes(gpuprov: Gpuprov, tmp_path: Path) -> None:
    (tmp_path / "hosts").write_text(INVENTORY)
    (tmp_path / "site.yml").write_text(PLAY)
    r = gpuprov("apply", "-i", "hosts", "site.yml", "--limit", "vm")
    assert r.returncode == 0, r.stdout + r.stderr
    recap = r.stdout[r.stdout.index("RECAP"):]
    assert recap.splitlines()[3].split() == ["vm", "0", "0", "0", "0", "1"], recap  # reboot-required, not failed
    assert placements(gpuprov, "vm") == []

    assert gpuprov("sim", "reboot", "-i", "hosts", "vm").returncode == 0
    # the boot unit made the layout already; the re-run finds nothing left to do, or finishes what is left
    r = gpuprov("apply", "-i", "hosts", "site.yml", "--limit", "vm")
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(placements(gpuprov, "vm")) == 4
    r = gpuprov("plan", "-i", "hosts", "site.yml", "--limit", "vm")
    assert r.returncode == 0, r.stdout + r.stderr
