"""A simulated host on disk: its state directory, its file tree, and a lock so several stand-ins can share it.

Layout of a state directory::

    machine.json    the Machine (see machine.py)
    root/           the host's file tree for the in-process ``sim`` connection (``/etc/...`` -> ``root/etc/...``)
    lock            flock'ed while a command changes the state

In the SSH lab the file tree is the real one, seen through the host's own mount namespace, so ``root`` is ``/``.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .machine import Machine

STATE_ENV = "GPUPROV_SIM_STATE"  # the state directory a stand-in command acts on
ROOT_ENV = "GPUPROV_SIM_ROOT"  # the file-tree root; unset or "/" in the lab


@dataclass
class Result:
    """What a command printed and how it exited, the way a shell sees it."""

    stdout: str = ""
    stderr: str = ""
    exit_code: int = 0


class SimHost:
    """Handle on one simulated host. Cheap to create; state is read on :meth:`load` and written on :meth:`save`."""

    def __init__(self, state_dir: str | Path, root: str | Path | None = None) -> None:
        self.state_dir = Path(state_dir)
        self.root = Path(root) if root is not None else self.state_dir / "root"
        self._machine: Machine | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> SimHost:
        """The host a stand-in command was started for (``GPUPROV_SIM_STATE``, ``GPUPROV_SIM_ROOT``)."""
        env = dict(os.environ if env is None else env)
        state = env.get(STATE_ENV)
        if not state:
            raise RuntimeError(f"{STATE_ENV} is not set: the stand-in does not know which simulated host to act on")
        return cls(state, env.get(ROOT_ENV) or "/")

    @property
    def exists(self) -> bool:
        return (self.state_dir / "machine.json").is_file()

    @property
    def machine(self) -> Machine:
        if self._machine is None:
            self.load()
        assert self._machine is not None
        return self._machine

    def load(self) -> Machine:
        with open(self.state_dir / "machine.json", encoding="utf-8") as f:
            self._machine = Machine.from_json(json.load(f))
        return self._machine

    def save(self, machine: Machine | None = None) -> None:
        if machine is not None:
            self._machine = machine
        assert self._machine is not None
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_dir / "machine.json.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self._machine.to_json(), f, indent=1, sort_keys=True)
        os.replace(tmp, self.state_dir / "machine.json")

    @contextmanager
    def locked(self) -> Iterator[Machine]:
        """Load, hand out and save the machine under an exclusive lock (stand-ins may run concurrently)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.state_dir / "lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                machine = self.load()
                yield machine
                self.save(machine)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def path(self, host_path: str) -> Path:
        """Where the host's absolute path ``host_path`` lives on this machine."""
        if not host_path.startswith("/"):
            raise ValueError(f"host paths are absolute: {host_path!r}")
        if str(self.root) == "/":
            return Path(host_path)
        return self.root / host_path.lstrip("/")
