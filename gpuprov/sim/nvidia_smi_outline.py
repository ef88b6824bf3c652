"""A small outline language for nvidia-smi's nested reports (``-q -x`` and ``-q``), so each driver generation's
layout reads as the tool prints it instead of as code.

An outline is text, one entry per line, nested by 4-space indentation::

    product_name: {product}      a leaf: key and value; "{name}" is filled from the values
    chassis_serial_number:       a leaf with an empty value
    mig_mode                     a section; its children follow, indented
    "None                        a bare text line (the XML's <mig_devices> of a non-MIG GPU)
    @processes                   a block: nodes a function made (repeated records), spliced in here
    [pascal] single_bit          only when the flag is set; [!pascal] only when it is not

The values are substituted after the line is split, so a value holding ``{``, ``:`` or ``<`` is never
re-read as template.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import NamedTuple


class Node(NamedTuple):
    # A tuple, not a dataclass: a DGX's ``-q -x`` is 3,000 nodes, made for every report.
    depth: int
    key: str
    value: str | None  # None: a section (or, with text=True, a bare text line in ``key``)
    text: bool = False


Blocks = Mapping[str, Callable[[], list[Node]]]


class Entry(NamedTuple):
    level: int
    flag: str | None  # the [flag] guarding the line (and its children)
    negated: bool  # [!flag]
    kind: str  # "leaf", "section", "text", "block"
    key: str
    value: str | None


@functools.lru_cache(maxsize=64)
def _compile(template: str) -> tuple[Entry, ...]:
    """The template's lines, split once: the templates are constants, the values change per report."""
    compiled: list[Entry] = []
    for raw in template.splitlines():
        if not raw.strip():
            continue
        line = raw.lstrip(" ")
        level = (len(raw) - len(line)) // 4
        flag, negated = None, False
        if line.startswith("["):
            cond, line = line[1:].split("]", 1)
            line = line.lstrip(" ")
            negated = cond.startswith("!")
            flag = cond[1:] if negated else cond
        if line.startswith("@"):
            compiled.append(Entry(level, flag, negated, "block", line[1:].strip(), None))
        elif line.startswith('"'):
            compiled.append(Entry(level, flag, negated, "text", line[1:], None))
        elif ": " in line or line.endswith(":"):
            key, value = line.split(":", 1)
            compiled.append(Entry(level, flag, negated, "leaf", key, value[1:] if value else ""))
        else:
            compiled.append(Entry(level, flag, negated, "section", line, None))
    return tuple(compiled)


def entries(template: str, flags: Iterable[str] = ()) -> Iterator[tuple[Entry, int]]:
    """The template's entries with their level, lines of unset flags dropped (with their children)."""
    flagset = set(flags)
    skip_below: int | None = None
    for e in _compile(template):
        level = e.level
        if skip_below is not None:
            if level > skip_below:
                continue
            skip_below = None
        if e.flag is not None and (e.flag in flagset) == e.negated:
            skip_below = level
            continue
        yield e, level


def outline(template: str, values: Mapping[str, object], flags: Iterable[str] = (),
            blocks: Blocks | None = None, depth: int = 0) -> list[Node]:
    """The nodes of ``template`` with ``values`` filled in, lines of unset flags dropped (with their children)."""
    nodes: list[Node] = []
    for e, level in entries(template, flags):
        if e.kind == "leaf":
            assert e.value is not None
            nodes.append(Node(depth + level, _fill(e.key, values), _fill(e.value, values)))
        elif e.kind == "section":
            nodes.append(Node(depth + level, _fill(e.key, values), None))
        elif e.kind == "text":
            nodes.append(Node(depth + level, _fill(e.key, values), None, True))
        else:
            assert blocks is not None and e.key in blocks, f"outline block @{e.key} has no function"
            nodes.extend(Node(n.depth + depth + level, n.key, n.value, n.text) for n in blocks[e.key]())
    return nodes


def _fill(piece: str, values: Mapping[str, object]) -> str:
    if "{" not in piece:
        return piece
    return piece.format_map(values)
