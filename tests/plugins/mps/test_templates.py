"""The unit, target, helper and wrapper as the plan renders them: ``systemd-analyze verify`` and ``shellcheck``
must find nothing at all, and the helper must find a MIG device's UUID in real ``nvidia-smi`` output."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from gpuprov_mps import gpuprov_template_dirs
from gpuprov_mps.devices import host_devices
from gpuprov_mps.facts import ENV_DIR, HELPER_PATH, TARGET_PATH, UNIT_PATH, WRAPPER_PATH
from gpuprov_mps.plan import env_path, render_env, render_files
from gpuprov_mps.schema import SCHEMA
from helpers import require_tool

from gpuprov.render import Templates

from .captures import A100, MIG_UUIDS, SSUP2, WHOLE, host_facts


@pytest.fixture
def templates() -> Templates:
    return Templates(list(gpuprov_template_dirs()))


def settings(**values: Any) -> dict[str, Any]:
    out = SCHEMA.defaults()
    out.update(values)
    return out


@pytest.mark.parametrize("user", ["root", "mps"])
def test_helpers_pass_shellcheck(templates: Templates, tmp_path: Path, user: str) -> None:
    shellcheck = require_tool("shellcheck")
    rendered = render_files("node01", settings(user=user), templates)
    for name, text in (("mps-device", rendered.helper), ("mps-run", rendered.wrapper)):
        path = tmp_path / name
        path.write_text(text)
        result = subprocess.run([shellcheck, "--shell=bash", "--severity=style", str(path)], capture_output=True,
                                text=True)
        assert result.returncode == 0 and not result.stdout, f"{name}:\n{result.stdout}"
        assert text.startswith("#!/bin/bash\n")


def install_root(tmp_path: Path, files: dict[str, tuple[str, int]]) -> Path:
    """A root holding the rendered files at their real paths, the system's own units and the binaries the unit
    names, so ``systemd-analyze verify --root`` checks the unit exactly as installed."""
    root = tmp_path / "root"
    for path, (content, mode) in files.items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
        target.chmod(mode)
    system_units = next(p for p in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")) if p.is_dir())
    shutil.copytree(system_units, root / "usr/lib/systemd/system", symlinks=True)
    for tool in ("mkdir", "chown"):
        found = Path("/bin") / tool
        (root / "bin").mkdir(exist_ok=True)
        shutil.copy(found, root / "bin" / tool)
    return root


@pytest.mark.parametrize("values", [{}, {"user": "mps", "pipe_dir": "/var/lib/mps/{device}/pipe"}],
                         ids=["defaults", "user-and-pipe-dir"])
def test_units_pass_systemd_analyze_verify(templates: Templates, tmp_path: Path, fixtures_dir: Path,
                                           values: dict[str, Any]) -> None:
    analyze = require_tool("systemd-analyze")
    s = settings(active_thread_percentage=50, pinned_mem_limit="10G", **values)
    rendered = render_files("node01", s, templates)
    devices = host_devices(host_facts(fixtures_dir))
    files = {UNIT_PATH: (rendered.unit, 0o644), TARGET_PATH: (rendered.target, 0o644),
             HELPER_PATH: (rendered.helper, 0o755), WRAPPER_PATH: (rendered.wrapper, 0o755)}
    for d in devices:
        files[env_path(d.instance)] = (render_env("node01", d, s, templates), 0o644)
    root = install_root(tmp_path, files)
    units = [str(root / TARGET_PATH.lstrip("/"))] + [
        str(root / "etc/systemd/system" / d.unit) for d in devices]
    for d in devices:  # an instance verifies as a link to its template, as systemctl enable makes it
        os.symlink("nvidia-mps@.service", root / "etc/systemd/system" / d.unit)
    result = subprocess.run([analyze, "verify", f"--root={root}", *units], capture_output=True, text=True)
    assert result.returncode == 0 and not result.stdout and not result.stderr, result.stdout + result.stderr


def test_unit_orders_itself_and_reads_its_device(templates: Templates) -> None:
    lines = render_files("node01", settings(), templates).unit.splitlines()
    for expected in ("Type=exec", f"EnvironmentFile={ENV_DIR}/%i.env", f"ExecStart={HELPER_PATH} start",
                     f"ExecStartPost={HELPER_PATH} ready", f"ExecStop={HELPER_PATH} stop",
                     f"ExecStartPre=+{HELPER_PATH} prepare", "WantedBy=multi-user.target",
                     "Before=gpuprov-mps.target", "PartOf=gpuprov-mps.target",
                     "After=nvidia-persistenced.service gpuprov-mig.service"):
        assert expected in lines
    assert not any(line.startswith("User=") for line in lines)  # root: no User= line
    assert not any("MIG-" in line or "GPU-" in line for line in lines)
    assert int(next(line for line in lines if line.startswith("TimeoutStopSec=")).split("=")[1]) > 10


def fake_smi(tmp_path: Path, fixtures_dir: Path) -> Path:
    """A stand-in ``nvidia-smi`` that prints the SSUP2 captures for the commands the helper runs (the simulator's
    own nvidia-smi is tested against the same captures)."""
    script = tmp_path / "nvidia-smi"
    script.write_text(
        "#!/bin/bash\n"
        "case \"$*\" in\n"
        f"  '-i 0 --query-gpu=uuid,mig.mode.current --format=csv,noheader') echo '{A100.uuid}, Enabled' ;;\n"
        f"  '-i 1 --query-gpu=uuid,mig.mode.current --format=csv,noheader') echo '{WHOLE.uuid}, Disabled' ;;\n"
        f"  'mig -i 0 -lgi') cat {fixtures_dir / SSUP2['lgi']} ;;\n"
        f"  'mig -i 0 -lci') cat {fixtures_dir / SSUP2['lci']} ;;\n"
        f"  '-L') cat {fixtures_dir / SSUP2['list']} ;;\n"
        "  *) echo \"unexpected: $*\" >&2; exit 3 ;;\n"
        "esac\n")
    script.chmod(0o755)
    return script


def test_helper_finds_each_devices_uuid_in_real_output(templates: Templates, tmp_path: Path,
                                                       fixtures_dir: Path) -> None:
    helper = tmp_path / "mps-device"
    helper.write_text(render_files("node01", settings(), templates).helper)
    helper.chmod(0o755)
    smi = fake_smi(tmp_path, fixtures_dir)
    found = {}
    for d in host_devices(host_facts(fixtures_dir)):
        env_file = tmp_path / f"{d.instance}.env"
        env_file.write_text(render_env("node01", d, settings(), templates))
        result = subprocess.run([str(helper), "uuid", str(env_file)], capture_output=True, text=True,
                                env={"PATH": os.environ["PATH"], "NVIDIA_SMI": str(smi)})
        assert result.returncode == 0, result.stderr
        found[d.name] = result.stdout.strip()
    assert found == {"gpu0/mig@0": MIG_UUIDS[(2, 0)], "gpu0/mig@4/ci0": MIG_UUIDS[(3, 0)],
                     "gpu0/mig@4/ci1": MIG_UUIDS[(3, 1)], "gpu0/mig@6": MIG_UUIDS[(9, 0)], "gpu1": WHOLE.uuid}


def test_helper_refuses_a_device_that_is_gone(templates: Templates, tmp_path: Path, fixtures_dir: Path) -> None:
    helper = tmp_path / "mps-device"
    helper.write_text(render_files("node01", settings(), templates).helper)
    helper.chmod(0o755)
    smi = fake_smi(tmp_path, fixtures_dir)
    device = replace(host_devices(host_facts(fixtures_dir))[0], mig_start=2)  # no GPU instance starts at 2
    env_file = tmp_path / "gone.env"
    env_file.write_text(render_env("node01", device, settings(), templates))
    result = subprocess.run([str(helper), "uuid", str(env_file)], capture_output=True, text=True,
                            env={"PATH": os.environ["PATH"], "NVIDIA_SMI": str(smi)})
    assert result.returncode == 1
    assert result.stderr == ("gpuprov-mps: gpu0/mig@2: GPU 0 has no GPU instance at memory slice 2 (is the MIG "
                             "layout in place?)\n")
