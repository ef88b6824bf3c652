"""``gpuprov verify``: plugin checks run as testinfra tests against the hosts, over the run's own connection.

testinfra's own SSH backends would open second connections with their own host-key rules; instead a small backend
sends testinfra's commands through gpuprov's :class:`~gpuprov.connection.Connection`, so ``verify`` trusts exactly
the hosts ``apply`` trusts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .connection import Connection


@dataclass(frozen=True)
class Check:
    """One check: ``test(host)`` raises ``AssertionError`` with a readable message when the host is wrong."""

    name: str
    test: Callable[[Any], None]


@dataclass(frozen=True)
class CheckResult:
    host: str
    plugin: str
    name: str
    ok: bool
    message: str = ""


def testinfra_host(connection: Connection) -> Any:
    """A testinfra ``Host`` whose commands run through ``connection``."""
    import testinfra.backend.base as base
    import testinfra.host

    class GpuprovBackend(base.BaseBackend):  # type: ignore[misc]
        NAME = "gpuprov"

        def __init__(self) -> None:
            super().__init__(connection.host_name)

        def run(self, command: str, *args: str, **kwargs: Any) -> base.CommandResult:
            cmd = self.get_command(command, *args)
            r = connection.run(cmd)
            return self.result(r.exit_code, self.encode(cmd), r.stdout.encode(), r.stderr.encode())

    return testinfra.host.Host(GpuprovBackend())


def run_checks(host: str, connection: Connection, checks: list[tuple[str, Check]]) -> list[CheckResult]:
    ti = testinfra_host(connection)
    results = []
    for plugin, check in checks:
        try:
            check.test(ti)
        except AssertionError as exc:
            results.append(CheckResult(host, plugin, check.name, False, str(exc) or "assertion failed"))
        else:
            results.append(CheckResult(host, plugin, check.name, True))
    return results
