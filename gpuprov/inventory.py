"""Ansible-compatible inventories (INI and YAML), with ``group_vars/``/``host_vars/`` and host patterns.

The rules follow ansible-core's so an inventory reads the same in both tools (``gpuprov inventory --list`` prints
what ``ansible-inventory --list`` prints): inline host variables in INI are Python literals while ``[g:vars]``
values stay strings; ranges (``node[01:32]``, ``gpu-[a:f]``, ``n[1:9:2]``) need equal widths when zero-padded;
variables merge with Ansible's precedence (low to high): inventory group vars by group depth then name,
``group_vars/all``, ``group_vars/<group>`` by depth then name, inventory host vars, ``host_vars/<host>``.
"""

from __future__ import annotations

import ast
import fnmatch
import re
import shlex
import string
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InputError
from .yamlsrc import load_yaml_with_lines, read_source, where


@dataclass(frozen=True)
class Host:
    name: str
    vars: Mapping[str, Any]
    groups: tuple[str, ...] = ("all",)

    @property
    def address(self) -> str:
        return str(self.vars.get("ansible_host") or self.vars.get("ansible_ssh_host") or self.name)

    @property
    def port(self) -> int | None:
        port = self.vars.get("ansible_port", self.vars.get("ansible_ssh_port"))
        return int(port) if port not in (None, "") else None

    @property
    def user(self) -> str | None:
        user = self.vars.get("ansible_user", self.vars.get("ansible_ssh_user"))
        return str(user) if user else None

    @property
    def connection(self) -> str:
        return str(self.vars.get("ansible_connection") or "ssh")


@dataclass
class Group:
    name: str
    hosts: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    vars: dict[str, Any] = field(default_factory=dict)


class Inventory:
    """Hosts and groups of one or more inventory sources, merged like ``-i a -i b``."""

    def __init__(self) -> None:
        self.groups: dict[str, Group] = {"all": Group("all"), "ungrouped": Group("ungrouped")}
        self.groups["all"].children.append("ungrouped")
        self._host_order: list[str] = []
        self._host_vars: dict[str, dict[str, Any]] = {}
        self._file_group_vars: dict[str, dict[str, Any]] = {}
        self._file_host_vars: dict[str, dict[str, Any]] = {}
        self.sources: list[Path] = []
        self.hosts: dict[str, Host] = {}

    # -- building ------------------------------------------------------------------------------------------------
    def group(self, name: str) -> Group:
        if name not in self.groups:
            self.groups[name] = Group(name)
        return self.groups[name]

    def add_host(self, name: str, group: str, hostvars: Mapping[str, Any]) -> None:
        if name not in self._host_vars:
            self._host_order.append(name)
            self._host_vars[name] = {}
        self._host_vars[name].update(hostvars)
        g = self.group(group)
        if name not in g.hosts:
            g.hosts.append(name)

    def add_child(self, parent: str, child: str) -> None:
        p = self.group(parent)
        self.group(child)
        if child not in p.children:
            p.children.append(child)

    def _finish(self) -> None:
        for name in self.groups:
            if name not in ("all", "ungrouped") and not self._parents(name) and name not in self.groups["all"].children:
                self.groups["all"].children.append(name)
        grouped = {h for n, g in self.groups.items() if n not in ("all", "ungrouped") for h in g.hosts}
        self.groups["ungrouped"].hosts = [h for h in self._host_order if h not in grouped]
        depth = {name: self._depth(name) for name in self.groups}
        self.hosts = {}
        for name in self._host_order:
            member = sorted(self._groups_of(name), key=lambda g: (depth[g], self._priority(g), g))
            merged: dict[str, Any] = {}
            for g in member:
                merged.update(self.groups[g].vars)
            for g in member:
                merged.update(self._file_group_vars.get(g, {}))
            merged.update(self._host_vars[name])
            merged.update(self._file_host_vars.get(name, {}))
            self.hosts[name] = Host(name, merged, tuple(member))

    def _priority(self, group: str) -> int:
        value = self.groups[group].vars.get("ansible_group_priority", 1)
        try:
            return int(value)
        except (TypeError, ValueError):
            return 1

    def _parents(self, name: str) -> list[str]:
        return [p for p, g in self.groups.items() if name in g.children]

    def _depth(self, name: str, seen: frozenset[str] = frozenset()) -> int:
        if name == "all" or name in seen:
            return 0
        parents = [p for p in self._parents(name) if p != "all"]
        return 1 + max((self._depth(p, seen | {name}) for p in parents), default=0)

    def _groups_of(self, host: str) -> set[str]:
        found = {"all"}
        direct = [g for g, grp in self.groups.items() if host in grp.hosts]
        stack = list(direct)
        while stack:
            g = stack.pop()
            if g in found:
                continue
            found.add(g)
            stack.extend(self._parents(g))
        return found

    # -- queries -------------------------------------------------------------------------------------------------
    def group_hosts(self, name: str) -> list[str]:
        """Every host of a group, its children's included, in inventory order."""
        if name == "all":
            return list(self._host_order)
        members: set[str] = set()
        stack, seen = [name], set()
        while stack:
            g = stack.pop()
            if g in seen or g not in self.groups:
                continue
            seen.add(g)
            members.update(self.groups[g].hosts)
            stack.extend(self.groups[g].children)
        return [h for h in self._host_order if h in members]

    def _term(self, term: str) -> list[str]:
        if term in ("all", "*"):
            return list(self._host_order)
        if term.startswith("~"):
            rx = re.compile(term[1:])
            names = [h for h in self._host_order if rx.match(h)]
            groups = [g for g in self.groups if rx.match(g)]
        elif any(c in term for c in "*?["):
            names = [h for h in self._host_order if fnmatch.fnmatchcase(h, term)]
            groups = [g for g in self.groups if fnmatch.fnmatchcase(g, term)]
        else:
            names = [term] if term in self.hosts else []
            groups = [term] if term in self.groups else []
        result = set(names)
        for g in groups:
            result.update(self.group_hosts(g))
        return [h for h in self._host_order if h in result]

    def _match(self, pattern: str) -> list[str]:
        terms = [t.strip() for t in re.split(r"[:,]", pattern) if t.strip()]
        selected: list[str] = []
        intersect: list[set[str]] = []
        exclude: set[str] = set()
        for term in terms:
            if term.startswith("!"):
                exclude.update(self._term(term[1:]))
            elif term.startswith("&"):
                intersect.append(set(self._term(term[1:])))
            else:
                selected.extend(h for h in self._term(term) if h not in selected)
        chosen = set(selected)
        for s in intersect:
            chosen &= s
        chosen -= exclude
        return [h for h in self._host_order if h in chosen]

    def select(self, pattern: str, limit: str | None = None) -> list[Host]:
        """Hosts matching an Ansible host pattern, then ``limit`` (a pattern or ``@file``), in inventory order."""
        names = self._match(pattern)
        if limit:
            if limit.startswith("@"):
                try:
                    allowed = {line.strip() for line in Path(limit[1:]).read_text().splitlines() if line.strip()}
                except OSError as exc:
                    raise InputError(limit[1:], 0, 0, f"cannot read the --limit file: {exc.strerror}") from None
            else:
                allowed = set(self._match(limit))
            names = [n for n in names if n in allowed]
        return [self.hosts[n] for n in names]

    def to_ansible_list(self) -> dict[str, Any]:
        """The JSON ``ansible-inventory --list`` prints for this inventory."""
        out: dict[str, Any] = {"_meta": {"hostvars": {n: dict(h.vars) for n, h in self.hosts.items() if h.vars}}}
        for name, g in self.groups.items():
            entry: dict[str, Any] = {}
            if g.children:
                entry["children"] = list(g.children)
            if g.hosts and name != "all":
                entry["hosts"] = list(g.hosts)
            if entry or name == "all":
                out[name] = entry
        return out


# -- loading ---------------------------------------------------------------------------------------------------
def load_inventory(sources: Sequence[str | Path]) -> Inventory:
    """Load inventory files or directories (each file of a directory, like Ansible), then their vars dirs."""
    inv = Inventory()
    for source in sources:
        path = Path(source)
        if not path.exists():
            raise InputError(str(path), 0, 0, "inventory not found; give an INI or YAML inventory file or directory")
        inv.sources.append(path)
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")
                       and p.suffix not in (".retry", ".pyc", ".md")) if path.is_dir() else [path]
        for f in files:
            _load_file(inv, f)
    for path in inv.sources:
        base = path if path.is_dir() else path.parent
        _load_vars_dir(inv, base / "group_vars", inv._file_group_vars, set(inv.groups))
        _load_vars_dir(inv, base / "host_vars", inv._file_host_vars, set(inv._host_vars))
    inv._finish()
    return inv


def _load_file(inv: Inventory, path: Path) -> None:
    text = read_source(path)
    if path.suffix in (".yml", ".yaml", ".json") or text.lstrip().startswith(("all:", "---")):
        _load_yaml(inv, path)
    else:
        _load_ini(inv, path, text)


_SECTION = re.compile(r"^\[([^\]:\s]+)(?::(\w+))?\]\s*$")


def _load_ini(inv: Inventory, path: Path, text: str) -> None:
    group, kind = "ungrouped", "hosts"
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            m = _SECTION.match(line)
            if not m:
                raise InputError(str(path), number, 1, f"bad section header {line!r}; use [group], "
                                 "[group:vars] or [group:children]")
            group, kind = m.group(1), m.group(2) or "hosts"
            if kind not in ("hosts", "vars", "children"):
                raise InputError(str(path), number, 1, f"unknown section type :{kind}; use :vars or :children")
            inv.group(group)
            continue
        try:
            words = shlex.split(line, comments=True)
        except ValueError as exc:
            raise InputError(str(path), number, 1, f"cannot parse {line!r}: {exc}") from None
        if not words:
            continue
        if kind == "vars":
            key, eq, value = line.partition("=")
            if not eq:
                raise InputError(str(path), number, 1, f"expected key=value in [{group}:vars], got {line!r}")
            inv.group(group).vars[key.strip()] = _literal(value.strip())
        elif kind == "children":
            inv.add_child(group, words[0])
        else:
            name, hostvars = words[0], {}
            for word in words[1:]:
                key, eq, value = word.partition("=")
                if not eq:
                    raise InputError(str(path), number, len(raw) - len(raw.lstrip()) + 1,
                                     f"expected key=value after the host name, got {word!r}")
                hostvars[key] = _literal(value)
            m = re.match(r"^([^\[\]:]+|.*\])(?::(\d+))$", name)
            if m:
                name, hostvars = m.group(1), {**hostvars, "ansible_port": int(m.group(2))}
            for host in expand_range(name, str(path), number):
                inv.add_host(host, group, hostvars)


def _strip_quotes(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def _literal(value: str) -> Any:
    try:
        result = ast.literal_eval(value)
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
        return value
    return result if isinstance(result, int | float | bool | list | dict | tuple | str) else value


_RANGE = re.compile(r"\[([^\]]+)\]")


def expand_range(name: str, source: str = "", line: int = 0) -> list[str]:
    """``node[01:03]`` -> node01..node03; ``gpu-[a:c]``; ``n[1:9:2]``; several ranges multiply."""
    m = _RANGE.search(name)
    if not m:
        return [name]
    parts = m.group(1).split(":")
    if len(parts) not in (2, 3):
        raise InputError(source, line, 0, f"bad host range [{m.group(1)}]; write [01:32], [a:f] or [1:9:2]")
    start, end = parts[0], parts[1]
    step_text = parts[2] if len(parts) == 3 and parts[2] else "1"
    step = int(step_text) if step_text.isdigit() else 0
    if step < 1:
        raise InputError(source, line, 0, f"host range [{m.group(1)}]: the step must be a whole number of at least "
                         "1, as in [1:9:2]")
    items: list[str]
    if start.isdigit() and end.isdigit():
        if start.startswith("0") and len(start) > 1 and len(start) != len(end):
            raise InputError(source, line, 0, f"host range [{m.group(1)}]: zero-padded bounds must be as wide "
                             f"as each other (e.g. [{start}:{end.zfill(len(start))}])")
        if int(start) > int(end):
            raise InputError(source, line, 0, f"host range [{m.group(1)}] runs backwards; write [{end}:{start}]")
        width = len(start) if start.startswith("0") else 0
        items = [str(i).zfill(width) for i in range(int(start), int(end) + 1, step)]
    elif len(start) == 1 and len(end) == 1 and start in string.ascii_letters and end in string.ascii_letters:
        if ord(start) > ord(end):
            raise InputError(source, line, 0, f"host range [{m.group(1)}] runs backwards")
        items = [chr(c) for c in range(ord(start), ord(end) + 1, step)]
    else:
        raise InputError(source, line, 0, f"bad host range [{m.group(1)}]; bounds are both numbers or both "
                         "single letters, e.g. [01:32] or [a:f]")
    head, tail = name[: m.start()], name[m.end():]
    return [h for item in items for h in expand_range(head + item + tail, source, line)]


def _load_yaml(inv: Inventory, path: Path) -> None:
    data = load_yaml_with_lines(path)
    if data is None:
        return
    if not isinstance(data, dict):
        line, col = where(data)
        raise InputError(str(path), line or 1, col, "a YAML inventory is a mapping of groups, e.g. "
                         "all: {hosts: {node01: {}}}")
    for name, body in data.items():
        _yaml_group(inv, path, name, body, data)


def _yaml_group(inv: Inventory, path: Path, name: str, body: Any, parent: Any) -> None:
    inv.group(name)
    if body is None:
        return
    line, col = where(parent, name)
    if not isinstance(body, dict):
        raise InputError(str(path), line, col, f"group {name!r} must be a mapping with hosts:, vars: or children:")
    for key in body:
        if key not in ("hosts", "vars", "children"):
            kl, kc = where(body, key)
            raise InputError(str(path), kl, kc, f"unknown key {key!r} in group {name!r}; use hosts, vars, children")
    for key in ("hosts", "children"):
        if body.get(key) is not None and not isinstance(body[key], dict):
            kl, kc = where(body, key)
            raise InputError(str(path), kl, kc, f"{key} of group {name!r} must be a mapping of names (each "
                             "followed by ':'), not a list or a value")
    for host, hostvars in (body.get("hosts") or {}).items():
        if hostvars is not None and not isinstance(hostvars, dict):
            hl, hc = where(body["hosts"], host)
            raise InputError(str(path), hl, hc, f"host {host!r}: its variables must be a mapping (or empty)")
        for h in expand_range(str(host), str(path), where(body["hosts"], host)[0]):
            _check_names(str(path), hostvars or {})
            inv.add_host(h, name, dict(hostvars or {}))
    vars_ = body.get("vars") or {}
    if not isinstance(vars_, dict):
        vl, vc = where(body, "vars")
        raise InputError(str(path), vl, vc, f"vars of group {name!r} must be a mapping")
    _check_names(str(path), vars_)
    inv.group(name).vars.update(vars_)
    children = body.get("children") or {}
    for child, child_body in children.items():
        inv.add_child(name, child)
        _yaml_group(inv, path, child, child_body, children)


def _vars_files(directory: Path, name: str) -> Iterator[Path]:
    for candidate in (directory / name, *(directory / f"{name}{ext}" for ext in (".yml", ".yaml", ".json"))):
        if candidate.is_file():
            yield candidate
        elif candidate.is_dir():
            yield from sorted(p for p in candidate.rglob("*") if p.is_file() and not p.name.startswith("."))


def _check_names(source: str, variables: Any) -> None:
    """Variable names are strings: YAML makes ``null``, numbers or an anchor's stray key of some (``&x: 1``)."""
    for key in variables:
        if not isinstance(key, str) or not key:
            line, col = where(variables, key)
            raise InputError(source, line or getattr(variables, "line", 0) or 1, col,
                             f"variable name {key!r} is not a name; write name: value (letters, digits, _)")


def _load_vars_dir(inv: Inventory, directory: Path, target: dict[str, dict[str, Any]], names: set[str]) -> None:
    if not directory.is_dir():
        return
    for name in sorted(names):
        for f in _vars_files(directory, name):
            data = load_yaml_with_lines(f)
            if data is None:
                continue
            if not isinstance(data, dict):
                line, col = where(data)
                raise InputError(str(f), line or 1, col, "a vars file must be a mapping of variable: value")
            _check_names(str(f), data)
            target.setdefault(name, {}).update(data)
