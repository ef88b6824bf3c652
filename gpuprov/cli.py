"""The ``gpuprov`` command.

Exit codes: 0 nothing to change / applied, 2 changes pending (``plan``), 1 error (bad input, a failed host),
4 some hosts unreachable. Errors a user can fix print ``file:line:col: message`` or ``host: message`` and never a
traceback.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from . import __version__
from .errors import GpuprovError

EXIT_OK, EXIT_ERROR, EXIT_CHANGES, EXIT_UNREACHABLE = 0, 1, 2, 4


def _common(func: Callable[..., Any]) -> Callable[..., Any]:
    """Options shared by the commands that work on hosts."""
    options = [
        click.option("-i", "--inventory", "inventories", multiple=True, required=True, metavar="PATH",
                     help="Ansible-compatible inventory file or directory (repeatable)."),
        click.option("-l", "--limit", metavar="PATTERN", help="Further limit the hosts (pattern or @retry-file)."),
        click.option("-f", "--forks", type=click.IntRange(1), default=10, show_default=True,
                     help="Hosts worked on at once."),
        click.option("--plugin", "extra_plugins", multiple=True, metavar="MODULE",
                     help="Load an extra plugin module (repeatable)."),
        click.option("--json", "json_output", is_flag=True, help="Machine-readable JSON events on stdout."),
        click.option("--accept-new-host-keys", is_flag=True,
                     help="Record unknown SSH host keys in known_hosts instead of refusing them."),
        click.option("--timeout", "connect_timeout", type=float, metavar="SECONDS",
                     help="SSH connect timeout (default 10)."),
        click.option("--command-timeout", type=float, metavar="SECONDS",
                     help="Give up on a command that runs longer."),
        click.option("-K", "--ask-become-pass", is_flag=True,
                     help="Prompt for the sudo password (or set GPUPROV_BECOME_PASSWORD)."),
        click.option("--templates", "template_dirs", multiple=True, metavar="DIR",
                     help="Directory of templates overriding the plugins' (repeatable)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


class Context:
    """What one command invocation loads: plugins, inventory, reporter, runner."""

    def __init__(self, inventories: Sequence[str], extra_plugins: Sequence[str], json_output: bool,
                 forks: int = 10, connect_timeout: float | None = None, command_timeout: float | None = None,
                 accept_new_host_keys: bool = False, ask_become_pass: bool = False, force: bool = False,
                 template_dirs: Sequence[str] = (), limit: str | None = None, progress_to_stderr: bool = False,
                 **_: Any) -> None:
        from .inventory import load_inventory
        from .plugins import Plugins
        from .report import make_reporter
        from .runner import Runner, RunOptions

        self.plugins = Plugins.load(extra_plugins, entry_points=_autoload())
        self.inventory = load_inventory(list(inventories))
        self.limit = limit
        self.json_output = json_output
        become = None
        if ask_become_pass:
            become = click.prompt("BECOME password", hide_input=True, err=True)
        # a command whose stdout is a document (export) keeps its progress lines apart from it
        self.reporter = make_reporter(json_output, sys.stderr if progress_to_stderr and not json_output else None)
        options = RunOptions(forks=forks, force=force, accept_new_host_keys=accept_new_host_keys,
                             connect_timeout=connect_timeout, command_timeout=command_timeout,
                             become_password=become, template_dirs=tuple(template_dirs))
        self.runner = Runner(self.inventory, self.plugins, self.reporter, options)

    def select(self, pattern: str) -> list[Any]:
        hosts = self.inventory.select(pattern, self.limit)
        if not hosts:
            raise GpuprovError(f"no hosts match {pattern!r}" + (f" with --limit {self.limit!r}" if self.limit
                                                                  else "") + "; see `gpuprov inventory --list`")
        return hosts

    def close(self) -> None:
        self.runner.close()
        self.reporter.close()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gpuprov")
def cli() -> None:
    """Provision NVIDIA GPU servers: MIG layouts, MPS daemons and NUMA placement, from an Ansible inventory.

    \b
    Start with the simulated rack:
      gpuprov plan -i inventory.example playbooks/site.yml
    """


@cli.command()
@_common
@click.argument("pattern", default="all")
def facts(pattern: str, **kw: Any) -> None:
    """Detect and show the facts of hosts (GPUs, MIG state, MPS daemons, NUMA topology).

    \b
    Example:
      gpuprov facts -i inventory.example gpu
      gpuprov facts -i inventory.example --json train01
    """
    ctx = Context(**kw)
    try:
        outcomes = ctx.runner.run_facts(ctx.select(pattern))
        ctx.reporter.close()
        for name, outcome in outcomes.items():
            if outcome.facts:
                host = ctx.inventory.hosts[name]
                ctx.reporter.facts(name, outcome.facts, ctx.plugins.facts_view(host, outcome.facts))
        failed = [o for o in outcomes.values() if o.status.value in ("failed", "unreachable")]
        if failed:
            ctx.reporter.recap({o.host: o for o in failed})
    finally:
        ctx.close()
    _exit(outcomes, plan_mode=False)


def _run_playbook(playbook_path: str, apply: bool, kw: dict[str, Any]) -> tuple[Any, Any, dict[str, Any]]:
    from .plan import Plan
    from .playbook import load_playbook

    ctx = Context(**kw)
    outcomes: dict[str, Any] = {}
    plan = Plan(playbook=playbook_path)
    saved: Plan | None = None
    try:
        if apply and playbook_path.endswith(".json"):
            saved = Plan.load(playbook_path)
            plays = _saved_plays(saved)
            wanted = {h.name for h in ctx.select("all")}
            missing = [h for h in saved.hosts if h not in ctx.inventory.hosts]
            if missing:
                raise GpuprovError(f"{playbook_path}: hosts not in the inventory: {', '.join(missing)}")
            selections = [(play, [ctx.inventory.hosts[h] for h in saved.hosts if h in wanted]) for play in plays]
        else:
            book = load_playbook(playbook_path, ctx.plugins.schemas)
            selections = [(play, _play_hosts(ctx, play)) for play in book.plays]
            for play, hosts in selections:  # every mistake at file:line before any host is contacted
                for host in hosts:
                    play.settings_for(host, ctx.plugins.schemas)
        for play, hosts in selections:
            # As in Ansible, a host that failed or was unreachable in an earlier play sits out the later ones.
            hosts = [h for h in hosts if outcomes.get(h.name) is None
                     or outcomes[h.name].status.value not in ("failed", "unreachable")]
            done = ctx.runner.run_play(play, hosts, apply=apply, saved=saved)
            for name, outcome in done.items():
                _merge_outcome(outcomes, plan, name, outcome)
            if ctx.runner.stop.is_set():
                break
    except KeyboardInterrupt:
        ctx.runner.stop.set()
    finally:
        ctx.close()
    return ctx, plan, outcomes


def _merge_outcome(outcomes: dict[str, Any], plan: Any, name: str, outcome: Any) -> None:
    """Add one play's outcome for a host to the run's: a host in several plays keeps every play's changes and
    the worse status (a later play must not hide an earlier one's changes or failure)."""
    prev = outcomes.get(name)
    if outcome.plan is not None:
        before = plan.hosts.get(name)
        if before is None:
            plan.hosts[name] = outcome.plan
        else:
            before.changes.extend(outcome.plan.changes)
            before.warnings.extend(outcome.plan.warnings)
            before.settings.update(outcome.plan.settings)
    if prev is None:
        outcomes[name] = outcome
        return
    order = ["ok", "changed", "reboot-required", "unreachable", "failed"]
    if order.index(outcome.status.value) > order.index(prev.status.value):
        prev.status = outcome.status
    prev.message = "; ".join(m for m in (prev.message, outcome.message) if m)
    prev.applied.extend(outcome.applied)
    prev.remaining.extend(outcome.remaining)
    prev.last_step = outcome.last_step or prev.last_step
    prev.facts = outcome.facts or prev.facts
    prev.plan = plan.hosts.get(name, prev.plan)


def _play_hosts(ctx: Context, play: Any) -> list[Any]:
    """The hosts of a play; a pattern matching none is reported at the play's ``hosts:`` line."""
    from .errors import InputError
    from .yamlsrc import where

    try:
        return ctx.select(play.hosts)
    except InputError:
        raise
    except GpuprovError as exc:
        line, col = where(play._node, "hosts") if play._node is not None else (play.line, 0)
        raise InputError(play.source, line, col, str(exc)) from None


def _saved_plays(saved: Any) -> list[Any]:
    from .playbook import Play

    return [Play(name=f"saved plan {saved.playbook}", hosts="all", source=saved.playbook)]


@cli.command()
@_common
@click.argument("playbook", type=click.Path(dir_okay=False))
@click.option("--out", "out", type=click.Path(dir_okay=False), help="Save the plan as JSON for `apply FILE`.")
@click.option("--brief", is_flag=True, help="Only the change lines, without steps and diffs.")
def plan(playbook: str, out: str | None, brief: bool, **kw: Any) -> None:
    """Show what would change on each host. Never changes a host.

    Exit code 0 when nothing would change, 2 when changes are pending.

    \b
    Example:
      gpuprov plan -i inventory.example playbooks/site.yml
      gpuprov plan -i inventory.example playbooks/site.yml --out change-42.json
    """
    ctx, the_plan, outcomes = _run_playbook(playbook, False, kw)
    if out:
        the_plan.save(out)
    if brief and not ctx.json_output:
        from .plan import render_text

        ctx.reporter.emit(render_text(the_plan, verbose=False))
    else:
        ctx.reporter.plan(the_plan)
    bad = {n: o for n, o in outcomes.items() if o.status.value in ("failed", "unreachable")}
    if bad:
        ctx.reporter.recap(bad)
        _write_retry(playbook, bad, ctx)
    if out and not ctx.json_output:
        ctx.reporter.emit(f"plan saved to {out}; apply it with: gpuprov apply -i ... {out}")
    _exit(outcomes, plan_mode=True)


@cli.command()
@_common
@click.argument("playbook", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Allow changes that destroy MIG instances or stop MPS daemons in use.")
def apply(playbook: str, force: bool, **kw: Any) -> None:
    """Converge hosts to the playbook (or apply a plan saved with `plan --out`).

    Each host is detected again after apply and must have converged: a second plan must be empty.

    \b
    Example:
      gpuprov apply -i inventory.example playbooks/site.yml
      gpuprov apply -i inventory.example change-42.json
    """
    ctx, _plan, outcomes = _run_playbook(playbook, True, {**kw, "force": force})
    ctx.reporter.recap(outcomes)
    bad = {n: o for n, o in outcomes.items() if o.status.value in ("failed", "unreachable")}
    if bad:
        _write_retry(playbook, bad, ctx)
    _exit(outcomes, plan_mode=False)


@cli.command()
@_common
@click.argument("playbook", type=click.Path(dir_okay=False))
def verify(playbook: str, **kw: Any) -> None:
    """Check hosts against the playbook with the plugins' testinfra checks.

    \b
    Example:
      gpuprov verify -i inventory.example playbooks/site.yml
    """
    from .playbook import load_playbook
    from .runner import HostOutcome, Status
    from .verify import run_checks

    ctx = Context(**kw)
    results = []
    outcomes: dict[str, HostOutcome] = {}
    try:
        book = load_playbook(playbook, ctx.plugins.schemas)
        for play in book.plays:
            for host in ctx.select(play.hosts):
                outcome = outcomes.setdefault(host.name, HostOutcome(host.name))
                try:
                    settings = play.settings_for(host, ctx.plugins.schemas)
                    facts_ = ctx.runner.detect(host, settings)
                    checks = ctx.plugins.verify(host, facts_, settings)
                    results.extend(run_checks(host.name, ctx.runner.connect(host), checks))
                except GpuprovError as exc:
                    from .errors import ConnectionFailed

                    outcome.status = Status.UNREACHABLE if isinstance(exc, ConnectionFailed) else Status.FAILED
                    outcome.message = str(exc)
    finally:
        ctx.close()
    for r in results:
        if not r.ok:
            outcomes[r.host].status = Status.FAILED
    if ctx.json_output:
        ctx.reporter.emit(json.dumps({"event": "verify", "results": [r.__dict__ for r in results]}))
    else:
        for r in results:
            ctx.reporter.emit(f"{r.host}: {'PASS' if r.ok else 'FAIL'} {r.plugin}: {r.name}"
                              + (f"\n    {r.message}" if r.message else ""))
        passed = sum(r.ok for r in results)
        ctx.reporter.emit(f"{passed} passed, {len(results) - passed} failed")
        for o in outcomes.values():
            if o.message:
                ctx.reporter.emit(f"{o.host}: {o.status.value}: {o.message}")
    _exit(outcomes, plan_mode=False)


@cli.command()
@_common
@click.argument("playbook", type=click.Path(dir_okay=False))
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Directory to write into.")
def render(playbook: str, out: str, **kw: Any) -> None:
    """Write every file the plan would put on each host to OUT/HOST/<path on the host>.

    For review, `systemd-analyze verify` and `shellcheck`, without changing a host.

    \b
    Example:
      gpuprov render -i inventory.example playbooks/mps.yml --out rendered/
    """
    ctx, the_plan, outcomes = _run_playbook(playbook, False, kw)
    count = 0
    for name, hp in the_plan.hosts.items():
        for change in hp.changes:
            for step in change.steps:
                if step.kind == "write" and step.path and step.content is not None:
                    target = Path(out) / name / step.path.lstrip("/")
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text(step.content)
                    os.chmod(target, step.mode)
                    count += 1
    ctx.reporter.emit(f"wrote {count} file(s) under {out}")
    _exit(outcomes, plan_mode=False)


def _export(pattern: str, sections: Sequence[str], kw: dict[str, Any]) -> None:
    import yaml

    ctx = Context(**kw, progress_to_stderr=True)
    try:
        outcomes = ctx.runner.run_facts(ctx.select(pattern))
        ctx.reporter.close()
        groups: dict[str, tuple[list[str], dict[str, Any]]] = {}
        for name, outcome in outcomes.items():
            if not outcome.facts:
                continue
            part = ctx.plugins.export(ctx.inventory.hosts[name], outcome.facts, sections)
            if part:
                key = json.dumps(part, sort_keys=True)
                groups.setdefault(key, ([], part))[0].append(name)
        plays = [{"name": f"as detected on {len(names)} host(s)", "hosts": ":".join(names), **part}
                 for names, part in groups.values()]
        failed = {o.host: o for o in outcomes.values() if o.status.value in ("failed", "unreachable")}
        if failed:
            ctx.reporter.recap(failed)
    finally:
        ctx.close()
    if plays:
        click.echo(yaml.safe_dump(plays, sort_keys=False, default_flow_style=None, width=100), nl=False)
    _exit(outcomes, plan_mode=False)


@cli.command()
@_common
@click.option("--section", "sections", multiple=True, metavar="NAME", help="Only this playbook section (repeatable).")
@click.argument("pattern", default="all")
def export(pattern: str, sections: tuple[str, ...], **kw: Any) -> None:
    """Print the hosts as they are now as a playbook (hosts with the same state share a play).

    A play of that playbook plans nothing on the hosts it came from: start a playbook from the machines you have.
    Each plugin section also has its own command, e.g. `gpuprov mig export`.

    \b
    Example:
      gpuprov export -i inventory.example infer > current.yml
      gpuprov mig export -i inventory.example infer01
    """
    _export(pattern, sections, kw)


def _section_export(section: str) -> click.Command:
    @click.group(name=section, help=f"Commands of the {section}: section's plugin.")
    def group() -> None:
        pass

    @group.command("export", help=f"Print the hosts' current state as a `{section}:` section to paste into a "
                                  f"playbook.\n\n\b\nExample:\n  gpuprov {section} export -i inventory.example all")
    @_common
    @click.argument("pattern", default="all")
    def section_export(pattern: str, **kw: Any) -> None:
        _export(pattern, (section,), kw)

    return group


@cli.command()
@click.option("-i", "--inventory", "inventories", multiple=True, required=True, metavar="PATH")
@click.option("--list", "as_list", is_flag=True, help="All groups and host variables, as `ansible-inventory --list`.")
@click.option("--host", "host_name", metavar="HOST", help="One host's variables, as `ansible-inventory --host`.")
@click.option("-l", "--limit", metavar="PATTERN")
@click.argument("pattern", required=False)
def inventory(inventories: tuple[str, ...], as_list: bool, host_name: str | None, limit: str | None,
              pattern: str | None) -> None:
    """Show an inventory the way gpuprov reads it.

    \b
    Example:
      gpuprov inventory -i inventory.example --list
      gpuprov inventory -i inventory.example 'gpu:!a30'
    """
    from .inventory import load_inventory

    inv = load_inventory(list(inventories))
    if host_name:
        if host_name not in inv.hosts:
            raise GpuprovError(f"host {host_name!r} is not in the inventory")
        click.echo(json.dumps(dict(inv.hosts[host_name].vars), indent=4, sort_keys=True, default=str))
    elif as_list or not pattern:
        click.echo(json.dumps(inv.to_ansible_list(), indent=4, sort_keys=True, default=str))
    else:
        for host in inv.select(pattern, limit):
            click.echo(host.name)


@cli.command()
@click.option("--plugin", "extra_plugins", multiple=True, metavar="MODULE", help="Load an extra plugin module.")
@click.option("--json", "json_output", is_flag=True)
def plugins(extra_plugins: tuple[str, ...], json_output: bool) -> None:
    """List plugins: name, version, where each came from, its playbook section and the hooks it implements.

    \b
    Example:
      gpuprov plugins --plugin mysite.gpuprov_plugin
    """
    from .plugins import Plugins

    loaded = Plugins.load(extra_plugins, entry_points=_autoload())
    rows: list[dict[str, Any]] = []
    for info in loaded.ordered:
        section = info.schema.section if info.schema else "-"
        rows.append({"name": info.name, "version": info.version, "source": info.source, "module": info.module,
                     "section": section, "order": info.order, "hooks": info.hooks})
    if json_output:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(f"{row['name']} {row['version']}  section: {row['section']}  from: {row['source']} "
                   f"({row['module']})")
        click.echo("    hooks: " + ", ".join(str(h) for h in row["hooks"]))


def _mount_optional_groups() -> None:
    try:
        from .sim.cli import sim
    except ImportError:
        pass
    else:
        cli.add_command(sim)
    from .plugins import Plugins

    try:
        plugins = Plugins.load(entry_points=_autoload())
    except GpuprovError:
        return  # the command itself loads the plugins again and reports what is wrong
    for section in plugins.exporting_sections():
        if section not in cli.commands:
            cli.add_command(_section_export(section))


def _autoload() -> bool:
    """Whether to load the ``gpuprov.plugins`` entry points. ``GPUPROV_DISABLE_PLUGIN_AUTOLOAD=1`` (like pytest's
    ``PYTEST_DISABLE_PLUGIN_AUTOLOAD``) loads only ``--plugin`` modules: for a run that must not probe for GPUs, or
    a test of one plugin alone."""
    return os.environ.get("GPUPROV_DISABLE_PLUGIN_AUTOLOAD", "").strip().lower() in ("", "0", "false", "no")


def _write_retry(playbook: str, bad: dict[str, Any], ctx: Context) -> None:
    path = Path(Path(playbook).stem + ".retry")
    try:
        path.write_text("".join(f"{name}\n" for name in bad))
    except OSError:
        return
    if not ctx.json_output:
        ctx.reporter.emit(f"to retry the {len(bad)} failed/unreachable host(s): --limit @{path}")


def _exit(outcomes: dict[str, Any], plan_mode: bool) -> None:
    statuses = {o.status.value for o in outcomes.values()}
    if "failed" in statuses:
        sys.exit(EXIT_ERROR)
    if "unreachable" in statuses:
        sys.exit(EXIT_UNREACHABLE)
    if plan_mode and "changed" in statuses:
        sys.exit(EXIT_CHANGES)
    sys.exit(EXIT_OK)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: runs the CLI and turns gpuprov's own errors into a message and exit code 1."""
    _mount_optional_groups()
    if argv is None:  # the program itself, not a caller's process
        _tune_gc()
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="gpuprov", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(EXIT_ERROR)
    except click.ClickException as exc:
        exc.show()
        sys.exit(EXIT_ERROR if exc.exit_code != 0 else 0)
    except GpuprovError as exc:
        click.echo(f"error: {exc}" if not _is_located(exc) else str(exc), err=True)
        sys.exit(EXIT_ERROR)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except SystemExit:
        raise
    sys.exit(EXIT_OK)


def _tune_gc() -> None:
    """A run allocates millions of small objects (facts, plans, parsed tool output) and keeps most of them to
    the end; at the default thresholds the collector walks them again and again, an eighth of a 1,000-host plan.
    Young objects are collected less often, and what start-up made (modules, plugins) is left out for good."""
    import gc

    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def _is_located(exc: GpuprovError) -> bool:
    from .errors import InputError

    return isinstance(exc, InputError)


if __name__ == "__main__":  # pragma: no cover
    main()
