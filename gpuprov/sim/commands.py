"""The registry of stand-in commands (``nvidia-smi``, ``systemctl``, ...), shared by every face of the simulator.

A stand-in is a function ``(host, argv, stdin, env) -> Result``; ``argv[0]`` is the command name. The in-process
shell of the ``sim`` connection calls them directly; in the SSH lab ``python -m gpuprov.sim NAME ARGS...`` does, via
small shims first on the host's PATH.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from .host import Result, SimHost

StandIn = Callable[[SimHost, list[str], str, Mapping[str, str]], Result]

COMMANDS: dict[str, StandIn] = {}


def stand_in(name: str) -> Callable[[StandIn], StandIn]:
    """Register a stand-in for the command ``name``."""

    def register(func: StandIn) -> StandIn:
        COMMANDS[name] = func
        return func

    return register


def load_all() -> dict[str, StandIn]:
    """Import every stand-in module so it registers, and return the registry."""
    import importlib

    for module in ("nvidia_smi", "mps", "systemctl", "numa"):
        try:
            importlib.import_module(f"{__package__}.{module}")
        except ModuleNotFoundError as exc:  # a module not written yet
            if exc.name != f"{__package__}.{module}":
                raise
    return COMMANDS
