"""The settings a plugin owns in a play (``mig:``, ``mps:``...), declared as data so the core can validate them.

A plugin returns a :class:`Schema` from ``gpuprov_settings_schema``; the playbook loader checks each play's section
against it (unknown keys, wrong types, values outside ``choices``) and reports ``file:line:col`` errors before any
host is contacted. Values are checked after Jinja rendering with the host's variables, so a typed value may come
from a template (``layout: "{{ mig_layout }}"``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

_TYPE_NAMES = {bool: "true/false", int: "an integer", float: "a number", str: "a string", list: "a list",
               dict: "a mapping"}


@dataclass(frozen=True)
class Setting:
    """One key of a plugin's section. ``type`` is a Python type or a tuple of them; ``None`` accepts anything."""

    type: type | tuple[type, ...] | None = None
    default: Any = None
    choices: tuple[Any, ...] | None = None
    doc: str = ""
    minimum: float | None = None
    maximum: float | None = None

    def describe(self) -> str:
        if self.choices:
            return "one of " + ", ".join(repr(c) if not isinstance(c, str) else c for c in self.choices)
        types = self.type if isinstance(self.type, tuple) else (self.type,)
        return " or ".join(_TYPE_NAMES.get(t, getattr(t, "__name__", str(t))) for t in types if t is not None)

    def check(self, value: Any) -> str | None:
        """Why ``value`` is not acceptable, or ``None`` when it is."""
        if value is None:
            return None
        if self.type is not None:
            types = self.type if isinstance(self.type, tuple) else (self.type,)
            ok = any(isinstance(value, t) and not (t is int and isinstance(value, bool)) for t in types)
            if not ok:
                return f"expected {self.describe()}, got {type(value).__name__} {value!r}"
        if self.choices is not None and not isinstance(value, list | dict) and value not in self.choices:
            return f"expected {self.describe()}, got {value!r}"
        if isinstance(value, int | float) and not isinstance(value, bool):
            if self.minimum is not None and value < self.minimum:
                return f"must be at least {self.minimum:g}, got {value}"
            if self.maximum is not None and value > self.maximum:
                return f"must be at most {self.maximum:g}, got {value}"
        return None


@dataclass(frozen=True)
class Schema:
    """A plugin's playbook section.

    ``order`` places the plugin in the plan phase (lower first: MIG 10, MPS 20, NUMA 30), so a later plugin sees
    what an earlier one plans. ``check`` validates the whole section after the per-key checks; it returns a list of
    ``(key, message)`` problems (``key`` may be ``None`` for the section itself).

    ``reads`` names the other sections whose facts this plugin's plan uses (MPS reads ``mig``'s MIG devices).
    Detect runs the probes of the sections a play sets and of the sections they read, nothing else: a MIG play
    does not wait for NUMA's sysfs walk. ``None`` (the default, safe for a plugin that does not say) reads every
    section's facts.
    """

    section: str
    settings: Mapping[str, Setting] = field(default_factory=dict)
    order: int = 50
    doc: str = ""
    check: Callable[[Mapping[str, Any]], list[tuple[str | None, str]]] | None = None
    reads: tuple[str, ...] | None = None

    def defaults(self) -> dict[str, Any]:
        return {k: s.default for k, s in self.settings.items()}
