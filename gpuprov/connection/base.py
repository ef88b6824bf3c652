"""The connection interface every transport implements, and the batching of detect probes into one round trip."""

from __future__ import annotations

import secrets
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..inventory import Host


@dataclass(frozen=True)
class Result:
    """What a command printed and how it exited."""

    stdout: str = ""
    stderr: str = ""
    exit_code: int = 0

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


class Connection(ABC):
    """One open channel to one host, used for every command of a run.

    Implementations must be usable from one worker thread at a time; the runner never shares a connection between
    threads.
    """

    host_name: str = ""

    @abstractmethod
    def run(self, command: str, *, stdin: str | None = None, timeout: float | None = None) -> Result:
        """Run a shell command line on the host (as the become user when the host asks for it)."""

    @abstractmethod
    def put(self, path: str, content: bytes, *, mode: int = 0o644, owner: str | None = None,
            group: str | None = None) -> None:
        """Write ``content`` to the absolute ``path`` atomically: a temporary file beside it, then a rename."""

    @abstractmethod
    def get(self, path: str) -> bytes | None:
        """The content of ``path`` on the host, or ``None`` when it does not exist."""

    def close(self) -> None:  # noqa: B027 - optional for transports holding nothing
        """Release the connection; further calls are errors."""

    def run_batch(self, commands: Mapping[str, str], *, timeout: float | None = None) -> dict[str, Result]:
        """Run several independent commands in **one** round trip and return each one's result by name.

        The default builds one shell script that runs every command in a subshell and frames its stdout, stderr
        and exit code with a random marker, so a command's output can never fake a frame. Transports that run
        commands without a round trip (``sim``) override this.
        """
        if not commands:
            return {}
        marker = "GPUPROV" + secrets.token_hex(8)
        lines = ['__t=$(mktemp -d) || exit 97', 'trap \'rm -rf "$__t"\' EXIT']
        for i, command in enumerate(commands.values()):
            lines.append(f"( {command}\n) >\"$__t/o{i}\" 2>\"$__t/e{i}\" </dev/null; __rc=$?")
            lines.append(f"printf '\\n%s %s %s\\n' {marker} {i} \"$__rc\"")
            lines.append(f"cat \"$__t/o{i}\"; printf '\\n%s-err\\n' {marker}; cat \"$__t/e{i}\"")
        script = "\n".join(lines) + "\n"
        result = self.run("sh -s", stdin=script, timeout=timeout)
        if not result.ok and f"\n{marker} " not in result.stdout:
            # Not one probe ran: the shell itself could not start (sudo refused, no such become user...). Its
            # own message says why; "the batch ended" would wrongly suggest a dropped connection.
            from ..errors import StepFailed

            output = result.stderr.strip() or result.stdout.strip() or "(no output)"
            raise StepFailed(f"{self.host_name}: the detect commands could not run (exit {result.exit_code}): "
                             f"{output}")
        return parse_batch(result.stdout, marker, list(commands))

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def parse_batch(output: str, marker: str, names: list[str]) -> dict[str, Result]:
    """Split the framed output of :meth:`Connection.run_batch` back into per-command results."""
    results: dict[str, Result] = {}
    chunks = output.split("\n" + marker + " ")
    for chunk in chunks[1:]:
        header, _, rest = chunk.partition("\n")
        index, _, rc = header.partition(" ")
        name = names[int(index)]
        out, _, err = rest.partition("\n" + marker + "-err\n")
        results[name] = Result(stdout=out, stderr=err, exit_code=int(rc))
    missing = [n for n in names if n not in results]
    for name in missing:  # the batch was cut short (connection dropped): say so per command
        results[name] = Result(stderr="the batch ended before this probe ran", exit_code=255)
    return results


IN_PROCESS = frozenset({"sim"})  # transports whose hosts do their work in this process, under its one GIL


def open_connection(host: Host, options: Mapping[str, Any] | None = None) -> Connection:
    """Open the connection a host's ``ansible_connection`` asks for (``ssh`` by default)."""
    kind = host.connection
    opts = dict(options or {})
    if kind in ("ssh", "paramiko", "smart"):
        from .ssh import SSHConnection

        return SSHConnection(host, **opts)
    if kind == "local":
        from .local import LocalConnection

        return LocalConnection(host)
    if kind == "sim":
        from .sim import SimConnection

        return SimConnection(host)
    from ..errors import GpuprovError

    raise GpuprovError(f"{host.name}: ansible_connection={kind!r} is not supported; use ssh, local or sim")
