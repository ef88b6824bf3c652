"""The benchmark's work as a pyinfra deploy: gpuprov's detect probes, then (for apply) its planned steps, then the
probes again, each as the operation a pyinfra user would write for it.

Why a generic deploy: the commands come from gpuprov itself (its probes, and the steps of its from-scratch plan,
written by bench/run.py into the JSON file named by ``GPUPROV_BENCH_WORK``), so pyinfra runs exactly the commands
gpuprov runs and nobody has to keep two copies in step. Probes may exit non-zero (``cat`` of a file not yet
installed), as they may for gpuprov, so they ignore errors; apply steps do not.

Run by bench/run.py as ``pyinfra -y --parallel N INVENTORY.py bench/pyinfra_deploy.py``.
"""

from __future__ import annotations

import io
import json
import os

from pyinfra import host
from pyinfra.operations import files, server

with open(os.environ["GPUPROV_BENCH_WORK"], encoding="utf-8") as _f:
    WORK = json.load(_f)


def detect(when: str) -> None:
    # host.loop gives each iteration its own place in pyinfra's operation order, the same on every host
    for name, command in host.loop(WORK["probes"][host.name].items()):
        server.shell(name=f"{when} {name}", commands=[command], _ignore_errors=True)


detect("detect")
if WORK["mode"] == "apply":
    for i, step in enumerate(host.loop(WORK["steps"].get(host.name, []))):
        label = f"step {i}: {step['label']}"
        if step["kind"] == "run":
            server.shell(name=label, commands=[step["command"]])
        elif step["kind"] == "write":
            files.put(name=label, src=io.StringIO(step["content"]), dest=step["path"], mode=f"{step['mode']:o}",
                      user=step.get("owner"), group=step.get("group"))
        elif step["kind"] == "remove":
            files.file(name=label, path=step["path"], present=False)
        else:
            raise ValueError(f"{host.name}: unknown step kind {step['kind']!r}")
    detect("re-detect")
