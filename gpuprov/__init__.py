"""gpuprov: provision NVIDIA GPU servers — MIG, MPS and NUMA placement — from an Ansible-compatible inventory."""

__version__ = "0.1.0"

from .hookspecs import hookimpl

__all__ = ["__version__", "hookimpl"]
