"""The ``nvidia-cuda-mps-control`` stand-in: MPS control daemons, their servers and clients, as records.

Texts and file names follow ``shared/fixtures/mps`` and ``shared/reference/mps.md``:

- ``-d`` starts a control daemon and returns at once, printing nothing. It reads ``CUDA_MPS_PIPE_DIRECTORY``
(default ``/tmp/nvidia-mps``), ``CUDA_MPS_LOG_DIRECTORY`` (default ``/var/log/nvidia-mps``) and
``CUDA_VISIBLE_DEVICES`` from its environment only, makes both directories, puts ``control`` (a socket),
``control_lock``, ``control_privileged`` (a socket), ``log`` (a FIFO) and ``nvidia-cuda-mps-control.pid`` in
the pipe directory (a regular file stands in for a socket whose path is too long for ``AF_UNIX``), and writes
its start lines to ``control.log`` (``[YYYY-MM-DD HH:MM:SS.mmm Control  PID] ...``; the ``CUDA MPS Control
binary version`` line only with CUDA 13 and later). A second daemon on the same pipe directory prints ``An
instance of this daemon is already running`` (on stdout, as scripts in the field read it) and exits 1; stale
files of a killed daemon do not block a new one. - ``-f`` does the same in the foreground: the daemon is the
invoking process (its PID is ``GPUPROV_SIM_PID`` when the systemctl stand-in runs it, so the unit's main PID
is the daemon), its start lines go to stdout as well as to ``control.log``, and the command returns at once
with status 0 — the simulator has no processes that keep running. Lines logged later go to ``control.log``
only. - Without an option (or with a command as arguments, as NVIDIA's own examples do) it is the front end:
it reads one command per line from stdin and talks to the daemon of ``CUDA_MPS_PIPE_DIRECTORY``. No daemon
there: ``Cannot find MPS control daemon process`` on stdout, exit 1. Each session logs ``Accepting
connection...``, ``NEW UI``, ``Cmd:<command>``, its result lines and ``UI closed``. Supported:
``get_server_list``, ``start_server -uid N``, ``shutdown_server PID [-f]``, ``get_client_list PID``, ``quit
[-t N]``, ``get/set_default_active_thread_percentage`` (``25.0`` style), ``get/set_active_thread_percentage
PID``, ``get/set_default_device_pinned_mem_limit DEV VAL`` (``<int>G`` or ``<int>M``),
``get/set_device_pinned_mem_ limit PID DEV``, ``get/set_default_client_priority``, ``terminate_client SERVER
CLIENT`` (prints ``0``), ``ps [-p PID]``.

Choices where the documentation is silent (mps.md marks them UNVERIFIED): an unknown command prints
``Unrecognized command: <command>``; an invalid value prints ``Invalid value: <value>``; an unset
pinned-memory limit prints nothing; ``start_server`` prints nothing. ``CUDA_VISIBLE_DEVICES`` is checked when
a server starts, as CUDA does it then, not when the daemon starts: entries are indexes (nvidia-smi order),
``GPU-``/ ``MIG-`` UUIDs or unique prefixes of them, or ``MIG-GPU-<uuid>/GI/CI``, and CUDA stops at the first
entry that matches nothing. With no usable device the daemon runs, but every server it starts fails the way
the field logs show (``Server encountered a fatal exception. Shutting down`` / ``Server N exited with status
1``, once per attempt, not in an endless loop) and ``get_server_list`` stays empty. ``quit`` with clients
attached leaves the daemon running until the last client leaves (sites see "MPS refused to quit"). Killing the
daemon (``systemctl stop`` of its unit) ends its servers and clients and leaves its pipe files behind.

A running server shows in ``nvidia-smi`` as ``nvidia-cuda-mps-server`` of type ``C`` on every device its
daemon serves, and its clients as ``M+C`` (:class:`gpuprov.sim.machine.Process` records). Clients are placed
with :func:`connect_client`/:func:`disconnect_client` (tests, the lab's helpers). State:
``machine.services["mps"]`` (daemons by pipe directory); each daemon is also in the shell's process table so
systemd can track and kill it."""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Mapping
from typing import Any

from .commands import stand_in
from .host import Result, SimHost
from .machine import Process
from .shell import HostFS, daemon_alive, reap_daemon, spawn_daemon

__all__ = [
    "DEFAULT_LOG_DIR",
    "DEFAULT_PIPE_DIR",
    "connect_client",
    "daemons",
    "disconnect_client",
    "mps_control",
    "resolve_devices",
]

DEFAULT_PIPE_DIR = "/tmp/nvidia-mps"
DEFAULT_LOG_DIR = "/var/log/nvidia-mps"
PIPE_FILES = ("control", "control_lock", "control_privileged", "log", "nvidia-cuda-mps-control.pid")
SERVER_NAME = "nvidia-cuda-mps-server"
SERVER_MEMORY_MIB = 30  # what the captures show a server holding (25-60 MiB)
PID_NAMESPACE = 4026531836  # the initial PID namespace's inode, as ``ps`` prints it
HELP = """\
CUDA MPS Control for Linux/Unix.
Copyright (C) 2003 - 2023 NVIDIA Corporation.

  This program allows multiple CUDA processes to share a single GPU context. For information on how to use \
the CUDA MPS, see the nvidia-cuda-mps-control manual page.
"""
_MEMORY = re.compile(r"(\d+)([MG])")


# --- state


def _state(machine: Any) -> dict[str, Any]:
    state: dict[str, Any] = machine.services.setdefault("mps", {})
    state.setdefault("daemons", {})
    return state


def daemons(host: SimHost) -> dict[str, dict[str, Any]]:
    """The running control daemons by pipe directory (a copy, for tests and detection checks)."""
    machine = host.load()
    return {
        k: dict(v)
        for k, v in machine.services.get("mps", {}).get("daemons", {}).items()
        if daemon_alive(machine, v["pid"])
    }


def _daemon(machine: Any, pipe_dir: str) -> dict[str, Any] | None:
    record = _state(machine)["daemons"].get(_norm(pipe_dir))
    if record is None or not daemon_alive(machine, record["pid"]):
        return None
    return record  # type: ignore[no-any-return]


def _norm(path: str) -> str:
    return os.path.normpath(path) if path else path


def _stamp() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now)) + f".{int(now * 1000) % 1000:03d}"


class _Log:
    """Appends to the daemon's ``control.log``/``server.log`` and collects what ``-f`` prints."""

    def __init__(self, host: SimHost, daemon: Mapping[str, Any]) -> None:
        self.fs = HostFS(host.root)
        self.daemon = daemon
        self.echo: list[str] | None = None

    def _write(self, filename: str, lines: list[str]) -> None:
        try:
            path = self.fs.local(f"{self.daemon['log_dir'].rstrip('/')}/{filename}")
            with open(path, "a", encoding="utf-8") as f:
                f.write("".join(line + "\n" for line in lines))
        except OSError:
            pass  # a daemon that cannot write its log keeps running

    def control(self, message: str, pid: int | None = None) -> None:
        line = f"[{_stamp()} Control {pid or self.daemon['pid']:5d}] {message}"
        self._write("control.log", [line])
        if self.echo is not None:
            self.echo.append(line)

    def server(self, tag: str, pid: int, message: str) -> None:
        self._write("server.log", [f"[{_stamp()} {tag} {pid:5d}] {message}"])


# --- devices


def resolve_devices(machine: Any, visible: str | None) -> list[dict[str, Any]]:
    """The devices CUDA would give a process started with ``CUDA_VISIBLE_DEVICES=visible``."""
    enumerated: list[dict[str, Any]] = []
    for gpu in sorted(machine.gpus, key=lambda g: g.index):
        if not gpu.mig_current:
            enumerated.append(
                {"gpu": gpu.index, "gi": None, "ci": None, "uuid": gpu.uuid, "name": gpu.product}
            )
            continue
        for gi in sorted(gpu.gpu_instances, key=lambda g: g.id):
            for ci in sorted(gi.compute_instances, key=lambda c: c.id):
                enumerated.append(
                    {
                        "gpu": gpu.index,
                        "gi": gi.id,
                        "ci": ci.id,
                        "uuid": ci.uuid,
                        "name": gpu.product,
                        "gpu_uuid": gpu.uuid,
                    }
                )
    if visible is None:
        return enumerated
    chosen: list[dict[str, Any]] = []
    for entry in visible.split(","):
        entry = entry.strip()
        match = _match_device(machine, enumerated, entry)
        if match is None:
            break  # CUDA ignores this entry and everything after it
        if match not in chosen:
            chosen.append(match)
    return chosen


def _match_device(machine: Any, enumerated: list[dict[str, Any]], entry: str) -> dict[str, Any] | None:
    if re.fullmatch(r"\d+", entry):
        index = int(entry)
        return enumerated[index] if index < len(enumerated) else None
    legacy = re.fullmatch(r"MIG-(GPU-[0-9a-fA-F-]+)/(\d+)/(\d+)", entry)
    if legacy:
        for dev in enumerated:
            if (
                dev.get("gpu_uuid", "").lower() == legacy.group(1).lower()
                and dev["gi"] == int(legacy.group(2))
                and dev["ci"] == int(legacy.group(3))
            ):
                return dev
        return None
    if not entry.upper().startswith(("GPU-", "MIG-")) or len(entry) < 5:
        return None
    hits = [dev for dev in enumerated if dev["uuid"].lower().startswith(entry.lower())]
    if len(hits) == 1:
        return hits[0]
    return None  # a GPU UUID of a MIG-enabled GPU, a stale MIG UUID, or an ambiguous prefix


# --- the daemon


def _binary_version(machine: Any) -> int | None:
    """``13000`` for CUDA 13.0: the version line appears in logs of CUDA 13 and later only."""
    m = re.match(r"(\d+)\.(\d+)", machine.cuda_version or "")
    if not m or int(m.group(1)) < 13:
        return None
    return int(m.group(1)) * 1000 + int(m.group(2)) * 10


def _make_socket(path: Any) -> None:
    try:
        if os.path.lexists(path):
            os.unlink(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(path))
        finally:
            sock.close()
    except OSError:  # path too long for AF_UNIX, or no permission: a regular file stands in
        with open(path, "w"):
            pass


def _start_daemon(host: SimHost, argv: list[str], env: Mapping[str, str], *, foreground: bool) -> Result:
    pipe_dir = _norm(env.get("CUDA_MPS_PIPE_DIRECTORY") or DEFAULT_PIPE_DIR)
    log_dir = _norm(env.get("CUDA_MPS_LOG_DIRECTORY") or DEFAULT_LOG_DIR)
    fs = HostFS(host.root)
    with host.locked() as machine:
        if _daemon(machine, pipe_dir) is not None:
            return Result("An instance of this daemon is already running\n", "", 1)
        try:
            pipe_local = fs.local(pipe_dir)
            pipe_local.mkdir(parents=True, exist_ok=True)
            fs.local(log_dir).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return Result("", f"Failed to create {pipe_dir}: {os.strerror(exc.errno or 1)}\n", 1)
        own_pid = env.get("GPUPROV_SIM_PID", "")
        pid = spawn_daemon(
            machine,
            comm="nvidia-cuda-mps-control",
            argv=[argv[0], *argv[1:]],
            env=env,
            kill="gpuprov.sim.mps:_killed",
            pid=int(own_pid) if foreground and own_pid.isdigit() else None,
        )
        user = env.get("USER") or "root"
        record = {
            "pid": pid,
            "user": user,
            "uid": 0 if user == "root" else 1000,
            "pipe_dir": pipe_dir,
            "log_dir": log_dir,
            "visible_devices": env.get("CUDA_VISIBLE_DEVICES"),
            "foreground": foreground,
            "started": time.time(),
            "multiuser": any(a in ("-multiuser-server", "-M", "-m", "--multiuser") for a in argv[1:]),
            "default_active_thread_percentage": _initial_percentage(env),
            "default_pinned_mem_limits": {},
            "default_client_priority": int(env.get("CUDA_MPS_CLIENT_PRIORITY", "0") or 0),
            "servers": {},
            "pending": [],
            "quitting": False,
            "unit": env.get("GPUPROV_SIM_UNIT"),
        }
        _state(machine)["daemons"][pipe_dir] = record
        for name in PIPE_FILES:
            path = pipe_local / name
            if name in ("control", "control_privileged"):
                _make_socket(path)
            elif name == "log":
                if os.path.lexists(path):
                    os.unlink(path)
                os.mkfifo(path, 0o777)
            elif name.endswith(".pid"):
                path.write_text(f"{pid}\n")
            else:
                path.touch()
        for name, mode in (
            ("control", 0o666),
            ("control_lock", 0o666),
            ("control_privileged", 0o755),
            ("log", 0o777),
            ("nvidia-cuda-mps-control.pid", 0o666),
        ):
            os.chmod(pipe_local / name, mode)  # the modes of the capture, whatever the umask
        log = _Log(host, record)
        log.echo = [] if foreground else None
        log.control(f"Starting control daemon using socket {pipe_dir}/control")
        log.control(
            f"To connect CUDA applications to this daemon, set env CUDA_MPS_PIPE_DIRECTORY={pipe_dir}"
        )
        version = _binary_version(machine)
        if version is not None:
            log.control(f"CUDA MPS Control binary version: {version}")
    if foreground:
        return Result("".join(line + "\n" for line in log.echo or []))
    return Result()


def _initial_percentage(env: Mapping[str, str]) -> float | None:
    raw = env.get("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE")
    try:
        return float(raw) if raw else None
    except ValueError:
        return None


def _killed(host: SimHost, machine: Any, pid: int) -> None:
    """The daemon got SIGTERM (systemd stopping its unit): servers and clients end, pipe files stay behind."""
    for pipe_dir, record in list(_state(machine)["daemons"].items()):
        if record["pid"] == pid:
            for server_pid in list(record["servers"]):
                _remove_server(machine, record, int(server_pid))
            del _state(machine)["daemons"][pipe_dir]


def _remove_server(machine: Any, daemon: dict[str, Any], server_pid: int) -> None:
    server = daemon["servers"].pop(str(server_pid), None)
    clients = set(server["clients"]) if server else set()
    machine.processes = [p for p in machine.processes if p.pid != server_pid and p.pid not in clients]


def _finish_quit(host: SimHost, machine: Any, daemon: dict[str, Any], log: _Log) -> None:
    for server_pid in list(daemon["servers"]):
        _remove_server(machine, daemon, int(server_pid))
        log.control(f"Server {server_pid} exited with status 0")
    fs = HostFS(host.root)
    for name in PIPE_FILES:
        try:
            path = fs.local(f"{daemon['pipe_dir']}/{name}", follow=False)
            if os.path.lexists(path):
                os.unlink(path)
        except OSError:
            pass
    _state(machine)["daemons"].pop(daemon["pipe_dir"], None)
    reap_daemon(machine, daemon["pid"])


# --- servers


def _start_server(host: SimHost, machine: Any, daemon: dict[str, Any], uid: int, log: _Log) -> int | None:
    """Start a server for ``uid``; returns its PID, or None when it failed the way the field logs show."""
    pid: int = machine.allocate_pid()
    version = _binary_version(machine)
    log.control(f"Starting new server {pid} for user {uid}", pid=pid if version else None)
    log.control("Accepting connection...")  # the new server connecting back to its daemon
    log.server("Other", pid, "Startup")
    log.server("Other", pid, f"Connecting to control daemon on socket: {daemon['pipe_dir']}/control")
    log.server("Other", pid, "Initializing server process")
    devices = resolve_devices(machine, daemon.get("visible_devices"))
    if not devices:
        log.server("Server", pid, "Failed to start : no CUDA-capable device is detected")
        log.control("Server encountered a fatal exception. Shutting down")
        log.control(f"Server {pid} exited with status 1")
        return None
    percentage = daemon.get("default_active_thread_percentage")
    limits = dict(daemon.get("default_pinned_mem_limits", {}))
    for ordinal, device in enumerate(devices):
        log.server("Server", pid, f"Creating server context on device {ordinal} ({device['name']})")
    if percentage is not None:
        log.server("Server", pid, f"Active Threads Percentage set to {percentage:.1f}")
    for ordinal, device in enumerate(devices):
        value = limits.get(str(ordinal)) or limits.get(device["uuid"])
        if value:
            m = _MEMORY.fullmatch(value)
            if m:
                size = int(m.group(1)) << (30 if m.group(2) == "G" else 20)
                log.server(
                    "Server", pid, f"Device pinned memory limit for device {ordinal} set to {size:#x} bytes"
                )
    log.server("Server", pid, f"Server Priority set to {daemon.get('default_client_priority', 0)}")
    log.server("Server", pid, "Server has started")
    log.control(f"NEW SERVER {pid}: Ready")
    daemon["servers"][str(pid)] = {
        "uid": uid,
        "devices": [d["uuid"] for d in devices],
        "clients": [],
        "active_thread_percentage": percentage,
        "pinned_mem_limits": limits,
    }
    user = "root" if uid == 0 else str(uid)
    for device in devices:
        machine.processes.append(
            Process(
                pid=pid,
                name=SERVER_NAME,
                gpu=device["gpu"],
                gi=device["gi"],
                ci=device["ci"],
                type="C",
                used_memory_mib=SERVER_MEMORY_MIB,
                user=user,
            )
        )
    return pid


def _server_of(daemon: Mapping[str, Any], uid: int) -> int | None:
    for pid, server in daemon["servers"].items():
        if server["uid"] == uid:
            return int(pid)
    return None


# --- the front end


def _front_end(host: SimHost, commands: list[str], env: Mapping[str, str]) -> Result:
    pipe_dir = _norm(env.get("CUDA_MPS_PIPE_DIRECTORY") or DEFAULT_PIPE_DIR)
    out: list[str] = []
    with host.locked() as machine:
        daemon = _daemon(machine, pipe_dir)
        if daemon is None:
            return Result("Cannot find MPS control daemon process\n", "", 1)
        log = _Log(host, daemon)
        log.control("Accepting connection...")
        log.control("NEW UI")
        for command in commands:
            if daemon.get("gone"):
                break
            log.control(f"Cmd:{command}")
            lines = _command(host, machine, daemon, command, log)
            for line in lines:
                log.control(line)
            out.extend(lines)
        if not daemon.get("gone"):
            log.control("UI closed")
    return Result("".join(line + "\n" for line in out))


def _command(host: SimHost, machine: Any, daemon: dict[str, Any], command: str, log: _Log) -> list[str]:
    words = command.split()
    verb, args = words[0], words[1:]
    servers = daemon["servers"]

    def server_arg(index: int = 0) -> dict[str, Any] | None:
        return servers.get(args[index]) if len(args) > index else None

    if verb == "get_server_list":
        return list(servers)
    if verb == "start_server":
        if len(args) < 2 or args[0] != "-uid" or not args[1].isdigit():
            return [f"Invalid value: {' '.join(args)}"]
        uid = int(args[1])
        if _server_of(daemon, uid) is None and not daemon["quitting"]:
            other = next((p for p, s in servers.items() if s["uid"] != uid), None)
            if other is not None and servers[other]["clients"] and not daemon.get("multiuser"):
                return []  # queued until the other user's clients are gone
            if other is not None:
                _remove_server(machine, daemon, int(other))
                log.control(f"Server {other} exited with status 0")
            _start_server(host, machine, daemon, uid, log)
        return []
    if verb == "shutdown_server":
        server = server_arg()
        if server is not None and (not server["clients"] or "-f" in args):
            _remove_server(machine, daemon, int(args[0]))
            log.control(f"Server {args[0]} exited with status 0")
        return []
    if verb == "get_client_list":
        server = server_arg()
        return [str(c) for c in server["clients"]] if server else []
    if verb == "quit":
        if any(s["clients"] for s in servers.values()):
            daemon["quitting"] = True
            return []
        _finish_quit(host, machine, daemon, log)
        daemon["gone"] = True
        return []
    if verb == "get_default_active_thread_percentage":
        value = daemon.get("default_active_thread_percentage")
        return [f"{100.0 if value is None else value:.1f}"]
    if verb == "set_default_active_thread_percentage":
        value = _percentage(args[0] if args else "")
        if value is None:
            return [f"Invalid value: {' '.join(args)}"]
        daemon["default_active_thread_percentage"] = value
        return [f"{value:.1f}"]
    if verb == "get_active_thread_percentage":
        server = server_arg()
        if server is None:
            return [f"Invalid value: {' '.join(args)}"]
        value = server.get("active_thread_percentage")
        return [f"{100.0 if value is None else value:.1f}"]
    if verb == "set_active_thread_percentage":
        server = server_arg()
        value = _percentage(args[1]) if len(args) > 1 else None
        if server is None or value is None:
            return [f"Invalid value: {' '.join(args)}"]
        server["active_thread_percentage"] = value
        return [f"{value:.1f}"]
    if verb == "set_default_device_pinned_mem_limit":
        if len(args) != 2 or not _MEMORY.fullmatch(args[1]):
            return [f"Invalid value: {' '.join(args)}"]
        daemon["default_pinned_mem_limits"][args[0]] = args[1]
        return []
    if verb == "get_default_device_pinned_mem_limit":
        value = daemon["default_pinned_mem_limits"].get(args[0]) if args else None
        return [value] if value else []
    if verb == "set_device_pinned_mem_limit":
        server = server_arg()
        if server is None or len(args) != 3 or not _MEMORY.fullmatch(args[2]):
            return [f"Invalid value: {' '.join(args)}"]
        server["pinned_mem_limits"][args[1]] = args[2]
        return []
    if verb == "get_device_pinned_mem_limit":
        server = server_arg()
        value = server["pinned_mem_limits"].get(args[1]) if server and len(args) > 1 else None
        return [value] if value else []
    if verb == "set_default_client_priority":
        if not args or args[0] not in ("0", "1"):
            return [f"Invalid value: {' '.join(args)}"]
        daemon["default_client_priority"] = int(args[0])
        return []
    if verb == "get_default_client_priority":
        return [str(daemon.get("default_client_priority", 0))]
    if verb == "terminate_client":
        server = server_arg()
        if server is None or len(args) < 2 or not args[1].isdigit() or int(args[1]) not in server["clients"]:
            return [f"Invalid value: {' '.join(args)}"]
        _drop_client(host, machine, daemon, int(args[1]), log)
        return ["0"]
    if verb == "ps":
        rows = ["PID ID SERVER DEVICE NAMESPACE COMMAND"]
        wanted = args[1] if len(args) > 1 and args[0] == "-p" else None
        names = {p.pid: p.name for p in machine.processes}
        for server_pid, server in servers.items():
            for client in server["clients"]:
                if wanted is None or wanted in (str(client), server_pid):
                    device = server["devices"][0][:22] if server["devices"] else "-"
                    rows.append(f"{client} 0 {server_pid} {device} {PID_NAMESPACE} {names.get(client, '?')}")
        return rows
    return [f"Unrecognized command: {command}"]


def _percentage(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return round(value, 1) if 0 < value <= 100 else None


# --- clients


def connect_client(
    host: SimHost,
    *,
    pipe_dir: str = DEFAULT_PIPE_DIR,
    name: str = "./app",
    uid: int = 0,
    used_memory_mib: int = 100,
    device: int = 0,
) -> int | None:
    """A CUDA program starting with ``CUDA_MPS_PIPE_DIRECTORY=pipe_dir``: returns its PID, or None when no
    daemon listens there (the program then runs without MPS and this records nothing).

    As MPS does it: the daemon starts a server for ``uid`` or reuses it; a client of another user than the
    running server's is queued (``push client to pending list``) and gets no GPU until that server's clients
    are gone. ``device`` is the ordinal among the daemon's devices the client uses."""
    with host.locked() as machine:
        daemon = _daemon(machine, pipe_dir)
        if daemon is None or daemon["quitting"]:
            return None
        log = _Log(host, daemon)
        pid = machine.allocate_pid()
        log.control("Accepting connection...")
        log.control("User did not send valid credentials")
        log.control("Accepting connection...")
        effective_uid = 0 if daemon.get("multiuser") else uid
        server_pid = _server_of(daemon, effective_uid)
        if server_pid is not None:
            log.control(f"NEW CLIENT {pid} from user {uid}: Server already exists")
        else:
            log.control(f"NEW CLIENT {pid} from user {uid}: Server is not ready, push client to pending list")
            busy = [p for p, s in daemon["servers"].items() if s["clients"]]
            if busy:
                daemon["pending"].append(
                    {"pid": pid, "uid": uid, "name": name, "memory": used_memory_mib, "device": device}
                )
                return pid
            for other in list(daemon["servers"]):
                _remove_server(machine, daemon, int(other))
                log.control(f"Server {other} exited with status 0")
            server_pid = _start_server(host, machine, daemon, effective_uid, log)
            if server_pid is None:
                daemon["pending"].append(
                    {"pid": pid, "uid": uid, "name": name, "memory": used_memory_mib, "device": device}
                )
                return pid
        _attach(machine, daemon, server_pid, pid, name, uid, used_memory_mib, device, log)
        return pid


def _attach(
    machine: Any,
    daemon: dict[str, Any],
    server_pid: int,
    pid: int,
    name: str,
    uid: int,
    memory: int,
    device: int,
    log: _Log,
) -> None:
    server = daemon["servers"][str(server_pid)]
    server["clients"].append(pid)
    target = server["devices"][min(device, len(server["devices"]) - 1)]
    log.server("Server", server_pid, "Received new client request")
    log.server("Server", server_pid, "Worker created")
    log.server("Server", server_pid, "Creating worker thread")
    for dev in resolve_devices(machine, None):
        if dev["uuid"] == target:
            log.server("Server", server_pid, f"Device {dev['name']} (uuid {dev['uuid']}) is associated")
            machine.processes.append(
                Process(
                    pid=pid,
                    name=name,
                    gpu=dev["gpu"],
                    gi=dev["gi"],
                    ci=dev["ci"],
                    type="M+C",
                    used_memory_mib=memory,
                    user="root" if uid == 0 else str(uid),
                )
            )
            break


def disconnect_client(host: SimHost, pid: int) -> None:
    """The client ``pid`` exits; a daemon waiting to ``quit`` goes once its last client left."""
    with host.locked() as machine:
        for daemon in list(_state(machine)["daemons"].values()):
            log = _Log(host, daemon)
            _drop_client(host, machine, daemon, pid, log)


def _drop_client(host: SimHost, machine: Any, daemon: dict[str, Any], pid: int, log: _Log) -> None:
    daemon["pending"] = [p for p in daemon["pending"] if p["pid"] != pid]
    for server_pid, server in daemon["servers"].items():
        if pid in server["clients"]:
            server["clients"].remove(pid)
            machine.processes = [p for p in machine.processes if p.pid != pid]
            # the T4 capture's wording, without the "Volta MPS:" prefix newer drivers dropped
            log.server("Server", int(server_pid), "Receive command failed, assuming client exit")
            log.server(
                "Server",
                int(server_pid),
                f"Client disconnected. Number of active client contexts is {len(server['clients'])}",
            )
    if daemon["quitting"] and not any(s["clients"] for s in daemon["servers"].values()):
        _finish_quit(host, machine, daemon, log)
        return
    if daemon["pending"] and not any(s["clients"] for s in daemon["servers"].values()):
        waiting = daemon["pending"].pop(0)
        for other in list(daemon["servers"]):
            _remove_server(machine, daemon, int(other))
            log.control(f"Server {other} exited with status 0")
        uid = 0 if daemon.get("multiuser") else waiting["uid"]
        server_pid = _start_server(host, machine, daemon, uid, log)
        if server_pid is not None:
            _attach(
                machine,
                daemon,
                server_pid,
                waiting["pid"],
                waiting["name"],
                waiting["uid"],
                waiting["memory"],
                waiting["device"],
                log,
            )


# --- the command


def _reads_stdin(argv: list[str]) -> bool:
    """Only the front end reads stdin (``-d``/``-f``/``-h`` and commands given as arguments do not)."""
    return len(argv) == 1


@stand_in("nvidia-cuda-mps-control")
def mps_control(host: SimHost, argv: list[str], stdin: str, env: Mapping[str, str]) -> Result:
    """The ``nvidia-cuda-mps-control`` stand-in (see the module docstring)."""
    from .systemctl import _ensure_booted

    options = [a for a in argv[1:] if a.startswith("-")]
    if "-h" in options or "--help" in options:
        return Result(HELP)
    _ensure_booted(host)
    if "-d" in options or "-f" in options:
        return _start_daemon(host, argv, env, foreground="-f" in options and "-d" not in options)
    if (
        argv[1:]
        and argv[1].startswith("-")
        and argv[1] not in ("-multiuser-server", "-M", "-m", "--multiuser")
    ):
        return Result(HELP, "", 1)
    if argv[1:]:
        commands = [" ".join(argv[1:])]
    else:
        commands = [line.strip() for line in stdin.replace("\r", "").split("\n") if line.strip()]
    return _front_end(host, commands, env)


mps_control.reads_stdin = _reads_stdin  # type: ignore[attr-defined]
