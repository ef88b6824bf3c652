"""``python -m gpuprov.sim NAME ARGS...``: run one stand-in against the host in ``GPUPROV_SIM_STATE``.

This is what the shims on the lab's PATH execute for every ``nvidia-smi``, ``systemctl``, ... so it imports
only the module that implements ``NAME``: a command must cost one short Python start, not the whole simulator.
Standard input is read only by stand-ins that declare they read it (``nvidia-cuda-mps-control`` as a front
end), so a stand-in run from a terminal or a script with an open stdin never waits for EOF."""

from __future__ import annotations

import importlib
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .commands import StandIn

# which module registers which command; anything else falls back to loading every stand-in
_MODULES = {
    "nvidia-smi": "nvidia_smi",
    "nvidia-cuda-mps-control": "mps",
    "systemctl": "systemctl",
    "journalctl": "systemctl",
    "numactl": "numa",
    "lscpu": "numa",
}

USAGE = "usage: python -m gpuprov.sim COMMAND [ARGS...]   (GPUPROV_SIM_STATE names the simulated host)\n"


def _lookup(name: str) -> StandIn | None:
    from .commands import COMMANDS, load_all

    module = _MODULES.get(name)
    if module is not None:
        try:
            importlib.import_module(f"{__package__}.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__package__}.{module}":
                raise
    if name not in COMMANDS:
        load_all()
    return COMMANDS.get(name)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        sys.stderr.write(USAGE)
        return 2
    from .host import SimHost

    func = _lookup(argv[0])
    if func is None:
        sys.stderr.write(f"gpuprov.sim: {argv[0]}: no such stand-in\n")
        return 127
    try:
        host = SimHost.from_env()
    except RuntimeError as exc:
        sys.stderr.write(f"{argv[0]}: {exc}\n")
        return 1
    if not host.exists:
        sys.stderr.write(f"{argv[0]}: no simulated host in {host.state_dir} (machine.json is missing)\n")
        return 1
    reads = getattr(func, "reads_stdin", None)
    stdin = sys.stdin.read() if reads is not None and reads(argv) and sys.stdin is not None else ""
    result = func(host, argv, stdin, dict(os.environ))
    try:
        sys.stdout.write(result.stdout)
        sys.stdout.flush()
    except BrokenPipeError:
        pass
    sys.stderr.write(result.stderr)
    sys.stderr.flush()
    return int(result.exit_code)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # a reader that stopped early (``| head``) is not our failure
        os._exit(0)
