"""A test plugin whose changes are steps the test controls: each name in ``steps.names`` is one change that logs
its start and end on the host, optionally sleeps, fails or stops a service around it, then writes a marker file.

Why: the fault, safety and security tests must provoke a dropped link part way through an apply, a failing
command, a slow command or a file edited by hand, without depending on the GPU plugins. Load it with
``--plugin gpuprov_steps`` and this directory on ``PYTHONPATH``.

On the host, ``DIR/log`` gets ``start NAME`` and ``done NAME`` lines, and ``DIR/NAME`` holds ``content``; a change
is complete when that file holds it, so a re-run plans only the names whose file is missing or different.
"""

from __future__ import annotations

import shlex
from typing import Any

from gpuprov import hookimpl
from gpuprov.plan import Change, Step
from gpuprov.schema import Schema, Setting


@hookimpl
def gpuprov_settings_schema() -> Schema:
    return Schema("steps", {
        "dir": Setting(str, "/var/lib/gpuprov-steps", doc="where the log and marker files live on the host"),
        "names": Setting(list, [], doc="one change per name, applied in this order"),
        "content": Setting(str, "done", doc="what each marker file holds"),
        "label": Setting(str, "", doc="echoed into the log by every step (a value that reaches a command)"),
        "fail": Setting(list, [], doc="names whose command fails, printing fail_message on stderr"),
        "fail_message": Setting(str, "steps-tool: device busy", doc="the failing tool's own message"),
        "sleep": Setting(dict, {}, doc="seconds a name's command sleeps before it finishes"),
        "service": Setting(str, "", doc="a systemd unit stopped before each change and started again after"),
        "mode": Setting(str, "run", choices=("run", "file-only"), doc="file-only: changes only write files"),
        "retries": Setting(int, 0, minimum=0, maximum=5, doc="accepted and ignored (a typed, bounded setting)"),
    }, order=95, check=_check)


def _check(values: dict[str, Any]) -> list[tuple[str | None, str]]:
    """The whole section: what per-key types cannot say (sleep values are seconds; names are file names)."""
    problems: list[tuple[str | None, str]] = []
    for name, seconds in (values["sleep"] or {}).items():
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            problems.append(("sleep", f"{name}: expected seconds (a number of at least 0), got {seconds!r}"))
    for name in values["names"] or []:
        if not isinstance(name, str | int) or not str(name) or "/" in str(name) or str(name) in (".", "..", "log"):
            problems.append(("names", f"{name!r} is not a file name (no '/', not '.', '..' or 'log')"))
    return problems


@hookimpl
def gpuprov_probe(settings: dict[str, Any]) -> dict[str, str]:
    d = shlex.quote(settings["dir"])
    # Every marker file at once, framed by name, so one probe reads the whole state.
    return {"steps.files": f"cd {d} 2>/dev/null || exit 0; for f in *; do [ -f \"$f\" ] || continue; "
                           "printf '=== %s\\n' \"$f\"; cat \"./$f\"; printf '\\n'; done"}


@hookimpl
def gpuprov_facts(outputs: dict[str, Any]) -> dict[str, Any]:
    files: dict[str, str] = {}
    name = None
    for line in outputs["steps.files"].stdout.splitlines():
        if line.startswith("=== "):
            name = line[4:]
            files[name] = ""
        elif name is not None:
            files[name] += line + "\n"
    return {"steps": {"files": {k: v[:-1] for k, v in files.items()}}}  # drop the frame's own newline


@hookimpl
def gpuprov_plan(host: Any, facts: dict[str, Any], settings: dict[str, Any]) -> list[Change]:
    d = settings["dir"]
    log = shlex.quote(f"{d}/log")
    files = facts["steps"]["files"]
    changes = []
    for name in settings["names"]:
        name = str(name)
        content = settings["content"] + "\n"
        if files.get(name) == content:
            continue
        steps: list[Step] = []
        if settings["mode"] == "run":
            label = shlex.quote(settings["label"])
            command = f"mkdir -p {shlex.quote(d)} && printf 'start %s %s\\n' {shlex.quote(name)} {label} >> {log}"
            seconds = settings["sleep"].get(name)
            if seconds:
                command += f" && sleep {float(seconds):g}"
            if name in [str(n) for n in settings["fail"]]:
                command += f" && {{ echo {shlex.quote(settings['fail_message'])} >&2; exit 3; }}"
            command += f" && printf 'done %s\\n' {shlex.quote(name)} >> {log}"
            steps.append(Step.run(command, description=f"run {name}"))
        steps.append(Step.write(f"{d}/{name}", content, before=files.get(name)))
        cleanup: tuple[Step, ...] = ()
        if settings["service"]:
            unit = shlex.quote(settings["service"])
            steps.insert(0, Step.run(f"mkdir -p {shlex.quote(d)} && systemctl stop {unit} && echo stopped {unit} "
                                     f">> {log}",
                                     description=f"stop {settings['service']}"))
            cleanup = (Step.run(f"systemctl start {unit} && echo started {unit} >> {log}",
                                description=f"start {settings['service']} again"),)
        changes.append(Change(f"steps/{name}", f"step {name}", steps=tuple(steps), cleanup=cleanup,
                              before=files.get(name), after=content))
    return changes
