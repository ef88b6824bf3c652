"""Small ``#!/bin/sh`` shims that make the stand-ins commands: ``nvidia-smi`` -> ``python -m gpuprov.sim``.

Why: in the SSH lab (and for helper scripts the in-process shell runs under the real ``bash``) the stand-ins
must be found on ``PATH`` exactly where a real host has its tools, so a rendered script calls ``nvidia-smi``
and gets the simulated host's answer. A shim is three lines of POSIX sh, passes ``shellcheck``, and adds
nothing of its own: the host it acts on comes from ``GPUPROV_SIM_STATE``/``GPUPROV_SIM_ROOT`` in its
environment."""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Iterable
from pathlib import Path

__all__ = ["MARKER", "install_shims", "shim_text"]

MARKER = "# gpuprov simulator shim"  # marks files install_shims may replace or remove


def _package_parent() -> str:
    """The directory holding the ``gpuprov`` package, so a shim imports the same code that wrote it."""
    return str(Path(__file__).resolve().parents[2])


def shim_text(name: str, python: str = sys.executable, pythonpath: str | None = None) -> str:
    """The shim for the stand-in ``name``."""
    path = pythonpath if pythonpath is not None else _package_parent()
    return (
        "#!/bin/sh\n"
        f"{MARKER}: runs the {name} stand-in against the host in $GPUPROV_SIM_STATE\n"
        f"PYTHONPATH={shlex.quote(path)}${{PYTHONPATH:+\":$PYTHONPATH\"}}\n"
        "export PYTHONPATH\n"
        # -S: no site-packages start-up (.pth files), a quarter of each command's cost; the stand-ins need only
        # the standard library and gpuprov, which PYTHONPATH names
        f"exec {shlex.quote(python)} -S -m gpuprov.sim {shlex.quote(name)} \"$@\"\n"
    )


def install_shims(directory: Path | str, python: str = sys.executable, names: Iterable[str] | None = None, *,
                  pythonpath: str | None = None) -> None:
    """Write an executable shim per stand-in into ``directory`` (made if missing), each written atomically.

    ``names`` defaults to every registered stand-in (:func:`gpuprov.sim.commands.load_all`). Shims of
    stand-ins no longer wanted are removed; other files in the directory are left alone."""
    if names is None:
        from .commands import load_all

        names = load_all()
    wanted = sorted(set(names))
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name in wanted:
        if "/" in name or name in ("", ".", ".."):
            raise ValueError(f"not a command name: {name!r}")
        target = directory / name
        tmp = directory / f".{name}.tmp{os.getpid()}"
        tmp.write_text(shim_text(name, python, pythonpath))
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
    for entry in directory.iterdir():
        if entry.name in wanted or entry.name.startswith(".") or not entry.is_file():
            continue
        try:
            with open(entry, encoding="utf-8", errors="replace") as f:
                head = f.read(200)
        except OSError:
            continue
        if MARKER in head:
            entry.unlink()
