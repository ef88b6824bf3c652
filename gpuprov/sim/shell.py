"""The in-process shell of the ``sim`` connection: the POSIX ``sh`` subset gpuprov's own commands use.

Why in process: plan and apply against a simulated host must not fork a process per command — a thousand
hosts' detection has to take seconds — yet every command must print, exit and touch files exactly as on a real
host, so plugins are tested against the same text they meet over SSH. :func:`run_line` is the whole contract::

run_line(host, "nvidia-smi -L | grep -c MIG", stdin="", env={...}) -> Result(stdout, stderr, exit_code)

It behaves like ``bash -c LINE`` on the host: ``stdout``/``stderr`` are what the line printed, ``exit_code``
its status. Every path goes through the host's root (``/etc/x`` -> ``<state>/root/etc/x``, symbolic links
followed the way a chroot follows them). ``env`` is the environment of the login (``None``: a root login's
defaults); the host's ``GPUPROV_SIM_STATE``/``GPUPROV_SIM_ROOT`` are always added, so stand-ins and scripts
find their host.

Supported syntax: lists with ``;``, ``&`` (run in the foreground: there is no job control), ``&&``, ``||``,
newlines; pipelines ``a | b`` and ``! a``; ``{ ...; }`` groups and ``( ... )`` subshells;
``if``/``elif``/``else``, ``for``, ``while``/``until``, ``case``, functions ``f() { ...; }``; redirections
``<``, ``>``, ``>>``, ``>|``, ``N>``, ``N>&M``, ``N>&-``, ``&>``, ``&>>``, ``<<``/``<<-`` here-documents;
single and double quotes and backslashes; ``VAR=value cmd`` prefixes and assignments; ``$VAR``, ``${VAR}``,
``${VAR:-w}``/``=``/``+``/``?``, ``${#VAR}``, ``${VAR#p}``/``##``/``%``/``%%``, ``$?``, ``$#``, ``$@``,
``$1``.., ``$'...'``, ``$(...)``, backquotes, ``$((...))`` (integer arithmetic without assignment), field
splitting on ``IFS``, ``~``, and pathname globbing inside the host root.

Commands, in lookup order: functions; builtins (:data:`BUILTINS` — ``echo printf true false exit test [ cat
mkdir rm rmdir mv cp chmod chown chgrp ln ls touch sha256sum stat head tail grep egrep fgrep cut tr sort uniq
wc tee base64 uname id hostname sleep mktemp readlink realpath basename dirname env printenv timeout nproc``
and the shell's own ``cd pwd export readonly unset set shift read eval . source exec trap wait return break
continue local command type``; ``sh``/``bash``/``dash`` with ``-c`` or ``-s`` run in process too); the
registered stand-ins (:func:`gpuprov.sim.commands.load_all`); then executable files in the host root, found by
path or through ``PATH``. Such a file (a rendered helper script) runs under the REAL interpreter of its ``#!``
line (``/bin/bash`` without one) as a subprocess with ``PATH`` = a directory of shims for the stand-ins (see
:mod:`gpuprov.sim.shims`) + this machine's PATH, so it calls the stand-ins exactly as in the SSH lab. Note
that such a script sees this machine's real file tree, not the host root, for everything it does itself
(``mkdir``, redirections); only what it asks the stand-ins goes to the simulated host. Anything else prints
``bash: line N: NAME: command not found`` and exits 127; a syntax error prints bash's message and exits 2.

Deliberate limits: no job control (``&`` runs in the foreground), no ``select``, arrays, ``[[ ]]``, process
substitution or brace expansion; ``sleep`` is capped at :data:`SLEEP_CAP` seconds; a builtin accepts the
options listed in its docstring and says ``invalid option`` for others. ``chown`` records the owner in
``<state>/owners.json`` (shown by ``stat -c %U``/``ls -l``) instead of changing the file, because the
simulator usually runs as a user who may not own, or may not even have, the host's users; when the root is
``/`` (the lab) it calls the real ``chown``.

Simulated daemons (an MPS control daemon, ...) are records in the machine state, not processes: this module
also keeps that process table (:func:`spawn_daemon`, :func:`kill_daemon`), which ``systemctl`` uses as its
cgroups."""

from __future__ import annotations

import base64
import errno
import fnmatch
import functools
import glob as globmod
import hashlib
import importlib
import json
import os
import re
import shlex
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .host import ROOT_ENV, STATE_ENV, Result, SimHost

__all__ = [
    "BUILTINS",
    "DEFAULT_ENV",
    "HostFS",
    "SLEEP_CAP",
    "STANDARD_BIN_DIRS",
    "daemon_alive",
    "daemons_of_unit",
    "kill_daemon",
    "reap_daemon",
    "run_argv",
    "run_line",
    "spawn_daemon",
    "which",
]

SLEEP_CAP = 0.01  # seconds a ``sleep`` really waits: nothing in the simulator needs time to pass
SCRIPT_TIMEOUT = (
    300.0  # a real-interpreter script running longer than this is killed (exit 124, like timeout)
)
STANDARD_BIN_DIRS = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
DEFAULT_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "USER": "root",
    "LOGNAME": "root",
    "SHELL": "/bin/bash",
}
UNIT_ENV = "GPUPROV_SIM_UNIT"  # set by the systemctl stand-in: the unit (cgroup) a spawned daemon belongs to


# --- syntax tree


@dataclass
class Part:
    """A piece of a word: literal text or an expansion still to do; ``quoted`` parts are never split or
    globbed."""

    kind: str  # lit | param | cmd | arith
    text: str
    quoted: bool


@dataclass
class Word:
    parts: list[Part]
    raw: str = ""  # the source text, for messages (``$x: ambiguous redirect``)

    def plain(self) -> str | None:
        """The text if the word is one unquoted literal (reserved words, names), else None."""
        if len(self.parts) == 1 and self.parts[0].kind == "lit" and not self.parts[0].quoted:
            return self.parts[0].text
        return None


@dataclass
class HereDoc:
    delimiter: str
    strip_tabs: bool
    expand: bool
    body: str = ""


@dataclass
class Redir:
    fd: int | None
    op: str  # < > >> >| <> >& <& &> &>> << <<-
    target: Word | None
    heredoc: HereDoc | None = None


@dataclass
class Simple:
    line: int
    assigns: list[tuple[str, Word]]
    words: list[Word]
    redirs: list[Redir]


@dataclass
class Pipeline:
    commands: list[Any]
    negate: bool


@dataclass
class AndOr:
    first: Any
    rest: list[tuple[str, Any]]


@dataclass
class Seq:
    items: list[Any]


@dataclass
class Group:
    body: Seq
    subshell: bool
    redirs: list[Redir] = field(default_factory=list)


@dataclass
class If:
    branches: list[tuple[Seq, Seq]]
    orelse: Seq | None
    redirs: list[Redir] = field(default_factory=list)


@dataclass
class For:
    var: str
    words: list[Word] | None
    body: Seq
    redirs: list[Redir] = field(default_factory=list)


@dataclass
class While:
    cond: Seq
    body: Seq
    until: bool
    redirs: list[Redir] = field(default_factory=list)


@dataclass
class Case:
    word: Word
    items: list[tuple[list[Word], Seq]]
    redirs: list[Redir] = field(default_factory=list)


@dataclass
class FuncDef:
    name: str
    body: Any


# --- lexer


class ParseError(Exception):
    """A syntax error, reported the way ``bash -c`` reports it (exit status 2)."""

    def __init__(self, message: str, line: int, source_line: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.source_line = source_line

    def render(self) -> str:
        text = f"bash: -c: line {self.line}: {self.message}\n"
        if self.source_line is not None:
            text += f"bash: -c: line {self.line}: `{self.source_line}'\n"
        return text


@dataclass
class Tok:
    kind: str  # word | op | redir | nl | eof
    value: Any
    line: int


_META = frozenset(" \t\n;&|()<>")
_OPS = (
    "&&",
    "||",
    ";;",
    "&>>",
    "&>",
    ">>",
    "<<-",
    "<<",
    ">&",
    "<&",
    "<>",
    ">|",
    ";",
    "&",
    "|",
    "(",
    ")",
    "<",
    ">",
)
_REDIR_OPS = frozenset({"&>>", "&>", ">>", "<<-", "<<", ">&", "<&", "<>", ">|", "<", ">"})
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_IO_NUMBER = re.compile(r"\d+(?=[<>])")
_ASSIGN = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=")


class _Lexer:
    def __init__(self, src: str) -> None:
        self.s = src
        self.i = 0
        self.line = 1
        self.pending: list[HereDoc] = []
        text = src if src.endswith("\n") else src + "\n"
        self.eof_line = text.count("\n") + 1

    def source_line(self, line: int) -> str:
        lines = self.s.split("\n")
        return lines[line - 1] if 0 < line <= len(lines) else ""

    def token(self) -> Tok:
        s, n = self.s, len(self.s)
        while True:
            while self.i < n and s[self.i] in " \t":
                self.i += 1
            if s.startswith("\\\n", self.i):
                self.i += 2
                self.line += 1
                continue
            if self.i < n and s[self.i] == "#":
                end = s.find("\n", self.i)
                self.i = n if end < 0 else end
            break
        if self.i >= n:
            return Tok("eof", "", self.eof_line)
        c = s[self.i]
        if c == "\n":
            tok = Tok("nl", "newline", self.line)
            self.i += 1
            self.line += 1
            if self.pending:
                self._read_heredocs()
            return tok
        m = _IO_NUMBER.match(s, self.i)
        fd: int | None = None
        start = self.i
        if m:
            fd = int(m.group())
            self.i = m.end()
        for op in _OPS:
            if s.startswith(op, self.i):
                if fd is not None and op not in _REDIR_OPS:
                    break
                self.i += len(op)
                if op in _REDIR_OPS:
                    return Tok("redir", (fd, op), self.line)
                return Tok("op", op, self.line)
        self.i = start
        return Tok("word", self._word(), self.line)

    def _read_heredocs(self) -> None:
        s = self.s
        for doc in self.pending:
            lines: list[str] = []
            while self.i < len(s):
                end = s.find("\n", self.i)
                raw = s[self.i :] if end < 0 else s[self.i : end]
                self.i = len(s) if end < 0 else end + 1
                self.line += 1
                text = raw.lstrip("\t") if doc.strip_tabs else raw
                if text == doc.delimiter:
                    break
                lines.append(text + "\n")
            doc.body = "".join(lines)
        self.pending = []

    # -- words

    def _word(self) -> Word:
        s, n = self.s, len(self.s)
        start = self.i
        parts: list[Part] = []
        buf: list[str] = []

        def flush() -> None:
            if buf:
                parts.append(Part("lit", "".join(buf), False))
                buf.clear()

        while self.i < n:
            c = s[self.i]
            if c in _META:
                break
            if c == "\\":
                if self.i + 1 >= n:
                    buf.append("\\")
                    self.i += 1
                elif s[self.i + 1] == "\n":
                    self.i += 2
                    self.line += 1
                else:
                    flush()
                    parts.append(Part("lit", s[self.i + 1], True))
                    self.i += 2
            elif c == "'":
                end = s.find("'", self.i + 1)
                if end < 0:
                    raise ParseError("unexpected EOF while looking for matching `''", self.line)
                flush()
                text = s[self.i + 1 : end]
                parts.append(Part("lit", text, True))
                self.line += text.count("\n")
                self.i = end + 1
            elif c == '"':
                flush()
                line = self.line
                self.i += 1
                parts.extend(self._dquoted(line))
            elif c == "$":
                flush()
                parts.append(self._dollar(quoted=False))
            elif c == "`":
                flush()
                parts.append(self._backquote(quoted=False))
            else:
                buf.append(c)
                self.i += 1
        flush()
        return Word(parts, s[start : self.i])

    def _dquoted(self, line: int, *, heredoc: bool = False) -> list[Part]:
        """Read up to the closing quote (or, for a here-document body, to the end) with double-quote rules."""
        s, n = self.s, len(self.s)
        parts: list[Part] = [Part("lit", "", True)]  # "" is an empty field, not none
        buf: list[str] = []

        def flush() -> None:
            if buf:
                parts.append(Part("lit", "".join(buf), True))
                buf.clear()

        while True:
            if self.i >= n:
                if heredoc:
                    break
                raise ParseError("unexpected EOF while looking for matching `\"'", line)
            c = s[self.i]
            if c == '"' and not heredoc:
                self.i += 1
                break
            if c == "\\" and self.i + 1 < n and s[self.i + 1] in ('$`"\\\n' if not heredoc else "$`\\\n"):
                if s[self.i + 1] == "\n":
                    self.line += 1
                else:
                    buf.append(s[self.i + 1])
                self.i += 2
            elif c == "$":
                flush()
                parts.append(self._dollar(quoted=True))
            elif c == "`":
                flush()
                parts.append(self._backquote(quoted=True))
            else:
                if c == "\n":
                    self.line += 1
                buf.append(c)
                self.i += 1
        flush()
        return parts

    def _dollar(self, *, quoted: bool) -> Part:
        s = self.s
        self.i += 1  # the $
        if s.startswith("'", self.i) and not quoted:  # $'...': ANSI-C quoting
            j = self.i + 1
            while j < len(s) and s[j] != "'":
                j += 2 if s[j] == "\\" else 1
            if j >= len(s):
                raise ParseError("unexpected EOF while looking for matching `''", self.line)
            text, _ = _unescape(s[self.i + 1 : j])
            self.line += s.count("\n", self.i, j)
            self.i = j + 1
            return Part("lit", text, True)
        if s.startswith("((", self.i):
            end = self._balanced(self.i + 1, "(", ")")
            if not s.startswith(")", end + 1):
                raise ParseError("unexpected EOF while looking for matching `)'", self.line)
            text = s[self.i + 2 : end]
            self.i = end + 2
            return Part("arith", text, quoted)
        if s.startswith("(", self.i):
            end = self._balanced(self.i, "(", ")")
            text = s[self.i + 1 : end]
            self.i = end + 1
            return Part("cmd", text, quoted)
        if s.startswith("{", self.i):
            end = self._balanced(self.i, "{", "}")
            text = s[self.i + 1 : end]
            self.i = end + 1
            return Part("param", "{" + text, quoted)
        m = _NAME.match(s, self.i)
        if m:
            self.i = m.end()
            return Part("param", m.group(), quoted)
        if self.i < len(s) and s[self.i] in "?$#@*!-0123456789":
            self.i += 1
            return Part("param", s[self.i - 1], quoted)
        return Part("lit", "$", quoted)

    def _backquote(self, *, quoted: bool) -> Part:
        s = self.s
        j = self.i + 1
        buf: list[str] = []
        while True:
            if j >= len(s):
                raise ParseError("unexpected EOF while looking for matching ``'", self.line)
            if s[j] == "\\" and j + 1 < len(s) and s[j + 1] in "$`\\":
                buf.append(s[j + 1])
                j += 2
                continue
            if s[j] == "`":
                break
            buf.append(s[j])
            j += 1
        self.line += s.count("\n", self.i, j)
        self.i = j + 1
        return Part("cmd", "".join(buf), quoted)

    def _balanced(self, i: int, open_: str, close: str) -> int:
        """Index of the ``close`` matching the ``open_`` at ``i``, skipping quotes and escapes."""
        s = self.s
        depth = 0
        j = i
        while j < len(s):
            c = s[j]
            if c == "\\":
                j += 2
                continue
            if c == "'" and open_ == "(":
                k = s.find("'", j + 1)
                if k < 0:
                    break
                j = k + 1
                continue
            if c == '"':
                k = j + 1
                while k < len(s) and s[k] != '"':
                    k += 2 if s[k] == "\\" else 1
                j = k + 1
                continue
            if c == open_:
                depth += 1
            elif c == close:
                depth -= 1
                if depth == 0:
                    self.line += s.count("\n", i, j)
                    return j
            j += 1
        raise ParseError(f"unexpected EOF while looking for matching `{close}'", self.line)


def _parse_word(text: str) -> Word:
    """Lex ``text`` as one word (used for ``${x:-word}`` operands)."""
    lx = _Lexer(text)
    parts: list[Part] = []
    while lx.i < len(text):
        c = text[lx.i]
        if c in _META:
            parts.append(Part("lit", c, False))
            lx.i += 1
        else:
            parts.extend(lx._word().parts)
    return Word(parts, text)


def _heredoc_parts(body: str) -> list[Part]:
    return _Lexer(body)._dquoted(1, heredoc=True)


# --- parser


_RESERVED = frozenset(
    {
        "if",
        "then",
        "else",
        "elif",
        "fi",
        "do",
        "done",
        "case",
        "esac",
        "while",
        "until",
        "for",
        "{",
        "}",
        "!",
        "in",
    }
)


class _Parser:
    def __init__(self, src: str) -> None:
        self.lx = _Lexer(src)
        self.buf: list[Tok] = []

    def peek(self, k: int = 0) -> Tok:
        while len(self.buf) <= k:
            self.buf.append(self.lx.token())
        return self.buf[k]

    def take(self) -> Tok:
        tok = self.peek()
        self.buf.pop(0)
        return tok

    def unexpected(self, tok: Tok) -> ParseError:
        if tok.kind == "eof":
            return ParseError("syntax error: unexpected end of file", tok.line)
        text = (
            tok.value if tok.kind in ("op", "nl") else tok.value[1] if tok.kind == "redir" else tok.value.raw
        )
        return ParseError(
            f"syntax error near unexpected token `{text}'", tok.line, self.lx.source_line(tok.line)
        )

    def reserved(self, tok: Tok, words: set[str] | frozenset[str] = _RESERVED) -> str | None:
        if tok.kind == "word":
            text: str = tok.value.plain()
            if text in words:
                return text
        return None

    def skip_nl(self) -> None:
        while self.peek().kind == "nl":
            self.take()

    def expect(self, word: str) -> None:
        tok = self.take()
        if self.reserved(tok, {word}) is None and not (tok.kind == "op" and tok.value == word):
            raise self.unexpected(tok)

    # grammar

    def next_command(self) -> Any | None:
        """The next complete command (one line's list), or None: bash runs each one before parsing on."""
        self.skip_nl()
        if self.peek().kind == "eof":
            return None
        items = [self.and_or()]
        while True:
            tok = self.peek()
            if tok.kind == "op" and tok.value in (";", "&"):
                self.take()
                nxt = self.peek()
                if nxt.kind in ("nl", "eof"):
                    break
                items.append(self.and_or())
                continue
            break
        tok = self.peek()
        if tok.kind == "nl":
            self.take()
        elif tok.kind != "eof":
            raise self.unexpected(tok)
        return items[0] if len(items) == 1 else Seq(items)

    def compound_list(self, stop: frozenset[str] | set[str]) -> Seq:
        items: list[Any] = []
        while True:
            self.skip_nl()
            tok = self.peek()
            if (
                tok.kind == "eof"
                or (tok.kind == "op" and tok.value in (")", ";;"))
                or self.reserved(tok, stop)
            ):
                break
            items.append(self.and_or())
            tok = self.peek()
            if tok.kind == "op" and tok.value in (";", "&"):
                self.take()
                continue
            if tok.kind == "nl":
                continue
            break
        if not items:
            raise self.unexpected(self.peek())
        return Seq(items)

    def and_or(self) -> Any:
        first = self.pipeline()
        rest: list[tuple[str, Any]] = []
        while True:
            tok = self.peek()
            if tok.kind == "op" and tok.value in ("&&", "||"):
                self.take()
                self.skip_nl()
                rest.append((tok.value, self.pipeline()))
            else:
                break
        return AndOr(first, rest) if rest else first

    def pipeline(self) -> Any:
        negate = False
        if self.reserved(self.peek(), {"!"}):
            self.take()
            negate = True
        commands = [self.command()]
        while self.peek().kind == "op" and self.peek().value == "|":
            self.take()
            self.skip_nl()
            commands.append(self.command())
        if negate or len(commands) > 1:
            return Pipeline(commands, negate)
        return commands[0]

    def command(self) -> Any:
        tok = self.peek()
        if tok.kind == "op" and tok.value == "(":
            self.take()
            body = self.compound_list(set())
            self.expect(")")
            return Group(body, True, self.redirects())
        word = self.reserved(tok)
        if word == "{":
            self.take()
            body = self.compound_list({"}"})
            self.expect("}")
            return Group(body, False, self.redirects())
        if word == "if":
            return self.if_clause()
        if word in ("while", "until"):
            self.take()
            cond = self.compound_list({"do"})
            self.expect("do")
            body = self.compound_list({"done"})
            self.expect("done")
            return While(cond, body, word == "until", self.redirects())
        if word == "for":
            return self.for_clause()
        if word == "case":
            return self.case_clause()
        if word is not None and word not in ("!",):
            raise self.unexpected(tok)
        if tok.kind == "word":
            name = tok.value.plain()
            nxt = self.peek(1)
            if name and _NAME.fullmatch(name) and nxt.kind == "op" and nxt.value == "(":
                self.take()
                self.take()
                self.expect(")")
                self.skip_nl()
                return FuncDef(name, self.command())
        if tok.kind in ("word", "redir"):
            return self.simple()
        raise self.unexpected(tok)

    def if_clause(self) -> If:
        self.take()
        branches: list[tuple[Seq, Seq]] = []
        orelse: Seq | None = None
        while True:
            cond = self.compound_list({"then"})
            self.expect("then")
            body = self.compound_list({"elif", "else", "fi"})
            branches.append((cond, body))
            tok = self.take()
            kind = self.reserved(tok, {"elif", "else", "fi"})
            if kind == "elif":
                continue
            if kind == "else":
                orelse = self.compound_list({"fi"})
                self.expect("fi")
            elif kind is None:
                raise self.unexpected(tok)
            break
        return If(branches, orelse, self.redirects())

    def for_clause(self) -> For:
        self.take()
        tok = self.take()
        name = tok.value.plain() if tok.kind == "word" else None
        if not name or not _NAME.fullmatch(name):
            raise self.unexpected(tok)
        words: list[Word] | None = None
        self.skip_nl()
        if self.reserved(self.peek(), {"in"}):
            self.take()
            words = []
            while self.peek().kind == "word":
                words.append(self.take().value)
        tok = self.peek()
        if tok.kind == "op" and tok.value == ";":
            self.take()
        self.skip_nl()
        self.expect("do")
        body = self.compound_list({"done"})
        self.expect("done")
        return For(name, words, body, self.redirects())

    def case_clause(self) -> Case:
        self.take()
        tok = self.take()
        if tok.kind != "word":
            raise self.unexpected(tok)
        subject = tok.value
        self.skip_nl()
        self.expect("in")
        items: list[tuple[list[Word], Seq]] = []
        while True:
            self.skip_nl()
            tok = self.peek()
            if self.reserved(tok, {"esac"}):
                self.take()
                break
            if tok.kind == "op" and tok.value == "(":
                self.take()
            patterns: list[Word] = []
            while True:
                tok = self.take()
                if tok.kind != "word":
                    raise self.unexpected(tok)
                patterns.append(tok.value)
                tok = self.take()
                if tok.kind == "op" and tok.value == "|":
                    continue
                if tok.kind == "op" and tok.value == ")":
                    break
                raise self.unexpected(tok)
            self.skip_nl()
            tok = self.peek()
            if (tok.kind == "op" and tok.value == ";;") or self.reserved(tok, {"esac"}):
                body = Seq([])
            else:
                body = self.compound_list({"esac"})
            items.append((patterns, body))
            tok = self.peek()
            if tok.kind == "op" and tok.value == ";;":
                self.take()
            elif not self.reserved(tok, {"esac"}):
                raise self.unexpected(tok)
        return Case(subject, items, self.redirects())

    def redirects(self) -> list[Redir]:
        redirs: list[Redir] = []
        while self.peek().kind == "redir":
            redirs.append(self.redirect())
        return redirs

    def redirect(self) -> Redir:
        fd, op = self.take().value
        tok = self.take()
        if tok.kind != "word":
            raise self.unexpected(tok)
        if op in ("<<", "<<-"):
            word: Word = tok.value
            delimiter = "".join(p.text if p.kind == "lit" else "$" + p.text for p in word.parts)
            doc = HereDoc(delimiter, op == "<<-", not any(p.quoted for p in word.parts))
            self.lx.pending.append(doc)
            return Redir(fd, op, None, doc)
        return Redir(fd, op, tok.value)

    def simple(self) -> Simple:
        line = self.peek().line
        assigns: list[tuple[str, Word]] = []
        words: list[Word] = []
        redirs: list[Redir] = []
        while True:
            tok = self.peek()
            if tok.kind == "redir":
                redirs.append(self.redirect())
            elif tok.kind == "word":
                self.take()
                word: Word = tok.value
                first = word.parts[0] if word.parts else None
                m = _ASSIGN.match(first.text) if first and first.kind == "lit" and not first.quoted else None
                if not words and m and first is not None:
                    rest = first.text[m.end() :]
                    value = Word(([Part("lit", rest, False)] if rest else []) + word.parts[1:], word.raw)
                    assigns.append((m.group(1), value))
                else:
                    words.append(word)
            else:
                break
        if not (assigns or words or redirs):
            raise self.unexpected(self.peek())
        return Simple(line, assigns, words, redirs)


@functools.lru_cache(maxsize=1024)
def _parsed(src: str) -> tuple[tuple[Any, ...], ParseError | None]:
    """The commands of ``src`` in order, and the syntax error that ends them (if any).

    Parsing depends on the text alone and the nodes are never changed by running them, so a script is parsed
    once however often it runs: the detect probes are the same text on every host of a rack."""
    parser = _Parser(src)
    nodes: list[Any] = []
    while True:
        try:
            node = parser.next_command()
        except ParseError as exc:
            return tuple(nodes), exc
        if node is None:
            return tuple(nodes), None
        nodes.append(node)


# --- the host's files


class HostFS:
    """Maps the host's absolute paths into its root, following symbolic links the way a chroot follows them.

    Why not ``host.path``: a link made on the host (``ln -s /usr/lib/x /etc/y``) holds a host path; following
    it on this machine would leave the root. Links are stored exactly as the host command made them and
    resolved here, so ``readlink`` shows what a real host shows."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.identity = str(root) == "/"
        self._root = str(root).rstrip("/")

    def local(self, path: str, *, follow: bool = True) -> Path:
        """This machine's path for the host's absolute ``path``; ``follow`` decides for the last component."""
        if self.identity:
            return Path(path)
        # Plain strings, not pathlib: this runs for every file a command touches, one lstat per component.
        root = self._root
        todo = [p for p in reversed(path.split("/")) if p and p != "."]
        done: list[str] = []
        here = root
        hops = 0
        while todo:
            comp = todo.pop()
            if comp == "..":
                if done:
                    done.pop()
                    here = root + "".join("/" + d for d in done)
                continue
            candidate = f"{here}/{comp}"
            if (todo or follow) and os.path.islink(candidate):
                hops += 1
                if hops > 40:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
                target = os.readlink(candidate)
                if target.startswith("/"):
                    done, here = [], root
                todo.extend(p for p in reversed(target.split("/")) if p and p != ".")
                continue
            done.append(comp)
            here = candidate
        return Path(here)

    def host_path(self, local: Path | str) -> str:
        """The host path of a path inside the root (inverse of :meth:`local` for resolved paths)."""
        if self.identity:
            return str(local)
        rel = os.path.relpath(local, self.root)
        return "/" if rel == "." else "/" + rel

    def canonical(self, path: str) -> str:
        return self.host_path(self.local(path)) if not self.identity else os.path.realpath(path)


def _abspath(path: str, cwd: str) -> str:
    if path.startswith("/"):
        return path
    return (cwd.rstrip("/") + "/" + path) if path else cwd


def _strerror(exc: OSError) -> str:
    return os.strerror(exc.errno) if exc.errno else str(exc)


def _read_text(path: Path) -> str:
    """Read a host file as text; a FIFO reads as empty (nothing writes into simulated pipes)."""
    st = os.stat(path)
    if stat.S_ISFIFO(st.st_mode) or stat.S_ISSOCK(st.st_mode):
        return ""
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        return f.read()


# --- I/O plumbing


class _Input:
    """A command's standard input: text consumed as commands read it (``read`` takes one line)."""

    def __init__(self, text: str = "") -> None:
        self.text = text
        self.pos = 0

    def rest(self) -> str:
        return self.text[self.pos :]

    def read_all(self) -> str:
        data = self.text[self.pos :]
        self.pos = len(self.text)
        return data

    def readline(self) -> str:
        end = self.text.find("\n", self.pos)
        end = len(self.text) if end < 0 else end + 1
        line = self.text[self.pos : end]
        self.pos = end
        return line


class _Sink:
    def write(self, text: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class _Buffer(_Sink):
    def __init__(self) -> None:
        self.chunks: list[str] = []

    def write(self, text: str) -> None:
        self.chunks.append(text)

    def text(self) -> str:
        return "".join(self.chunks)


class _Null(_Sink):
    def write(self, text: str) -> None:
        pass


class _File(_Sink):
    def __init__(self, path: Path, append: bool) -> None:
        self.f = open(path, "a" if append else "w", encoding="utf-8", errors="surrogateescape")  # noqa: SIM115

    def write(self, text: str) -> None:
        self.f.write(text)

    def close(self) -> None:
        self.f.close()


@dataclass
class _IO:
    stdin: _Input
    out: _Sink
    err: _Sink
    extra: dict[int, _Sink] = field(default_factory=dict)


class _Exit(Exception):  # noqa: N818 - control flow, not an error
    def __init__(self, status: int) -> None:
        self.status = status


class _Return(Exception):  # noqa: N818
    def __init__(self, status: int) -> None:
        self.status = status


class _Loop(Exception):  # noqa: N818
    def __init__(self, kind: str, levels: int) -> None:
        self.kind = kind
        self.levels = levels


class _Usage(Exception):  # noqa: N818
    """A builtin's usage error: message already formatted, exit status given."""

    def __init__(self, message: str, status: int = 2) -> None:
        self.message = message
        self.status = status


@dataclass
class _Frame:
    """What a subshell copies: variables, exports, functions, the working directory, options, traps."""

    vars: dict[str, str]
    exported: set[str]
    cwd: str = "/"
    positional: list[str] = field(default_factory=list)
    options: set[str] = field(default_factory=set)
    funcs: dict[str, Any] = field(default_factory=dict)
    traps: dict[str, str] = field(default_factory=dict)
    status: int = 0
    arg0: str = "bash"

    def copy(self) -> _Frame:
        return _Frame(
            dict(self.vars),
            set(self.exported),
            self.cwd,
            list(self.positional),
            set(self.options),
            dict(self.funcs),
            dict(self.traps),
            self.status,
            self.arg0,
        )

    def environ(self) -> dict[str, str]:
        return {k: v for k, v in self.vars.items() if k in self.exported}


# --- the shell


Builtin = Callable[["_Shell", list[str], _IO], int]
BUILTINS: dict[str, Builtin] = {}
_SHELL_ONLY: set[str] = set()  # builtins with no binary of the same name (cd, export, ...): not found by path


def _builtin(*names: str, shell_only: bool = False) -> Callable[[Builtin], Builtin]:
    def register(func: Builtin) -> Builtin:
        for name in names:
            BUILTINS[name] = func
            if shell_only:
                _SHELL_ONLY.add(name)
        return func

    return register


def _standins() -> Mapping[str, Any]:
    from .commands import load_all

    return load_all()


class _Shell:
    """One shell process on the host: a frame of variables plus the host's files and stand-ins."""

    def __init__(self, host: SimHost, frame: _Frame, *, fs: HostFS | None = None) -> None:
        self.host = host
        self.fs = fs or HostFS(host.root)
        self.frame = frame
        self.line = 1
        self.cond_depth = 0  # > 0 while running a condition: ``set -e`` does not apply there
        self.locals: list[dict[str, str | None]] = []  # per function call: the values ``local`` shadowed
        self.subst_status: int | None = None

    # -- messages

    def error(self, io: _IO, message: str) -> None:
        io.err.write(f"bash: line {self.line}: {message}\n")

    # -- running source

    def run_source(self, src: str, io: _IO) -> int:
        nodes, error = _parsed(src)
        for node in nodes:
            self.run_errexit(node, io)
        if error is not None:  # reached only after the commands before it ran, as in bash
            io.err.write(error.render())
            raise _Exit(2)
        return self.frame.status

    def run_errexit(self, node: Any, io: _IO) -> int:
        status = self.execute(node, io)
        self.frame.status = status
        if status != 0 and "e" in self.frame.options and self.cond_depth == 0 and not _exempt(node):
            raise _Exit(status)
        return status

    def execute(self, node: Any, io: _IO) -> int:
        if isinstance(node, Simple):
            return self.simple(node, io)
        if isinstance(node, Seq):
            status = 0
            for item in node.items:
                status = self.run_errexit(item, io)
            return status
        if isinstance(node, AndOr):
            return self.and_or(node, io)
        if isinstance(node, Pipeline):
            return self.pipeline(node, io)
        if isinstance(node, FuncDef):
            self.frame.funcs[node.name] = node.body
            return 0
        return self.compound(node, io)

    def and_or(self, node: AndOr, io: _IO) -> int:
        self.cond_depth += 1
        try:
            status = self.execute(node.first, io)
        finally:
            self.cond_depth -= 1
        for index, (op, item) in enumerate(node.rest):
            self.frame.status = status
            if (op == "&&") != (status == 0):
                continue
            last = index == len(node.rest) - 1
            if not last:
                self.cond_depth += 1
            try:
                status = self.execute(item, io)
            finally:
                if not last:
                    self.cond_depth -= 1
        return status

    def pipeline(self, node: Pipeline, io: _IO) -> int:
        if node.negate:
            self.cond_depth += 1
        try:
            stdin = io.stdin
            statuses: list[int] = []
            for index, command in enumerate(node.commands):
                last = index == len(node.commands) - 1
                out: _Sink = io.out if last else _Buffer()
                sub_io = _IO(stdin, out, io.err, dict(io.extra))
                if len(node.commands) > 1:
                    # each part of a pipeline runs in a subshell: variables it sets do not survive
                    saved = self.frame
                    self.frame = saved.copy()
                    try:
                        statuses.append(self.execute(command, sub_io))
                    except _Exit as exc:
                        statuses.append(exc.status)
                    finally:
                        self.frame = saved
                else:
                    statuses.append(self.execute(command, sub_io))
                if not last:
                    assert isinstance(out, _Buffer)
                    stdin = _Input(out.text())
            status = statuses[-1]
            if "pipefail" in self.frame.options:
                status = next((s for s in reversed(statuses) if s != 0), 0)
        finally:
            if node.negate:
                self.cond_depth -= 1
        return int(not status) if node.negate else status

    def compound(self, node: Any, io: _IO) -> int:
        opened: list[_Sink] = []
        try:
            io = self.redirect(node.redirs, io, opened)
        except _Usage as exc:
            io.err.write(exc.message)
            return exc.status
        try:
            if isinstance(node, Group):
                if not node.subshell:
                    return self.execute(node.body, io)
                saved = self.frame
                self.frame = saved.copy()
                try:
                    return self.execute(node.body, io)
                except _Exit as exc:
                    return exc.status
                finally:
                    self.frame = saved
            if isinstance(node, If):
                for cond, body in node.branches:
                    if self.condition(cond, io) == 0:
                        return self.execute(body, io)
                return self.execute(node.orelse, io) if node.orelse else 0
            if isinstance(node, While):
                return self.loop_while(node, io)
            if isinstance(node, For):
                return self.loop_for(node, io)
            if isinstance(node, Case):
                return self.case(node, io)
            raise TypeError(node)
        finally:
            for sink in opened:
                sink.close()

    def condition(self, cond: Seq, io: _IO) -> int:
        self.cond_depth += 1
        try:
            status = self.execute(cond, io)
        finally:
            self.cond_depth -= 1
        self.frame.status = status
        return status

    def loop_while(self, node: While, io: _IO) -> int:
        status = 0
        while True:
            ok = self.condition(node.cond, io) == 0
            if ok == node.until:
                return status
            try:
                status = self.execute(node.body, io)
            except _Loop as exc:
                if exc.levels > 1:
                    raise _Loop(exc.kind, exc.levels - 1) from None
                if exc.kind == "break":
                    return 0
                status = 0

    def loop_for(self, node: For, io: _IO) -> int:
        if node.words is None:
            values = list(self.frame.positional)
        else:
            values = [v for w in node.words for v in self.expand(w, io)]
        status = 0
        for value in values:
            self.frame.vars[node.var] = value
            try:
                status = self.execute(node.body, io)
            except _Loop as exc:
                if exc.levels > 1:
                    raise _Loop(exc.kind, exc.levels - 1) from None
                if exc.kind == "break":
                    return 0
                status = 0
        return status

    def case(self, node: Case, io: _IO) -> int:
        subject = "".join(self.expand(node.word, io, split=False, glob=False))
        for patterns, body in node.items:
            for pattern in patterns:
                if fnmatch.fnmatchcase(subject, self.pattern(pattern, io)):
                    return self.execute(body, io) if body.items else 0
        return 0

    # -- simple commands

    def simple(self, node: Simple, io: _IO) -> int:
        self.line = node.line
        self.subst_status = None
        argv: list[str] = []
        for word in node.words:
            argv.extend(self.expand(word, io))
        assigns = [
            (name, "".join(self.expand(value, io, split=False, glob=False, tilde=True)))
            for name, value in node.assigns
        ]
        opened: list[_Sink] = []
        try:
            if not argv:
                for name, value in assigns:
                    self.frame.vars[name] = value
                    if "a" in self.frame.options:
                        self.frame.exported.add(name)
                try:
                    self.redirect(node.redirs, io, opened)
                except _Usage as exc:
                    io.err.write(exc.message)
                    return exc.status
                return self.subst_status or 0
            try:
                io = self.redirect(node.redirs, io, opened)
            except _Usage as exc:
                io.err.write(exc.message)
                return exc.status
            return self.dispatch(argv, dict(assigns), io)
        finally:
            for sink in opened:
                sink.close()

    def dispatch(self, argv: list[str], assigns: dict[str, str], io: _IO, *, functions: bool = True) -> int:
        """Run one command: function, builtin, stand-in, or a file of the root (by path or ``PATH``)."""
        name = argv[0]
        if functions and name in self.frame.funcs:
            return self.call_function(name, argv, assigns, io)
        builtin = BUILTINS.get(name)
        if builtin is not None:
            return self.run_builtin(builtin, argv, assigns, io)
        standin = _standins().get(name)
        if standin is not None:
            env = self.frame.environ()
            env.update(assigns)
            return self.run_standin(standin, argv, env, io)
        path = _abspath(name, self.frame.cwd) if "/" in name else self.search_path(name, assigns.get("PATH"))
        if path is not None:
            return self.exec_path(path, argv, assigns, io, shown=name)
        self.error(io, f"{name}: command not found")
        return 127

    def run_builtin(self, builtin: Builtin, argv: list[str], assigns: dict[str, str], io: _IO) -> int:
        """Prefix assignments hold (exported) for the builtin only, except for the special builtins."""
        keep = argv[0] in ("export", "readonly", "eval", ".", "source", "set", "unset", "exec", "local")
        saved = {k: (self.frame.vars.get(k), k in self.frame.exported) for k in assigns}
        self.frame.vars.update(assigns)
        self.frame.exported.update(assigns)
        try:
            return builtin(self, argv, io)
        except _Usage as exc:
            io.err.write(exc.message)
            return exc.status
        finally:
            if not keep:
                for key, (old, exported) in saved.items():
                    if old is None:
                        self.frame.vars.pop(key, None)
                    else:
                        self.frame.vars[key] = old
                    if not exported:
                        self.frame.exported.discard(key)

    def call_function(self, name: str, argv: list[str], assigns: dict[str, str], io: _IO) -> int:
        saved_pos = self.frame.positional
        saved_vars = {k: self.frame.vars.get(k) for k in assigns}
        self.frame.positional = argv[1:]
        self.frame.vars.update(assigns)
        self.locals.append({})
        try:
            return self.execute(self.frame.funcs[name], io)
        except _Return as exc:
            return exc.status
        finally:
            self.frame.positional = saved_pos
            # ``local`` variables and prefix assignments end with the call
            for key, old in {**self.locals.pop(), **saved_vars}.items():
                if old is None:
                    self.frame.vars.pop(key, None)
                else:
                    self.frame.vars[key] = old

    def run_standin(self, func: Any, argv: list[str], env: dict[str, str], io: _IO) -> int:
        env.setdefault(STATE_ENV, str(self.host.state_dir))
        env.setdefault(ROOT_ENV, str(self.host.root))
        reads = getattr(func, "reads_stdin", None)
        stdin = io.stdin.read_all() if reads is not None and reads(argv) else io.stdin.rest()
        result = func(self.host, list(argv), stdin, env)
        io.out.write(result.stdout)
        io.err.write(result.stderr)
        return int(result.exit_code)

    def search_path(self, name: str, path: str | None = None) -> str | None:
        """The first executable ``name`` of the root on ``PATH`` (a prefix assignment's PATH when given)."""
        path = path if path is not None else self.frame.vars.get("PATH", DEFAULT_ENV["PATH"])
        for directory in path.split(":"):
            if not directory.startswith("/"):
                continue
            candidate = directory.rstrip("/") + "/" + name
            try:
                local = self.fs.local(candidate)
            except OSError:
                continue
            if local.is_file() and os.access(local, os.X_OK):
                return candidate
        return None

    def exec_path(
        self,
        path: str,
        argv: list[str],
        assigns: dict[str, str],
        io: _IO,
        *,
        shown: str,
        timeout: float | None = None,
    ) -> int:
        """Run the host's executable ``path`` (a script in the root) or the command a standard bin path names.
        """
        try:
            local = self.fs.local(path)
        except OSError as exc:
            self.error(io, f"{shown}: {_strerror(exc)}")
            return 126
        if not os.path.lexists(local):
            virtual = _virtual_command(path)
            if virtual is not None:
                return self.dispatch([virtual, *argv[1:]], assigns, io, functions=False)
            self.error(io, f"{shown}: No such file or directory")
            return 127
        if local.is_dir():
            self.error(io, f"{shown}: Is a directory")
            return 126
        if not os.access(local, os.X_OK):
            self.error(io, f"{shown}: Permission denied")
            return 126
        env = self.frame.environ()
        env.update(assigns)
        return self.run_real(local, argv, env, io, timeout=timeout)

    def run_real(
        self,
        local: Path,
        argv: list[str],
        env: dict[str, str],
        io: _IO,
        *,
        interpreter: list[str] | None = None,
        timeout: float | None = None,
    ) -> int:
        """Run a file of the root as a real subprocess with the stand-ins' shims first on PATH."""
        command = (interpreter or _interpreter(local)) + [str(local), *argv[1:]]
        child_env = dict(env)
        child_env[STATE_ENV] = str(self.host.state_dir)
        child_env[ROOT_ENV] = str(self.host.root)
        child_env["PATH"] = f"{_shim_dir(self.host)}:{os.environ.get('PATH', '/usr/bin:/bin')}"
        cwd_local = self.fs.local(self.frame.cwd)
        same = io.out is io.err
        try:
            proc = subprocess.run(
                command,
                input=io.stdin.read_all().encode("utf-8", "surrogateescape"),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT if same else subprocess.PIPE,
                env=child_env,
                cwd=cwd_local if cwd_local.is_dir() else None,
                timeout=timeout or SCRIPT_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            io.out.write((exc.stdout or b"").decode("utf-8", "surrogateescape"))
            return 124
        except OSError as exc:
            self.error(io, f"{argv[0]}: {_strerror(exc)}")
            return 126
        io.out.write(proc.stdout.decode("utf-8", "surrogateescape"))
        if not same and proc.stderr:
            io.err.write(proc.stderr.decode("utf-8", "surrogateescape"))
        return proc.returncode if proc.returncode >= 0 else 128 - proc.returncode

    # -- redirections

    def redirect(self, redirs: list[Redir], io: _IO, opened: list[_Sink]) -> _IO:
        if not redirs:
            return io
        io = _IO(io.stdin, io.out, io.err, dict(io.extra))
        for r in redirs:
            fd = r.fd if r.fd is not None else (0 if r.op in ("<", "<<", "<<-", "<&", "<>") else 1)
            if r.heredoc is not None:
                body = r.heredoc.body
                if r.heredoc.expand:
                    body = "".join(self.expand(Word(_heredoc_parts(body)), io, split=False, glob=False))
                self.set_fd(io, fd, _Input(body))
                continue
            assert r.target is not None
            fields = self.expand(r.target, io)
            if len(fields) != 1:
                raise _Usage(f"bash: line {self.line}: {r.target.raw}: ambiguous redirect\n", 1)
            target = fields[0]
            if r.op in (">&", "<&"):
                if target == "-":
                    self.set_fd(io, fd, _Null() if r.op == ">&" else _Input())
                    continue
                if target.isdigit():
                    source = int(target)
                    value: Any = {0: io.stdin, 1: io.out, 2: io.err}.get(source, io.extra.get(source))
                    if value is None:
                        raise _Usage(f"bash: line {self.line}: {target}: Bad file descriptor\n", 1)
                    self.set_fd(io, fd, value)
                    continue
                if r.op == "<&":
                    raise _Usage(f"bash: line {self.line}: {target}: ambiguous redirect\n", 1)
                sink = self.open_sink(target, False, io, opened)
                io.out = io.err = sink
                continue
            if r.op in ("<", "<>"):
                io.stdin = self.open_input(target, io)
                continue
            sink = self.open_sink(target, r.op in (">>", "&>>"), io, opened)
            if r.op in ("&>", "&>>"):
                io.out = io.err = sink
            else:
                self.set_fd(io, fd, sink)
        return io

    @staticmethod
    def set_fd(io: _IO, fd: int, value: Any) -> None:
        if fd == 0:
            io.stdin = value if isinstance(value, _Input) else _Input()
        elif fd == 1:
            io.out = value if isinstance(value, _Sink) else _Null()
        elif fd == 2:
            io.err = value if isinstance(value, _Sink) else _Null()
        elif isinstance(value, _Sink):
            io.extra[fd] = value

    def open_sink(self, target: str, append: bool, io: _IO, opened: list[_Sink]) -> _Sink:
        if target == "/dev/null":
            return _Null()
        if target == "/dev/stdout":
            return io.out
        if target == "/dev/stderr":
            return io.err
        path = _abspath(target, self.frame.cwd)
        try:
            local = self.fs.local(path)
            sink = _File(local, append)
        except OSError as exc:
            raise _Usage(f"bash: line {self.line}: {target}: {_strerror(exc)}\n", 1) from None
        opened.append(sink)
        return sink

    def open_input(self, target: str, io: _IO) -> _Input:
        if target == "/dev/null":
            return _Input()
        if target == "/dev/stdin":
            return io.stdin
        try:
            return _Input(_read_text(self.fs.local(_abspath(target, self.frame.cwd))))
        except OSError as exc:
            raise _Usage(f"bash: line {self.line}: {target}: {_strerror(exc)}\n", 1) from None

    # -- expansion

    def expand(
        self, word: Word, io: _IO, *, split: bool = True, glob: bool = True, tilde: bool = True
    ) -> list[str]:
        """Expand one word into fields: parameters, command substitution, arithmetic, splitting, globbing."""
        fields: list[list[tuple[str, bool]]] = []
        current: list[tuple[str, bool]] = []
        exists = False
        ifs = self.frame.vars.get("IFS", " \t\n")
        parts = list(word.parts)
        if (
            tilde
            and parts
            and parts[0].kind == "lit"
            and not parts[0].quoted
            and parts[0].text.startswith("~")
        ):
            text = parts[0].text
            if text == "~" or text.startswith("~/"):
                home = self.frame.vars.get("HOME", "/root")
                parts[0] = Part("lit", home + text[1:], True)
        for part in parts:
            if part.kind == "lit":
                current.append((part.text, part.quoted))
                exists = True
                continue
            if part.kind == "param" and part.text in ("@", "*") and part.quoted and part.text == "@":
                values = self.frame.positional
                for index, value in enumerate(values):
                    if index > 0:
                        fields.append(current)
                        current = []
                    current.append((value, True))
                    exists = True
                continue
            if part.kind == "param":
                value = self.param(part.text, io)
            elif part.kind == "cmd":
                value = self.substitute(part.text, io)
            else:
                value = str(self.arith(part.text, io))
            if part.quoted or not split:
                current.append((value, part.quoted))
                exists = True
                continue
            pieces = _ifs_split(value, ifs)
            for index, piece in enumerate(pieces):
                if index > 0:
                    if exists:
                        fields.append(current)
                    current = []
                    exists = False
                if piece:
                    current.append((piece, False))
                    exists = True
        if exists:
            fields.append(current)
        result: list[str] = []
        for segments in fields:
            text = "".join(t for t, _ in segments)
            if (
                glob
                and "f" not in self.frame.options
                and any(not q and any(ch in t for ch in "*?[") for t, q in segments)
            ):
                result.extend(self.glob(segments, text))
            else:
                result.append(text)
        return result

    def pattern(self, word: Word, io: _IO) -> str:
        """A case/``${x#p}`` pattern: quoted parts match literally."""
        out = []
        for part in word.parts:
            if part.kind == "lit":
                out.append(_fnescape(part.text) if part.quoted else part.text)
            else:
                value = "".join(self.expand(Word([part]), io, split=False, glob=False))
                out.append(_fnescape(value) if part.quoted else value)
        return "".join(out)

    def glob(self, segments: list[tuple[str, bool]], text: str) -> list[str]:
        pattern = "".join(globmod.escape(t) if q else t for t, q in segments)
        try:
            if pattern.startswith("/"):
                if self.fs.identity:
                    matches = globmod.glob(pattern)
                else:
                    base = str(self.fs.root)
                    matches = [m[len(base) :] for m in globmod.glob(base + pattern)]
            else:
                cwd = self.fs.local(self.frame.cwd)
                matches = globmod.glob(pattern, root_dir=cwd)
        except OSError:
            matches = []
        return sorted(matches) if matches else [text]

    def param(self, spec: str, io: _IO) -> str:
        frame = self.frame
        if not spec.startswith("{"):
            value = self.simple_param(spec)
            if value is None:
                if "u" in frame.options and spec not in ("@", "*"):
                    self.error(io, f"{spec}: unbound variable")
                    raise _Exit(127)
                return ""
            return value
        body = spec[1:]
        if body.startswith("#") and len(body) > 1:
            value = self.simple_param(body[1:]) or ""
            return str(len(value))
        m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*|[?$#@*!0-9-])(:?[-=+?]|##|#|%%|%)?(.*)", body, re.S)
        if not m:
            self.error(io, f"${{{body}}}: bad substitution")
            raise _Exit(1)
        name, op, operand = m.group(1), m.group(2), m.group(3)
        if op is None:
            if operand:
                self.error(io, f"${{{body}}}: bad substitution")
                raise _Exit(1)
            return self.param(name, io)
        value = self.simple_param(name)
        if op in ("#", "##", "%", "%%"):
            pattern = self.pattern(_parse_word(operand), io)
            return _trim(value or "", pattern, op)
        null = value is None or (op.startswith(":") and value == "")

        def word() -> str:
            return "".join(self.expand(_parse_word(operand), io, split=False, glob=False))

        kind = op[-1]
        if kind == "-":
            return word() if null else value or ""
        if kind == "=":
            if null:
                frame.vars[name] = word()
            return frame.vars.get(name, "")
        if kind == "+":
            return "" if null else word()
        if null:  # ?
            message = word() or ("parameter null or not set" if op.startswith(":") else "parameter not set")
            self.error(io, f"{name}: {message}")
            raise _Exit(127)
        return value or ""

    def simple_param(self, name: str) -> str | None:
        frame = self.frame
        if name == "?":
            return str(frame.status)
        if name == "$":
            return str(os.getpid())
        if name == "#":
            return str(len(frame.positional))
        if name in ("@", "*"):
            return " ".join(frame.positional)
        if name == "!":
            return ""
        if name == "-":
            return "".join(sorted(o for o in frame.options if len(o) == 1))
        if name == "0":
            return frame.arg0
        if name.isdigit():
            index = int(name)
            return frame.positional[index - 1] if index <= len(frame.positional) else None
        return frame.vars.get(name)

    def substitute(self, src: str, io: _IO) -> str:
        out = _Buffer()
        saved = self.frame
        self.frame = saved.copy()
        sub = _IO(io.stdin, out, io.err, dict(io.extra))
        line = self.line
        try:
            status = self.run_source(src, sub)
        except _Exit as exc:
            status = exc.status
        finally:
            self.frame = saved
            self.line = line
        self.subst_status = status
        self.frame.status = status
        return out.text().rstrip("\n")

    def arith(self, text: str, io: _IO) -> int:
        expanded = "".join(self.expand(_parse_word(text), io, split=False, glob=False))
        try:
            return _arith_eval(expanded, self.frame.vars)
        except ZeroDivisionError:
            self.error(io, f"{expanded.strip()}: division by 0")
            raise _Exit(1) from None
        except (SyntaxError, ValueError):
            self.error(io, f"{expanded.strip()}: syntax error in expression")
            raise _Exit(1) from None

    # -- files, as builtins see them

    def local(self, path: str, *, follow: bool = True) -> Path:
        return self.fs.local(_abspath(path, self.frame.cwd), follow=follow)

    def read_file(self, path: str, io: _IO) -> str:
        if path == "-" or path == "/dev/stdin":
            return io.stdin.read_all()
        if path == "/dev/null":
            return ""
        return _read_text(self.local(path))


def _exempt(node: Any) -> bool:
    """``set -e`` ignores a failing ``! pipeline`` and an and-or list whose last command did not run."""
    return isinstance(node, Pipeline) and node.negate


def _ifs_split(value: str, ifs: str) -> list[str]:
    if not ifs:
        return [value]
    white = "".join(c for c in ifs if c in " \t\n")
    other = "".join(c for c in ifs if c not in " \t\n")
    if not other:
        return re.split(f"[{re.escape(white)}]+", value)
    if not white:
        return re.split(f"[{re.escape(other)}]", value)
    pattern = f"[{re.escape(white)}]*[{re.escape(other)}][{re.escape(white)}]*|[{re.escape(white)}]+"
    return re.split(pattern, value)


def _fnescape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[]" else c for c in text)


def _trim(value: str, pattern: str, op: str) -> str:
    indices = range(len(value) + 1)
    if op in ("#", "##"):
        order = indices if op == "#" else reversed(indices)
        for i in order:
            if fnmatch.fnmatchcase(value[:i], pattern):
                return value[i:]
        return value
    order = reversed(indices) if op == "%" else indices
    for i in order:
        if fnmatch.fnmatchcase(value[i:], pattern):
            return value[:i]
    return value


def _arith_eval(text: str, variables: Mapping[str, str]) -> int:
    """Integer arithmetic as ``$((...))`` does it, without assignments; names read as integers (unset = 0)."""
    import ast

    source = text.replace("&&", " and ").replace("||", " or ")
    source = re.sub(r"!(?!=)", " not ", source)
    source = re.sub(
        r"\b0[xX][0-9a-fA-F]+\b|\b0[0-7]+\b",
        lambda m: str(int(m.group(), 0 if m.group()[1] in "xX" else 8)),
        source,
    )
    tree = ast.parse(source.strip() or "0", mode="eval")

    def ev(node: ast.AST) -> int:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.Name):
            raw = variables.get(node.id, "0") or "0"
            return int(raw) if re.fullmatch(r"-?\d+", raw.strip()) else 0
        if isinstance(node, ast.UnaryOp):
            v = ev(node.operand)
            ops = {ast.USub: -v, ast.UAdd: v, ast.Invert: ~v, ast.Not: int(not v)}
            return ops[type(node.op)]
        if isinstance(node, ast.BoolOp):
            values = [ev(v) for v in node.values]
            return int(all(values)) if isinstance(node.op, ast.And) else int(any(values))
        if isinstance(node, ast.Compare):
            left = ev(node.left)
            for op, comparator in zip(node.ops, node.comparators, strict=True):
                right = ev(comparator)
                checks = {
                    ast.Lt: left < right,
                    ast.LtE: left <= right,
                    ast.Gt: left > right,
                    ast.GtE: left >= right,
                    ast.Eq: left == right,
                    ast.NotEq: left != right,
                }
                if not checks[type(op)]:
                    return 0
                left = right
            return 1
        if isinstance(node, ast.BinOp):
            a, b = ev(node.left), ev(node.right)
            if isinstance(node.op, (ast.Div, ast.FloorDiv, ast.Mod)):
                if b == 0:
                    raise ZeroDivisionError
                q = abs(a) // abs(b) * (1 if (a >= 0) == (b >= 0) else -1)
                return q if not isinstance(node.op, ast.Mod) else a - b * q
            ops2: dict[type, Callable[[int, int], int]] = {
                ast.Add: lambda x, y: x + y,
                ast.Sub: lambda x, y: x - y,
                ast.Mult: lambda x, y: x * y,
                ast.Pow: lambda x, y: x**y,
                ast.LShift: lambda x, y: x << y,
                ast.RShift: lambda x, y: x >> y,
                ast.BitAnd: lambda x, y: x & y,
                ast.BitOr: lambda x, y: x | y,
                ast.BitXor: lambda x, y: x ^ y,
            }
            return ops2[type(node.op)](a, b)
        raise ValueError(text)

    try:
        return ev(tree)
    except KeyError:
        raise ValueError(text) from None


# --- real scripts


def _interpreter(local: Path) -> list[str]:
    """The real interpreter for a script in the root: its ``#!`` line, ``/bin/bash`` without one."""
    try:
        with open(local, "rb") as f:
            head = f.read(256)
    except OSError:
        return ["/bin/bash"]
    if head.startswith(b"\x7fELF"):
        return []
    if not head.startswith(b"#!"):
        return ["/bin/bash"]
    line = head[2:].split(b"\n", 1)[0].decode("utf-8", "replace").strip()
    words = line.split()
    if not words:
        return ["/bin/bash"]
    if os.path.basename(words[0]) == "env" and len(words) > 1:
        import shutil

        args = [w for w in words[1:] if not w.startswith("-")]
        found = shutil.which(args[0]) if args else None
        return [found or args[0], *args[1:]]
    return words


def _shim_dir(host: SimHost) -> Path:
    """The directory of stand-in shims put first on a real script's PATH (made once per host state)."""
    from .shims import install_shims

    directory = host.state_dir / "shims"
    names = sorted(_standins())
    marker = directory / ".installed"
    wanted = "\n".join([sys.executable, *names])
    try:
        if marker.read_text() == wanted:
            return directory
    except OSError:
        pass
    install_shims(directory, sys.executable, names)
    marker.write_text(wanted)
    return directory


def _virtual_command(path: str) -> str | None:
    """A command a standard bin path names (``/usr/bin/nvidia-smi``, ``/bin/sh``) although the root lacks it.

    Why: the root holds only what provisioning wrote, yet units and scripts name system binaries by path;
    those resolve to the stand-ins and builtins. Any other missing path is missing, so a wrong ``ExecStart``
    fails."""
    directory, _, name = path.rpartition("/")
    if (directory or "/") not in STANDARD_BIN_DIRS:
        return None
    if name in _standins() or (name in BUILTINS and name not in _SHELL_ONLY):
        return name
    return None


# --- entry points


def _frame_for(host: SimHost, env: Mapping[str, str] | None, cwd: str = "/") -> _Frame:
    variables = dict(DEFAULT_ENV if env is None else env)
    variables[STATE_ENV] = str(host.state_dir)
    variables[ROOT_ENV] = str(host.root)
    return _Frame(variables, set(variables), cwd)


def run_line(host: SimHost, line: str, *, stdin: str = "", env: Mapping[str, str] | None = None) -> Result:
    """Run a command line on the simulated ``host`` as ``bash -c LINE`` would, without forking for builtins
    and stand-ins.

    ``stdin`` is the line's standard input, ``env`` the login environment (``None``: root's defaults, see
    :data:`DEFAULT_ENV`). The result holds everything printed on stdout and on stderr and the exit status
    (127 for an unknown command, 2 for a syntax error, as bash).
    """
    shell = _Shell(host, _frame_for(host, env))
    return _run(shell, line, stdin)


def _run(shell: _Shell, source: str, stdin: str) -> Result:
    out, err = _Buffer(), _Buffer()
    io = _IO(_Input(stdin), out, err)
    try:
        status = shell.run_source(source, io)
    except _Exit as exc:
        status = exc.status
    except (_Return, _Loop):
        status = shell.frame.status
    trap = shell.frame.traps.pop("EXIT", None)
    if trap:
        shell.frame.status = status
        try:
            shell.run_source(trap, io)
        except _Exit as exc:
            status = exc.status
    return Result(out.text(), err.text(), status & 0xFF)


def run_argv(
    host: SimHost,
    argv: list[str],
    *,
    stdin: str = "",
    env: Mapping[str, str] | None = None,
    cwd: str = "/",
    timeout: float | None = None,
) -> Result:
    """Execute ``argv`` the way ``execve`` would (no shell syntax): what systemd does with an ``ExecStart=``
    line.

    ``argv[0]`` is a path (or a name, looked up like :func:`which`); a stand-in or builtin under a standard
    bin directory runs in process, a file of the root as a real subprocess, with ``env`` as its whole
    environment (plus the host's ``GPUPROV_SIM_*``). A missing command gives exit 127 and a message on stderr;
    callers that must tell that apart from a command exiting 127 use :func:`which` first."""
    shell = _Shell(host, _frame_for(host, env if env is not None else {}, cwd))
    out, err = _Buffer(), _Buffer()
    io = _IO(_Input(stdin), out, err)
    path = argv[0] if "/" in argv[0] else which(host, argv[0], env)
    try:
        if path is None:
            err.write(f"{argv[0]}: No such file or directory\n")
            status = 127
        else:
            status = shell.exec_path(_abspath(path, cwd), argv, {}, io, shown=path, timeout=timeout)
    except _Exit as exc:
        status = exc.status
    return Result(out.text(), err.text(), status & 0xFF)


def which(host: SimHost, name: str, env: Mapping[str, str] | None = None) -> str | None:
    """The host path a command resolves to, or None. Stand-ins and external commands the shell implements
    itself are where a distribution installs them (``/usr/bin/NAME``); files of the root are searched on PATH.
    """
    fs = HostFS(host.root)
    if "/" in name:
        if os.path.lexists(fs.local(name)) or _virtual_command(name):
            return name
        return None
    if name in _standins() or (name in BUILTINS and name not in _SHELL_ONLY):
        return f"/usr/bin/{name}"
    path = (env if env is not None else DEFAULT_ENV).get("PATH", DEFAULT_ENV["PATH"])
    for directory in path.split(":"):
        if directory.startswith("/"):
            candidate = directory.rstrip("/") + "/" + name
            local = fs.local(candidate)
            if local.is_file() and os.access(local, os.X_OK):
                return candidate
    return None


# --- daemons


def spawn_daemon(
    machine: Any, *, comm: str, argv: list[str], env: Mapping[str, str], kill: str, pid: int | None = None
) -> int:
    """Record a simulated background process; returns its PID.

    ``kill`` names ``module:function`` called as ``function(host, machine, pid)`` when something (``systemctl
    stop`` killing the unit's cgroup) terminates it. The unit comes from ``GPUPROV_SIM_UNIT`` in ``env``: the
    systemctl stand-in sets it for the commands a unit runs, as systemd puts them in the unit's cgroup.
    """
    pid = pid or machine.allocate_pid()
    table = machine.services.setdefault("daemons", {})
    table[str(pid)] = {
        "comm": comm[:15],
        "argv": list(argv),
        "unit": env.get(UNIT_ENV),
        "kill": kill,
        "user": env.get("USER", "root"),
        "started": time.time(),
    }
    return pid


def reap_daemon(machine: Any, pid: int) -> None:
    """Forget a daemon that exited by itself (``quit``)."""
    machine.services.get("daemons", {}).pop(str(pid), None)


def daemon_alive(machine: Any, pid: int) -> bool:
    return str(pid) in machine.services.get("daemons", {})


def daemons_of_unit(machine: Any, unit: str) -> list[int]:
    return sorted(int(pid) for pid, d in machine.services.get("daemons", {}).items() if d.get("unit") == unit)


def daemon_info(machine: Any, pid: int) -> dict[str, Any] | None:
    info = machine.services.get("daemons", {}).get(str(pid))
    return dict(info) if info else None


def kill_daemon(host: SimHost, machine: Any, pid: int) -> None:
    """Terminate a simulated daemon: its owner module cleans up what it held, then the record goes."""
    info = machine.services.get("daemons", {}).get(str(pid))
    if info is None:
        return
    module, _, func = info["kill"].partition(":")
    handler = getattr(importlib.import_module(module), func)
    handler(host, machine, pid)
    reap_daemon(machine, pid)


# --- builtins


def _parse_opts(
    argv: list[str],
    flags: str,
    valued: str = "",
    *,
    name: str | None = None,
    long: Mapping[str, str] | None = None,
) -> tuple[dict[str, str], list[str]]:
    """Short options the GNU way (``-rf``, ``-n5``, ``-n 5``, ``--``); returns (options, operands)."""
    name = name or argv[0]
    opts: dict[str, str] = {}
    operands: list[str] = []
    args = argv[1:]
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            operands.extend(args[i + 1 :])
            break
        if arg.startswith("--") and long is not None:
            key, eq, value = arg[2:].partition("=")
            if key not in long:
                raise _Usage(f"{name}: unrecognized option '{arg}'\n", 1 if name != "ls" else 2)
            short = long[key]
            if short in valued and not eq:
                i += 1
                value = args[i] if i < len(args) else ""
            opts[short] = value if short in valued else ""
        elif arg.startswith("-") and len(arg) > 1:
            j = 1
            while j < len(arg):
                c = arg[j]
                if c in valued:
                    value = arg[j + 1 :]
                    if not value:
                        i += 1
                        if i >= len(args):
                            raise _Usage(f"{name}: option requires an argument -- '{c}'\n", 1)
                        value = args[i]
                    opts[c] = value
                    break
                if c not in flags:
                    raise _Usage(f"{name}: invalid option -- '{c}'\n", 2 if name in ("ls", "grep") else 1)
                opts[c] = ""
                j += 1
        else:
            operands.append(arg)
        i += 1
    return opts, operands


@_builtin(":", "true")
def _b_true(sh: _Shell, argv: list[str], io: _IO) -> int:
    """``true``, ``:``."""
    return 0


@_builtin("false")
def _b_false(sh: _Shell, argv: list[str], io: _IO) -> int:
    return 1


_ESCAPES = {
    "n": "\n",
    "t": "\t",
    "\\": "\\",
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "r": "\r",
    "v": "\v",
    "e": "\x1b",
    '"': '"',
    "'": "'",
}


def _unescape(text: str, *, echo: bool = False) -> tuple[str, bool]:
    """Backslash escapes of ``echo -e``/``printf %b``; returns (text, stop): stop means ``\\c`` was seen."""
    out: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c != "\\" or i + 1 >= len(text):
            out.append(c)
            i += 1
            continue
        n = text[i + 1]
        if n == "c":
            return "".join(out), True
        if n in _ESCAPES and not (echo and n in "\"'"):
            out.append(_ESCAPES[n])
            i += 2
        elif n == "0" or (n in "01234567" and not echo):
            m = re.match(r"0?[0-7]{0,3}" if n == "0" else r"[0-7]{1,3}", text[i + 1 :])
            digits = m.group() if m else ""
            out.append(chr(int(digits.lstrip("0") or "0", 8) & 0xFF))
            i += 1 + len(digits)
        elif n == "x":
            m = re.match(r"[0-9a-fA-F]{1,2}", text[i + 2 :])
            if m:
                out.append(chr(int(m.group(), 16)))
                i += 2 + len(m.group())
            else:
                out.append("\\x")
                i += 2
        else:
            out.append("\\" + n)
            i += 2
    return "".join(out), False


@_builtin("echo")
def _b_echo(sh: _Shell, argv: list[str], io: _IO) -> int:
    """``echo [-neE] ARGS``: bash's builtin."""
    args = argv[1:]
    newline, escapes = True, False
    while args and re.fullmatch(r"-[neE]+", args[0]):
        for c in args[0][1:]:
            newline = newline and c != "n"
            escapes = True if c == "e" else False if c == "E" else escapes
        args = args[1:]
    text = " ".join(args)
    if escapes:
        text, stop = _unescape(text, echo=True)
        if stop:
            io.out.write(text)
            return 0
    io.out.write(text + ("\n" if newline else ""))
    return 0


_PRINTF_SPEC = re.compile(r"%([-+ #0]*)(\*|\d+)?(?:\.(\*|\d*))?([diouxXeEfFgGcsb%])")


@_builtin("printf")
def _b_printf(sh: _Shell, argv: list[str], io: _IO) -> int:
    """``printf FORMAT [ARGS]``: ``%s %b %c %d %i %u %o %x %X %e %f %g %%`` with flags and widths."""
    args = argv[1:]
    if args and args[0] == "--":
        args = args[1:]
    if not args:
        raise _Usage(f"bash: line {sh.line}: printf: usage: printf [-v var] format [arguments]\n", 2)
    fmt, values = args[0], args[1:]
    status = 0
    out: list[str] = []
    index = 0

    def take() -> str | None:
        nonlocal index
        if index < len(values):
            index += 1
            return values[index - 1]
        return None

    def number(raw: str | None, conv: str) -> int | float:
        nonlocal status
        if raw is None or raw == "":
            return 0
        text = raw.strip()
        if text[:1] in ("'", '"') and len(text) > 1:
            return ord(text[1])
        try:
            if conv in "eEfFgG":
                return float(text)
            return (
                int(text, 0)
                if re.fullmatch(r"[-+]?(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9]\d*)", text)
                else int(text)
            )
        except ValueError:
            sh.error(io, f"printf: {raw}: invalid number")
            status = 1
            return 0

    while True:
        pos = 0
        consumed_before = index
        stop = False
        while pos < len(fmt):
            m = _PRINTF_SPEC.search(fmt, pos)
            literal = fmt[pos : m.start() if m else len(fmt)]
            text, stop = _unescape(literal)
            out.append(text)
            if stop or not m:
                break
            pos = m.end()
            flags, width, precision, conv = m.groups()
            if conv == "%":
                out.append("%")
                continue
            if width == "*":
                width = str(number(take(), "d"))
            if precision == "*":
                precision = str(number(take(), "d"))
            spec = "%" + flags + (width or "") + ("." + precision if precision is not None else "")
            raw = take()
            if conv in "sb":
                value = raw or ""
                if conv == "b":
                    value, stop = _unescape(value)
                out.append((spec + "s") % value)
                if stop:
                    break
            elif conv == "c":
                out.append((spec + "s") % (raw or "")[:1])
            elif conv in "eEfFgG":
                out.append((spec + conv) % float(number(raw, conv)))
            else:
                out.append((spec + ("d" if conv in "iu" else conv)) % int(number(raw, conv)))
        if stop or index >= len(values) or index == consumed_before:
            break
    io.out.write("".join(out))
    return status


@_builtin("exit", shell_only=True)
def _b_exit(sh: _Shell, argv: list[str], io: _IO) -> int:
    if len(argv) > 1:
        if not re.fullmatch(r"[-+]?\d+", argv[1]):
            sh.error(io, f"exit: {argv[1]}: numeric argument required")
            raise _Exit(2)
        raise _Exit(int(argv[1]) & 0xFF)
    raise _Exit(sh.frame.status)


@_builtin("return", shell_only=True)
def _b_return(sh: _Shell, argv: list[str], io: _IO) -> int:
    raise _Return(int(argv[1]) & 0xFF if len(argv) > 1 else sh.frame.status)


@_builtin("break", "continue", shell_only=True)
def _b_loop(sh: _Shell, argv: list[str], io: _IO) -> int:
    raise _Loop(argv[0], int(argv[1]) if len(argv) > 1 else 1)


@_builtin("cd", shell_only=True)
def _b_cd(sh: _Shell, argv: list[str], io: _IO) -> int:
    target = argv[1] if len(argv) > 1 else sh.frame.vars.get("HOME", "/")
    path = _abspath(target, sh.frame.cwd)
    try:
        local = sh.fs.local(path)
    except OSError as exc:
        sh.error(io, f"cd: {target}: {_strerror(exc)}")
        return 1
    if not local.exists():
        sh.error(io, f"cd: {target}: No such file or directory")
        return 1
    if not local.is_dir():
        sh.error(io, f"cd: {target}: Not a directory")
        return 1
    sh.frame.vars["OLDPWD"] = sh.frame.cwd
    sh.frame.cwd = os.path.normpath(path)
    sh.frame.vars["PWD"] = sh.frame.cwd
    return 0


@_builtin("pwd")
def _b_pwd(sh: _Shell, argv: list[str], io: _IO) -> int:
    io.out.write(sh.frame.cwd + "\n")
    return 0


@_builtin("export", "readonly", shell_only=True)
def _b_export(sh: _Shell, argv: list[str], io: _IO) -> int:
    """``export [-p] NAME[=VALUE]...`` (``readonly`` is accepted and behaves as plain assignment)."""
    args = [a for a in argv[1:] if a not in ("-p", "-n", "--")]
    if not args:
        for key in sorted(sh.frame.exported):
            if key in sh.frame.vars:
                io.out.write(f'declare -x {key}="{sh.frame.vars[key]}"\n')
        return 0
    status = 0
    for arg in args:
        name, eq, value = arg.partition("=")
        if not _NAME.fullmatch(name):
            sh.error(io, f"{argv[0]}: `{arg}': not a valid identifier")
            status = 1
            continue
        if eq:
            sh.frame.vars[name] = value
        if argv[0] == "export":
            sh.frame.exported.add(name)
    return status


@_builtin("local", shell_only=True)
def _b_local(sh: _Shell, argv: list[str], io: _IO) -> int:
    if not sh.locals:
        sh.error(io, "local: can only be used in a function")
        return 1
    for arg in argv[1:]:
        name, eq, value = arg.partition("=")
        sh.locals[-1].setdefault(name, sh.frame.vars.get(name))
        if eq:
            sh.frame.vars[name] = value
        else:
            sh.frame.vars.setdefault(name, "")
    return 0


@_builtin("unset", shell_only=True)
def _b_unset(sh: _Shell, argv: list[str], io: _IO) -> int:
    functions = "-f" in argv[1:2]
    for name in argv[1:]:
        if name in ("-f", "-v"):
            continue
        if functions:
            sh.frame.funcs.pop(name, None)
        else:
            sh.frame.vars.pop(name, None)
            sh.frame.exported.discard(name)
    return 0


@_builtin("set", shell_only=True)
def _b_set(sh: _Shell, argv: list[str], io: _IO) -> int:
    """``set [-euxfa] [+euxfa] [-o pipefail|errexit|nounset] [-- ARGS]``."""
    args = argv[1:]
    if not args:
        for key in sorted(sh.frame.vars):
            io.out.write(f"{key}={shlex.quote(sh.frame.vars[key])}\n")
        return 0
    long_names = {
        "errexit": "e",
        "nounset": "u",
        "xtrace": "x",
        "noglob": "f",
        "allexport": "a",
        "pipefail": "pipefail",
    }
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            sh.frame.positional = args[i + 1 :]
            return 0
        if arg in ("-o", "+o"):
            i += 1
            name = args[i] if i < len(args) else ""
            if name not in long_names:
                sh.error(io, f"set: {name}: invalid option name")
                return 2
            (sh.frame.options.add if arg == "-o" else sh.frame.options.discard)(long_names[name])
        elif arg[:1] in "-+" and len(arg) > 1:
            for c in arg[1:]:
                if c not in "euxfavhCnbm":
                    sh.error(io, f"set: {arg[0]}{c}: invalid option")
                    return 2
                (sh.frame.options.add if arg[0] == "-" else sh.frame.options.discard)(c)
        else:
            sh.frame.positional = args[i:]
            return 0
        i += 1
    return 0


@_builtin("shift", shell_only=True)
def _b_shift(sh: _Shell, argv: list[str], io: _IO) -> int:
    n = int(argv[1]) if len(argv) > 1 else 1
    if n > len(sh.frame.positional):
        return 1
    sh.frame.positional = sh.frame.positional[n:]
    return 0


@_builtin("read", shell_only=True)
def _b_read(sh: _Shell, argv: list[str], io: _IO) -> int:
    """``read [-r] [-p PROMPT] NAME...``: one line of stdin, split on IFS, the rest into the last name."""
    opts, names = _parse_opts(argv, "rs", "p", name="read")
    names = names or ["REPLY"]
    line = io.stdin.readline()
    if not line:
        for name in names:
            sh.frame.vars[name] = ""
        return 1
    ended = line.endswith("\n")
    text = line[:-1] if ended else line
    if "r" not in opts:
        text = re.sub(r"\\(.)", r"\1", text)
    ifs = sh.frame.vars.get("IFS", " \t\n")
    if names == ["REPLY"] and len(names) == 1:
        sh.frame.vars["REPLY"] = text
    else:
        white = "".join(c for c in ifs if c in " \t\n")
        text = text.strip(white)
        fields = _ifs_split(text, ifs) if text else []
        for index, name in enumerate(names):
            if index == len(names) - 1:
                rest = fields[index:]
                if len(rest) > 1:
                    # the last name takes the remaining text, separators included
                    start = 0
                    for _ in range(index):
                        m = re.search(f"[{re.escape(ifs)}]+", text[start:])
                        start += m.end() if m else len(text)
                    sh.frame.vars[name] = text[start:]
                else:
                    sh.frame.vars[name] = rest[0] if rest else ""
            else:
                sh.frame.vars[name] = fields[index] if index < len(fields) else ""
    return 0 if ended else 1


@_builtin("eval", shell_only=True)
def _b_eval(sh: _Shell, argv: list[str], io: _IO) -> int:
    return sh.run_source(" ".join(argv[1:]), io) if len(argv) > 1 else 0


@_builtin(".", "source", shell_only=True)
def _b_source(sh: _Shell, argv: list[str], io: _IO) -> int:
    if len(argv) < 2:
        sh.error(io, f"{argv[0]}: filename argument required")
        return 2
    try:
        text = sh.read_file(argv[1], io)
    except OSError as exc:
        sh.error(io, f"{argv[1]}: {_strerror(exc)}")
        return 1
    saved = sh.frame.positional
    if len(argv) > 2:
        sh.frame.positional = argv[2:]
    try:
        return sh.run_source(text, io)
    except _Return as exc:
        return exc.status
    finally:
        if len(argv) > 2:
            sh.frame.positional = saved


@_builtin("exec", shell_only=True)
def _b_exec(sh: _Shell, argv: list[str], io: _IO) -> int:
    """``exec COMMAND ARGS``: run it and end the shell with its status. Without a command: not supported."""
    if len(argv) == 1:
        sh.error(io, "exec: redirecting the whole shell is not supported by the simulator's shell")
        return 2
    raise _Exit(sh.dispatch(argv[1:], {}, io))


@_builtin("trap", shell_only=True)
def _b_trap(sh: _Shell, argv: list[str], io: _IO) -> int:
    """``trap ACTION EXIT`` (or 0); signal traps are accepted and never fire (nothing signals the shell)."""
    if len(argv) < 3:
        return 0
    action = argv[1]
    for sig in argv[2:]:
        if sig in ("EXIT", "0"):
            if action == "-":
                sh.frame.traps.pop("EXIT", None)
            else:
                sh.frame.traps["EXIT"] = action
    return 0


@_builtin("wait", shell_only=True)
def _b_wait(sh: _Shell, argv: list[str], io: _IO) -> int:
    return 0


@_builtin("sh", "bash", "dash")
def _b_sh(sh: _Shell, argv: list[str], io: _IO) -> int:
    """``sh -c 'LINE' [ARG0 ARGS]``, ``sh -s`` (script on stdin) in process; ``sh FILE`` by the real shell."""
    args = argv[1:]
    options: set[str] = set()
    command: str | None = None
    from_stdin = False
    while args:
        arg = args[0]
        if arg == "--":
            args = args[1:]
            break
        if arg in ("-o", "+o") and len(args) > 1:
            if arg == "-o":
                options.add(args[1])
            args = args[2:]
            continue
        if arg.startswith("-") and len(arg) > 1:
            for c in arg[1:]:
                if c == "c":
                    command = ""
                elif c == "s":
                    from_stdin = True
                elif c in "euxf":
                    options.add(c)
                elif c not in "lia":
                    sh.error(io, f"{argv[0]}: -{c}: invalid option")
                    return 2
            args = args[1:]
            continue
        break
    environ = sh.frame.environ()
    frame = _Frame(environ, set(environ), sh.frame.cwd, options=options)
    child = _Shell(sh.host, frame, fs=sh.fs)
    if command is not None:
        if not args:
            sh.error(io, f"{argv[0]}: -c: option requires an argument")
            return 2
        source = args[0]
        frame.arg0 = args[1] if len(args) > 1 else argv[0]
        frame.positional = args[2:]
    elif from_stdin or not args:
        source = io.stdin.read_all()
        frame.positional = args
    else:
        path = _abspath(args[0], sh.frame.cwd)
        local = sh.fs.local(path)
        if not local.is_file():
            io.err.write(f"{argv[0]}: {args[0]}: No such file or directory\n")
            return 127
        return sh.run_real(
            local,
            args,
            sh.frame.environ(),
            io,
            interpreter=["/bin/" + ("bash" if argv[0] == "bash" else "sh")],
        )
    try:
        status = child.run_source(source, io)
    except _Exit as exc:
        status = exc.status
    except (_Return, _Loop):
        status = child.frame.status
    trap = child.frame.traps.pop("EXIT", None)
    if trap:
        try:
            child.run_source(trap, io)
        except _Exit as exc:
            status = exc.status
    return status


# -- test / [


class _TestError(Exception):
    pass


@_builtin("test", "[")
def _b_test(sh: _Shell, argv: list[str], io: _IO) -> int:
    """``test``/``[ ]``: ``-e -f -d -s -x -r -w -L -h -S -p -n -z``, ``= == !=``, ``-eq -ne -lt -le -gt -ge``,
    ``!``, ``-a``, ``-o`` and parentheses."""
    args = argv[1:]
    if argv[0] == "[":
        if not args or args[-1] != "]":
            sh.error(io, "[: missing `]'")
            return 2
        args = args[:-1]
    try:
        return 0 if _TestEval(sh, args).run() else 1
    except _TestError as exc:
        sh.error(io, f"{argv[0]}: {exc}")
        return 2


_UNARY = frozenset("-e -f -d -s -x -r -w -L -h -S -p -b -c -n -z -t -g -u -k -O -G -N".split())
_BINARY = frozenset("= == != -eq -ne -lt -le -gt -ge -nt -ot -ef < >".split())


class _TestEval:
    def __init__(self, sh: _Shell, args: list[str]) -> None:
        self.sh = sh
        self.args = args
        self.i = 0

    def run(self) -> bool:
        if not self.args:
            return False
        value = self.or_()
        if self.i != len(self.args):
            raise _TestError(
                f"{self.args[self.i]}: unexpected operator" if self.i < len(self.args) else "syntax error"
            )
        return value

    def peek(self, k: int = 0) -> str | None:
        return self.args[self.i + k] if self.i + k < len(self.args) else None

    def or_(self) -> bool:
        value = self.and_()
        while self.peek() == "-o":
            self.i += 1
            value = self.and_() or value
        return value

    def and_(self) -> bool:
        value = self.not_()
        while self.peek() == "-a":
            self.i += 1
            value = self.not_() and value
        return value

    def not_(self) -> bool:
        if self.peek() == "!" and self.i + 1 < len(self.args):
            self.i += 1
            return not self.not_()
        return self.primary()

    def primary(self) -> bool:
        remaining = len(self.args) - self.i
        a = self.peek()
        if a is None:
            raise _TestError("argument expected")
        if a == "(" and remaining >= 3:
            self.i += 1
            value = self.or_()
            if self.peek() != ")":
                raise _TestError("`)' expected")
            self.i += 1
            return value
        if remaining >= 3 and self.peek(1) in _BINARY:
            left, op, right = a, self.args[self.i + 1], self.args[self.i + 2]
            self.i += 3
            return self.binary(left, op, right)
        if a in _UNARY and remaining >= 2:
            self.i += 2
            return self.unary(a, self.args[self.i - 1])
        self.i += 1
        return a != ""

    def integer(self, text: str) -> int:
        if not re.fullmatch(r"\s*[-+]?\d+\s*", text):
            raise _TestError(f"{text}: integer expression expected")
        return int(text)

    def binary(self, left: str, op: str, right: str) -> bool:
        if op in ("=", "=="):
            return left == right
        if op == "!=":
            return left != right
        if op == "<":
            return left < right
        if op == ">":
            return left > right
        if op in ("-nt", "-ot", "-ef"):
            try:
                a, b = os.stat(self.sh.local(left)), os.stat(self.sh.local(right))
            except OSError:
                return False
            if op == "-ef":
                return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
            return a.st_mtime > b.st_mtime if op == "-nt" else a.st_mtime < b.st_mtime
        x, y = self.integer(left), self.integer(right)
        return {"-eq": x == y, "-ne": x != y, "-lt": x < y, "-le": x <= y, "-gt": x > y, "-ge": x >= y}[op]

    def unary(self, op: str, arg: str) -> bool:
        if op == "-n":
            return arg != ""
        if op == "-z":
            return arg == ""
        if op == "-t":
            return False
        path = _abspath(arg, self.sh.frame.cwd)
        if arg == "":
            return False
        try:
            local = self.sh.fs.local(path, follow=op not in ("-L", "-h"))
            st = os.lstat(local) if op in ("-L", "-h") else os.stat(local)
        except OSError:
            virtual = _virtual_command(path)
            return virtual is not None and op in ("-e", "-f", "-x", "-r", "-s")
        mode = st.st_mode
        checks = {
            "-e": True,
            "-f": stat.S_ISREG(mode),
            "-d": stat.S_ISDIR(mode),
            "-s": st.st_size > 0,
            "-L": stat.S_ISLNK(mode),
            "-h": stat.S_ISLNK(mode),
            "-S": stat.S_ISSOCK(mode),
            "-p": stat.S_ISFIFO(mode),
            "-b": stat.S_ISBLK(mode),
            "-c": stat.S_ISCHR(mode),
            "-x": os.access(local, os.X_OK),
            "-r": os.access(local, os.R_OK),
            "-w": os.access(local, os.W_OK),
            "-g": bool(mode & stat.S_ISGID),
            "-u": bool(mode & stat.S_ISUID),
            "-k": bool(mode & stat.S_ISVTX),
            "-O": True,
            "-G": True,
            "-N": st.st_mtime > st.st_atime,
        }
        return checks[op]


# -- files


def _owners_file(sh: _Shell) -> Path:
    return sh.host.state_dir / "owners.json"


def _load_owners(sh: _Shell) -> dict[str, str]:
    try:
        data = json.loads(_owners_file(sh).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _save_owners(sh: _Shell, owners: Mapping[str, str]) -> None:
    path = _owners_file(sh)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(dict(owners), indent=1, sort_keys=True))
    os.replace(tmp, path)


def _owner_of(sh: _Shell, host_path: str, st: os.stat_result) -> tuple[str, str]:
    if not sh.fs.identity:
        recorded = _load_owners(sh).get(host_path)
        if recorded:
            user, _, group = recorded.partition(":")
            return user, group or user
        return "root", "root"
    import grp
    import pwd

    try:
        user = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        user = str(st.st_uid)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    return user, group


@_builtin("cat")
def _b_cat(sh: _Shell, argv: list[str], io: _IO) -> int:
    """``cat [FILE...]`` (``-`` is stdin)."""
    files = [a for a in argv[1:] if a != "--"] or ["-"]
    status = 0
    for name in files:
        try:
            io.out.write(sh.read_file(name, io))
        except OSError as exc:
            io.err.write(f"cat: {name}: {_strerror(exc)}\n")
            status = 1
    return status


@_builtin("mkdir")
def _b_mkdir(sh: _Shell, argv: list[str], io: _IO) -> int:
    """``mkdir [-p] [-m MODE] DIR...``."""
    opts, dirs = _parse_opts(argv, "pv", "m", long={"parents": "p", "mode": "m", "verbose": "v"})
    if not dirs:
        raise _Usage("mkdir: missing operand\nTry 'mkdir --help' for more information.\n", 1)
    mode = int(opts["m"], 8) if "m" in opts and re.fullmatch(r"[0-7]+", opts["m"]) else None
    status = 0
    for name in dirs:
        try:
            local = sh.local(name)
            if "p" in opts:
                if local.exists() and not local.is_dir():
                    raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST))
                local.mkdir(parents=True, exist_ok=True)
            else:
                local.mkdir()
            if mode is not None:
                os.chmod(local, mode)
        except OSError as exc:
            io.err.write(f"mkdir: cannot create directory '{name}': {_strerror(exc)}\n")
            status = 1
    return status


@_builtin("rmdir")
def _b_rmdir(sh: _Shell, argv: list[str], io: _IO) -> int:
    opts, dirs = _parse_opts(argv, "p", long={"parents": "p", "ignore-fail-on-non-empty": "i"})
    status = 0
    for name in dirs:
        try:
            os.rmdir(sh.local(name, follow=False))
        except OSError as exc:
            if "i" in opts and exc.errno == errno.ENOTEMPTY:
                continue
            io.err.write(f"rmdir: failed to remove '{name}': {_strerror(exc)}\n")
            status = 1
    return status


@_builtin("rm")
def _b_rm(sh: _Shell, argv: list[str], io: _IO) -> int:
    """``rm [-f] [-r|-R] [-d] FILE...``."""
    opts, files = _parse_opts(
        argv, "frRdv", long={"force": "f", "recursive": "r", "dir": "d", "verbose": "v"}
    )
    recursive = "r" in opts or "R" in opts
    if not files and "f" not in opts:
        raise _Usage("rm: missing operand\nTry 'rm --help' for more information.\n", 1)
    status = 0
    owners = None
    for name in files:
        try:
            local = sh.local(name, follow=False)
        except OSError as exc:
            io.err.write(f"rm: cannot remove '{name}': {_strerror(exc)}\n")
            status = 1
            continue
        if not os.path.lexists(local):
            if "f" not in opts:
                io.err.write(f"rm: cannot remove '{name}': No such file or directory\n")
                status = 1
            continue
        try:
            if local.is_dir() and not local.is_symlink():
                if recursive:
                    import shutil

                    shutil.rmtree(local)
                elif "d" in opts:
                    os.rmdir(local)
                else:
                    io.err.write(f"rm: cannot remove '{name}': Is a directory\n")
                    status = 1
                    continue
            else:
                os.unlink(local)
        except OSError as exc:
            io.err.write(f"rm: cannot remove '{name}': {_strerror(exc)}\n")
            status = 1
            continue
        if not sh.fs.identity:
            owners = owners if owners is not None else _load_owners(sh)
            prefix = sh.fs.host_path(local)
            for key in [k for k in owners if k == prefix or k.startswith(prefix + "/")]:
                del owners[key]
    if owners is not None:
        _save_owners(sh, owners)
    return status


def _copy_or_move(sh: _Shell, argv: list[str], io: _IO, *, move: bool) -> int:
    import shutil

    name = argv[0]
    if move:
        opts, args = _parse_opts(argv, "fiTvn", long={"force": "f", "no-target-directory": "T"})
    else:
        opts, args = _parse_opts(
            argv,
            "rRapfTvdLP",
            long={
                "recursive": "r",
                "archive": "a",
                "force": "f",
                "no-target-directory": "T",
                "preserve": "p",
            },
        )
    if len(args) < 2:
        missing = (
            "missing file operand" if not args else f"missing destination file operand after '{args[0]}'"
        )
        raise _Usage(f"{name}: {missing}\nTry '{name} --help' for more information.\n", 1)
    *sources, dest = args
    try:
        dest_local = sh.local(dest)
    except OSError as exc:
        io.err.write(f"{name}: cannot stat '{dest}': {_strerror(exc)}\n")
        return 1
    into_dir = dest_local.is_dir() and "T" not in opts
    if len(sources) > 1 and not into_dir:
        io.err.write(f"{name}: target '{dest}' is not a directory\n")
        return 1
    status = 0
    for src in sources:
        try:
            src_local = sh.local(src, follow=not move)
        except OSError as exc:
            io.err.write(f"{name}: cannot stat '{src}': {_strerror(exc)}\n")
            status = 1
            continue
        if not os.path.lexists(src_local):
            io.err.write(f"{name}: cannot stat '{src}': No such file or directory\n")
            status = 1
            continue
        target = dest_local / src_local.name if into_dir else dest_local
        try:
            if move:
                os.replace(src_local, target) if not target.is_dir() else shutil.move(src_local, target)
            elif src_local.is_dir():
                if not ("r" in opts or "R" in opts or "a" in opts):
                    io.err.write(f"cp: -r not specified; omitting directory '{src}'\n")
                    status = 1
                    continue
                shutil.copytree(src_local, target, symlinks=True, dirs_exist_ok=True)
            else:
                if target.is_symlink():
                    target.unlink()
                (shutil.copy2 if ("p" in opts or "a" in opts) else shutil.copy)(src_local, target)
        except OSError as exc:
            io.err.write(
                f"{name}: cannot {'move' if move else 'create regular file'} '{dest}': {_strerror(exc)}\n"
            )
            status = 1
    return status


@_builtin("mv")
def _b_mv(sh: _Shell, argv: list[str], io: _IO) -> int:
    """``mv [-f] [-T] SRC... DEST``."""
    return _copy_or_move(sh, argv, io, move=True)


@_builtin("cp")
def _b_cp(sh: _Shell, argv: list[str], io: _IO) -> int:
    """``cp [-r|-R|-a] [-p] [-f] [-T] SRC... DEST``."""
    return _copy_or_move(sh, argv, io, move=False)


_PERM_BITS = {
    "u": (stat.S_IRUSR, stat.S_IWUSR, stat.S_IXUSR),
    "g": (stat.S_IRGRP, stat.S_IWGRP, stat.S_IXGRP),
    "o": (stat.S_IROTH, stat.S_IWOTH, stat.S_IXOTH),
}


def _chmod_mode(spec: str, mode: int, is_dir: bool) -> int | None:
    if re.fullmatch(r"[0-7]{1,4}", spec):
        return int(spec, 8)
    result = stat.S_IMODE(mode)
    for clause in spec.split(","):
        m = re.fullmatch(r"([ugoa]*)([-+=])([rwxXst]*)", clause)
        if not m:
            return None
        who = m.group(1).replace("a", "ugo") or "ugo"
        bits = 0
        for w in who:
            r, wr, x = _PERM_BITS[w]
            for p in m.group(3):
                bits |= {
                    "r": r,
                    "w": wr,
                    "x": x,
                    "X": x if (is_dir or result & 0o111) else 0,
                    "s": stat.S_ISUID if w == "u" else stat.S_ISGID if w == "g" else 0,
                    "t": stat.S_ISVTX,
                }[p]
        if m.group(2) == "+":
            result |= bits
        elif m.group(2) == "-":
            result &= ~bits
        else:
            mask = 0
            for w in who:
                mask |= sum(_PERM_BITS[w])
            result = (result & ~mask) | bits
    return result


@_builtin("chmod")
def _b_chmod(sh: _Shell, argv: list[str], io: _IO) -> int:
    """``chmod [-R] MODE FILE...`` with octal or symbolic (``u+x,go-w``) modes."""
    args = argv[1:]
    recursive = False
    while args and args[0] in ("-R", "--recursive", "-v", "-f", "--"):
        recursive = recursive or args[0] in ("-R", "--recursive")
        args = args[1:]
    if len(args) < 2:
        raise _Usage("chmod: missing operand\nTry 'chmod --help' for more information.\n", 1)
    spec, files = args[0], args[1:]
    status = 0
    for name in files:
        try:
            local = sh.local(name)
            targets = [local]
            if recursive and local.is_dir():
                targets += [Path(d) / f for d, ds, fs in os.walk(local) for f in ds + fs]
            for target in targets:
                st = os.stat(target)
                mode = _chmod_mode(spec, st.st_mode, stat.S_ISDIR(st.st_mode))
                if mode is None:
                    raise _Usage(
                        f"chmod: invalid mode: '{spec}'\nTry 'chmod --help' for more information.\n", 1
                    )
                os.chmod(target, mode)
        except OSError as exc:
            io.err.write(f"chmod: cannot access '{name}': {_strerror(exc)}\n")
            status = 1
    return status


@_builtin("chown", "chgrp")
def _b_chown(sh: _Shell, argv: list[str], io: _IO) -> int:
    """``chown [-R] OWNER[:GROUP] FILE...``: recorded in ``owners.json`` (real when the root is ``/``)."""
    args = argv[1:]
    recursive = False
    while args and args[0].startswith("-") and args[0] != "-":
        recursive = recursive or args[0] in ("-R", "--recursive")
        args = args[1:]
    if len(args) < 2:
        raise _Usage(f"{argv[0]}: missing operand\nTry '{argv[0]} --help' for more information.\n", 1)
    spec, files = args[0], args[1:]
    if argv[0] == "chgrp":
        spec = ":" + spec
    user, _, group = spec.replace(".", ":", 1).partition(":") if ":" not in spec else spec.partition(":")
    owners = _load_owners(sh) if not sh.fs.identity else {}
    status = 0
    for name in files:
        try:
            local = sh.local(name)
            os.stat(local)
        except OSError as exc:
            io.err.write(f"{argv[0]}: cannot access '{name}': {_strerror(exc)}\n")
            status = 1
            continue
        targets = [local]
        if recursive and local.is_dir():
            targets += [Path(d) / f for d, ds, fs in os.walk(local) for f in ds + fs]
        for target in targets:
            if sh.fs.identity:
                import shutil

                try:
                    if user or group:  # chown(1) with ":" alone changes nothing
                        shutil.chown(target, user or None, group or None)  # type: ignore[arg-type]
                except (OSError, LookupError) as exc:
                    io.err.write(f"{argv[0]}: changing ownership of '{name}': {exc}\n")
                    status = 1
                continue
            key = sh.fs.host_path(target)
            old_user, _, old_group = owners.get(key, "root:root").partition(":")
            owners[key] = f"{user or old_user}:{group or old_group or user}"
    if not sh.fs.identity:
        _save_owners(sh, owners)
    return status


@_builtin("ln")
def _b_ln(sh: _Shell, argv: list[str], io: _IO) -> int:
    """``ln [-s] [-f] [-n] [-T] TARGET [LINK]``: symbolic links keep the host path they were given."""
    opts, args = _parse_opts(
        argv,
        "sfnTrv",
        long={"symbolic": "s", "force": "f", "no-dereference": "n", "no-target-directory": "T"},
    )
    if not args:
        raise _Usage("ln: missing file operand\nTry 'ln --help' for more information.\n", 1)
    target = args[0]
    link = args[1] if len(args) > 1 else os.path.basename(target.rstrip("/"))
    try:
        link_local = sh.local(link, follow=not ("n" in opts or "T" in opts))
        if link_local.is_dir() and not ("n" in opts and link_local.is_symlink()) and "T" not in opts:
            link_local = link_local / os.path.basename(target.rstrip("/"))
        elif "n" in opts and link_local.is_symlink():
            link_local = sh.local(link, follow=False)
        if os.path.lexists(link_local):
            if "f" not in opts:
                io.err.write(
                    f"ln: failed to create {'symbolic ' if 's' in opts else 'hard '}link "
                    f"'{link}': File exists\n"
                )
                return 1
            os.unlink(link_local)
        if "s" in opts:
            os.symlink(target, link_local)
        else:
            os.link(sh.local(target), link_local)
    except OSError as exc:
        io.err.write(
            f"ln: failed to create {'symbolic ' if 's' in opts else 'hard '}link '{link}': {_strerror(exc)}\n"
        )
        return 1
    return 0


def _mode_string(mode: int) -> str:
    return stat.filemode(mode)


@_builtin("ls")
def _b_ls(sh: _Shell, argv: list[str], io: _IO) -> int:
    """``ls [-1aAld] [PATH...]``: names sorted, one per line (its output is never a terminal)."""
    opts, paths = _parse_opts(argv, "1aAldFh", long={"all": "a", "almost-all": "A", "directory": "d"})
    paths = paths or ["."]
    status = 0
    files: list[str] = []
    dirs: list[str] = []
    for name in paths:
        try:
            local = sh.local(name)
        except OSError as exc:
            io.err.write(f"ls: cannot access '{name}': {_strerror(exc)}\n")
            status = 2
            continue
        if not os.path.lexists(local):
            io.err.write(f"ls: cannot access '{name}': No such file or directory\n")
            status = 2
        elif local.is_dir() and "d" not in opts:
            dirs.append(name)
        else:
            files.append(name)

    def line(name: str, local: Path) -> str:
        if "l" not in opts:
            return name
        st = os.lstat(local)
        user, group = _owner_of(sh, sh.fs.host_path(local), st)
        when = time.localtime(st.st_mtime)
        date = (
            time.strftime("%b %e %H:%M", when)
            if time.time() - st.st_mtime < 15552000
            else time.strftime("%b %e  %Y", when)
        )
        text = f"{_mode_string(st.st_mode)} {st.st_nlink} {user} {group} {st.st_size:>4} {date} {name}"
        if stat.S_ISLNK(st.st_mode):
            text += f" -> {os.readlink(local)}"
        return text

    out: list[str] = [line(f, sh.local(f, follow=False)) for f in sorted(files)]
    for index, name in enumerate(sorted(dirs)):
        local = sh.local(name)
        if len(paths) > 1:
            if out or index:
                out.append("")
            out.append(f"{name}:")
        entries = sorted(os.listdir(local))
        if "a" in opts:
            entries = [".", "..", *entries]
        elif "A" not in opts:
            entries = [e for e in entries if not e.startswith(".")]
        if "l" in opts:
            blocks = sum(os.lstat(local / e).st_blocks for e in entries if e not in (".", "..")) // 2
            out.append(f"total {blocks}")
            out.extend(line(e, local / e if e not in (".", "..") else local) for e in entries)
        else:
            out.extend(entries)
    if out:
        io.out.write("\n".join(out) + "\n")
    return status


@_builtin("touch")
def _b_touch(sh: _Shell, argv: list[str], io: _IO) -> int:
    opts, files = _parse_opts(argv, "cam", "dt")
    status = 0
    for name in files:
        try:
            local = sh.local(name)
            if not local.exists():
                if "c" in opts:
                    continue
                local.touch()
            else:
                os.utime(local)
        except OSError as exc:
            io.err.write(f"touch: cannot touch '{name}': {_strerror(exc)}\n")
            status = 1
    return status


@_builtin("sha256sum")
def _b_sha256sum(sh: _Shell, argv: list[str], io: _IO) -> int:
    """``sha256sum [FILE...]`` (``-`` or nothing: stdin)."""
    _, files = _parse_opts(argv, "bt", long={"binary": "b", "text": "t"})
    status = 0
    for name in files or ["-"]:
        try:
            data = sh.read_file(name, io).encode("utf-8", "surrogateescape")
        except OSError as exc:
            io.err.write(f"sha256sum: {name}: {_strerror(exc)}\n")
            status = 1
            continue
        io.out.write(f"{hashlib.sha256(data).hexdigest()}  {name}\n")
    return status


_FILE_TYPES = [
    (stat.S_ISREG, "regular file"),
    (stat.S_ISDIR, "directory"),
    (stat.S_ISLNK, "symbolic link"),
    (stat.S_ISFIFO, "fifo"),
    (stat.S_ISSOCK, "socket"),
    (stat.S_ISCHR, "character special file"),
    (stat.S_ISBLK, "block special file"),
]


@_builtin("stat")
def _b_stat(sh: _Shell, argv: list[str], io: _IO) -> int:
    """``stat [-L] -c FORMAT FILE...``: ``%a %A %U %G %u %g %s %n %N %F %Y %y %i %h``."""
    opts, files = _parse_opts(argv, "Lt", "c", long={"format": "c", "dereference": "L", "printf": "c"})
    if "c" not in opts:
        raise _Usage("stat: the simulator's stat needs -c FORMAT\n", 1)
    status = 0
    for name in files:
        try:
            local = sh.local(name, follow="L" in opts)
            st = os.stat(local) if "L" in opts else os.lstat(local)
        except OSError as exc:
            io.err.write(f"stat: cannot statx '{name}': {_strerror(exc)}\n")
            status = 1
            continue
        user, group = _owner_of(sh, sh.fs.host_path(local), st)
        kind = next((t for f, t in _FILE_TYPES if f(st.st_mode)), "unknown")
        if kind == "regular file" and st.st_size == 0:
            kind = "regular empty file"
        values = {
            "a": f"{stat.S_IMODE(st.st_mode):o}",
            "A": _mode_string(st.st_mode),
            "U": user,
            "G": group,
            "u": "0" if user == "root" else str(st.st_uid),
            "g": "0" if group == "root" else str(st.st_gid),
            "s": str(st.st_size),
            "n": name,
            "N": f"'{name}'",
            "F": kind,
            "Y": str(int(st.st_mtime)),
            "y": time.strftime("%Y-%m-%d %H:%M:%S.000000000 %z", time.localtime(st.st_mtime)),
            "i": str(st.st_ino),
            "h": str(st.st_nlink),
            "%": "%",
        }
        def field(m: re.Match[str], v: dict[str, str] = values) -> str:
            return v.get(m.group(1), m.group())

        text = re.sub(r"%(.)", field, opts["c"])
        io.out.write(text + "\n")
    return status


def _head_tail(sh: _Shell, argv: list[str], io: _IO, *, head: bool) -> int:
    name = argv[0]
    args = list(argv)
    for index, arg in enumerate(args[1:], 1):  # -5 is -n 5
        if re.fullmatch(r"-\d+", arg):
            args[index] = "-n" + arg[1:]
    opts, files = _parse_opts(args, "qvF", "nc", name=name, long={"lines": "n", "bytes": "c", "quiet": "q"})
    count_text = opts.get("n", opts.get("c", "10"))
    from_start = count_text.startswith("+")
    negative = count_text.startswith("-")
    try:
        count = int(count_text.lstrip("+-") or "0")
    except ValueError:
        kind = "lines" if "c" not in opts else "bytes"
        io.err.write(f"{name}: invalid number of {kind}: '{count_text}'\n")
        return 1
    status = 0
    files = files or ["-"]
    for index, fname in enumerate(files):
        try:
            text = sh.read_file(fname, io)
        except OSError as exc:
            io.err.write(f"{name}: cannot open '{fname}' for reading: {_strerror(exc)}\n")
            status = 1
            continue
        if len(files) > 1 and "q" not in opts:
            io.out.write(("\n" if index else "") + f"==> {fname} <==\n")
        if "c" in opts:
            data = text
            if head:
                io.out.write(data[: len(data) - count] if negative else data[:count])
            else:
                io.out.write(data[count - 1 :] if from_start else data[-count:] if count else "")
            continue
        lines = text.splitlines(keepends=True)
        if head:
            chosen = lines[: len(lines) - count] if negative else lines[:count]
        else:
            chosen = lines[max(count - 1, 0) :] if from_start else (lines[-count:] if count else [])
        io.out.write("".join(chosen))
    return status


@_builtin("head")
def _b_head(sh: _Shell, argv: list[str], io: _IO) -> int:
    """``head [-n N|-N] [-c N] [FILE...]``."""
    return _head_tail(sh, argv, io, head=True)


@_builtin("tail")
def _b_tail(sh: _Shell, argv: list[str], io: _IO) -> int:
    """``tail [-n N|-n +N|-N] [-c N] [FILE...]`` (``-f`` is not supported: nothing grows in the simulator)."""
    return _head_tail(sh, argv, io, head=False)


_POSIX_CLASSES = {
    "alpha": "a-zA-Z",
    "digit": "0-9",
    "alnum": "a-zA-Z0-9",
    "upper": "A-Z",
    "lower": "a-z",
    "space": r" \t\n\r\f\v",
    "blank": r" \t",
    "punct": r"!-/:-@\[-`{-~",
    "xdigit": "0-9A-Fa-f",
    "print": r" -~",
    "graph": r"!-~",
    "cntrl": r"\x00-\x1f\x7f",
}


def _posix_regex(pattern: str, *, extended: bool) -> str:
    """A POSIX basic/extended regular expression as a Python one."""
    out: list[str] = []
    i = 0
    in_bracket = False
    while i < len(pattern):
        c = pattern[i]
        if in_bracket:
            m = re.match(r"\[:(\w+):\]", pattern[i:])
            if m and m.group(1) in _POSIX_CLASSES:
                out.append(_POSIX_CLASSES[m.group(1)])
                i += len(m.group())
                continue
            if c == "]" and not (out and out[-1] in ("[", "[^")):
                in_bracket = False
                out.append("]")
            elif c == "\\":
                out.append("\\\\")
            elif c == "[":
                out.append("\\[")
            else:
                out.append(c)
            i += 1
            continue
        if c == "[":
            in_bracket = True
            if pattern[i + 1 : i + 2] == "^":
                out.append("[^")
                i += 2
            else:
                out.append("[")
                i += 1
            continue
        if c == "\\" and i + 1 < len(pattern):
            n = pattern[i + 1]
            if not extended and n in "(){}|+?":
                out.append(n)
            elif n in "<>":
                out.append(r"\b")
            else:
                out.append("\\" + n)
            i += 2
            continue
        if not extended and c in "(){}|+?":
            out.append("\\" + c)
        else:
            out.append(c)
        i += 1
    return "".join(out)


@_builtin("grep", "egrep", "fgrep")
def _b_grep(sh: _Shell, argv: list[str], io: _IO) -> int:
    """``grep [-qEFvicxwonhHsl] [-e PAT] PATTERN [FILE...]``; exit 0 matched, 1 none, 2 trouble."""
    opts: dict[str, str] = {}
    patterns: list[str] = []
    operands: list[str] = []
    args = argv[1:]
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            operands.extend(args[i + 1 :])
            break
        if arg.startswith("--"):
            key, _, value = arg[2:].partition("=")
            mapping = {
                "quiet": "q",
                "silent": "q",
                "extended-regexp": "E",
                "fixed-strings": "F",
                "invert-match": "v",
                "ignore-case": "i",
                "count": "c",
                "line-regexp": "x",
                "word-regexp": "w",
                "only-matching": "o",
                "line-number": "n",
                "no-filename": "h",
                "with-filename": "H",
                "no-messages": "s",
                "files-with-matches": "l",
            }
            if key == "regexp":
                patterns.append(value)
            elif key in mapping:
                opts[mapping[key]] = ""
            else:
                io.err.write(f"grep: unrecognized option '{arg}'\n")
                return 2
        elif arg.startswith("-") and len(arg) > 1:
            j = 1
            while j < len(arg):
                c = arg[j]
                if c == "e":
                    value = arg[j + 1 :]
                    if not value:
                        i += 1
                        value = args[i] if i < len(args) else ""
                    patterns.append(value)
                    break
                if c not in "qEFvicxwonhHslrRGP":
                    io.err.write(
                        f"grep: invalid option -- '{c}'\nUsage: grep [OPTION]... PATTERNS [FILE]...\n"
                        "Try 'grep --help' for more information.\n"
                    )
                    return 2
                opts[c] = ""
                j += 1
        else:
            operands.append(arg)
        i += 1
    if not patterns:
        if not operands:
            io.err.write(
                "Usage: grep [OPTION]... PATTERNS [FILE]...\nTry 'grep --help' for more information.\n"
            )
            return 2
        patterns = operands.pop(0).split("\n")
    extended = "E" in opts or argv[0] == "egrep"
    fixed = "F" in opts or argv[0] == "fgrep"
    flags = re.IGNORECASE if "i" in opts else 0
    try:
        regexes = []
        for pattern in patterns:
            body = re.escape(pattern) if fixed else _posix_regex(pattern, extended=extended)
            if "w" in opts:
                body = rf"(?<!\w)(?:{body})(?!\w)"
            if "x" in opts:
                body = rf"^(?:{body})$"
            regexes.append(re.compile(body, flags))
    except re.error:
        io.err.write("grep: Unmatched ( or \\(\n")
        return 2
    files = operands or ["-"]
    show_name = ("H" in opts or len(files) > 1) and "h" not in opts
    matched = False
    trouble = False
    for fname in files:
        try:
            text = sh.read_file(fname, io)
        except OSError as exc:
            if "s" not in opts:
                io.err.write(f"grep: {fname}: {_strerror(exc)}\n")
            trouble = True
            continue
        label = "(standard input)" if fname == "-" else fname
        count = 0
        for number, line in enumerate(text.splitlines(), 1):
            hits = [m for r in regexes for m in r.finditer(line)] if "o" in opts else None
            found = bool(hits) if hits is not None else any(r.search(line) for r in regexes)
            if found == ("v" in opts):
                continue
            count += 1
            matched = True
            if "q" in opts:
                return 0
            if "c" in opts or "l" in opts:
                continue
            prefix = (f"{label}:" if show_name else "") + (f"{number}:" if "n" in opts else "")
            if hits is not None and "v" not in opts:
                for m in hits:
                    if m.group():
                        io.out.write(prefix + m.group() + "\n")
            else:
                io.out.write(prefix + line + "\n")
        if "c" in opts:
            io.out.write((f"{label}:" if show_name else "") + f"{count}\n")
        if "l" in opts and count:
            io.out.write(label + "\n")
    if trouble and not ("q" in opts and matched):
        return 2
    return 0 if matched else 1


@_builtin("cut")
def _b_cut(sh: _Shell, argv: list[str], io: _IO) -> int:
    """``cut -d DELIM -f LIST`` or ``cut -c LIST`` (LIST: ``1``, ``1,3``, ``2-``, ``-2``)."""
    opts, files = _parse_opts(argv, "s", "dfc", long={"delimiter": "d", "fields": "f", "characters": "c"})
    spec = opts.get("f", opts.get("c"))
    if spec is None:
        raise _Usage(
            "cut: you must specify a list of bytes, characters, or fields\n"
            "Try 'cut --help' for more information.\n",
            1,
        )
    ranges: list[tuple[int, int]] = []
    for item in spec.split(","):
        lo, dash, hi = item.partition("-")
        ranges.append((int(lo or 1), int(hi) if hi else (10**9 if dash else int(lo))))

    def pick(values: list[str]) -> list[str]:
        return [v for k, v in enumerate(values, 1) if any(lo <= k <= hi for lo, hi in ranges)]

    delim = opts.get("d", "\t")
    status = 0
    for fname in files or ["-"]:
        try:
            text = sh.read_file(fname, io)
        except OSError as exc:
            io.err.write(f"cut: {fname}: {_strerror(exc)}\n")
            status = 1
            continue
        for line in text.splitlines():
            if "c" in opts:
                io.out.write("".join(pick(list(line))) + "\n")
            elif delim not in line:
                if "s" not in opts:
                    io.out.write(line + "\n")
            else:
                io.out.write(delim.join(pick(line.split(delim))) + "\n")
    return status


def _tr_set(spec: str) -> str:
    spec, _ = _unescape(spec)
    classes = {
        "[:upper:]": "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "[:lower:]": "abcdefghijklmnopqrstuvwxyz",
        "[:digit:]": "0123456789",
        "[:space:]": " \t\n\r\f\v",
        "[:blank:]": " \t",
    }
    for key, value in classes.items():
        spec = spec.replace(key, value)
    out: list[str] = []
    i = 0
    while i < len(spec):
        if i + 2 < len(spec) and spec[i + 1] == "-":
            out.extend(chr(c) for c in range(ord(spec[i]), ord(spec[i + 2]) + 1))
            i += 3
        else:
            out.append(spec[i])
            i += 1
    return "".join(out)


@_builtin("tr")
def _b_tr(sh: _Shell, argv: list[str], io: _IO) -> int:
    """``tr [-d] [-s] SET1 [SET2]`` with ranges and ``[:upper:]``-style classes."""
    opts, sets = _parse_opts(argv, "dsc")
    text = io.stdin.read_all()
    first = _tr_set(sets[0]) if sets else ""
    if "d" in opts:
        text = "".join(c for c in text if c not in first)
    elif len(sets) > 1:
        second = _tr_set(sets[1])
        second = second + second[-1:] * (len(first) - len(second))
        text = text.translate(str.maketrans(first, second[: len(first)]))
    if "s" in opts:
        squeeze = _tr_set(sets[-1]) if sets else ""
        text = re.sub("([" + re.escape(squeeze) + "])\\1+", r"\1", text) if squeeze else text
    io.out.write(text)
    return 0


def _machine(sh: _Shell) -> Any | None:
    try:
        return sh.host.load()
    except (OSError, ValueError):
        return None


@_builtin("uname")
def _b_uname(sh: _Shell, argv: list[str], io: _IO) -> int:
    """``uname [-snrma]``; the kernel release is the machine's ``kernel_release`` when it has one."""
    opts, _ = _parse_opts(argv, "snrvmpioa", long={"kernel-release": "r", "nodename": "n", "all": "a"})
    machine = _machine(sh)
    hostname = machine.hostname if machine else "localhost"
    release = getattr(machine, "kernel_release", None) or "6.8.0-57-generic"
    values = {
        "s": "Linux",
        "n": hostname,
        "r": release,
        "v": "#57-Ubuntu SMP PREEMPT_DYNAMIC",
        "m": "x86_64",
        "p": "x86_64",
        "i": "x86_64",
        "o": "GNU/Linux",
    }
    if "a" in opts:
        keys = "snrvmpio"
    else:
        keys = "".join(k for k in "snrvmpio" if k in opts) or "s"
    io.out.write(" ".join(values[k] for k in keys) + "\n")
    return 0


@_builtin("hostname")
def _b_hostname(sh: _Shell, argv: list[str], io: _IO) -> int:
    machine = _machine(sh)
    name = machine.hostname if machine else "localhost"
    if "-s" in argv[1:] or "--short" in argv[1:]:
        name = name.split(".")[0]
    io.out.write(name + "\n")
    return 0


@_builtin("id")
def _b_id(sh: _Shell, argv: list[str], io: _IO) -> int:
    """``id [-u|-g|-G] [-n]``: the login is the environment's ``USER`` (root: 0, anyone else: 1000)."""
    opts, _ = _parse_opts(argv, "ugGnr")
    user = sh.frame.vars.get("USER", "root")
    uid = 0 if user == "root" else 1000
    if "u" in opts or "g" in opts or "G" in opts:
        io.out.write((user if "n" in opts else str(uid)) + "\n")
    else:
        io.out.write(f"uid={uid}({user}) gid={uid}({user}) groups={uid}({user})\n")
    return 0


@_builtin("sleep")
def _b_sleep(sh: _Shell, argv: list[str], io: _IO) -> int:
    """``sleep N[smhd]``: validated, then capped at :data:`SLEEP_CAP` (nothing in the sim needs time to pass).
    """
    if len(argv) < 2:
        raise _Usage("sleep: missing operand\nTry 'sleep --help' for more information.\n", 1)
    total = 0.0
    for arg in argv[1:]:
        m = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)([smhd]?)", arg)
        if not m:
            raise _Usage(
                f"sleep: invalid time interval '{arg}'\nTry 'sleep --help' for more information.\n", 1
            )
        total += float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    time.sleep(min(total, SLEEP_CAP))
    return 0


# bash's own builtins among BUILTINS: ``command -v`` prints their bare name, for the rest a path
_BASH_BUILTINS = frozenset({"echo", "printf", "true", "false", "test", "[", "pwd", "read", ":", "kill"})


def _describe(sh: _Shell, name: str) -> str | None:
    if name in sh.frame.funcs or name in _SHELL_ONLY or name in _BASH_BUILTINS:
        return name
    if name in BUILTINS or name in _standins():
        return f"/usr/bin/{name}"
    return sh.search_path(name)


@_builtin("command", shell_only=True)
def _b_command(sh: _Shell, argv: list[str], io: _IO) -> int:
    """``command -v NAME...`` (what would run) or ``command NAME ARGS`` (run it, skipping functions)."""
    args = argv[1:]
    if args and args[0] in ("-v", "-V"):
        status = 0 if args[1:] else 1
        for name in args[1:]:
            found = _describe(sh, name)
            if found is None:
                status = 1
            else:
                io.out.write(found + "\n")
        return status
    if args and args[0] == "-p":
        args = args[1:]
    if not args:
        return 0
    return sh.dispatch(args, {}, io, functions=False)


@_builtin("type", shell_only=True)
def _b_type(sh: _Shell, argv: list[str], io: _IO) -> int:
    status = 0
    for name in argv[1:]:
        found = _describe(sh, name)
        if found is None:
            sh.error(io, f"type: {name}: not found")
            status = 1
        elif found == name:
            io.out.write(f"{name} is a shell {'function' if name in sh.frame.funcs else 'builtin'}\n")
        else:
            io.out.write(f"{name} is {found}\n")
    return status


@_builtin("mktemp")
def _b_mktemp(sh: _Shell, argv: list[str], io: _IO) -> int:
    """``mktemp [-d] [-p DIR] [-t] [TEMPLATE]``: made inside the host root."""
    import secrets
    import string

    opts, args = _parse_opts(argv, "dqtu", "p", long={"directory": "d", "tmpdir": "p", "quiet": "q"})
    template = args[0] if args else "tmp.XXXXXXXXXX"
    m = re.search(r"X{3,}$", template)
    if not m:
        io.err.write(f"mktemp: too few X's in template '{template}'\n")
        return 1
    if "p" in opts or "t" in opts or not args or "/" not in template:
        base = opts.get("p") or sh.frame.vars.get("TMPDIR") or "/tmp"
        template = base.rstrip("/") + "/" + template if not template.startswith("/") else template
    alphabet = string.ascii_letters + string.digits
    stem = template[: len(template) - len(m.group())]
    for _ in range(100):
        name = stem + "".join(secrets.choice(alphabet) for _ in m.group())
        path = _abspath(name, sh.frame.cwd)
        try:
            local = sh.fs.local(path)
            if path.startswith("/tmp/"):  # a fresh host root may not have /tmp yet
                local.parent.mkdir(parents=True, exist_ok=True)
            if "d" in opts:
                local.mkdir(mode=0o700)
            else:
                fd = os.open(local, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
                os.close(fd)
        except FileExistsError:
            continue
        except OSError as exc:
            io.err.write(
                f"mktemp: failed to create {'directory' if 'd' in opts else 'file'} via template "
                f"'{template}': {_strerror(exc)}\n"
            )
            return 1
        io.out.write(name + "\n")
        return 0
    return 1


@_builtin("readlink", "realpath")
def _b_readlink(sh: _Shell, argv: list[str], io: _IO) -> int:
    """``readlink [-f|-e|-m] [-n] PATH``, ``realpath PATH``: links resolved inside the host root."""
    opts, paths = _parse_opts(
        argv,
        "femnqsvz",
        long={
            "canonicalize": "f",
            "canonicalize-existing": "e",
            "canonicalize-missing": "m",
            "no-newline": "n",
        },
    )
    canonical = argv[0] == "realpath" or any(k in opts for k in "fem")
    status = 0
    for name in paths:
        path = _abspath(name, sh.frame.cwd)
        if not canonical:
            try:
                io.out.write(os.readlink(sh.fs.local(path, follow=False)) + ("" if "n" in opts else "\n"))
            except OSError:
                status = 1
            continue
        try:
            local = sh.fs.local(path)
        except OSError:
            status = 1
            continue
        must_exist = "e" in opts or (argv[0] == "realpath" and "m" not in opts)
        if ("m" not in opts and not local.parent.exists()) or (must_exist and not os.path.lexists(local)):
            if argv[0] == "realpath":
                io.err.write(f"realpath: {name}: No such file or directory\n")
            status = 1
            continue
        io.out.write(sh.fs.host_path(local) + ("" if "n" in opts else "\n"))
    return status


@_builtin("base64")
def _b_base64(sh: _Shell, argv: list[str], io: _IO) -> int:
    """``base64 [-d] [-w COLS] [FILE]``."""
    opts, files = _parse_opts(argv, "di", "w", long={"decode": "d", "wrap": "w", "ignore-garbage": "i"})
    try:
        data = sh.read_file(files[0] if files else "-", io)
    except OSError as exc:
        io.err.write(f"base64: {files[0]}: {_strerror(exc)}\n")
        return 1
    if "d" in opts:
        try:
            raw = base64.b64decode("".join(data.split()), validate=True)
        except ValueError:
            io.err.write("base64: invalid input\n")
            return 1
        io.out.write(raw.decode("utf-8", "surrogateescape"))
        return 0
    encoded = base64.b64encode(data.encode("utf-8", "surrogateescape")).decode()
    wrap = int(opts.get("w", "76"))
    if wrap:
        encoded = "\n".join(encoded[i : i + wrap] for i in range(0, len(encoded), wrap))
    io.out.write(encoded + "\n" if encoded else "")
    return 0


@_builtin("tee")
def _b_tee(sh: _Shell, argv: list[str], io: _IO) -> int:
    """``tee [-a] FILE...``."""
    opts, files = _parse_opts(argv, "ai", long={"append": "a"})
    data = io.stdin.read_all()
    status = 0
    for name in files:
        try:
            if name != "/dev/null":
                with open(
                    sh.local(name), "a" if "a" in opts else "w", encoding="utf-8", errors="surrogateescape"
                ) as f:
                    f.write(data)
        except OSError as exc:
            io.err.write(f"tee: {name}: {_strerror(exc)}\n")
            status = 1
    io.out.write(data)
    return status


@_builtin("sort")
def _b_sort(sh: _Shell, argv: list[str], io: _IO) -> int:
    """``sort [-u] [-n] [-r] [-V] [-t SEP] [-k N[,M]] [FILE...]``."""
    opts, files = _parse_opts(
        argv,
        "unrVfb",
        "tk",
        long={
            "unique": "u",
            "numeric-sort": "n",
            "reverse": "r",
            "version-sort": "V",
            "field-separator": "t",
            "key": "k",
        },
    )
    lines: list[str] = []
    for name in files or ["-"]:
        try:
            lines.extend(sh.read_file(name, io).splitlines())
        except OSError as exc:
            io.err.write(f"sort: cannot read: {name}: {_strerror(exc)}\n")
            return 2
    sep = opts.get("t")

    def field_of(line: str) -> str:
        if "k" not in opts:
            return line
        start, _, end = opts["k"].partition(",")
        a = int(re.match(r"\d+", start).group()) if re.match(r"\d+", start) else 1  # type: ignore[union-attr]
        b = int(re.match(r"\d+", end).group()) if re.match(r"\d+", end) else None  # type: ignore[union-attr]
        parts = line.split(sep) if sep else line.split()
        chosen = parts[a - 1 : b]
        return (sep or " ").join(chosen)

    def key(line: str) -> Any:
        text = field_of(line)
        if "f" in opts:
            text = text.lower()
        if "n" in opts:
            m = re.match(r"\s*(-?\d+(?:\.\d+)?)", text)
            return (float(m.group(1)) if m else 0.0, line)
        if "V" in opts:
            return ([(0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"(\d+)", text) if p], line)
        return (text, line)

    lines.sort(key=key, reverse="r" in opts)
    if "u" in opts:
        seen: set[Any] = set()
        unique = []
        for line in lines:
            k = key(line)[0]
            k = tuple(k) if isinstance(k, list) else k
            if k not in seen:
                seen.add(k)
                unique.append(line)
        lines = unique
    io.out.write("".join(line + "\n" for line in lines))
    return 0


@_builtin("uniq")
def _b_uniq(sh: _Shell, argv: list[str], io: _IO) -> int:
    opts, files = _parse_opts(argv, "cdu")
    text = sh.read_file(files[0] if files else "-", io)
    groups: list[list[str]] = []
    for line in text.splitlines():
        if groups and groups[-1][0] == line:
            groups[-1].append(line)
        else:
            groups.append([line])
    for group in groups:
        if ("d" in opts and len(group) < 2) or ("u" in opts and len(group) > 1):
            continue
        io.out.write((f"{len(group):>7} " if "c" in opts else "") + group[0] + "\n")
    return 0


@_builtin("wc")
def _b_wc(sh: _Shell, argv: list[str], io: _IO) -> int:
    """``wc [-l] [-w] [-c] [FILE...]``."""
    opts, files = _parse_opts(argv, "lwcm", long={"lines": "l", "words": "w", "bytes": "c", "chars": "m"})
    keys = [k for k in "lwc" if k in opts or (k == "c" and "m" in opts)] or ["l", "w", "c"]
    rows: list[tuple[list[int], str]] = []
    status = 0
    for name in files or ["-"]:
        try:
            text = sh.read_file(name, io)
        except OSError as exc:
            io.err.write(f"wc: {name}: {_strerror(exc)}\n")
            status = 1
            continue
        counts = {
            "l": text.count("\n"),
            "w": len(text.split()),
            "c": len(text.encode("utf-8", "surrogateescape")),
        }
        rows.append(([counts[k] for k in keys], "" if name == "-" else name))
    if len(rows) > 1:
        rows.append(([sum(r[0][i] for r in rows) for i in range(len(keys))], "total"))
    single = len(keys) == 1 and len(rows) == 1
    width = 1 if single else max(len(str(v)) for r in rows for v in r[0]) if rows else 1
    if not files and not single:
        width = max(width, 7)
    for values, name in rows:
        io.out.write(" ".join(f"{v:>{width}}" for v in values) + (f" {name}" if name else "") + "\n")
    return status


@_builtin("basename")
def _b_basename(sh: _Shell, argv: list[str], io: _IO) -> int:
    if len(argv) < 2:
        raise _Usage("basename: missing operand\nTry 'basename --help' for more information.\n", 1)
    name = argv[1].rstrip("/") or "/"
    base = os.path.basename(name) or name
    if len(argv) > 2 and base.endswith(argv[2]) and base != argv[2]:
        base = base[: -len(argv[2])]
    io.out.write(base + "\n")
    return 0


@_builtin("dirname")
def _b_dirname(sh: _Shell, argv: list[str], io: _IO) -> int:
    if len(argv) < 2:
        raise _Usage("dirname: missing operand\nTry 'dirname --help' for more information.\n", 1)
    for name in argv[1:]:
        stripped = name.rstrip("/")
        if not stripped:
            io.out.write("/\n")
            continue
        head = stripped.rpartition("/")[0] if "/" in stripped else "."
        io.out.write((head.rstrip("/") or "/") + "\n")
    return 0


@_builtin("env")
def _b_env(sh: _Shell, argv: list[str], io: _IO) -> int:
    """``env [-i] [-u NAME] [NAME=VALUE...] [COMMAND ARGS]``."""
    args = argv[1:]
    env = sh.frame.environ()
    while args:
        if args[0] in ("-i", "-", "--ignore-environment"):
            env = {}
            args = args[1:]
        elif args[0] == "-u" and len(args) > 1:
            env.pop(args[1], None)
            args = args[2:]
        elif "=" in args[0] and _NAME.fullmatch(args[0].partition("=")[0]):
            key, _, value = args[0].partition("=")
            env[key] = value
            args = args[1:]
        elif args[0] == "--":
            args = args[1:]
            break
        else:
            break
    if not args:
        io.out.write("".join(f"{k}={v}\n" for k, v in env.items()))
        return 0
    saved = sh.frame
    sh.frame = saved.copy()
    sh.frame.vars = dict(env)
    sh.frame.exported = set(env)
    sh.frame.funcs = {}
    try:
        return sh.dispatch(args, {}, io)
    finally:
        sh.frame = saved


@_builtin("printenv")
def _b_printenv(sh: _Shell, argv: list[str], io: _IO) -> int:
    env = sh.frame.environ()
    if len(argv) == 1:
        io.out.write("".join(f"{k}={v}\n" for k, v in env.items()))
        return 0
    status = 0
    for name in argv[1:]:
        if name in env:
            io.out.write(env[name] + "\n")
        else:
            status = 1
    return status


@_builtin("timeout")
def _b_timeout(sh: _Shell, argv: list[str], io: _IO) -> int:
    """``timeout [-s SIG] [-k D] DURATION COMMAND``: in-process commands cannot hang; scripts get the limit.
    """
    args = argv[1:]
    while args and args[0].startswith("-"):
        if args[0] in ("-s", "-k", "--signal", "--kill-after") and len(args) > 1:
            args = args[2:]
        else:
            args = args[1:]
    if len(args) < 2:
        raise _Usage("timeout: missing operand\nTry 'timeout --help' for more information.\n", 125)
    m = re.fullmatch(r"(\d+(?:\.\d*)?)([smhd]?)", args[0])
    if not m:
        raise _Usage(
            f"timeout: invalid time interval '{args[0]}'\nTry 'timeout --help' for more information.\n", 125
        )
    seconds = float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    name = args[1]
    if "/" in name or (name not in BUILTINS and name not in _standins()):
        path = _abspath(name, sh.frame.cwd) if "/" in name else sh.search_path(name)
        if path is not None:
            return sh.exec_path(path, args[1:], {}, io, shown=name, timeout=seconds or None)
    return sh.dispatch(args[1:], {}, io, functions=False)


@_builtin("nproc")
def _b_nproc(sh: _Shell, argv: list[str], io: _IO) -> int:
    machine = _machine(sh)
    count = sum(len(n.cpus) for n in machine.numa_nodes) if machine else 1
    io.out.write(f"{count or 1}\n")
    return 0
