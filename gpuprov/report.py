"""What a person (or a program) sees while gpuprov works: live host lines, the plan, the recap, JSON events.

Three reporters share one interface: ``LiveReporter`` (rich, a live line per host on a terminal), ``PlainReporter``
(one line per event, for logs and pipes) and ``JsonReporter`` (one JSON object per line on stdout, for machines).
Reporters never see secrets: they are given host names, change ids, step labels and messages only.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .plan import Plan
    from .runner import HostOutcome


class Reporter:
    """Events of a run. The base class prints nothing; subclasses choose how to show them."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stdout
        self._lock = threading.Lock()

    def host_started(self, host: str) -> None: ...
    def host_phase(self, host: str, phase: str) -> None: ...
    def step(self, host: str, change: str, label: str) -> None: ...
    def host_done(self, outcome: HostOutcome, seconds: float) -> None: ...
    def warning(self, host: str | None, message: str) -> None: ...
    def plan(self, plan: Plan) -> None: ...
    def facts(self, host: str, facts: Mapping[str, Any],
              tables: Sequence[tuple[str, Sequence[str], Sequence[Sequence[str]]]]) -> None: ...
    def recap(self, outcomes: Mapping[str, HostOutcome]) -> None: ...
    def close(self) -> None: ...

    def emit(self, text: str) -> None:
        with self._lock:
            self.stream.write(text if text.endswith("\n") else text + "\n")
            self.stream.flush()


class PlainReporter(Reporter):
    """Plain lines: what a log file or a pipe wants."""

    def host_phase(self, host: str, phase: str) -> None:
        if phase.startswith("apply"):
            self.emit(f"{host}: {phase}")

    def step(self, host: str, change: str, label: str) -> None:
        self.emit(f"{host}:   {label}")

    def host_done(self, outcome: HostOutcome, seconds: float) -> None:
        message = f" - {outcome.message}" if outcome.message else ""
        self.emit(f"{outcome.host}: {outcome.status.value} ({seconds:.1f}s){message}")

    def warning(self, host: str | None, message: str) -> None:
        self.emit(f"{host + ': ' if host else ''}warning: {message}")

    def plan(self, plan: Plan) -> None:
        from .plan import render_text

        self.emit("\n" + render_text(plan))

    def facts(self, host: str, facts: Mapping[str, Any],
              tables: Sequence[tuple[str, Sequence[str], Sequence[Sequence[str]]]]) -> None:
        self.emit(f"== {host}")
        for title, columns, rows in tables:
            self.emit(_text_table(title, columns, rows))

    def recap(self, outcomes: Mapping[str, HostOutcome]) -> None:
        self.emit(recap_text(outcomes))


class LiveReporter(PlainReporter):
    """A rich live display: one line per host with its current phase; the plan and recap printed after."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        super().__init__(stream)
        from rich.console import Console
        from rich.live import Live

        self.console = Console(file=self.stream)
        self.lines: dict[str, str] = {}
        self.live = Live(self._render(), console=self.console, refresh_per_second=8, transient=True)
        self.live.start()

    def _render(self) -> Any:
        from rich.table import Table

        table = Table.grid(padding=(0, 2))
        for host, line in list(self.lines.items())[-40:]:
            table.add_row(host, line)
        return table

    def _set(self, host: str, line: str) -> None:
        with self._lock:
            self.lines[host] = line
            self.live.update(self._render())

    def host_started(self, host: str) -> None:
        self._set(host, "[dim]connecting[/dim]")

    def host_phase(self, host: str, phase: str) -> None:
        self._set(host, phase)

    def step(self, host: str, change: str, label: str) -> None:
        self._set(host, f"{change}: {label}")

    def host_done(self, outcome: HostOutcome, seconds: float) -> None:
        colour = {"ok": "green", "changed": "yellow", "failed": "red", "unreachable": "red",
                  "reboot-required": "magenta"}[outcome.status.value]
        self._set(outcome.host, f"[{colour}]{outcome.status.value}[/{colour}] ({seconds:.1f}s)")

    def warning(self, host: str | None, message: str) -> None:
        self.console.print(f"[yellow]{host + ': ' if host else ''}warning:[/yellow] {message}", markup=True,
                           highlight=False)

    def close(self) -> None:
        self.live.stop()

    def plan(self, plan: Plan) -> None:
        self.live.stop()
        super().plan(plan)

    def recap(self, outcomes: Mapping[str, HostOutcome]) -> None:
        self.live.stop()
        super().recap(outcomes)


class JsonReporter(Reporter):
    """One JSON object per line (``--json``): ``{"event": ..., ...}``; the plan and recap carry full data."""

    def _event(self, event: str, **data: Any) -> None:
        self.emit(json.dumps({"event": event, "time": round(time.time(), 3), **data}, default=str))

    def host_started(self, host: str) -> None:
        self._event("host_started", host=host)

    def host_phase(self, host: str, phase: str) -> None:
        self._event("phase", host=host, phase=phase)

    def step(self, host: str, change: str, label: str) -> None:
        self._event("step", host=host, change=change, step=label)

    def host_done(self, outcome: HostOutcome, seconds: float) -> None:
        self._event("host_done", seconds=round(seconds, 3), **outcome.to_json())

    def warning(self, host: str | None, message: str) -> None:
        self._event("warning", host=host, message=message)

    def plan(self, plan: Plan) -> None:
        self._event("plan", plan=plan.to_json())

    def facts(self, host: str, facts: Mapping[str, Any],
              tables: Sequence[tuple[str, Sequence[str], Sequence[Sequence[str]]]]) -> None:
        self._event("facts", host=host, facts=facts)

    def recap(self, outcomes: Mapping[str, HostOutcome]) -> None:
        self._event("recap", hosts=[o.to_json() for o in outcomes.values()])


def make_reporter(json_output: bool, stream: IO[str] | None = None) -> Reporter:
    stream = stream or sys.stdout
    if json_output:
        return JsonReporter(stream)
    if stream.isatty():
        return LiveReporter(stream)
    return PlainReporter(stream)


_PART_WAY = ("failed", "unreachable")  # statuses whose recap line says the last step that completed


def recap_text(outcomes: Mapping[str, HostOutcome]) -> str:
    """The recap table: one row per host with ok / changed / failed / unreachable / reboot-required."""
    from .runner import Status

    cols = [s.value for s in Status]
    rows = []
    for o in outcomes.values():
        rows.append([o.host] + ["1" if o.status.value == c else "0" for c in cols])
    text = _text_table("RECAP", ["host", *cols], rows)
    notes = [f"  {o.host}: {o.status.value}: {o.message}" + (f" (last step done: {o.last_step})"
                                                              if o.last_step and o.status.value in _PART_WAY else "")
             for o in outcomes.values() if o.message]
    return text + ("\n" + "\n".join(notes) if notes else "")


def _text_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [len(c) for c in columns]
    for row in rows:
        widths = [max(w, len(str(v))) for w, v in zip(widths, row, strict=False)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=False))
    out = [title, line.rstrip(), "  ".join("-" * w for w in widths)]
    for row in rows:
        out.append("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=False)).rstrip())
    return "\n".join(out)
