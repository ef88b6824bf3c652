"""Errors a user can act on.

Every error gpuprov raises on purpose derives from :class:`GpuprovError`; the CLI prints its message and exits 1
without a traceback. Anything else escaping is a bug in gpuprov.
"""

from __future__ import annotations

from dataclasses import dataclass


class GpuprovError(Exception):
    """An error whose message is complete on its own: it names the thing and, where one exists, the fix."""


@dataclass
class InputError(GpuprovError):
    """Bad user input (inventory, playbook, settings), located as ``file:line:col``.

    ``line`` and ``col`` are 1-based; 0 means unknown. The message says what is wrong and what would be right.
    """

    file: str
    line: int
    col: int
    message: str

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.file
        if self.line:
            where += f":{self.line}"
            if self.col:
                where += f":{self.col}"
        return f"{where}: {self.message}"


class PluginError(GpuprovError):
    """A plugin failed to load or does not meet the hook contract; the message names the plugin."""


class ConnectionFailed(GpuprovError):
    """A host could not be reached (refused, timed out, host key rejected): the host is *unreachable*."""


class StepFailed(GpuprovError):
    """A step ran on a host and failed; the message carries the tool's own output."""
