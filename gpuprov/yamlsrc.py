"""YAML loading that remembers where each value came from, so errors can say ``file:line:col``.

Mappings load as :class:`LineDict` and sequences as :class:`LineList`: ordinary ``dict``/``list`` with ``line`` and
``col`` (1-based) of the node and, for mappings, ``lines[key] = (line, col)`` of each key. :func:`where` reads
them back and tolerates plain values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import InputError


class LineDict(dict):  # type: ignore[type-arg]
    line: int = 0
    col: int = 0
    lines: dict[Any, tuple[int, int]]


class LineList(list):  # type: ignore[type-arg]
    line: int = 0
    col: int = 0
    lines: dict[int, tuple[int, int]]


class _Loader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML ships no type hints
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> LineDict:
        data = LineDict()
        data.line, data.col = node.start_mark.line + 1, node.start_mark.column + 1
        data.lines = {}
        self.flatten_mapping(node)
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:  # a list or mapping as a key (YAML's "? [a, b]"): PyYAML's own words for it
                raise yaml.constructor.ConstructorError("while constructing a mapping", node.start_mark,
                                                        "found unhashable key", key_node.start_mark) from None
            if key in data.lines:
                raise yaml.MarkedYAMLError("while constructing a mapping", node.start_mark,
                                           f"found duplicate key {key!r}", key_node.start_mark)
            data[key] = self.construct_object(value_node, deep=True)
            data.lines[key] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
        return data

    def construct_sequence(self, node: yaml.SequenceNode, deep: bool = False) -> LineList:
        data = LineList(self.construct_object(child, deep=True) for child in node.value)
        data.line, data.col = node.start_mark.line + 1, node.start_mark.column + 1
        data.lines = {i: (c.start_mark.line + 1, c.start_mark.column + 1) for i, c in enumerate(node.value)}
        return data


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _Loader.construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _Loader.construct_sequence)


def load_yaml_text(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        problem = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        raise InputError(source, line, col, f"YAML syntax error: {problem}") from None
    except yaml.reader.ReaderError as exc:  # a control character: located by its offset in the text
        line = text.count("\n", 0, exc.position) + 1
        col = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        char = exc.character if isinstance(exc.character, str) else chr(exc.character)
        raise InputError(source, line, col, f"YAML does not allow the control character {char!r} here; "
                         "remove it") from None
    except yaml.YAMLError as exc:
        raise InputError(source, 0, 0, f"YAML error: {exc}") from None


def read_source(path: str | Path) -> str:
    """A user's file as text; unreadable or non-UTF-8 content is an :class:`InputError` at the first bad byte."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(str(path), 0, 0, f"cannot read: {exc.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise InputError(str(path), line, col, f"not UTF-8 text (byte 0x{data[exc.start]:02x}); save the file "
                         "as UTF-8") from None


def load_yaml_with_lines(path: str | Path) -> Any:
    """Load a YAML file; a syntax error becomes an :class:`InputError` at the offending line and column."""
    return load_yaml_text(read_source(path), str(path))


def where(node: Any, key: Any = None) -> tuple[int, int]:
    """``(line, col)`` of ``key`` in a loaded mapping/sequence, or of the node itself; ``(0, 0)`` if unknown."""
    lines = getattr(node, "lines", None)
    if key is not None and lines and key in lines:
        line, col = lines[key]
        return int(line), int(col)
    return int(getattr(node, "line", 0)), int(getattr(node, "col", 0))
