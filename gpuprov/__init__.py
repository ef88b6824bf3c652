"""gpuprov: provision NVIDIA GPU servers — MIG, MPS and NUMA placement — from an Ansible-compatible inventory."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["__version__", "hookimpl"]

if TYPE_CHECKING:
    from .hookspecs import hookimpl


def __getattr__(name: str) -> Any:
    # Imported on first use, so the simulator's stand-ins (``python -S -m gpuprov.sim``, one process per simulated
    # command in the lab) start on the standard library alone.
    if name == "hookimpl":
        from .hookspecs import hookimpl

        return hookimpl
    raise AttributeError(f"module 'gpuprov' has no attribute {name!r}")
