"""How steps reach a host: one small interface (``run``, ``put``, ``get``, ``close``) and three implementations.

``ssh`` (Fabric/paramiko) for real hosts, ``local`` for the control node itself and ``sim`` for an in-process
simulated GPU server. The runner opens one connection per host for the whole run.
"""

from __future__ import annotations

from .base import Connection, Result, open_connection

__all__ = ["Connection", "Result", "open_connection"]
