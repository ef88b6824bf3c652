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

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Node:
    depth: int
    key: str
    value: str | None  # None: a section (or, with text=True, a bare text line in ``key``)
    text: bool = False


Blocks = Mapping[str, Callable[[], list[Node]]]


def outline(template: str, values: Mapping[str, object], flags: Iterable[str] = (),
            blocks: Blocks | None = None, depth: int = 0) -> list[Node]:
    """The nodes of ``template`` with ``values`` filled in, lines of unset flags dropped (with their children)."""
    flagset = set(flags)
    nodes: list[Node] = []
    skip_below: int | None = None
    for raw in template.splitlines():
        if not raw.strip():
            continue
        stripped = raw.lstrip(" ")
        level = (len(raw) - len(stripped)) // 4
        if skip_below is not None:
            if level > skip_below:
                continue
            skip_below = None
        line = stripped
        if line.startswith("["):
            cond, line = line[1:].split("]", 1)
            line = line.lstrip(" ")
            wanted = cond[1:] not in flagset if cond.startswith("!") else cond in flagset
            if not wanted:
                skip_below = level
                continue
        if line.startswith("@"):
            name = line[1:].strip()
            assert blocks is not None and name in blocks, f"outline block @{name} has no function"
            nodes.extend(Node(n.depth + depth + level, n.key, n.value, n.text) for n in blocks[name]())
            continue
        if line.startswith('"'):
            nodes.append(Node(depth + level, _fill(line[1:], values), None, text=True))
            continue
        if ": " in line or line.endswith(":"):
            key, value = line.split(":", 1)
            nodes.append(Node(depth + level, _fill(key, values), _fill(value[1:] if value else "", values)))
        else:
            nodes.append(Node(depth + level, _fill(line, values), None))
    return nodes


def _fill(piece: str, values: Mapping[str, object]) -> str:
    if "{" not in piece:
        return piece
    return piece.format_map(values)
