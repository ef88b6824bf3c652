"""The ``systemctl`` (and ``journalctl``) stand-in: unit files read from the host's tree, commands really run.

Why really run them: a unit gpuprov renders is only right if its ``ExecStart`` path exists, its
``Environment`` and ``EnvironmentFile`` give the helper what it needs and its helper works; a simulator that
merely recorded "started" would pass a broken unit. So ``start`` runs ``ExecStartPre=``, ``ExecStart=``,
``ExecStartPost=`` (and ``stop`` runs ``ExecStop=``/``ExecStopPost=``) through
:func:`gpuprov.sim.shell.run_argv` — stand-ins in process, rendered scripts under the real ``bash`` with the
stand-ins on PATH — with the environment systemd would give them, and a unit whose command fails ends
``failed`` with systemd's own messages.

Modelled: unit files and drop-ins (``UNIT.d/*.conf``) from ``/etc/systemd/system``, ``/run/systemd/system``,
``/usr/local/lib/systemd/system``, ``/usr/lib/systemd/system``, ``/lib/systemd/system``; template units
(``name@.service``) with ``%i %I %n %N %p %P %f %t %S %C %L %E %T %V %h %u %U %H %l %%``; masking (a link to
``/dev/null``); the loaded configuration and ``daemon-reload`` (a unit changed on disk after it was loaded
runs its old configuration and gets systemd's warning until the reload); ``Type=`` oneshot
(``RemainAfterExit=``), simple, exec, forking (with or without ``PIDFile=``), notify/dbus/idle as simple;
``-``/``@``/``:``/``+``/``!`` command prefixes; ``Environment=``, ``EnvironmentFile=`` (``-`` optional),
``WorkingDirectory=``, ``User=``/ ``Group=`` (recorded; commands run as the simulator's user),
``RuntimeDirectory=`` and the other ``*Directory=`` settings, ``TimeoutStartSec=``/``TimeoutStopSec=`` (a
real-interpreter script is killed after it), ``Condition*``/``Assert*`` on paths, ``Requires=``/``Wants=`` of
other services, ``[Install]`` ``WantedBy=``, ``RequiredBy=``, ``Alias=``, ``Also=``, ``DefaultInstance=``;
enable/disable symlinks as real systemctl makes them (and its implicit reload).

A service's processes are the simulated daemons its commands spawn (:func:`gpuprov.sim.shell.spawn_daemon`,
tagged with the unit as a cgroup would tag them): the main PID of a ``forking``/``simple`` service is the
daemon its command left behind, the service is ``active (running)`` while that daemon lives, and ``stop``
kills what is left of the unit's daemons after ``ExecStop=``.

Not modelled: ``Restart=`` (nothing crashes by itself), socket/timer/path units, ordering between units that
are started one at a time anyway, ``KillMode=``, watchdogs, resource limits, sandboxing, user managers.
Inactive units are never unloaded, so a unit edited on disk needs ``daemon-reload`` even when systemd would
have garbage-collected and reloaded it — stricter than systemd, never looser.

State lives in ``machine.services["systemd"]``: per unit its loaded configuration (fragment, drop-ins, content
digest, entries), active/sub state, result, main PID, the environment ``ExecStart`` ran with, the user, and
its journal lines."""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .commands import stand_in
from .host import ROOT_ENV, STATE_ENV, Result, SimHost
from .shell import (
    UNIT_ENV,
    HostFS,
    daemon_alive,
    daemon_info,
    daemons_of_unit,
    kill_daemon,
    run_argv,
    which,
)

__all__ = ["SEARCH_PATH", "SERVICE_PATH", "boot", "journalctl", "systemctl", "unit_state"]

SEARCH_PATH = (
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/local/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
)
SERVICE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"  # systemd's PATH for services
UNIT_TYPES = (
    "service",
    "socket",
    "target",
    "timer",
    "mount",
    "path",
    "slice",
    "scope",
    "device",
    "swap",
    "automount",
)
BOOT_TARGETS = ("sysinit.target", "basic.target", "multi-user.target", "default.target", "graphical.target")
JOURNAL_MAX = 500
DEFAULT_TIMEOUT = 90.0
FEATURES = (
    "+PAM +AUDIT +SELINUX +APPARMOR +IMA +SMACK +SECCOMP +GCRYPT -GNUTLS +OPENSSL +ACL +BLKID +CURL "
    "+ELFUTILS +FIDO2 +IDN2 -IDN +IPTC +KMOD +LIBCRYPTSETUP +LIBFDISK +PCRE2 -PWQUALITY +P11KIT "
    "+QRENCODE +TPM2 +BZIP2 +LZ4 +XZ +ZLIB +ZSTD -BPF_FRAMEWORK -XKBCOMMON +UTMP +SYSVINIT "
    "default-hierarchy=unified"
)
RESULT_TEXT = {
    "resources": "of unavailable resources or another system error",
    "protocol": "the service did not take the steps required by its unit configuration",
    "timeout": "a timeout was exceeded",
    "exit-code": "the control process exited with error code",
    "signal": "a fatal signal was delivered to the control process",
    "core-dump": "a fatal signal was delivered causing the control process to dump core",
    "watchdog": "the service failed to send watchdog ping",
    "start-limit": "start of the service was attempted too often",
}
NO_INSTALL_TEXT = """\
The unit files have no installation config (WantedBy=, RequiredBy=, Also,
Alias= settings in the [Install] section, and DefaultInstance= for template
units). This means they are not meant to be enabled or disabled using systemctl.

Possible reasons for having these kinds of units are:
\u2022 A unit may be statically enabled by being symlinked from another unit's
  .wants/, .requires/, or .upholds/ directory.
\u2022 A unit's purpose may be to act as a helper for some other unit which has
  a requirement dependency on it.
\u2022 A unit may be started when needed via activation (socket, path, timer,
  D-Bus, udev, scripted systemctl call, ...).
\u2022 In case of template units, the unit is meant to be enabled with some
  instance name specified.
"""


# --- names


def normalize(name: str) -> str:
    """``foo`` -> ``foo.service``, as systemctl completes a name without a type suffix."""
    base, dot, suffix = name.rpartition(".")
    if dot and suffix in UNIT_TYPES and base:
        return name
    return name + ".service"


def split_name(name: str) -> tuple[str, str | None, str]:
    """(prefix, instance or None, suffix): ``a@b.service`` -> (``a``, ``b``, ``service``)."""
    stem, _, suffix = name.rpartition(".")
    prefix, at, instance = stem.partition("@")
    return prefix, (instance if at else None), suffix


def template_of(name: str) -> str | None:
    prefix, instance, suffix = split_name(name)
    return f"{prefix}@.{suffix}" if instance else None


def unescape(text: str) -> str:
    """systemd-escape's inverse for ``%I``/``%P``: ``-`` is ``/``, ``\\xNN`` a byte."""
    text = text.replace("-", "/")
    return re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), text)


# --- unit files


def parse_unit_text(text: str) -> list[tuple[str, str, str]]:
    """(section, key, value) in file order; continuation lines joined, comments dropped."""
    entries: list[tuple[str, str, str]] = []
    section = ""
    pending = ""
    for raw in text.split("\n"):
        line = pending + raw.strip() if pending else raw.strip()
        if not pending and (not line or line[0] in "#;"):
            continue
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, eq, value = line.partition("=")
        if eq and section:
            entries.append((section, key.strip(), value.strip()))
    return entries


@dataclass
class UnitConfig:
    """A unit's configuration as loaded: fragment plus drop-ins, merged in systemd's order."""

    name: str
    fragment: str | None = None
    masked: bool = False
    dropins: list[str] = field(default_factory=list)
    entries: list[tuple[str, str, str]] = field(default_factory=list)
    digest: str = ""

    @property
    def found(self) -> bool:
        return self.fragment is not None or self.masked

    def values(self, section: str, key: str) -> list[str]:
        """All values of a list setting; an empty assignment resets the list, as in systemd."""
        out: list[str] = []
        for sec, k, v in self.entries:
            if sec == section and k == key:
                if v == "":
                    out = []
                else:
                    out.append(v)
        return out

    def value(self, section: str, key: str, default: str | None = None) -> str | None:
        values = self.values(section, key)
        return values[-1] if values else default

    def flag(self, section: str, key: str, default: bool = False) -> bool:
        value = self.value(section, key)
        if value is None:
            return default
        return value.lower() in ("1", "yes", "true", "on")

    def has_install(self) -> bool:
        return any(sec == "Install" for sec, _, _ in self.entries)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "fragment": self.fragment,
            "masked": self.masked,
            "dropins": self.dropins,
            "entries": [list(e) for e in self.entries],
            "digest": self.digest,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> UnitConfig:
        return cls(
            data["name"],
            data.get("fragment"),
            bool(data.get("masked")),
            list(data.get("dropins", [])),
            [tuple(e) for e in data.get("entries", [])],
            data.get("digest", ""),
        )


class UnitFiles:
    """The unit files of one host, read through its root."""

    def __init__(self, host: SimHost) -> None:
        self.host = host
        self.fs = HostFS(host.root)
        # Set by the verbs that only look (show, is-active, status...): their unit directories cannot change while
        # they run, so each is listed once instead of resolving every (directory, unit) path.
        self.settled = False
        self._listings: dict[str, frozenset[str] | None] = {}

    def _lexists(self, path: str) -> bool:
        if self.settled:
            directory, _, name = path.rpartition("/")
            if directory not in self._listings:
                try:
                    self._listings[directory] = frozenset(os.listdir(self.fs.local(directory)))
                except OSError:
                    self._listings[directory] = None
            names = self._listings[directory]
            return names is not None and name in names
        try:
            return os.path.lexists(self.fs.local(path, follow=False))
        except OSError:
            return False

    def _link_target(self, path: str) -> str | None:
        try:
            return os.readlink(self.fs.local(path, follow=False))
        except OSError:
            return None

    def read(self, path: str) -> str:
        with open(self.fs.local(path), encoding="utf-8", errors="surrogateescape") as f:
            return f.read()

    def fragment(self, name: str) -> tuple[str | None, bool]:
        """(path of the unit file, masked) for ``name``; an instance falls back to its template."""
        candidates = [name]
        template = template_of(name)
        if template:
            candidates.append(template)
        for candidate in candidates:
            for directory in SEARCH_PATH:
                path = f"{directory}/{candidate}"
                if not self._lexists(path):
                    continue
                target = self._link_target(path)
                if target == "/dev/null":
                    return path, True
                try:
                    if self.fs.local(path).is_file():
                        return path, False
                except OSError:
                    continue
        return None, False

    def dropins(self, name: str) -> list[str]:
        """Drop-ins in the order systemd applies them: by file name; a name in an earlier directory wins."""
        names = [f"{split_name(name)[2]}.d"]
        template = template_of(name)
        if template:
            names.append(f"{template}.d")
        names.append(f"{name}.d")
        chosen: dict[str, str] = {}
        for directory in SEARCH_PATH:
            for dname in names:
                path = f"{directory}/{dname}"
                try:
                    local = self.fs.local(path)
                    entries = os.listdir(local) if local.is_dir() else []
                except OSError:
                    continue
                for entry in entries:
                    if entry.endswith(".conf") and entry not in chosen:
                        chosen[entry] = f"{path}/{entry}"
        return [chosen[k] for k in sorted(chosen)]

    def load(self, name: str) -> UnitConfig:
        fragment, masked = self.fragment(name)
        config = UnitConfig(name, fragment, masked)
        digest = hashlib.sha256()
        if fragment and not masked:
            text = self.read(fragment)
            digest.update(fragment.encode() + b"\0" + text.encode("utf-8", "surrogateescape"))
            config.entries.extend(parse_unit_text(text))
        if masked:
            digest.update(b"masked")
        if fragment and not masked:
            for path in self.dropins(name):
                try:
                    text = self.read(path)
                except OSError:
                    continue
                config.dropins.append(path)
                digest.update(path.encode() + b"\0" + text.encode("utf-8", "surrogateescape"))
                config.entries.extend(parse_unit_text(text))
        config.digest = digest.hexdigest() if config.found else ""
        return config

    def wants_links(self, name: str) -> list[str]:
        """Symlinks under ``/etc/systemd/system`` that enable ``name`` (``*.wants/NAME``,
        ``*.requires/NAME``)."""
        found: list[str] = []
        base = "/etc/systemd/system"
        try:
            local = self.fs.local(base)
            entries = sorted(os.listdir(local))
        except OSError:
            return []
        for entry in entries:
            if entry.endswith((".wants", ".requires", ".upholds")):
                path = f"{base}/{entry}/{name}"
                if self._lexists(path):
                    found.append(path)
        return found

    def instance_links(self, template: str) -> list[str]:
        prefix, _, suffix = split_name(template)
        found: list[str] = []
        base = "/etc/systemd/system"
        try:
            entries = sorted(os.listdir(self.fs.local(base)))
        except OSError:
            return []
        for entry in entries:
            if entry.endswith((".wants", ".requires", ".upholds")):
                try:
                    names = sorted(os.listdir(self.fs.local(f"{base}/{entry}")))
                except OSError:
                    continue
                found.extend(
                    f"{base}/{entry}/{n}"
                    for n in names
                    if n.startswith(prefix + "@") and n.endswith("." + suffix) and n != template
                )
        return found

    def unit_file_state(self, name: str, config: UnitConfig | None = None) -> str:
        config = config or self.load(name)
        if config.masked:
            return "masked"
        if config.fragment is None:
            return ""
        if self.wants_links(name):
            return "enabled"
        _, instance, _ = split_name(name)
        if instance == "" and self.instance_links(name):
            return "indirect"
        if config.fragment.rsplit("/", 1)[1] != name and instance is None:
            return "alias"
        return "disabled" if config.has_install() else "static"

    def all_unit_files(self) -> dict[str, str]:
        """Every unit file name found in the search path and where (the first directory wins)."""
        found: dict[str, str] = {}
        for directory in SEARCH_PATH:
            try:
                entries = sorted(os.listdir(self.fs.local(directory)))
            except OSError:
                continue
            for entry in entries:
                if entry.rpartition(".")[2] in UNIT_TYPES and entry not in found:
                    found[entry] = f"{directory}/{entry}"
        return found


# --- command lines


def _extract_words(text: str, *, cunescape: bool = True) -> list[str]:
    """systemd's word splitting (``extract_first_word`` with unquoting and C escapes)."""
    words: list[str] = []
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in " \t\n":
            i += 1
        if i >= n:
            break
        buf: list[str] = []
        quote: str | None = None
        while i < n:
            c = text[i]
            if quote is None and c in " \t\n":
                break
            if c == "\\" and i + 1 < n:
                nxt = text[i + 1]
                if cunescape:
                    mapping = {
                        "n": "\n",
                        "t": "\t",
                        "\\": "\\",
                        '"': '"',
                        "'": "'",
                        "s": " ",
                        "a": "\a",
                        "b": "\b",
                        "f": "\f",
                        "r": "\r",
                        "v": "\v",
                        ";": ";",
                    }
                    if nxt == "x" and re.match(r"[0-9a-fA-F]{2}", text[i + 2 : i + 4]):
                        buf.append(chr(int(text[i + 2 : i + 4], 16)))
                        i += 4
                        continue
                    buf.append(mapping.get(nxt, nxt))
                else:
                    buf.append(nxt)
                i += 2
                continue
            if quote is None and c in "'\"":
                quote = c
                i += 1
                continue
            if c == quote:
                quote = None
                i += 1
                continue
            buf.append(c)
            i += 1
        words.append("".join(buf))
    return words


@dataclass
class Command:
    """One ``Exec*=`` command: argv after specifiers and variables, and systemd's prefix flags."""

    argv: list[str]
    path: str
    ignore_failure: bool = False
    raw: str = ""


def _expand_env_words(words: list[str], env: Mapping[str, str]) -> list[str]:
    out: list[str] = []
    for index, word in enumerate(words):
        m = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", word)
        if m and index > 0:
            out.extend(env.get(m.group(1), "").split())
            continue
        word = re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda mm: env.get(mm.group(1), ""), word)
        out.append(word.replace("$$", "$"))
    return out


def parse_exec(value: str, env: Mapping[str, str]) -> list[Command]:
    """Split an ``Exec*=`` value (specifiers already expanded) into commands (`` ; `` separates them)."""
    commands: list[Command] = []
    words = _extract_words(value)
    groups: list[list[str]] = [[]]
    for word in words:
        if word == ";":
            groups.append([])
        else:
            groups[-1].append(word)
    for group in groups:
        if not group:
            continue
        first = group[0]
        prefixes = ""
        while first and first[0] in "-@:+!|":
            prefixes += first[0]
            first = first[1:]
        argv = [first, *group[1:]]
        path = first
        if "@" in prefixes and len(argv) > 1:
            argv = argv[1:]
        if ":" not in prefixes:
            argv = [argv[0], *_expand_env_words(argv, env)[1:]]
        commands.append(Command(argv, path, "-" in prefixes, value))
    return commands


def parse_env_assignments(value: str) -> list[tuple[str, str]]:
    """``Environment=`` words: ``"A=1 2" B=3`` -> [(A, "1 2"), (B, "3")]; invalid words are ignored."""
    out = []
    for word in _extract_words(value):
        key, eq, val = word.partition("=")
        if eq and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            out.append((key, val))
    return out


def parse_env_file(text: str) -> list[tuple[str, str]]:
    """An ``EnvironmentFile=``: ``KEY=VALUE`` lines, ``#``/``;`` comments, quotes, backslash continuation."""
    out: list[tuple[str, str]] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        while line.endswith("\\") and i < len(lines):
            line = line[:-1] + lines[i]
            i += 1
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            continue
        key, eq, value = stripped.partition("=")
        key = key.strip()
        if not eq or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            inner = value[1:-1]
            if value[0] == '"':
                inner = re.sub(r'\\(["\\`$\n])', r"\1", inner)
            value = inner
        else:
            value = re.sub(r"\\(.)", r"\1", value)
        out.append((key, value))
    return out


def parse_seconds(text: str | None, default: float) -> float:
    """``90``, ``1min 30s``, ``5s``, ``infinity`` -> seconds."""
    if not text:
        return default
    text = text.strip()
    if text == "infinity":
        return float("inf")
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    units = {"us": 1e-6, "ms": 1e-3, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600, "d": 86400}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]+)", text):
        total += float(number) * units.get(unit, 1)
    return total or default


def format_timespan(seconds: float) -> str:
    if seconds == float("inf"):
        return "infinity"
    seconds = int(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return " ".join(parts) or "0"


# --- state


def _state(machine: Any) -> dict[str, Any]:
    state: dict[str, Any] = machine.services.setdefault("systemd", {})
    state.setdefault("units", {})
    state.setdefault("boot", machine.boot_count)
    return state


def _record(machine: Any, name: str) -> dict[str, Any]:
    units = _state(machine)["units"]
    if name not in units:
        units[name] = {
            "active": "inactive",
            "sub": "dead",
            "result": "success",
            "main_pid": 0,
            "env": {},
            "user": None,
            "loaded": None,
            "journal": [],
            "exec_main_status": 0,
            "exec_main_code": "",
            "since": None,
            "invocation": "",
        }
    return units[name]  # type: ignore[no-any-return]


def unit_state(host: SimHost, name: str) -> dict[str, Any]:
    """A copy of what the simulated systemd knows about ``name`` (for tests and the pynvml face)."""
    machine = host.load()
    rec = _state(machine)["units"].get(normalize(name))
    return dict(rec) if rec else {}


def _specifiers(name: str, machine: Any, user: str | None) -> dict[str, str]:
    prefix, instance, suffix = split_name(name)
    inst = instance or ""
    home = "/root" if (user or "root") == "root" else f"/home/{user}"
    return {
        "n": name,
        "N": name.rpartition(".")[0],
        "p": prefix,
        "P": unescape(prefix),
        "i": inst,
        "I": unescape(inst),
        "f": "/" + (unescape(inst) if instance else unescape(prefix)).lstrip("/"),
        "j": prefix.rpartition("-")[2],
        "J": unescape(prefix.rpartition("-")[2]),
        "t": "/run",
        "S": "/var/lib",
        "C": "/var/cache",
        "L": "/var/log",
        "E": "/etc",
        "T": "/tmp",
        "V": "/var/tmp",
        "h": home,
        "u": user or "root",
        "U": "0" if (user or "root") == "root" else "1000",
        "H": machine.hostname,
        "l": machine.hostname.split(".")[0],
        "m": hashlib.md5(machine.hostname.encode()).hexdigest(),
        "b": hashlib.md5(f"{machine.hostname}{machine.boot_count}".encode()).hexdigest(),
        "v": "6.8.0-57-generic",
        "%": "%",
    }


def _expand_specifiers(text: str, spec: Mapping[str, str]) -> str:
    return re.sub(r"%(.)", lambda m: spec.get(m.group(1), m.group()), text)


# --- the manager


class _Manager:
    """One ``systemctl`` invocation's view of the host: unit files, loaded state, and output."""

    def __init__(self, host: SimHost, env: Mapping[str, str]) -> None:
        self.host = host
        self.env = env
        self.files = UnitFiles(host)
        self.fs = self.files.fs
        self.out: list[str] = []
        self.err: list[str] = []
        self.quiet = False
        self.version = 252

    # -- loading

    def loaded(self, machine: Any, name: str, *, warn: bool = True) -> UnitConfig:
        """The configuration systemd uses for ``name``: loaded once, kept until ``daemon-reload``."""
        rec = _record(machine, name)
        disk = self.files.load(name)
        if rec["loaded"] is None or not rec["loaded"].get("digest"):
            rec["loaded"] = disk.to_json()
            return disk
        config = UnitConfig.from_json(rec["loaded"])
        warning = (
            f"Warning: The unit file, source configuration file or drop-ins of {name} changed on disk. "
            "Run 'systemctl daemon-reload' to reload units.\n"
        )
        if disk.digest != config.digest and warn and warning not in self.err:
            self.err.append(warning)
        return config

    def need_reload(self, machine: Any, name: str) -> bool:
        rec = _state(machine)["units"].get(name)
        if not rec or not rec.get("loaded") or not rec["loaded"].get("digest"):
            return False
        return bool(self.files.load(name).digest != rec["loaded"]["digest"])

    def journal(self, machine: Any, name: str, message: str, *, ident: str = "systemd", pid: int = 1) -> None:
        rec = _record(machine, name)
        stamp = time.strftime("%b %d %H:%M:%S")
        for line in message.rstrip("\n").split("\n"):
            rec["journal"].append(f"{stamp} {machine.hostname} {ident}[{pid}]: {line}")
        del rec["journal"][:-JOURNAL_MAX]

    # -- environment

    def service_env(self, machine: Any, name: str, config: UnitConfig) -> tuple[dict[str, str], str | None]:
        """The environment systemd gives the commands, or (partial env, error) for a missing env file."""
        user = config.value("Service", "User")
        spec = _specifiers(name, machine, user)
        env: dict[str, str] = {"PATH": SERVICE_PATH, "LANG": "C.UTF-8"}
        if user:
            env.update({"USER": user, "LOGNAME": user, "HOME": spec["h"], "SHELL": "/bin/sh"})
        for kind, base in (
            ("Runtime", "/run"),
            ("State", "/var/lib"),
            ("Cache", "/var/cache"),
            ("Logs", "/var/log"),
            ("Configuration", "/etc"),
        ):
            dirs = " ".join(config.values("Service", f"{kind}Directory")).split()
            if dirs:
                env[f"{kind.upper()}_DIRECTORY"] = ":".join(
                    f"{base}/{_expand_specifiers(d, spec)}" for d in dirs
                )
        for value in config.values("Service", "Environment"):
            for key, val in parse_env_assignments(_expand_specifiers(value, spec)):
                env[key] = val
        for value in config.values("Service", "EnvironmentFile"):
            value = _expand_specifiers(value, spec)
            optional = value.startswith("-")
            pattern = value[1:] if optional else value
            paths = self.glob(pattern)
            if not paths:
                if optional:
                    continue
                return env, f"Failed to load environment files: No such file or directory ({pattern})"
            for path in paths:
                try:
                    text = self.files.read(path)
                except OSError:
                    if optional:
                        continue
                    return env, "Failed to load environment files: No such file or directory"
                env.update(parse_env_file(text))
        return env, None

    def glob(self, pattern: str) -> list[str]:
        if not any(c in pattern for c in "*?["):
            try:
                return [pattern] if self.fs.local(pattern).is_file() else []
            except OSError:
                return []
        directory, _, base = pattern.rpartition("/")
        try:
            entries = sorted(os.listdir(self.fs.local(directory or "/")))
        except OSError:
            return []
        return [f"{directory}/{e}" for e in entries if fnmatch.fnmatchcase(e, base)]

    # -- running commands

    def run_commands(
        self, name: str, config: UnitConfig, kind: str, env: Mapping[str, str], *, main_pid: int = 0
    ) -> tuple[bool, str, int, int]:
        """Run every ``kind`` command (``ExecStartPre``...). Returns (ok, result, exit status, last pid)."""
        machine = self.host.load()
        user = config.value("Service", "User")
        spec = _specifiers(name, machine, user)
        timeout_key = "TimeoutStopSec" if kind in ("ExecStop", "ExecStopPost") else "TimeoutStartSec"
        timeout = parse_seconds(
            config.value("Service", timeout_key) or config.value("Service", "TimeoutSec"), DEFAULT_TIMEOUT
        )
        cwd = "/"
        workdir = config.value("Service", "WorkingDirectory")
        if workdir:
            optional = workdir.startswith("-")
            workdir = _expand_specifiers(workdir.lstrip("-"), spec)
            workdir = spec["h"] if workdir == "~" else workdir
            try:
                exists = self.fs.local(workdir).is_dir()
            except OSError:
                exists = False
            if exists:
                cwd = workdir
            elif not optional:
                with self.host.locked() as m:
                    self.journal(
                        m,
                        name,
                        f"{name}: Changing to the requested working directory failed: "
                        "No such file or directory",
                    )
                    self.journal(
                        m, name, f"{name}: Failed at step CHDIR spawning {workdir}: No such file or directory"
                    )
                return False, "exit-code", 200, 0
        run_env = dict(env)
        if main_pid:
            run_env["MAINPID"] = str(main_pid)
        last_pid = 0
        for value in config.values("Service", kind):
            for command in parse_exec(_expand_specifiers(value, spec), run_env):
                with self.host.locked() as m:
                    pid = m.allocate_pid()
                last_pid = pid
                located = which(self.host, command.path, {"PATH": SERVICE_PATH})
                if located is None or not command.path:
                    with self.host.locked() as m:
                        self.journal(
                            m,
                            name,
                            f"{name}: Unable to locate executable '{command.path}': "
                            "No such file or directory",
                        )
                        self.journal(
                            m,
                            name,
                            f"{name}: Failed at step EXEC spawning {command.path}: No such file or directory",
                        )
                    if command.ignore_failure:
                        continue
                    return False, "exit-code", 203, pid
                child_env = dict(run_env)
                child_env.update(
                    {
                        STATE_ENV: str(self.host.state_dir),
                        ROOT_ENV: str(self.host.root),
                        UNIT_ENV: name,
                        "GPUPROV_SIM_PID": str(pid),
                    }
                )
                result = run_argv(
                    self.host,
                    [located, *command.argv[1:]],
                    env=child_env,
                    cwd=cwd,
                    timeout=timeout if timeout != float("inf") else None,
                )
                ident = os.path.basename(command.argv[0])[:15]
                with self.host.locked() as m:
                    for text in (result.stdout, result.stderr):
                        if text.strip():
                            self.journal(m, name, text, ident=ident, pid=pid)
                if result.exit_code != 0:
                    with self.host.locked() as m:
                        self.journal(
                            m,
                            name,
                            f"{name}: {_describe_kind(kind)} exited, code=exited, "
                            f"status={result.exit_code}/{_status_name(result.exit_code)}",
                        )
                    if not command.ignore_failure:
                        return (
                            False,
                            "timeout" if result.exit_code == 124 and timeout else "exit-code",
                            result.exit_code,
                            pid,
                        )
        return True, "success", 0, last_pid

    # -- verbs

    def start(self, name: str, *, deps: bool = True, seen: set[str] | None = None) -> int:
        seen = seen if seen is not None else set()
        if name in seen:
            return 0
        seen.add(name)
        with self.host.locked() as machine:
            self.reap(machine, name)
            config = self.loaded(machine, name)
            rec = _record(machine, name)
            if not config.found:
                _state(machine)["units"].pop(name, None)
                self.err.append(f"Failed to start {name}: Unit {name} not found.\n")
                return 5
            if config.masked:
                self.err.append(f"Failed to start {name}: Unit {name} is masked.\n")
                return 1
            if rec["active"] == "active" and self.alive(machine, rec):
                return 0
            conditions = self.check_conditions(config, _specifiers(name, machine, config.value("Service", "User")))
        if deps:
            for dep_kind in ("Requires", "Wants", "BindsTo", "Requisite"):
                for dep in " ".join(config.values("Unit", dep_kind)).split():
                    if not dep.endswith(".service"):
                        continue
                    dep_files = self.files.load(dep)
                    if not dep_files.found:
                        if dep_kind in ("Requires", "BindsTo", "Requisite"):
                            self.err.append(f"Failed to start {name}: Unit {dep} not found.\n")
                            return 5
                        continue
                    status = self.start(dep, seen=seen)
                    if status != 0 and dep_kind != "Wants":
                        self.err.append(
                            f"A dependency job for {name} failed. See 'journalctl -xe' for details.\n"
                        )
                        return 1
        if conditions == "condition":
            with self.host.locked() as machine:
                self.journal(
                    machine,
                    name,
                    f"{_description(config, machine)} was skipped because of an unmet condition "
                    "check (ConditionPathExists).",
                )
            return 0
        if conditions == "assert":
            self.err.append(f"Assertion failed on job for {name}.\n")
            return 1
        return self.activate(name, config)

    def alive(self, machine: Any, rec: Mapping[str, Any]) -> bool:
        if rec.get("sub") == "running" and rec.get("main_pid"):
            return daemon_alive(machine, rec["main_pid"])
        return True

    def reap(self, machine: Any, name: str) -> None:
        """A running service whose main process went away (``quit`` sent by hand) is inactive, as systemd sees
        the process exit."""
        rec = _state(machine)["units"].get(name)
        if rec and rec["active"] == "active" and not self.alive(machine, rec):
            self.journal(machine, name, f"{name}: Deactivated successfully.")
            rec.update(active="inactive", sub="dead", main_pid=0, since=time.time())

    def check_conditions(self, config: UnitConfig, spec: Mapping[str, str] | None = None) -> str | None:
        """``"condition"``/``"assert"`` when a check fails, else None; paths may use specifiers (``%i``)."""
        checks: dict[str, Callable[[str], object]] = {
            # a stand-in's standard path (/usr/bin/nvidia-smi) exists as on a host with the driver installed
            "PathExists": lambda p: os.path.lexists(self.fs.local(p)) or which(self.host, p) is not None,
            "PathIsDirectory": lambda p: self.fs.local(p).is_dir(),
            "FileIsExecutable": lambda p: (
                (self.fs.local(p).is_file() and os.access(self.fs.local(p), os.X_OK))
                or which(self.host, p) is not None
            ),
            "FileNotEmpty": lambda p: self.fs.local(p).is_file() and self.fs.local(p).stat().st_size > 0,
            "DirectoryNotEmpty": lambda p: self.fs.local(p).is_dir() and any(self.fs.local(p).iterdir()),
            "PathExistsGlob": lambda p: bool(self.glob(p)),
        }
        for kind in ("Condition", "Assert"):
            triggering: list[bool] = []
            for key, check in checks.items():
                for value in config.values("Unit", kind + key):
                    trigger = value.startswith("|")
                    value = value.lstrip("|")
                    negate = value.startswith("!")
                    path = _expand_specifiers(value.lstrip("!"), spec or {})
                    try:
                        ok = bool(check(path)) != negate
                    except OSError:
                        ok = negate
                    if trigger:
                        triggering.append(ok)
                    elif not ok:
                        return kind.lower()
            if triggering and not any(triggering):
                return kind.lower()
        return None

    def activate(self, name: str, config: UnitConfig) -> int:
        service_type = (config.value("Service", "Type") or "simple").lower()
        if service_type in ("notify", "notify-reload", "dbus", "idle"):
            service_type = "simple"
        if service_type == "simple" and not config.values("Service", "ExecStart"):
            service_type = "oneshot"
        with self.host.locked() as machine:
            description = _description(config, machine)
            env, env_error = self.service_env(machine, name, config)
            rec = _record(machine, name)
            rec.update(
                active="activating",
                sub="start-pre",
                result="success",
                user=config.value("Service", "User"),
                group=config.value("Service", "Group"),
                env=_public_env(env),
                invocation=secrets.token_hex(16),
                exec_main_status=0,
                exec_main_code="",
                main_pid=0,
                control_pid=0,
            )
            self.journal(machine, name, f"Starting {_job_name(name, description, self.version)}...")
            if env_error is None:
                self.make_directories(machine, name, config, env)
            before = set(daemons_of_unit(machine, name))
        if env_error is not None:
            with self.host.locked() as machine:
                self.journal(machine, name, f"{name}: {env_error}")
                self.journal(
                    machine, name, f"{name}: Failed to run 'start-pre' task: No such file or directory"
                )
                return self.fail(machine, name, config, "resources", start=True)

        ok, result, status, pid = self.run_commands(name, config, "ExecStartPre", env)
        if not ok:
            with self.host.locked() as machine:
                _record(machine, name).update(exec_main_status=status)
                self.journal(
                    machine,
                    name,
                    f"{name}: Control process exited, code=exited, status={status}/{_status_name(status)}",
                )
                return self.fail(machine, name, config, result, start=True, status=status, pid=pid)
        commands = config.values("Service", "ExecStart")
        if service_type != "oneshot" and len(commands) > 1:
            with self.host.locked() as machine:
                self.journal(
                    machine,
                    name,
                    f"{name}: Service has more than one ExecStart= setting, which is "
                    "only allowed for Type=oneshot services. Refusing.",
                )
                return self.fail(machine, name, config, "resources", start=True)
        ok, result, status, pid = self.run_commands(name, config, "ExecStart", env)
        with self.host.locked() as machine:
            rec = _record(machine, name)
            rec.update(exec_main_status=status, exec_main_code="exited", exec_main_pid=pid)
            spawned = [p for p in daemons_of_unit(machine, name) if p not in before]
            if not ok:
                self.journal(
                    machine,
                    name,
                    f"{name}: Main process exited, code=exited, status={status}/{_status_name(status)}",
                )
                # a simple service's start job is done once the process is forked: the failure comes later
                return self.fail(
                    machine, name, config, result, start=service_type != "simple", status=status, pid=pid
                )
            main_pid = 0
            if service_type == "forking":
                pidfile = config.value("Service", "PIDFile")
                if pidfile:
                    pidfile = _expand_specifiers(pidfile, _specifiers(name, machine, rec["user"]))
                    try:
                        main_pid = int(self.files.read(pidfile).strip())
                    except (OSError, ValueError):
                        self.journal(
                            machine,
                            name,
                            f"{name}: Can't open PID file {pidfile} (yet?) after start: "
                            "No such file or directory",
                        )
                        return self.fail(machine, name, config, "protocol", start=True)
                    if not daemon_alive(machine, main_pid):
                        self.journal(
                            machine, name, f"{name}: New main PID {main_pid} does not exist or is a zombie."
                        )
                        return self.fail(machine, name, config, "protocol", start=True)
                elif spawned:
                    main_pid = spawned[0]
            elif service_type in ("simple", "exec") and spawned:
                main_pid = spawned[0]
            remain = config.flag("Service", "RemainAfterExit")
            if main_pid:
                rec.update(active="active", sub="running", main_pid=main_pid)
            elif remain:
                rec.update(active="active", sub="exited", main_pid=0)
            else:
                rec.update(active="inactive", sub="dead", main_pid=0)
            rec["since"] = time.time()
        if main_pid or remain:
            ok, result, status, pid = self.run_commands(name, config, "ExecStartPost", env, main_pid=main_pid)
            if not ok:
                with self.host.locked() as machine:
                    self.journal(
                        machine,
                        name,
                        f"{name}: Control process exited, code=exited, "
                        f"status={status}/{_status_name(status)}",
                    )
                    self.kill_unit(machine, name)
                    return self.fail(machine, name, config, result, start=True, status=status, pid=pid)
        with self.host.locked() as machine:
            rec = _record(machine, name)
            if rec["active"] == "active":
                self.journal(machine, name, f"Started {_job_name(name, description, self.version)}.")
            else:
                self.journal(machine, name, f"{name}: Deactivated successfully.")
                self.journal(
                    machine,
                    name,
                    f"Finished {_job_name(name, description, self.version)}."
                    if service_type == "oneshot"
                    else f"Started {_job_name(name, description, self.version)}.",
                )
        return 0

    def make_directories(self, machine: Any, name: str, config: UnitConfig, env: Mapping[str, str]) -> None:
        spec = _specifiers(name, machine, config.value("Service", "User"))
        for kind, base in (
            ("Runtime", "/run"),
            ("State", "/var/lib"),
            ("Cache", "/var/cache"),
            ("Logs", "/var/log"),
            ("Configuration", "/etc"),
        ):
            mode_text = config.value("Service", f"{kind}DirectoryMode") or "0755"
            for directory in " ".join(config.values("Service", f"{kind}Directory")).split():
                local = self.fs.local(f"{base}/{_expand_specifiers(directory, spec)}")
                local.mkdir(parents=True, exist_ok=True)
                try:
                    os.chmod(local, int(mode_text, 8))
                except ValueError:
                    pass

    def remove_runtime_directories(self, machine: Any, name: str, config: UnitConfig) -> None:
        import shutil

        if (config.value("Service", "RuntimeDirectoryPreserve") or "no").lower() in ("yes", "true", "1"):
            return
        spec = _specifiers(name, machine, config.value("Service", "User"))
        for directory in " ".join(config.values("Service", "RuntimeDirectory")).split():
            local = self.fs.local(f"/run/{_expand_specifiers(directory, spec)}")
            if local.is_dir():
                shutil.rmtree(local, ignore_errors=True)

    def fail(
        self,
        machine: Any,
        name: str,
        config: UnitConfig,
        result: str,
        *,
        start: bool,
        status: int = 0,
        pid: int = 0,
    ) -> int:
        """End the unit ``failed`` with ``result``; the start job fails (exit 1) when ``start``."""
        self.kill_unit(machine, name)
        self.remove_runtime_directories(machine, name, config)
        rec = _record(machine, name)
        rec.update(active="failed", sub="failed", result=result, main_pid=0, since=time.time())
        if status:
            rec["exec_main_status"] = status
        if pid:
            rec["exec_main_pid"] = pid
        self.journal(machine, name, f"{name}: Failed with result '{result}'.")
        self.journal(
            machine, name, f"Failed to start {_job_name(name, _description(config, machine), self.version)}."
        )
        if not start:
            return 0
        journal = f'"journalctl -xeu {name}"' if self.version >= 248 else '"journalctl -xe"'
        if result in RESULT_TEXT:
            self.err.append(
                f"Job for {name} failed because {RESULT_TEXT[result]}.\n"
                f'See "systemctl status {name}" and {journal} for details.\n'
            )
        else:
            self.err.append(
                f'Job for {name} failed.\nSee "systemctl status {name}" and {journal} for details.\n'
            )
        return 1

    def kill_unit(self, machine: Any, name: str) -> None:
        """What is left in the unit's cgroup is killed (SIGTERM to every daemon it spawned)."""
        for pid in daemons_of_unit(machine, name):
            info = daemon_info(machine, pid)
            kill_daemon(self.host, machine, pid)
            if info:
                self.journal(
                    machine, name, f"{name}: Killing process {pid} ({info['comm']}) with signal SIGTERM."
                )

    def stop(self, name: str) -> int:
        with self.host.locked() as machine:
            self.reap(machine, name)
            config = self.loaded(machine, name)
            rec = _state(machine)["units"].get(name)
            if rec is None or (not config.found and rec["active"] not in ("active", "failed")):
                if not config.found:
                    _state(machine)["units"].pop(name, None)
                    self.err.append(f"Failed to stop {name}: Unit {name} not loaded.\n")
                    return 5
                return 0
            if rec["active"] != "active":
                return 0
            main_pid = rec.get("main_pid", 0)
            env = dict(rec.get("env") or {})
            full_env, _ = self.service_env(machine, name, config)
            full_env.update(env)
            rec.update(active="deactivating", sub="stop")
            self.journal(
                machine, name, f"Stopping {_job_name(name, _description(config, machine), self.version)}..."
            )
        ok, result, status, pid = self.run_commands(name, config, "ExecStop", full_env, main_pid=main_pid)
        ok_post, result_post, status_post, _ = self.run_commands(name, config, "ExecStopPost", full_env)
        with self.host.locked() as machine:
            self.kill_unit(machine, name)
            self.remove_runtime_directories(machine, name, config)
            rec = _record(machine, name)
            failed = not ok or not ok_post
            rec.update(
                active="failed" if failed else "inactive",
                sub="failed" if failed else "dead",
                main_pid=0,
                since=time.time(),
                result=(result if not ok else result_post) if failed else "success",
            )
            if failed:
                self.journal(machine, name, f"{name}: Failed with result '{rec['result']}'.")
            else:
                self.journal(machine, name, f"{name}: Deactivated successfully.")
            self.journal(
                machine, name, f"Stopped {_job_name(name, _description(config, machine), self.version)}."
            )
        return 0

    def restart(self, name: str, *, only_if_active: bool = False, reload: bool = False) -> int:
        with self.host.locked() as machine:
            self.reap(machine, name)
            config = self.loaded(machine, name, warn=False)
            rec = _state(machine)["units"].get(name)
            active = bool(rec and rec["active"] == "active" and self.alive(machine, rec))
            if not config.found:
                _state(machine)["units"].pop(name, None)
                self.err.append(
                    f"Failed to {'reload-or-restart' if reload else 'restart'} {name}: "
                    f"Unit {name} not found.\n"
                )
                return 5
        if only_if_active and not active:
            return 0
        if reload and active and config.values("Service", "ExecReload"):
            with self.host.locked() as machine:
                rec = _record(machine, name)
                env = dict(rec.get("env") or {})
                full_env, _ = self.service_env(machine, name, config)
                full_env.update(env)
                main_pid = rec.get("main_pid", 0)
            ok, _, _, _ = self.run_commands(name, config, "ExecReload", full_env, main_pid=main_pid)
            if not ok:
                self.err.append(
                    f'Job for {name} failed.\nSee "systemctl status {name}" and '
                    f'"journalctl -xeu {name}" for details.\n'
                )
                return 1
            return 0
        if active:
            self.stop(name)
        return self.start(name)

    def daemon_reload(self) -> int:
        with self.host.locked() as machine:
            for name, rec in list(_state(machine)["units"].items()):
                config = self.files.load(name)
                if config.found:
                    rec["loaded"] = config.to_json()
                elif rec["active"] in ("active", "activating"):
                    rec["loaded"] = config.to_json()
                else:
                    del _state(machine)["units"][name]
            _state(machine)["reloads"] = _state(machine).get("reloads", 0) + 1
        return 0

    # -- install

    def install_info(self, name: str) -> tuple[UnitConfig, str, str | None]:
        """(config, the name to link, the instance used) for enable/disable."""
        config = self.files.load(name)
        prefix, instance, suffix = split_name(name)
        if instance == "":
            default = config.value("Install", "DefaultInstance")
            if default:
                return config, f"{prefix}@{default}.{suffix}", default
        return config, name, instance

    def enable(self, names: list[str], *, now: bool, reload: bool) -> int:
        status = 0
        for name in names:
            config, link_name, instance = self.install_info(name)
            if config.masked:
                self.err.append(f"Failed to enable unit: Unit file {config.fragment} is masked.\n")
                status = 1
                continue
            if not config.fragment:
                self.err.append(f"Failed to enable unit: Unit file {name} does not exist.\n")
                status = 1
                continue
            targets = (
                " ".join(config.values("Install", "WantedBy")).split(),
                " ".join(config.values("Install", "RequiredBy")).split(),
            )
            aliases = " ".join(config.values("Install", "Alias")).split()
            also = " ".join(config.values("Install", "Also")).split()
            if (not any(targets) and not aliases and not also) or split_name(link_name)[1] == "":
                self.err.append(NO_INSTALL_TEXT)
                continue
            for kind, target_list in zip((".wants", ".requires"), targets, strict=True):
                for target in target_list:
                    self.link(f"/etc/systemd/system/{target}{kind}/{link_name}", config.fragment)
            for alias in aliases:
                self.link(f"/etc/systemd/system/{alias}", config.fragment)
            if also:
                status = self.enable(also, now=False, reload=False) or status
            if reload:
                # the reload loads what the targets now want: the unit is listed (inactive) from here on
                with self.host.locked() as machine:
                    self.loaded(machine, link_name, warn=False)
        if reload:
            self.daemon_reload()
        if now:
            for name in names:
                status = self.start(self.install_info(name)[1]) or status
        return status

    def link(self, path: str, target: str) -> None:
        local = self.fs.local(path, follow=False)
        if os.path.islink(local) and os.readlink(local) == target:
            return
        local.parent.mkdir(parents=True, exist_ok=True)
        if os.path.lexists(local):
            os.unlink(local)
            self.err.append(f'Removed "{path}".\n' if self.version >= 250 else f"Removed {path}.\n")
        os.symlink(target, local)
        self.err.append(f"Created symlink {path} \u2192 {target}.\n")

    def disable(self, names: list[str], *, now: bool, reload: bool) -> int:
        status = 0
        for name in names:
            config, link_name, _ = self.install_info(name)
            if not config.found:
                self.err.append(f"Failed to disable unit: Unit file {name} does not exist.\n")
                status = 1
                continue
            links = self.files.wants_links(link_name if split_name(name)[1] != "" else name)
            if split_name(name)[1] == "":
                links += self.files.instance_links(name)
            aliases = [
                f"/etc/systemd/system/{a}" for a in " ".join(config.values("Install", "Alias")).split()
            ]
            for path in links + [a for a in aliases if os.path.islink(self.fs.local(a, follow=False))]:
                local = self.fs.local(path, follow=False)
                os.unlink(local)
                self.err.append(f'Removed "{path}".\n' if self.version >= 250 else f"Removed {path}.\n")
                parent = local.parent
                if parent.name.endswith((".wants", ".requires")) and not any(parent.iterdir()):
                    parent.rmdir()
        if reload:
            self.daemon_reload()
        if now:
            for name in names:
                self.stop(self.install_info(name)[1])
        return status

    def mask(self, names: list[str], *, unmask: bool) -> int:
        for name in names:
            path = f"/etc/systemd/system/{name}"
            local = self.fs.local(path, follow=False)
            if unmask:
                if os.path.islink(local) and os.readlink(local) == "/dev/null":
                    os.unlink(local)
                    self.err.append(f'Removed "{path}".\n' if self.version >= 250 else f"Removed {path}.\n")
                continue
            if os.path.lexists(local) and not os.path.islink(local):
                self.err.append(f"Failed to mask unit: File {path} already exists.\n")
                return 1
            self.link(path, "/dev/null")
        self.daemon_reload()
        return 0


def _public_env(env: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if not k.startswith("GPUPROV_SIM_")}


def _description(config: UnitConfig, machine: Any = None) -> str:
    text = config.value("Unit", "Description")
    if not text:
        return config.name
    if machine is None:
        return text
    return _expand_specifiers(text, _specifiers(config.name, machine, config.value("Service", "User")))


def _job_name(name: str, description: str, version: int) -> str:
    """systemd >= 249 names the unit and its description in job messages; older ones the description only."""
    if version >= 249 and description != name:
        return f"{name} - {description}"
    return description


def _describe_kind(kind: str) -> str:
    return "Main process" if kind == "ExecStart" else "Control process"


_STATUS_NAMES = {
    200: "CHDIR",
    203: "EXEC",
    1: "FAILURE",
    2: "INVALIDARGUMENT",
    3: "NOTIMPLEMENTED",
    4: "NOPERMISSION",
    5: "NOTINSTALLED",
    6: "NOTCONFIGURED",
    7: "NOTRUNNING",
    126: "n/a",
    127: "n/a",
    124: "n/a",
}


def _status_name(status: int) -> str:
    return _STATUS_NAMES.get(status, "n/a")


# --- queries


_SHOW_ORDER = (
    "Type",
    "Restart",
    "PIDFile",
    "RemainAfterExit",
    "TimeoutStartUSec",
    "TimeoutStopUSec",
    "MainPID",
    "ControlPID",
    "Result",
    "ExecMainPID",
    "ExecMainCode",
    "ExecMainStatus",
    "ExecStartPre",
    "ExecStart",
    "ExecStartPost",
    "ExecReload",
    "ExecStop",
    "ExecStopPost",
    "WorkingDirectory",
    "Environment",
    "EnvironmentFiles",
    "User",
    "Group",
    "RuntimeDirectory",
    "InvocationID",
    "Id",
    "Names",
    "Requires",
    "Wants",
    "WantedBy",
    "RequiredBy",
    "After",
    "Before",
    "Description",
    "LoadState",
    "ActiveState",
    "SubState",
    "FragmentPath",
    "DropInPaths",
    "UnitFileState",
    "UnitFilePreset",
    "ActiveEnterTimestamp",
    "CanStart",
    "CanStop",
    "NeedDaemonReload",
    "LoadError",
)


def _quote_env(key: str, value: str) -> str:
    text = f"{key}={value}"
    return f'"{text}"' if re.search(r"\s", value) else text


class _Queries:
    def __init__(self, mgr: _Manager) -> None:
        self.mgr = mgr

    def properties(self, machine: Any, name: str) -> dict[str, str]:
        mgr = self.mgr
        rec = _state(machine)["units"].get(name) or {}
        config = UnitConfig.from_json(rec["loaded"]) if rec.get("loaded") else mgr.files.load(name)
        props: dict[str, str] = {"Id": name, "Names": name, "Description": _description(config, machine)}
        if config.masked:
            props["LoadState"] = "masked"
        elif config.fragment:
            props["LoadState"] = "loaded"
        else:
            props["LoadState"] = "not-found"
            props["LoadError"] = f'org.freedesktop.systemd1.NoSuchUnit "Unit {name} not found."'
        active = rec.get("active", "inactive")
        sub = rec.get("sub", "dead")
        if active == "active" and sub == "running" and not daemon_alive(machine, rec.get("main_pid", 0)):
            active, sub = "inactive", "dead"
        props.update(
            ActiveState=active,
            SubState=sub,
            Result=rec.get("result", "success"),
            MainPID=str(rec.get("main_pid", 0) if sub == "running" else 0),
            ControlPID="0",
            ExecMainPID=str(rec.get("exec_main_pid", 0)),
            ExecMainCode=str({"exited": 1}.get(rec.get("exec_main_code", ""), 0)),
            ExecMainStatus=str(rec.get("exec_main_status", 0)),
            FragmentPath=config.fragment or "",
            DropInPaths=" ".join(config.dropins),
            UnitFileState=mgr.files.unit_file_state(name, config) if config.found else "",
            UnitFilePreset="enabled" if config.fragment else "",
            NeedDaemonReload="yes" if mgr.need_reload(machine, name) else "no",
            InvocationID=rec.get("invocation", ""),
            CanStart="yes" if config.found else "no",
            CanStop="yes" if config.found else "no",
        )
        if rec.get("since") and active == "active":
            props["ActiveEnterTimestamp"] = time.strftime(
                "%a %Y-%m-%d %H:%M:%S %Z", time.localtime(rec["since"])
            )
        else:
            props["ActiveEnterTimestamp"] = ""
        if config.found:
            spec = _specifiers(name, machine, config.value("Service", "User"))
            props["Type"] = (config.value("Service", "Type") or "simple").lower()
            props["Restart"] = config.value("Service", "Restart") or "no"
            props["PIDFile"] = _expand_specifiers(config.value("Service", "PIDFile") or "", spec)
            props["RemainAfterExit"] = "yes" if config.flag("Service", "RemainAfterExit") else "no"
            for key, setting in (
                ("TimeoutStartUSec", "TimeoutStartSec"),
                ("TimeoutStopUSec", "TimeoutStopSec"),
            ):
                value = config.value("Service", setting) or config.value("Service", "TimeoutSec")
                props[key] = format_timespan(parse_seconds(value, DEFAULT_TIMEOUT))
            env_pairs = [
                p
                for v in config.values("Service", "Environment")
                for p in parse_env_assignments(_expand_specifiers(v, spec))
            ]
            props["Environment"] = " ".join(_quote_env(k, v) for k, v in env_pairs)
            props["EnvironmentFiles"] = " ".join(
                f"{v.lstrip('-')} (ignore_errors={'yes' if v.startswith('-') else 'no'})"
                for v in (_expand_specifiers(x, spec) for x in config.values("Service", "EnvironmentFile"))
            )
            props["User"] = config.value("Service", "User") or ""
            props["Group"] = config.value("Service", "Group") or ""
            props["WorkingDirectory"] = _expand_specifiers(
                config.value("Service", "WorkingDirectory") or "", spec
            )
            props["RuntimeDirectory"] = " ".join(config.values("Service", "RuntimeDirectory"))
            for kind in (
                "ExecStartPre",
                "ExecStart",
                "ExecStartPost",
                "ExecReload",
                "ExecStop",
                "ExecStopPost",
            ):
                items = []
                for value in config.values("Service", kind):
                    for command in parse_exec(_expand_specifiers(value, spec), {}):
                        items.append(
                            f"{{ path={command.path} ; argv[]={' '.join(command.argv)} ; ignore_errors="
                            f"{'yes' if command.ignore_failure else 'no'} ; start_time=[n/a] ; "
                            "stop_time=[n/a] ; pid=0 ; code=(null) ; status=0/0 }"
                        )
                props[kind] = " ".join(items)
            for key in ("Requires", "Wants", "After", "Before"):
                props[key] = " ".join(" ".join(config.values("Unit", key)).split())
            props["WantedBy"] = ""
            props["RequiredBy"] = ""
        return props

    def show(self, names: list[str], wanted: list[str], value_only: bool) -> int:
        with self.mgr.host.locked() as machine:
            blocks = []
            for name in names:
                props = self.properties(machine, name)
                keys = [k for k in _SHOW_ORDER if (not wanted or k in wanted) and k in props]
                lines = [props[k] if value_only else f"{k}={props[k]}" for k in keys]
                blocks.append("".join(line + "\n" for line in lines))
        self.mgr.out.append("\n".join(blocks))
        return 0

    def is_active(self, names: list[str], failed: bool) -> int:
        status = 1 if failed else 3
        with self.mgr.host.locked() as machine:
            for name in names:
                props = self.properties(machine, name)
                state = props["ActiveState"]
                if not self.mgr.quiet:
                    self.mgr.out.append(state + "\n")
                if (state == "failed") if failed else (state in ("active", "reloading")):
                    status = 0
        return status

    def is_enabled(self, names: list[str]) -> int:
        status = 1
        for name in names:
            config = self.mgr.files.load(name)
            if not config.found:
                self.mgr.err.append(f"Failed to get unit file state for {name}: No such file or directory\n")
                return 1
            state = self.mgr.files.unit_file_state(name, config)
            if not self.mgr.quiet:
                self.mgr.out.append(state + "\n")
            if state in ("enabled", "enabled-runtime", "static", "alias", "indirect", "generated"):
                status = 0
        return status

    def status(self, names: list[str], lines: int) -> int:
        mgr = self.mgr
        status = 0
        blocks = []
        with mgr.host.locked() as machine:
            for name in names:
                props = self.properties(machine, name)
                if props["LoadState"] == "not-found" and name not in _state(machine)["units"]:
                    mgr.err.append(f"Unit {name} could not be found.\n")
                    status = 4
                    continue
                rec = _state(machine)["units"].get(name) or {}
                blocks.append(self.status_block(machine, name, props, rec, lines))
                if props["ActiveState"] != "active":
                    status = status or 3
        mgr.out.append("\n".join(blocks))
        return status

    def status_block(
        self, machine: Any, name: str, props: Mapping[str, str], rec: Mapping[str, Any], lines: int
    ) -> str:
        version = self.mgr.version
        active, sub = props["ActiveState"], props["SubState"]
        mark = "\u25cf"
        if version >= 250:
            mark = {"active": "\u25cf", "failed": "\u00d7", "inactive": "\u25cb"}.get(active, "\u25cf")
        out = [f"{mark} {name}" + (f" - {props['Description']}" if props["Description"] != name else "")]
        preset = "preset" if version >= 252 else "vendor preset"
        if props["LoadState"] == "loaded":
            out.append(
                f"     Loaded: loaded ({props['FragmentPath']}; {props['UnitFileState'] or 'static'}; "
                f"{preset}: enabled)"
            )
        elif props["LoadState"] == "masked":
            out.append("     Loaded: masked (Reason: Unit " + name + " is masked.)")
        else:
            out.append(f"     Loaded: not-found (Reason: Unit {name} not found.)")
        if props.get("DropInPaths"):
            dirs: dict[str, list[str]] = {}
            for path in props["DropInPaths"].split():
                directory, _, base = path.rpartition("/")
                dirs.setdefault(directory, []).append(base)
            first = True
            for directory, files in dirs.items():
                out.append(("    Drop-In: " if first else "             ") + directory)
                first = False
                out.append("             \u2514\u2500" + ", ".join(files))
        since = ""
        if rec.get("since"):
            stamp = time.strftime("%a %Y-%m-%d %H:%M:%S %Z", time.localtime(rec["since"]))
            since = f" since {stamp}; {_ago(rec['since'])} ago"
        result = f" (Result: {props['Result']})" if active == "failed" else f" ({sub})"
        out.append(f"     Active: {active}{result}{since}")
        if props.get("NeedDaemonReload") == "yes":
            out.insert(
                1,
                f"     Warning: The unit file, source configuration file or drop-ins of {name} changed "
                "on disk. Run 'systemctl daemon-reload' to reload units.",
            )
        main_pid = int(props.get("MainPID", "0") or 0)
        if main_pid:
            info = daemon_info(machine, main_pid) or {}
            out.append(f"   Main PID: {main_pid} ({info.get('comm', '?')})")
            out.append(f"     CGroup: /system.slice/{name}")
            pids = daemons_of_unit(machine, name)
            for index, pid in enumerate(pids):
                branch = "\u2514\u2500" if index == len(pids) - 1 else "\u251c\u2500"
                argv = " ".join((daemon_info(machine, pid) or {}).get("argv", []))
                out.append(f"             {branch}{pid} {argv}")
        elif active == "failed" and rec.get("exec_main_pid"):
            status = rec.get("exec_main_status", 0)
            out.append(
                f"   Main PID: {rec['exec_main_pid']} (code=exited, status={status}/{_status_name(status)})"
            )
        journal = list(rec.get("journal", []))[-lines:] if lines else []
        text = "\n".join(out) + "\n"
        if journal:
            text += "\n" + "\n".join(journal) + "\n"
        return text

    def list_units(
        self,
        patterns: list[str],
        types: list[str],
        states: list[str],
        show_all: bool,
        legend: bool,
        plain: bool,
    ) -> int:
        mgr = self.mgr
        rows = []
        with mgr.host.locked() as machine:
            for name in sorted(_state(machine)["units"]):
                props = self.properties(machine, name)
                if types and name.rpartition(".")[2] not in types:
                    continue
                if patterns and not any(fnmatch.fnmatchcase(name, p) for p in patterns):
                    continue
                active = props["ActiveState"]
                if states and not ({active, props["SubState"], props["LoadState"]} & set(states)):
                    continue
                if (
                    not show_all
                    and not states
                    and active not in ("active", "failed", "activating", "reloading")
                ):
                    continue
                rows.append((name, props["LoadState"], active, props["SubState"], props["Description"]))
        headers = ("UNIT", "LOAD", "ACTIVE", "SUB", "DESCRIPTION")
        widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers[:4])]
        lead = "" if plain else "  "

        def fmt(cells: tuple[str, ...], mark: str = "  ") -> str:
            prefix = "" if plain else mark
            return prefix + " ".join(c.ljust(widths[i]) for i, c in enumerate(cells[:4])) + " " + cells[4]

        out = []
        if legend:
            out.append(lead + fmt(headers, "")[0:] if plain else fmt(headers))
        for row in rows:
            out.append(fmt(row, "\u25cf " if row[2] == "failed" else "  "))
        if legend:
            out.append("")
            out.append("LOAD   = Reflects whether the unit definition was properly loaded.")
            out.append("ACTIVE = The high-level unit activation state, i.e. generalization of SUB.")
            out.append("SUB    = The low-level unit activation state, values depend on unit type.")
            out.append(
                f"{len(rows)} loaded units listed."
                + ("" if show_all else " Pass --all to see loaded but inactive units, too.")
            )
            out.append("To show all installed unit files use 'systemctl list-unit-files'.")
        mgr.out.append("".join(line.rstrip() + "\n" for line in out) if out else "")
        return 0

    def list_unit_files(self, patterns: list[str], types: list[str], legend: bool) -> int:
        mgr = self.mgr
        rows = []
        for name in sorted(mgr.files.all_unit_files()):
            if types and name.rpartition(".")[2] not in types:
                continue
            if patterns and not any(fnmatch.fnmatchcase(name, p) for p in patterns):
                continue
            state = mgr.files.unit_file_state(name)
            rows.append((name, state, "enabled" if state not in ("static", "masked", "alias") else "-"))
        width = max([len("UNIT FILE")] + [len(r[0]) for r in rows])
        state_width = max([len("STATE")] + [len(r[1]) for r in rows])
        out = []
        preset = "PRESET" if mgr.version >= 249 else "VENDOR PRESET"
        if legend:
            out.append(f"{'UNIT FILE'.ljust(width)} {'STATE'.ljust(state_width)} {preset}")
        out.extend(f"{n.ljust(width)} {s.ljust(state_width)} {p}" for n, s, p in rows)
        if legend:
            out.extend(["", f"{len(rows)} unit files listed."])
        mgr.out.append("".join(line + "\n" for line in out))
        return 0

    def cat(self, names: list[str]) -> int:
        mgr = self.mgr
        chunks = []
        for name in names:
            config = mgr.files.load(name)
            if not config.fragment:
                mgr.err.append(f"No files found for {name}.\n")
                return 1
            if config.masked:
                mgr.err.append(f"Unit {name} is masked.\n")
                return 1
            text = f"# {config.fragment}\n" + mgr.files.read(config.fragment)
            for path in config.dropins:
                text += f"\n# {path}\n" + mgr.files.read(path)
            chunks.append(text if text.endswith("\n") else text + "\n")
        mgr.out.append("\n".join(chunks))
        return 0


def _ago(since: float) -> str:
    delta = max(int(time.time() - since), 0)
    if delta < 60:
        return f"{delta}s" if delta else "0s"
    if delta < 3600:
        return f"{delta // 60}min {delta % 60}s"
    return f"{delta // 3600}h {delta % 3600 // 60}min"


# --- boot


def boot(host: SimHost) -> None:
    """What systemd does when the machine boots: every process is gone, ``/run`` is empty, units are loaded
    afresh and the enabled ones (``*.target.wants`` of the boot targets) are started.

    Call it after a simulated reboot (``machine.boot_count`` incremented); the stand-ins also call it
    themselves when they notice the count changed."""
    import shutil

    with host.locked() as machine:
        for pid in sorted(int(p) for p in machine.services.get("daemons", {})):
            kill_daemon(host, machine, pid)
        state = _state(machine)
        for rec in state["units"].values():
            rec.update(active="inactive", sub="dead", main_pid=0, loaded=None, result="success")
        state["boot"] = machine.boot_count
        run = HostFS(host.root).local("/run")
        if run.is_dir() and str(host.root) != "/":
            for entry in run.iterdir():
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink()
    mgr = _Manager(host, {})
    mgr.version = host.load().systemd_version
    files = UnitFiles(host)
    wanted: list[str] = []
    for target in BOOT_TARGETS:
        for kind in (".wants", ".requires"):
            directory = f"/etc/systemd/system/{target}{kind}"
            try:
                entries = sorted(os.listdir(files.fs.local(directory)))
            except OSError:
                continue
            wanted.extend(e for e in entries if e.endswith(".service") and e not in wanted)
    for name in _boot_order(files, wanted):
        mgr.start(name)


def _boot_order(files: UnitFiles, names: list[str]) -> list[str]:
    """Units in an order that honours ``After=``/``Before=`` among themselves."""
    after: dict[str, set[str]] = {n: set() for n in names}
    for name in names:
        config = files.load(name)
        for dep in " ".join(config.values("Unit", "After")).split():
            if dep in after:
                after[name].add(dep)
        for dep in " ".join(config.values("Unit", "Before")).split():
            if dep in after:
                after[dep].add(name)
    ordered: list[str] = []
    while after:
        ready = sorted(n for n, deps in after.items() if not deps - set(ordered))
        if not ready:
            ready = sorted(after)[:1]
        for name in ready:
            ordered.append(name)
            del after[name]
    return ordered


def _ensure_booted(host: SimHost) -> None:
    machine = host.load()
    state = machine.services.get("systemd", {})
    if "boot" in state and state["boot"] != machine.boot_count:
        boot(host)


# --- the commands


_VALUED = {
    "-p",
    "--property",
    "-t",
    "--type",
    "--state",
    "-n",
    "--lines",
    "-o",
    "--output",
    "-H",
    "--host",
    "-M",
    "--machine",
    "--root",
    "--signal",
    "-s",
    "--kill-whom",
    "--job-mode",
}


def _parse_args(argv: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    opts: dict[str, list[str]] = {}
    args: list[str] = []
    items = argv[1:]
    i = 0
    while i < len(items):
        item = items[i]
        if item == "--":
            args.extend(items[i + 1 :])
            break
        if item.startswith("--"):
            key, eq, value = item.partition("=")
            if key in _VALUED and not eq:
                i += 1
                value = items[i] if i < len(items) else ""
            opts.setdefault(key, []).append(value)
        elif item.startswith("-") and len(item) > 1:
            key = item[:2]
            if key in _VALUED:
                value = item[2:]
                if not value:
                    i += 1
                    value = items[i] if i < len(items) else ""
                opts.setdefault(key, []).append(value)
            else:
                for c in item[1:]:
                    opts.setdefault("-" + c, []).append("")
        else:
            args.append(item)
        i += 1
    return opts, args


def _split_values(values: list[str]) -> list[str]:
    return [v for value in values for v in value.split(",") if v]


@stand_in("systemctl")
def systemctl(host: SimHost, argv: list[str], stdin: str, env: Mapping[str, str]) -> Result:
    """The ``systemctl`` stand-in (see the module docstring for what it models)."""
    opts, args = _parse_args(argv)
    machine = host.machine
    if "--version" in opts:
        return Result(f"systemd {machine.systemd_version} ({machine.systemd_version})\n{FEATURES}\n")
    if "--user" in opts:
        return Result("", "Failed to connect to bus: No medium found\n", 1)
    _ensure_booted(host)
    mgr = _Manager(host, env)
    mgr.version = machine.systemd_version
    mgr.quiet = "-q" in opts or "--quiet" in opts
    queries = _Queries(mgr)
    verb = args[0] if args else "list-units"
    mgr.files.settled = verb in ("show", "is-active", "is-failed", "is-enabled", "status", "cat", "list-units",
                                 "list-unit-files")
    names = [normalize(a) for a in args[1:]]
    now = "--now" in opts
    reload = "--no-reload" not in opts
    unit_verbs = {
        "start",
        "stop",
        "restart",
        "try-restart",
        "reload-or-restart",
        "reload",
        "is-active",
        "is-failed",
        "is-enabled",
        "enable",
        "disable",
        "status",
        "cat",
        "mask",
        "unmask",
    }
    if verb in unit_verbs and not names and verb != "status":
        return Result("", "Too few arguments.\n", 1)
    status = 0
    if verb == "daemon-reload":
        status = mgr.daemon_reload()
    elif verb == "start":
        for name in names:
            status = mgr.start(name) or status
    elif verb == "stop":
        for name in names:
            status = mgr.stop(name) or status
    elif verb in ("restart", "try-restart", "reload-or-restart", "reload", "force-reload"):
        for name in names:
            status = (
                mgr.restart(
                    name,
                    only_if_active=verb == "try-restart",
                    reload=verb in ("reload-or-restart", "reload", "force-reload"),
                )
                or status
            )
    elif verb == "enable":
        status = mgr.enable(names, now=now, reload=reload)
    elif verb == "disable":
        status = mgr.disable(names, now=now, reload=reload)
    elif verb in ("mask", "unmask"):
        status = mgr.mask(names, unmask=verb == "unmask")
    elif verb == "is-active":
        status = queries.is_active(names, failed=False)
    elif verb == "is-failed":
        status = queries.is_active(names, failed=True)
    elif verb == "is-enabled":
        status = queries.is_enabled(names)
    elif verb == "show":
        wanted = _split_values(opts.get("-p", []) + opts.get("--property", []))
        status = queries.show(names, wanted, "--value" in opts)
    elif verb == "status":
        lines = int((opts.get("-n") or opts.get("--lines") or ["10"])[-1] or 10)
        status = queries.status(names, lines)
    elif verb == "cat":
        status = queries.cat(names)
    elif verb in ("list-units", "list-unit-files"):
        types = _split_values(opts.get("-t", []) + opts.get("--type", []))
        states = _split_values(opts.get("--state", []))
        if "--failed" in opts:
            states.append("failed")
        legend = "--no-legend" not in opts
        patterns = args[1:]
        if verb == "list-units":
            status = queries.list_units(
                patterns, types, states, "--all" in opts or "-a" in opts, legend, "--plain" in opts
            )
        else:
            status = queries.list_unit_files(patterns, types, legend)
    elif verb == "reset-failed":
        with host.locked() as m:
            for name, rec in _state(m)["units"].items():
                if (not names or name in names) and rec["active"] == "failed":
                    rec.update(active="inactive", sub="dead", result="success")
    elif verb == "kill":
        with host.locked() as m:
            for name in names:
                mgr.kill_unit(m, name)
    else:
        return Result(
            "",
            f"Unknown command verb '{verb}'.\n" if mgr.version >= 250 else f"Unknown operation {verb}.\n",
            1,
        )
    return Result("".join(mgr.out), "".join(mgr.err), status)


@stand_in("journalctl")
def journalctl(host: SimHost, argv: list[str], stdin: str, env: Mapping[str, str]) -> Result:
    """``journalctl -u UNIT [-n N] [-o cat] [--no-pager] [-b] [-q] [-x] [-e]``: the journal lines the
    systemctl stand-in kept for its units (systemd's own messages and what the unit's commands printed)."""
    opts, args = _parse_args(argv)
    machine = host.machine
    units = [normalize(u) for u in opts.get("-u", []) + opts.get("--unit", [])]
    for key, values in opts.items():  # -xeu NAME arrives as flags x, e, u followed by the name
        if key == "-u" and not any(values):
            units = [normalize(a) for a in args]
    state = machine.services.get("systemd", {}).get("units", {})
    lines: list[str] = []
    for name in units or sorted(state):
        lines.extend(state.get(name, {}).get("journal", []))
    count = (opts.get("-n") or opts.get("--lines") or [""])[-1]
    if count.isdigit():
        lines = lines[-int(count) :] if int(count) else []
    if "cat" in (opts.get("-o") or opts.get("--output") or [""]):
        lines = [line.split(": ", 1)[1] if ": " in line else line for line in lines]
    if not lines:
        return Result("-- No entries --\n" if "-q" not in opts else "")
    return Result("".join(line + "\n" for line in lines))
