"""The boot unit and its script, as the plan renders them: ``systemd-analyze verify`` and ``shellcheck`` must find
nothing at all (a warning in a unit that runs at every boot is a bug waiting for the next reboot)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from gpuprov_mig import gpuprov_template_dirs
from gpuprov_mig.facts import SCRIPT_PATH, UNIT_PATH
from gpuprov_mig.plan import boot_files
from helpers import require_tool

from gpuprov.render import Templates

GPUS = [
    # A Hopper GPU: the script must enable MIG mode again; a 3g with two split compute instances, a 2g without any.
    {"index": 0, "uuid": "GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77", "enable_mode": True,
     "specs": ["9:4:4/1c.3g.40gb,2c.3g.40gb", "14:0:2/-", "19:2:1/C", "19:3:1/C"]},
    # An Ampere GPU whose play leaves the instances alone; a UUID that needs quoting.
    {"index": 1, "uuid": "GPU-0aa11ebd 'quoted'", "enable_mode": False, "specs": ["keep"]},
    {"index": 7, "uuid": "GPU-95fac899-e21a-0e44-b0fc-e4e3bf106feb", "enable_mode": False, "specs": ["0:0:8/C"]},
]


@pytest.fixture
def templates() -> Templates:
    return Templates(list(gpuprov_template_dirs()))


def test_script_passes_shellcheck(templates: Templates, tmp_path: Path) -> None:
    shellcheck = require_tool("shellcheck")
    _, script = boot_files("node01", GPUS, templates)
    path = tmp_path / "mig-apply"
    path.write_text(script)
    result = subprocess.run([shellcheck, "--shell=bash", "--severity=style", str(path)], capture_output=True,
                            text=True)
    assert result.returncode == 0 and not result.stdout, result.stdout
    assert script.startswith("#!/bin/bash\n")


def test_unit_passes_systemd_analyze_verify(templates: Templates, tmp_path: Path) -> None:
    """Verified inside a root holding the script at its real path and the system's own units (for
    ``multi-user.target`` and the default dependencies), so the check is of the unit exactly as installed."""
    analyze = require_tool("systemd-analyze")
    unit, script = boot_files("node01", GPUS, templates)
    root = tmp_path / "root"
    for path, content, mode in ((UNIT_PATH, unit, 0o644), (SCRIPT_PATH, script, 0o755)):
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
        target.chmod(mode)
    system_units = next(p for p in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")) if p.is_dir())
    shutil.copytree(system_units, root / "usr/lib/systemd/system", symlinks=True)
    result = subprocess.run([analyze, "verify", f"--root={root}", str(root / UNIT_PATH.lstrip("/"))],
                            capture_output=True, text=True)
    assert result.returncode == 0 and not result.stdout and not result.stderr, result.stdout + result.stderr


def test_unit_orders_itself_for_boot(templates: Templates) -> None:
    unit, _ = boot_files("node01", GPUS, templates)
    lines = unit.splitlines()
    for expected in ("Type=oneshot", "RemainAfterExit=yes", f"ExecStart={SCRIPT_PATH}",
                     "WantedBy=multi-user.target"):
        assert expected in lines
    assert "After=nvidia-persistenced.service nvidia-fabricmanager.service" in lines
    before = next(line for line in lines if line.startswith("Before="))
    assert "gpuprov-mps.target" in before.split("=", 1)[1].split()
    timeout = next(line for line in lines if line.startswith("TimeoutStartSec="))
    assert int(timeout.split("=")[1]) > 0


def test_script_calls_each_gpu_with_quoted_values(templates: Templates) -> None:
    _, script = boot_files("node01", GPUS, templates)
    calls = [line for line in script.splitlines() if line.startswith("apply_gpu ")]
    assert calls == [
        "apply_gpu 0 GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77 yes 9:4:4/1c.3g.40gb,2c.3g.40gb 14:0:2/- 19:2:1/C "
        "19:3:1/C || status=1",
        "apply_gpu 1 'GPU-0aa11ebd '\"'\"'quoted'\"'\"'' no keep || status=1",
        "apply_gpu 7 GPU-95fac899-e21a-0e44-b0fc-e4e3bf106feb no 0:0:8/C || status=1",
    ]
