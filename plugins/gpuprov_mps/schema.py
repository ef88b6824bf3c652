"""The ``mps:`` section of a play: what each key means and the rules that span keys."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from gpuprov.schema import Schema, Setting

PLACEHOLDER = "{device}"
MEMORY = re.compile(r"^[1-9][0-9]*[MG]$")  # the daemon's grammar: an integer and G or M (M = 2^20 bytes)
USER = re.compile(r"^[a-z_][a-z0-9_-]*[$]?$")
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9._/{}-]*$")  # no blanks, quotes, $ or % (it goes into env files and units)
COMPUTE_MODES = {"exclusive": "EXCLUSIVE_PROCESS", "default": "DEFAULT", "unchanged": None}


def _check(values: Mapping[str, Any]) -> list[tuple[str | None, str]]:
    problems: list[tuple[str | None, str]] = []
    devices = values.get("devices")
    if isinstance(devices, str) and devices.strip().lower() not in ("gpus", "mig", "all"):
        problems.append(("devices", f"{devices!r}: use gpus, mig, all, or a list of GPU indexes and MIG device "
                                    "names such as [0, gpu1/mig@4]"))
    if isinstance(devices, list) and not devices:
        problems.append(("devices", "an empty list selects no device: use enabled: false to turn MPS off"))
    limit = values.get("pinned_mem_limit")
    if limit is not None and not MEMORY.match(str(limit)):
        problems.append(("pinned_mem_limit", f"{limit!r}: the daemon takes an integer and G or M, e.g. 10G or "
                                             "4096M"))
    for key in ("pipe_dir", "log_dir"):
        pattern = values.get(key)
        if pattern is None:
            continue
        if PLACEHOLDER not in pattern:
            problems.append((key, f"{pattern!r} must contain {PLACEHOLDER}: every daemon needs its own "
                                  "directory (e.g. /run/nvidia-mps/{device})"))
        elif not _SAFE_PATH.match(pattern) or pattern.count("{") != 1 or "//" in pattern:
            problems.append((key, f"{pattern!r}: use an absolute path of letters, digits, '.', '_', '-' and '/' "
                                  f"with {PLACEHOLDER} once"))
    user = values.get("user")
    if user is not None and not USER.match(str(user)):
        problems.append(("user", f"{user!r} is not a user name"))
    if values.get("multiuser") and user not in (None, "root"):
        problems.append(("multiuser", f"multi-user MPS needs a daemon running as root, not {user!r}: set user: "
                                      "root or multiuser: false"))
    return problems


SCHEMA = Schema(
    "mps",
    {
        "enabled": Setting(bool, True, doc="run MPS daemons; false stops them, removes their units and restores "
                                           "the DEFAULT compute mode"),
        "devices": Setting((str, list), "all", doc="gpus (whole GPUs), mig (every MIG device), all, or a list: GPU "
                                                   "indexes, gpu0/mig (all MIG devices of GPU 0), gpu0/mig@4 (the "
                                                   "MIG device whose GPU instance starts at memory slice 4)"),
        "active_thread_percentage": Setting((int, float), None, minimum=1, maximum=100,
                                            doc="the share of SMs each client may use (set_default_active_"
                                                "thread_percentage); unset: 100"),
        "pinned_mem_limit": Setting(str, None, doc="device memory each client may pin, e.g. 10G or 4096M "
                                                   "(set_default_device_pinned_mem_limit 0)"),
        "user": Setting(str, "root", doc="the user the daemons run as; clients of other users are served only by a "
                                         "root daemon"),
        "multiuser": Setting(bool, False, doc="one server for the clients of every user (-multiuser-server); no "
                                              "isolation between users"),
        "pipe_dir": Setting(str, "/run/nvidia-mps/{device}", doc="each daemon's CUDA_MPS_PIPE_DIRECTORY; {device} "
                                                                 "is the device (gpu0, gpu0-mig4)"),
        "log_dir": Setting(str, "/var/log/nvidia-mps/{device}", doc="each daemon's CUDA_MPS_LOG_DIRECTORY"),
        "compute_mode": Setting(str, "exclusive", choices=tuple(COMPUTE_MODES),
                                doc="compute mode of whole GPUs while their daemon runs (MIG devices have none): "
                                    "exclusive (EXCLUSIVE_PROCESS, only the MPS server), default, or unchanged"),
        "stop_timeout": Setting(int, 10, minimum=1, maximum=600,
                                doc="seconds a daemon gets to quit before systemd stops it by force"),
    },
    order=20,
    reads=("mig",),  # MIG devices, and the processes on them
    doc="NVIDIA MPS daemons per GPU or MIG device, as systemd units",
    check=_check,
)
