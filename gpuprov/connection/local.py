"""The ``local`` connection: the control node itself (``ansible_connection=local``).

Commands run through ``/bin/sh``; with ``ansible_become`` they run under ``sudo -n``. Detection on this
connection may use NVML (pynvml) directly instead of parsing ``nvidia-smi``.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
from typing import TYPE_CHECKING

from .base import Connection, Result

if TYPE_CHECKING:
    from ..inventory import Host


class LocalConnection(Connection):
    def __init__(self, host: Host) -> None:
        self.host_name = host.name
        self.become = _truthy(host.vars.get("ansible_become", False))

    def run(self, command: str, *, stdin: str | None = None, timeout: float | None = None) -> Result:
        argv = ["/bin/sh", "-c", command]
        if self.become and os.geteuid() != 0:
            argv = ["sudo", "-n", "--"] + argv
        try:
            proc = subprocess.run(argv, input=stdin or "", capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return Result("", f"timed out after {timeout}s: {command}", 124)
        return Result(proc.stdout, proc.stderr, proc.returncode)

    def put(self, path: str, content: bytes, *, mode: int = 0o644, owner: str | None = None,
            group: str | None = None) -> None:
        directory = os.path.dirname(path) or "/"
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(content)
            os.chmod(tmp, mode)
            if owner or group:
                spec = shlex.quote(f"{owner or ''}{':' + group if group else ''}")
                result = self.run(f"chown {spec} {shlex.quote(tmp)}")
                if not result.ok:
                    from ..errors import StepFailed

                    raise StepFailed(f"{self.host_name}: chown {spec} {path} failed: {result.stderr.strip()}")
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def get(self, path: str) -> bytes | None:
        try:
            with open(path, "rb") as f:
                return f.read()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None


def _truthy(value: object) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "yes", "true", "on", "y")
    return bool(value)
