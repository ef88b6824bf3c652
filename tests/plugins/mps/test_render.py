"""``gpuprov render`` of the example rack's MPS play: every unit passes ``systemd-analyze verify`` and every helper
``shellcheck``, with no warning, exactly as the plan would put them on the hosts."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from helpers import ROOT, require_tool


def test_rendered_rack_passes_systemd_analyze_and_shellcheck(tmp_path: Path) -> None:
    analyze = require_tool("systemd-analyze")
    shellcheck = require_tool("shellcheck")
    out = tmp_path / "rendered"
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    r = subprocess.run([sys.executable, "-m", "gpuprov", "render", "-i", str(ROOT / "inventory.example"),
                        str(ROOT / "playbooks" / "mps.yml"), "--out", str(out)], capture_output=True, text=True,
                       env=env, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    hosts = sorted(p.name for p in out.iterdir())
    assert {"train01", "infer01", "a30-a"} <= set(hosts)
    system_units = next(p for p in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")) if p.is_dir())
    seen: set[str] = set()
    for name in ("train01", "infer01", "a30-a"):
        root = out / name
        units_dir = root / "etc/systemd/system"
        envs = sorted((root / "etc/gpuprov/mps").glob("*.env"))
        assert envs, f"{name}: no MPS device environment files rendered"
        assert (units_dir / "nvidia-mps@.service").is_file() and (units_dir / "gpuprov-mps.target").is_file()
        for env_file in envs:  # an instance per device, as `systemctl enable` links it
            os.symlink("nvidia-mps@.service", units_dir / f"nvidia-mps@{env_file.stem}.service")
        shutil.copytree(system_units, root / "usr/lib/systemd/system", symlinks=True, dirs_exist_ok=True)
        (root / "bin").mkdir(exist_ok=True)
        for tool in ("mkdir", "chown"):
            shutil.copy(Path("/bin") / tool, root / "bin" / tool)
        units = [str(units_dir / "gpuprov-mps.target")] + [
            str(units_dir / f"nvidia-mps@{e.stem}.service") for e in envs]
        result = subprocess.run([analyze, "verify", f"--root={root}", *units], capture_output=True, text=True)
        assert result.returncode == 0 and not result.stdout and not result.stderr, \
            f"{name}:\n{result.stdout}{result.stderr}"
        for script in (root / "usr/local/libexec/gpuprov/mps-device", root / "usr/local/bin/mps-run"):
            digest = hashlib.sha256(script.read_bytes()).hexdigest()
            if digest in seen:
                continue
            seen.add(digest)
            result = subprocess.run([shellcheck, "--shell=bash", "--severity=style", str(script)],
                                    capture_output=True, text=True)
            assert result.returncode == 0 and not result.stdout, f"{script}:\n{result.stdout}"
    train = sorted(p.stem for p in (out / "train01/etc/gpuprov/mps").glob("*.env"))
    assert train == [f"gpu{i}" for i in range(8)]
    infer = sorted(p.stem for p in (out / "infer01/etc/gpuprov/mps").glob("*.env"))
    assert infer and all("-mig" in i for i in infer)
