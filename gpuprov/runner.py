"""detect -> plan -> apply across hosts: forks, serial batches, failure limits, convergence.

Each host gets one connection for the whole run. Hosts of a batch are worked ``forks`` at a time in threads; a
host's own phases run in order in one thread. A failed host never stops the others unless the play says so
(``any_errors_fatal``, ``max_fail_percentage``). Ctrl-C stops starting new steps; steps in flight finish and the
recap says what was done.
"""

from __future__ import annotations

import copy
import shlex
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from . import manifest
from .connection import Connection, open_connection
from .connection.base import IN_PROCESS
from .errors import ConnectionFailed, GpuprovError, StepFailed
from .plan import Change, Disruption, HostPlan, Plan, Step, fingerprint
from .render import Templates

if TYPE_CHECKING:
    from .inventory import Host, Inventory
    from .playbook import Play
    from .plugins import Plugins
    from .report import Reporter


class Status(StrEnum):
    OK = "ok"
    CHANGED = "changed"
    FAILED = "failed"
    UNREACHABLE = "unreachable"
    REBOOT_REQUIRED = "reboot-required"


@dataclass
class RunOptions:
    forks: int = 10
    force: bool = False
    accept_new_host_keys: bool = False
    connect_timeout: float | None = None
    command_timeout: float | None = None
    become_password: str | None = None
    template_dirs: tuple[str, ...] = ()


@dataclass
class HostOutcome:
    """How one host ended: its status, what was applied, and the message of a failure."""

    host: str
    status: Status = Status.OK
    message: str = ""
    facts: dict[str, Any] = field(default_factory=dict)
    plan: HostPlan | None = None
    applied: list[str] = field(default_factory=list)  # change ids completed
    last_step: str = ""  # the last step that completed, for a host that failed part way
    remaining: list[str] = field(default_factory=list)  # change ids still pending after apply

    def to_json(self) -> dict[str, Any]:
        return {"host": self.host, "status": self.status.value, "message": self.message, "applied": self.applied,
                "last_step": self.last_step, "remaining": self.remaining}


class Stopped(GpuprovError):
    """The run was interrupted (Ctrl-C) before this host's next step."""


class Runner:
    """Runs the phases of one command (facts, plan or apply) over the hosts of an inventory."""

    def __init__(self, inventory: Inventory, plugins: Plugins, reporter: Reporter,
                 options: RunOptions | None = None) -> None:
        from pathlib import Path

        self.inventory = inventory
        self.plugins = plugins
        self.reporter = reporter
        self.options = options or RunOptions()
        self.templates = Templates(plugins.template_dirs(), [Path(d) for d in self.options.template_dirs])
        self.connections: dict[str, Connection] = {}
        self.unreachable: dict[str, str] = {}
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self.written: dict[str, manifest.Written] = {}  # per host: the files gpuprov wrote (see gpuprov.manifest)

    # -- connections ---------------------------------------------------------------------------------------------
    def connect(self, host: Host) -> Connection:
        with self._lock:
            if host.name in self.unreachable:
                raise ConnectionFailed(self.unreachable[host.name])
            conn = self.connections.get(host.name)
        if conn is not None:
            return conn
        opts: dict[str, Any] = {}
        if host.connection in ("ssh", "paramiko", "smart"):
            opts = {"accept_new_host_keys": self.options.accept_new_host_keys,
                    "connect_timeout": self.options.connect_timeout,
                    "command_timeout": self.options.command_timeout,
                    "become_password": self.options.become_password}
        try:
            conn = open_connection(host, opts)
        except ConnectionFailed as exc:
            with self._lock:
                self.unreachable[host.name] = str(exc)
            raise
        with self._lock:
            self.connections[host.name] = conn
        return conn

    def close(self) -> None:
        for conn in self.connections.values():
            try:
                conn.close()
            except Exception:  # closing a dead connection must not hide the run's result
                pass
        self.connections.clear()

    # -- phases --------------------------------------------------------------------------------------------------
    def detect(self, host: Host, settings: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        conn = self.connect(host)
        self.reporter.host_phase(host.name, "detect")
        probes = self.plugins.probe(host, settings)
        where = manifest.manifest_path(host)
        probes[manifest.PROBE] = manifest.probe_command(where)  # the core's own probe, in the same round trip
        outputs = conn.run_batch(probes, timeout=self.options.command_timeout)
        lost = [n for n, r in outputs.items() if r.exit_code == 255 and "batch ended" in r.stderr]
        if probes and len(lost) == len(probes):
            raise ConnectionFailed(f"{host.name}: the connection dropped during detect")
        written = manifest.parse_probe(outputs.pop(manifest.PROBE).stdout)
        with self._lock:
            self.written[host.name] = manifest.Written(where, {p: dict(e) for p, e in written.items()})
        try:
            facts = self.plugins.facts(host, outputs, settings)
        except ValueError as exc:
            raise GpuprovError(f"{host.name}: cannot read the host's state: {exc}") from None
        facts[manifest.FACTS_KEY] = {"written": written}
        return facts

    def plan_host(self, host: Host, facts: dict[str, Any], settings: Mapping[str, Mapping[str, Any]]) -> HostPlan:
        self.reporter.host_phase(host.name, "plan")
        planned = _copy_facts(facts)
        changes = self.plugins.plan(host, facts, settings, planned, self.templates)
        changes = manifest.guard(changes, facts.get(manifest.FACTS_KEY, {}).get("written", {}),
                                 manifest.manifest_path(host))
        return HostPlan(host.name, changes, fingerprint(facts), settings=dict(settings))

    def apply_host(self, host: Host, hp: HostPlan, outcome: HostOutcome) -> None:
        conn = self.connect(host)
        blocked = [c for c in hp.changes if c.blocked]
        if blocked and not self.options.force:
            reasons = "; ".join(f"{c.id}: {c.blocked}" for c in blocked)
            raise GpuprovError(f"refusing to apply without --force: {reasons}. Nothing was changed on this host")
        for change in hp.changes:
            self.reporter.host_phase(host.name, f"apply {change.id}")
            self.apply_change(host, conn, change, outcome)
            outcome.applied.append(change.id)

    def apply_change(self, host: Host, conn: Connection, change: Change, outcome: HostOutcome) -> None:
        try:
            if self.plugins.apply(host, change, conn):
                outcome.last_step = f"{change.id}: applied by plugin {change.plugin}"
                return
            for step in change.steps:
                if self.stop.is_set():
                    raise Stopped(f"interrupted before {change.id}: {step.label()}")
                self.run_step(host, conn, change, step)
                outcome.last_step = f"{change.id}: {step.label()}"
        finally:
            self._save_manifest(host, conn)
            for step in change.cleanup:
                try:
                    self.run_step(host, conn, change, step)
                except (StepFailed, ConnectionFailed) as exc:
                    self.reporter.warning(host.name, f"cleanup of {change.id} failed: {exc}")

    def _save_manifest(self, host: Host, conn: Connection) -> None:
        """Record the hashes of the files this change wrote; a failure only costs the protection of those files."""
        written = self.written.get(host.name)
        if written is None or not written.dirty:
            return
        try:
            conn.put(written.path, written.recorded_text().encode(), mode=0o644)
            written.dirty = False
        except (StepFailed, ConnectionFailed) as exc:
            self.reporter.warning(host.name, f"could not record what gpuprov wrote in {written.path}: {exc}")

    def run_step(self, host: Host, conn: Connection, change: Change, step: Step) -> None:
        self.reporter.step(host.name, change.id, step.label())
        if step.kind == "run":
            assert step.command is not None
            result = conn.run(step.command, timeout=self.options.command_timeout)
            if not result.ok:
                output = (result.stderr.strip() or result.stdout.strip() or "(no output)")
                raise StepFailed(f"{change.id}: `{step.command}` exited {result.exit_code}: {output}")
        elif step.kind == "write":
            assert step.path is not None and step.content is not None
            conn.put(step.path, step.content.encode(), mode=step.mode, owner=step.owner, group=step.group)
            if host.name in self.written:
                self.written[host.name].wrote(step.path, step.content)
        elif step.kind == "remove":
            assert step.path is not None
            result = conn.run(f"rm -f {shlex.quote(step.path)}")
            if not result.ok:
                raise StepFailed(f"{change.id}: removing {step.path} failed: {result.stderr.strip()}")
            if host.name in self.written:
                self.written[host.name].removed(step.path)
        else:
            raise StepFailed(f"{change.id}: unknown step kind {step.kind!r}")

    # -- commands ------------------------------------------------------------------------------------------------
    def run_facts(self, hosts: list[Host]) -> dict[str, HostOutcome]:
        def work(host: Host, outcome: HostOutcome) -> None:
            settings = {s: sch.defaults() for s, sch in self.plugins.schemas.items()}
            outcome.facts = self.detect(host, settings)

        return self._parallel(hosts, work, self.options.forks)

    def run_play(self, play: Play, hosts: list[Host], apply: bool,
                 saved: Plan | None = None) -> dict[str, HostOutcome]:
        """Plan (and with ``apply`` converge) the hosts of one play, batch by batch."""
        outcomes: dict[str, HostOutcome] = {}
        forks = play.forks or self.options.forks
        for batch in play.batches(hosts):
            if self.stop.is_set():
                break

            def work(host: Host, outcome: HostOutcome) -> None:
                self._work_host(play, host, outcome, apply, saved)

            done = self._parallel(batch, work, forks)
            outcomes.update(done)
            failed = sum(o.status in (Status.FAILED, Status.UNREACHABLE) for o in done.values())
            if failed and play.any_errors_fatal:
                self.reporter.warning(None, f"play {play.name!r}: stopping, a host failed and any_errors_fatal "
                                      "is set")
                break
            if play.max_fail_percentage is not None and batch and 100.0 * failed / len(batch) > \
                    play.max_fail_percentage:
                self.reporter.warning(None, f"play {play.name!r}: stopping, {failed} of {len(batch)} hosts in the "
                                      f"batch failed (max_fail_percentage {play.max_fail_percentage:g})")
                break
        return outcomes

    def _work_host(self, play: Play, host: Host, outcome: HostOutcome, apply: bool, saved: Plan | None) -> None:
        if saved is not None:
            saved_hp = saved.hosts[host.name]
            settings = saved_hp.settings
        else:
            settings = play.settings_for(host, self.plugins.schemas)
        facts = self.detect(host, settings)
        hp = self.plan_host(host, facts, settings)
        outcome.facts = facts
        if saved is not None:
            if saved_hp.fingerprint != hp.fingerprint:
                raise GpuprovError("the host's facts changed since the plan was made; nothing was applied. "
                                   "Run `gpuprov plan` again and review the new plan")
            hp = saved_hp
        outcome.plan = hp
        if not apply or not hp.changes:
            outcome.status = Status.CHANGED if (hp.changes and not apply) else Status.OK
            return
        self.apply_host(host, hp, outcome)
        facts = self.detect(host, settings)
        again = self.plan_host(host, facts, settings)
        outcome.facts = facts
        outcome.remaining = [c.id for c in again.changes]
        if not again.changes:
            outcome.status = Status.CHANGED
        elif all(c.disruption is Disruption.REBOOT for c in again.changes):
            outcome.status = Status.REBOOT_REQUIRED
            outcome.message = "reboot the host to finish: " + "; ".join(c.summary for c in again.changes)
        else:
            outcome.status = Status.FAILED
            outcome.message = ("did not converge: after apply these changes are still pending: "
                               + "; ".join(f"{c.id}: {c.summary}" for c in again.changes))

    def _one(self, host: Host, outcome: HostOutcome, work: Callable[[Host, HostOutcome], None]) -> None:
        """Run ``work`` for one host, its failure recorded in ``outcome`` instead of ending the run."""
        try:
            if self.stop.is_set():
                raise Stopped("interrupted before this host started")
            work(host, outcome)
        except ConnectionFailed as exc:
            outcome.status, outcome.message = Status.UNREACHABLE, str(exc)
        except GpuprovError as exc:
            outcome.status, outcome.message = Status.FAILED, _strip_host(str(exc), host.name)
        except Exception as exc:  # a bug: report it against the host instead of losing the whole run
            outcome.status = Status.FAILED
            outcome.message = f"internal error: {type(exc).__name__}: {exc}"

    def _parallel(self, hosts: list[Host], work: Callable[[Host, HostOutcome], None],
                  forks: int) -> dict[str, HostOutcome]:
        outcomes = {h.name: HostOutcome(h.name) for h in hosts}
        left = [len(hosts)]
        all_done = threading.Event()

        def one(host: Host) -> None:
            try:
                outcome = outcomes[host.name]
                started = time.monotonic()
                self.reporter.host_started(host.name)
                try:
                    self._one(host, outcome, work)
                finally:
                    self.reporter.host_done(outcome, time.monotonic() - started)
            finally:  # counted whatever happened, so the wait below always ends
                with self._lock:
                    left[0] -= 1
                    if not left[0]:
                        all_done.set()

        # Hosts simulated in process compute under this interpreter's one lock: more threads for them only add
        # lock hand-offs (a quarter of a 1,000-host plan), so they share one worker. Hosts behind a real transport
        # wait on the network and get the forks.
        local = [h for h in hosts if h.connection in IN_PROCESS]
        remote = [h for h in hosts if h.connection not in IN_PROCESS]
        with ThreadPoolExecutor(max_workers=max(1, min(forks, len(remote)))) as pool, \
                ThreadPoolExecutor(max_workers=1) as in_process:
            futures = [pool.submit(one, h) for h in remote] + [in_process.submit(one, h) for h in local]
            try:
                # Waiting in short slices keeps the main thread able to take Ctrl-C; on one event, because
                # concurrent.futures.wait installs a waiter on every future each time (a 1,000-host run's main
                # thread spent a quarter second of the interpreter lock on that).
                while hosts and not all_done.wait(0.2):
                    pass
            except KeyboardInterrupt:
                self.stop.set()
                self.reporter.warning(None, "interrupted: finishing the steps in flight, starting no new ones")
                wait(futures)
        return outcomes


def _copy_facts(value: Any) -> Any:
    """A deep copy of facts, which are JSON data: copy.deepcopy's memo and dispatch for any object cost a
    third of a host's plan."""
    if isinstance(value, dict):
        return {k: _copy_facts(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy_facts(v) for v in value]
    if isinstance(value, str | int | float | bool | None):
        return value
    if isinstance(value, tuple):
        return tuple(_copy_facts(v) for v in value)
    return copy.deepcopy(value)


def _strip_host(message: str, host: str) -> str:
    prefix = f"{host}: "
    return message[len(prefix):] if message.startswith(prefix) else message
