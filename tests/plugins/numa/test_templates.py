"""The files the NUMA plan renders, checked by the tools that run them: every wrapper (MIG device lookup included)
passes ``shellcheck`` with nothing to say, and the MPS drop-ins pass ``systemd-analyze verify`` with nothing printed
(it exits 0 for keys and values it ignores, ``reference/numa.md`` §6, so any output is a failure)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from gpuprov_numa import gpuprov_template_dirs
from gpuprov_numa.plan import Device, Placement, exec_start_lines, render_dropin, render_wrapper
from helpers import require_tool

from gpuprov.render import Templates

GPU = Device("gpu0", 0, "GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77", None)
MIG = Device("gpu3-mig4-ci1", 3, "GPU-0aa11ebd-9b0e-9d43-1ed4-5ed1f2d1c7a1", "4-ci1", "1c.3g.40gb", 4, 1)
BOUND = Placement(3, tuple(range(48, 64)) + tuple(range(176, 192)), 3, "bind", (3,))
CPU_LESS = Placement(2, tuple(range(8)), 0, "preferred", (0,),
                     ("node 2 has no CPUs; CPUs of the nearest node 0 are used",))
INTERLEAVED = Placement(1, (), None, "interleave", (0, 1))
LOCAL = Placement(0, (0, 1), 0, "local", ())
UNPINNED = Placement(None, (), None, None, ())

# The MPS unit as a template with its instance name in its commands, the shape the MPS plugin renders.
MPS_UNIT = """\
[Unit]
Description=NVIDIA MPS control daemon for %i
After=nvidia-persistenced.service

[Service]
Type=forking
ExecStart=/usr/local/libexec/gpuprov/mps-start %i
ExecStop=/usr/local/libexec/gpuprov/mps-stop %i

[Install]
WantedBy=multi-user.target
"""


@pytest.fixture
def templates() -> Templates:
    return Templates(list(gpuprov_template_dirs()))


def _shellcheck(path: Path, shell: str) -> None:
    shellcheck = require_tool("shellcheck")
    result = subprocess.run([shellcheck, f"--shell={shell}", "--severity=style", str(path)], capture_output=True,
                            text=True)
    assert result.returncode == 0 and not result.stdout, result.stdout


@pytest.mark.parametrize("device,placement", [(GPU, BOUND), (MIG, CPU_LESS), (GPU, INTERLEAVED), (MIG, LOCAL),
                                              (GPU, UNPINNED)], ids=["bind", "mig-cpu-less", "interleave",
                                                                     "mig-local", "unpinned"])
def test_wrappers_pass_shellcheck(templates: Templates, tmp_path: Path, device: Device,
                                  placement: Placement) -> None:
    text = render_wrapper(templates, "node01", "wrapper", device, placement)
    assert text.startswith("#!/bin/sh\n# gpuprov-numa:")
    path = tmp_path / "wrapper"
    path.write_text(text)
    _shellcheck(path, "sh")
    if placement.numactl_args():
        assert f'exec numactl {" ".join(placement.numactl_args())} -- "$@"' in text
    else:
        assert 'exec "$@"' in text and "numactl" not in text.split("set -eu", 1)[1]


def _verify(tmp_path: Path, instance: str, dropin: str) -> subprocess.CompletedProcess[str]:
    """``systemd-analyze verify`` of one MPS instance inside a root holding the unit, the drop-in, the system's
    own units and executables at the paths the unit names."""
    analyze = require_tool("systemd-analyze")
    root = tmp_path / "root"
    unit_dir = root / "etc/systemd/system"
    (unit_dir / f"nvidia-mps@{instance}.service.d").mkdir(parents=True)
    (unit_dir / "nvidia-mps@.service").write_text(MPS_UNIT)
    (unit_dir / f"nvidia-mps@{instance}.service.d/50-gpuprov-numa.conf").write_text(dropin)
    for exe in ("usr/local/libexec/gpuprov/mps-start", "usr/local/libexec/gpuprov/mps-stop", "usr/bin/numactl"):
        (root / exe).parent.mkdir(parents=True, exist_ok=True)
        (root / exe).write_text("#!/bin/sh\nexit 0\n")
        (root / exe).chmod(0o755)
    system_units = next(p for p in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")) if p.is_dir())
    shutil.copytree(system_units, root / "usr/lib/systemd/system", symlinks=True)
    return subprocess.run([analyze, "verify", "--man=no", f"--root={root}",
                           str(unit_dir / f"nvidia-mps@{instance}.service")], capture_output=True, text=True)


@pytest.mark.parametrize("placement", [BOUND, CPU_LESS, INTERLEAVED, LOCAL, UNPINNED],
                         ids=["bind", "preferred", "interleave", "local", "unpinned"])
def test_dropins_pass_systemd_analyze_verify(templates: Templates, tmp_path: Path, placement: Placement) -> None:
    dropin = render_dropin(templates, "node01", GPU, placement, 252, [])
    result = _verify(tmp_path, "gpu0", dropin)
    assert result.returncode == 0 and not result.stdout and not result.stderr, result.stdout + result.stderr
    lines = dropin.splitlines()
    if placement.policy in ("bind", "preferred", "interleave"):
        assert f"NUMAPolicy={placement.policy}" in lines
        assert f"NUMAMask={','.join(map(str, placement.memory_nodes))}" in lines
    if placement.cpus:
        assert any(line.startswith("CPUAffinity=") for line in lines)
    assert not any(line.startswith("ExecStart") for line in lines)


def test_old_systemd_gets_numactl_in_the_command(templates: Templates, tmp_path: Path) -> None:
    """systemd 239 (RHEL 8) knows no NUMAPolicy=: the drop-in resets ExecStart= and wraps the unit's own command."""
    dropin = render_dropin(templates, "node01", MIG, BOUND, 239, exec_start_lines(MPS_UNIT))
    lines = dropin.splitlines()
    assert not any(line.startswith("NUMA") for line in lines)
    start = lines.index("ExecStart=")
    assert lines[start + 1] == ("ExecStart=/usr/bin/numactl --physcpubind=48-63,176-191 --membind=3 -- "
                                "/usr/local/libexec/gpuprov/mps-start %i")
    result = _verify(tmp_path, "gpu3-mig4-ci1", dropin)
    assert result.returncode == 0 and not result.stdout and not result.stderr, result.stdout + result.stderr


def test_verify_catches_what_it_only_logs(tmp_path: Path) -> None:
    """The check above would be worthless if a bad value passed silently: systemd-analyze logs it and exits 0."""
    result = _verify(tmp_path, "gpu0", "[Service]\nNUMAPolicy=sideways\nNUMAMask=0\n")
    assert result.returncode == 0
    assert "Invalid NUMA policy type, ignoring: sideways" in result.stdout + result.stderr


def test_rendered_example_rack_wrappers_pass_shellcheck(tmp_path: Path) -> None:
    """``gpuprov render`` of the example playbook: every wrapper it would install, as installed, is shellcheck-clean
    (whole GPUs on a DGX H100, MIG devices about to be created on a DGX A100)."""
    shellcheck = require_tool("shellcheck")
    root = Path(__file__).resolve().parents[3]
    out = tmp_path / "rendered"
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    r = subprocess.run([sys.executable, "-m", "gpuprov", "render", "-i", str(root / "inventory.example"),
                        str(root / "playbooks/site.yml"), "--limit", "infer01:train01", "--out", str(out)],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode in (0, 2), r.stdout + r.stderr
    wrappers = sorted(out.glob("*/usr/local/bin/gpu*-run"))
    assert len(wrappers) == 8 + 32, [w.name for w in wrappers]  # train01: 8 GPUs; infer01: 8 x all-balanced (4)
    result = subprocess.run([shellcheck, "--shell=sh", "--severity=style", *map(str, wrappers)], capture_output=True,
                            text=True)
    assert result.returncode == 0 and not result.stdout, result.stdout
