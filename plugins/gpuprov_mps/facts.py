"""Detecting a host's MPS state: the probe commands and their parsers.

What detect learns, per daemon gpuprov installed (one environment file per device under ``ENV_DIR``): the file's
settings; the systemd state of its unit instance and the user it runs as; whether a control daemon answers on its
pipe directory, the servers it runs and the defaults it reports (``get_default_active_thread_percentage``,
``get_default_device_pinned_mem_limit 0``); and the UUID the daemon was started with — which its unit logs at
every start, since a daemon's environment is not something its front end will tell. Compute modes, servers (``C``)
and clients (``M+C``) on each device come from the MIG plugin's ``nvidia-smi -q -x`` facts (``facts["gpus"]``,
``facts["mig"]["gpus"][i]["processes"]``), so they are not probed twice.

Everything is probed in the one round trip detect makes: the per-daemon queries are a single shell loop over the
environment files, whose output is cut into sections by ``@@`` marker lines.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from typing import Any

ENV_DIR = "/etc/gpuprov/mps"
UNIT_TEMPLATE = "nvidia-mps@.service"
UNIT_PATH = f"/etc/systemd/system/{UNIT_TEMPLATE}"
TARGET = "gpuprov-mps.target"
TARGET_PATH = f"/etc/systemd/system/{TARGET}"
HELPER_PATH = "/usr/local/libexec/gpuprov/mps-device"
WRAPPER_PATH = "/usr/local/bin/mps-run"
MIG_UNIT = "gpuprov-mig.service"  # the MIG plugin's boot unit, which daemons start after
DEFAULT_PIPE_DIR = "/tmp/nvidia-mps"
START_LINE = "starting the MPS control daemon with CUDA_VISIBLE_DEVICES="
NO_DAEMON = "Cannot find MPS control daemon process"
PROBE_TIMEOUT = 10

FILES = {"unit": UNIT_PATH, "target": TARGET_PATH, "helper": HELPER_PATH, "wrapper": WRAPPER_PATH}


def _query(command: str) -> str:
    return (f"printf '%s\\n' {shlex.quote(command)} | CUDA_MPS_PIPE_DIRECTORY=\"$p\" "
            f"timeout {PROBE_TIMEOUT} nvidia-cuda-mps-control 2>&1; echo \"@@status $?\"")


def probes() -> dict[str, str]:
    """The detect commands: the installed files, the target's state, and one loop over the daemons."""
    commands = {f"mps.file.{key}": f"cat {shlex.quote(path)}" for key, path in FILES.items()}
    commands["mps.target"] = f"systemctl show -p Id,LoadState,ActiveState,UnitFileState {TARGET}"
    loop = [
        f"for f in {shlex.quote(ENV_DIR)}/*.env; do",
        '[ -f "$f" ] || continue',
        'i=${f##*/}; i=${i%.env}',
        'echo "@@device $i"', 'cat "$f"',
        'echo "@@unit"',
        'systemctl show -p Id,LoadState,ActiveState,SubState,UnitFileState,MainPID,User "nvidia-mps@$i.service"',
        "p=$(grep '^CUDA_MPS_PIPE_DIRECTORY=' \"$f\" | cut -d= -f2-)",
        'echo "@@servers"', _query("get_server_list"),
        'echo "@@percentage"', _query("get_default_active_thread_percentage"),
        'echo "@@pinned"', _query("get_default_device_pinned_mem_limit 0"),
        'echo "@@started"',
        f'journalctl -u "nvidia-mps@$i.service" -o cat --no-pager -b | grep -F {shlex.quote(START_LINE)} '
        "| tail -n 1",
        "done",
    ]
    commands["mps.daemons"] = "\n".join(loop)
    commands["mps.default"] = (f"printf 'get_server_list\\n' | CUDA_MPS_PIPE_DIRECTORY={DEFAULT_PIPE_DIR} "
                               f"timeout {PROBE_TIMEOUT} nvidia-cuda-mps-control")
    return commands


# -- parsers -----------------------------------------------------------------------------------------------------

_MARK = re.compile(r"^@@(\w+)(?: (.*))?$")


def parse_env(text: str) -> dict[str, str]:
    """An environment file gpuprov wrote: ``KEY=VALUE`` lines (plain values), comments ignored."""
    env: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")) or "=" not in line:
            continue
        key, value = line.split("=", 1)
        env[key.strip()] = value.strip()
    return env


def parse_show(text: str) -> dict[str, str]:
    """``systemctl show -p ...`` of one unit: ``Key=value`` lines."""
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def parse_query(lines: list[str]) -> tuple[bool | None, list[str]]:
    """A front-end answer as the probe printed it (its lines, then ``@@status N``): (daemon answered, lines).

    ``None`` for "no such command here" (127: no MPS on this host) or a timeout (124: a wedged daemon)."""
    status = None
    body: list[str] = []
    for line in lines:
        m = re.match(r"^@@status (\d+)$", line)
        if m:
            status = int(m.group(1))
        elif line.strip():
            body.append(line.strip())
    if status == 0:
        return True, body
    if any(NO_DAEMON in line for line in body):
        return False, []
    return None, body


def _float(lines: list[str]) -> float | None:
    for line in lines:
        try:
            return float(line)
        except ValueError:
            continue
    return None


def parse_daemons(text: str) -> list[dict[str, Any]]:
    """The ``mps.daemons`` loop's output: per installed device its settings, unit state and daemon's answers."""
    daemons: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    section = ""
    parts: dict[str, list[str]] = {}

    def finish() -> None:
        if current is None:
            return
        env_text = "\n".join(parts.get("device", [])) + "\n"
        unit = parse_show("\n".join(parts.get("unit", [])))
        answered, servers = parse_query(parts.get("servers", []))
        _, percentage = parse_query(parts.get("percentage", []))
        _, pinned = parse_query(parts.get("pinned", []))
        started = [line for line in parts.get("started", []) if "CUDA_VISIBLE_DEVICES=" in line]
        bound = None
        if started:
            m = re.search(r"CUDA_VISIBLE_DEVICES=(\S+)", started[-1])
            bound = m.group(1) if m else None
        current.update({
            "env_text": env_text,
            "env": parse_env(env_text),
            "unit": {"active": unit.get("ActiveState", ""), "sub": unit.get("SubState", ""),
                     "enabled": unit.get("UnitFileState", ""), "load": unit.get("LoadState", ""),
                     "main_pid": int(unit["MainPID"]) if unit.get("MainPID", "").isdigit() else 0,
                     "user": unit.get("User") or "root"},  # systemd prints User= empty for root
            "answers": answered,
            "servers": [int(s) for s in servers if s.isdigit()] if answered else [],
            "active_thread_percentage": _float(percentage) if answered else None,
            "pinned_mem_limit": next((p for p in pinned if re.fullmatch(r"\d+[MG]?", p)), None) if answered
            else None,
            "bound_uuid": bound,
        })
        daemons.append(current)

    for line in text.splitlines():
        m = _MARK.match(line)
        if m and m.group(1) == "device":
            finish()
            current = {"instance": (m.group(2) or "").strip()}
            parts = {}
            section = "device"
            continue
        if m and m.group(1) in ("unit", "servers", "percentage", "pinned", "started"):
            section = m.group(1)
            continue
        if current is None:
            if line.strip():
                raise ValueError(f"MPS daemon listing: unexpected line before any device: {line.strip()!r}")
            continue
        parts.setdefault(section, []).append(line)
    finish()
    return daemons


def _stdout(outputs: Mapping[str, Any], name: str) -> str | None:
    result = outputs.get(name)
    if result is None or result.exit_code != 0:
        return None
    return str(result.stdout)


def device_processes(facts: Mapping[str, Any], env: Mapping[str, str]) -> list[Mapping[str, Any]]:
    """The processes nvidia-smi shows on the device an environment file names (the MIG plugin's facts): a whole GPU
    or the MIG device at ``GPUPROV_MPS_MIG_START`` (compute instance of rank ``GPUPROV_MPS_MIG_RANK``)."""
    gpu_text = env.get("GPUPROV_MPS_GPU", "")
    if not gpu_text.isdigit():
        return []
    gpu = int(gpu_text)
    start, rank = env.get("GPUPROV_MPS_MIG_START", ""), env.get("GPUPROV_MPS_MIG_RANK", "") or "0"
    where: tuple[int | None, int | None] = (None, None)
    if start.isdigit():
        cis = sorted((d["ci"], d["gi"]) for d in facts.get("mig_devices") or ()
                     if d["gpu"] == gpu and d["placement"][0] == int(start))
        if not rank.isdigit() or int(rank) >= len(cis):
            return []
        ci, gi = cis[int(rank)]
        where = (gi, ci)
    for g in (facts.get("mig") or {}).get("gpus") or ():
        if g["index"] == gpu:
            return [p for p in g.get("processes") or () if (p.get("gi"), p.get("ci")) == where or
                    (where == (None, None) and p.get("gi") is None)]
    return []


def gather(outputs: Mapping[str, Any], facts: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """This plugin's facts (``facts["mps"]``) from the probe outputs; ``facts`` (the MIG plugin's, detected first)
    give each daemon's device the servers (``C``) and clients (``M+C``) nvidia-smi shows on it."""
    files = {key: _stdout(outputs, f"mps.file.{key}") for key in FILES}
    target = parse_show(_stdout(outputs, "mps.target") or "")
    daemons = parse_daemons(_stdout(outputs, "mps.daemons") or "")
    for d in daemons:
        procs = device_processes(facts or {}, d["env"])
        d["clients"] = [{"pid": p["pid"], "name": p.get("name", "")} for p in procs if "M" in str(p.get("type"))]
        d["server_processes"] = [p["pid"] for p in procs if str(p.get("name", "")).endswith("nvidia-cuda-mps-server")]
    default = outputs.get("mps.default")
    return {"mps": {
        "files": files,
        "target": {"enabled": target.get("UnitFileState", ""), "active": target.get("ActiveState", "")},
        "daemons": daemons,
        "default_daemon": bool(default is not None and default.exit_code == 0),
    }}
