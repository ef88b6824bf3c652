"""Playbooks: a YAML list of plays, each naming hosts and carrying one section per plugin.

Everything is checked when the file is loaded, before any host is contacted: top-level keys, types, and each
plugin section against the schema its plugin declares. Values holding Jinja expressions are rendered per host
(with the host's variables and the play's ``vars``) and checked again then. Every error names ``file:line:col``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InputError
from .render import render_value
from .schema import Schema
from .yamlsrc import load_yaml_with_lines, where

PLAY_KEYS = {
    "name": (str,), "hosts": (str, list), "serial": (int, str, list), "forks": (int,),
    "max_fail_percentage": (int, float), "any_errors_fatal": (bool,), "vars": (dict,), "gather_facts": (bool,),
}
_TYPE_WORDS = {str: "a string", list: "a list", int: "an integer", float: "a number", bool: "true/false",
               dict: "a mapping"}


@dataclass
class Play:
    name: str
    hosts: str
    source: str
    line: int = 0
    serial: list[int | str] = field(default_factory=list)
    forks: int | None = None
    max_fail_percentage: float | None = None
    any_errors_fatal: bool = False
    vars: dict[str, Any] = field(default_factory=dict)
    sections: dict[str, Any] = field(default_factory=dict)  # plugin section -> raw (unrendered) settings
    _node: Any = None  # the YAML mapping of the play, for locating errors

    def batches(self, hosts: list[Any]) -> list[list[Any]]:
        """Split hosts into ``serial`` batches the way Ansible does (sizes used in turn, the last one repeated)."""
        if not self.serial:
            return [hosts] if hosts else []
        sizes = [_batch_size(s, len(hosts)) for s in self.serial]
        batches, i, k = [], 0, 0
        while i < len(hosts):
            size = sizes[min(k, len(sizes) - 1)]
            batches.append(hosts[i:i + size])
            i, k = i + size, k + 1
        return batches

    def settings_for(self, host: Any, schemas: Mapping[str, Schema]) -> dict[str, dict[str, Any]]:
        """Each section rendered with ``host``'s variables, checked, with the schema's defaults filled in."""
        variables = {**host.vars, **self.vars, "inventory_hostname": host.name,
                     "group_names": sorted(g for g in host.groups if g not in ("all", "ungrouped"))}
        result: dict[str, dict[str, Any]] = {}
        for section, raw in self.sections.items():
            schema = schemas[section]
            node = self._node[section] if self._node is not None else None
            values = schema.defaults()
            for key, value in (raw or {}).items():
                try:
                    rendered = render_value(value, variables)
                except ValueError as exc:
                    raise self._error(node, key, f"{section}.{key} for host {host.name}: {exc}") from None
                problem = schema.settings[key].check(rendered)
                if problem:
                    raise self._error(node, key, f"{section}.{key} for host {host.name}: {problem}")
                values[key] = rendered
            if schema.check is not None:
                for key, problem in schema.check(values):
                    raise self._error(node, key, f"{section}{'.' + key if key else ''} for host {host.name}: "
                                      f"{problem}")
            result[section] = values
        return result

    def _error(self, node: Any, key: str | None, message: str) -> InputError:
        line, col = where(node, key) if node is not None else (self.line, 0)
        return InputError(self.source, line, col, message)


@dataclass
class Playbook:
    path: str
    plays: list[Play]


def _batch_size(value: int | str, total: int) -> int:
    if isinstance(value, str):
        pct = float(value.rstrip("%"))
        return max(1, math.floor(total * pct / 100))
    return max(1, value)


def load_playbook(path: str | Path, schemas: Mapping[str, Schema]) -> Playbook:
    """Load and check a playbook against the plugins' ``schemas`` (section name -> Schema)."""
    source = str(path)
    data = load_yaml_with_lines(path)
    if not isinstance(data, list) or not data:
        line, col = where(data, None)
        raise InputError(source, line or 1, col, "a playbook is a YAML list of plays, e.g.\n"
                         "- name: GPU nodes\n  hosts: gpu\n  mig: {enabled: true, layout: all-balanced}")
    return Playbook(source, [_load_play(source, node, i, schemas, where(data, i)) for i, node in enumerate(data)])


def _load_play(source: str, node: Any, index: int, schemas: Mapping[str, Schema],
               position: tuple[int, int]) -> Play:
    line, col = where(node, None) if isinstance(node, dict) else position
    if not isinstance(node, dict):
        raise InputError(source, line, col, f"play {index + 1} must be a mapping with at least 'hosts:'")
    known = sorted(set(PLAY_KEYS) | set(schemas))
    for key, value in node.items():
        kl, kc = where(node, key)
        if not isinstance(key, str) or (key not in PLAY_KEYS and key not in schemas):
            raise InputError(source, kl, kc, f"unknown key {key!r} in play {index + 1}; a play takes "
                             f"{', '.join(known)} (a section needs the plugin that owns it: see `gpuprov plugins`)")
        types = PLAY_KEYS.get(key)
        if types and not (isinstance(value, types) and (bool in types or not isinstance(value, bool))):
            expected = " or ".join(_TYPE_WORDS[t] for t in types)
            raise InputError(source, kl, kc, f"{key} must be {expected}, got {_type_word(value)} {value!r}")
    if "hosts" not in node:
        raise InputError(source, line, col, f"play {index + 1} has no 'hosts:' (a pattern such as all, gpu, a:&b)")
    for name in node.get("vars") or {}:
        if not isinstance(name, str) or not name:
            vl, vc = where(node["vars"], name)
            raise InputError(source, vl, vc, f"variable name {name!r} in vars is not a name; write name: value")
    hosts = node["hosts"]
    if isinstance(hosts, list):
        hosts = ":".join(str(h) for h in hosts)
    serial = node.get("serial", [])
    serial = serial if isinstance(serial, list) else [serial]
    for item in serial:
        if not _valid_serial(item):
            kl, kc = where(node, "serial")
            raise InputError(source, kl, kc, f"serial {item!r} is not a batch size: use a positive number, a "
                             "percentage such as '25%', or a list of them")
    forks = node.get("forks")
    if forks is not None and forks < 1:
        kl, kc = where(node, "forks")
        raise InputError(source, kl, kc, f"forks must be at least 1, got {forks}")
    mfp = node.get("max_fail_percentage")
    if mfp is not None and not 0 <= mfp <= 100:
        kl, kc = where(node, "max_fail_percentage")
        raise InputError(source, kl, kc, f"max_fail_percentage must be between 0 and 100, got {mfp}")
    play = Play(
        name=str(node.get("name") or f"play {index + 1}"), hosts=str(hosts), source=source, line=line,
        serial=serial, forks=forks, max_fail_percentage=mfp, any_errors_fatal=bool(node.get("any_errors_fatal")),
        vars=dict(node.get("vars") or {}), _node=node,
    )
    for section, schema in schemas.items():
        if section not in node:
            continue
        body = node[section]
        if body is None:
            body = {}
        if not isinstance(body, dict):
            kl, kc = where(node, section)
            raise InputError(source, kl, kc, f"{section}: must be a mapping of settings "
                             f"({', '.join(schema.settings)})")
        for key, value in body.items():
            kl, kc = where(body, key)
            if key not in schema.settings:
                raise InputError(source, kl, kc, f"unknown setting {section}.{key}; {section} takes: "
                                 f"{', '.join(schema.settings)}")
            if not _has_jinja(value):
                problem = schema.settings[key].check(value)
                if problem:
                    raise InputError(source, kl, kc, f"{section}.{key}: {problem}")
            else:
                problem = _jinja_syntax(value)
                if problem:
                    raise InputError(source, kl, kc, f"{section}.{key}: {problem}")
        play.sections[section] = body
    return play


def _valid_serial(item: Any) -> bool:
    if isinstance(item, bool):
        return False
    if isinstance(item, int):
        return item > 0
    if isinstance(item, str) and item.endswith("%"):
        try:
            return 0 < float(item[:-1]) <= 100
        except ValueError:
            return False
    return False


def _type_word(value: Any) -> str:
    """The YAML name of a value's type (our line-tracking ``LineList`` is a list to the user)."""
    for kind, word in ((bool, "bool"), (dict, "mapping"), (list, "list"), (str, "str"), (int, "int"),
                       (float, "float")):
        if isinstance(value, kind):
            return word
    return type(value).__name__


def _jinja_syntax(value: Any) -> str | None:
    """Why a value's Jinja cannot compile (syntax, unknown filter or test), checked at load, before any host."""
    import jinja2

    from .render import _VALUES

    if isinstance(value, list):
        return next((p for p in map(_jinja_syntax, value) if p), None)
    if isinstance(value, dict):
        return next((p for p in map(_jinja_syntax, value.values()) if p), None)
    if not isinstance(value, str) or not _has_jinja(value):
        return None
    try:
        _VALUES.from_string(value)
    except jinja2.TemplateError as exc:
        return f"bad Jinja expression {value!r}: {exc}"
    return None


def _has_jinja(value: Any) -> bool:
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, list):
        return any(_has_jinja(v) for v in value)
    if isinstance(value, dict):
        return any(_has_jinja(v) for v in value.values())
    return False
