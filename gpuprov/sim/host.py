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
    """Handle on one simulated host. Cheap to create; state is read on :meth:`load` and written on :meth:`save`.

    :attr:`machine` is the state as the file holds it now: it is read again only when ``machine.json`` changed
    (another stand-in process, a helper script under the real ``bash``), so the in-process ``sim`` connection,
    which answers dozens of commands per host, does not parse the same JSON for each one."""

    def __init__(self, state_dir: str | Path, root: str | Path | None = None) -> None:
        self.state_dir = Path(state_dir)
        self.root = Path(root) if root is not None else self.state_dir / "root"
        self._file = str(self.state_dir / "machine.json")
        self._machine: Machine | None = None
        self._text = ""  # machine.json as last read or written, to leave an unchanged file alone
        self._stamp: tuple[int, int, int] | None = None  # its (inode, mtime, size) then

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
        return os.path.isfile(self._file)

    @property
    def machine(self) -> Machine:
        """The machine for reading; changes go through :meth:`locked`."""
        if self._machine is None or self._stamp != _stamp(os.stat(self._file)):
            self.load()
        assert self._machine is not None
        return self._machine

    def load(self) -> Machine:
        with open(self._file, encoding="utf-8") as f:
            self._text = f.read()
            self._stamp = _stamp(os.fstat(f.fileno()))
        self._machine = Machine.from_json(json.loads(self._text))
        return self._machine

    def save(self, machine: Machine | None = None) -> None:
        if machine is not None:
            self._machine = machine
        assert self._machine is not None
        self._write(_dump(self._machine))

    def _write(self, text: str) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = f"{self._file}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            stamp = _stamp(os.fstat(f.fileno()))
        os.replace(tmp, self._file)
        self._text, self._stamp = text, stamp

    @contextmanager
    def locked(self) -> Iterator[Machine]:
        """Load, hand out and save the machine under an exclusive lock (stand-ins may run concurrently).

        The file is rewritten only when the machine changed: most commands that take the lock only look. A caller
        that fails half-way leaves the file as it was, and the handle forgets what it had changed."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.state_dir / "lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                try:
                    machine = self.machine  # read again only if another writer changed the file
                    yield machine
                except BaseException:
                    self._machine = self._stamp = None  # the caller may have changed it half-way
                    raise
                text = _dump(machine)
                if text != self._text:
                    self._write(text)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def path(self, host_path: str) -> Path:
        """Where the host's absolute path ``host_path`` lives on this machine."""
        if not host_path.startswith("/"):
            raise ValueError(f"host paths are absolute: {host_path!r}")
        if str(self.root) == "/":
            return Path(host_path)
        return self.root / host_path.lstrip("/")


def _dump(machine: Machine) -> str:
    """The state file's text: one spelling, so that an unchanged machine compares equal to the file it came from."""
    return json.dumps(machine.to_json(), sort_keys=True)


def _stamp(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_ino, st.st_mtime_ns, st.st_size)
