"""The plugin API: every hook gpuprov calls, when it calls it, and what the return value means.

A plugin is a module (or object) with functions named like these hooks, decorated with
``gpuprov.hookimpl``, registered through the ``gpuprov.plugins`` entry-point group (the built-in MIG, MPS and NUMA
plugins register exactly like a third party's) or loaded with ``--plugin module.path``. A plugin implements only the
hooks it needs, and may accept only some of a hook's arguments (pluggy passes those it names).

Phases, per host: **detect** (``gpuprov_probe`` then ``gpuprov_facts``), **plan** (``gpuprov_plan``), **apply** (the
core runs each change's steps unless ``gpuprov_apply`` takes the change), then detect and plan again to check the
host converged. ``gpuprov verify`` runs ``gpuprov_verify`` checks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .connection import Connection, Result
    from .inventory import Host
    from .plan import Change
    from .render import Templates
    from .schema import Schema
    from .verify import Check

PROJECT = "gpuprov"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def gpuprov_settings_schema() -> Schema | None:
    """The playbook section this plugin owns and how to validate it.

    Called once when plugins are loaded. Return a :class:`gpuprov.schema.Schema`; its ``section`` is the key in a
    play (``mig``, ``mps``, ``numa``, or a third party's own) and its ``order`` the plugin's place in the plan phase.
    A play naming a section no plugin owns is an error. Return ``None`` for a plugin without settings.
    """


@hookspec
def gpuprov_probe(host: Host, settings: Mapping[str, Any]) -> Mapping[str, str] | None:
    """Shell commands whose output this plugin needs to know the host, by name.

    Called once per host at the start of detect, for the plugins whose facts the run needs: those whose section
    the play sets and the sections they read (:attr:`gpuprov.schema.Schema.reads`); every plugin for ``gpuprov
    facts`` and ``export``. ``settings`` is the plugin's section for this host (defaults filled in; defaults alone
    when the play does not set it). Names are global: prefix them with
    the section (``mig.lgi``). The core runs every plugin's commands in **one** round trip; each command runs in
    its own subshell, with stdin closed. Values that reach the command line must be quoted (``shlex.quote``).
    """


@hookspec
def gpuprov_facts(host: Host, outputs: Mapping[str, Result], facts: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """This plugin's facts, parsed from the probe ``outputs`` (``Result`` by probe name).

    Called per host after the probes ran, for the plugins probed, in plugin order; ``facts`` holds what earlier
    plugins returned (read it, do not change it). Return a mapping merged into the host's facts, normally
    ``{section: {...}}``; facts are plain JSON-serialisable data (see :mod:`gpuprov.facts` for the shared shape of
    GPUs, MIG devices and NUMA nodes). A parse failure should raise ``ValueError`` naming the command and what was
    unexpected.
    """


@hookspec
def gpuprov_plan(host: Host, facts: Mapping[str, Any], settings: Mapping[str, Any], planned: dict[str, Any],
                 templates: Templates) -> Sequence[Change] | None:
    """The changes that bring ``host`` to what ``settings`` ask for. Must not touch the host.

    Called per host in plugin order, only for plugins whose section is in the play. ``facts`` is today's state;
    ``planned`` starts as a deep copy of it and each plugin updates it in place to describe the host *after* its
    changes, so a later plugin plans against that (MPS plans daemons for the MIG devices MIG is about to create).
    ``templates.render(name, **context)`` renders the plugin's Jinja2 templates (user ``--templates`` dirs first).
    Return ``Change``s; an empty list means the host already is as asked. Raise ``gpuprov.errors.GpuprovError``
    for settings that cannot work on this host (the message names host, device and the fix).
    """


@hookspec
def gpuprov_plan_modifychanges(host: Host, facts: Mapping[str, Any], settings: Mapping[str, Any],
                               planned: dict[str, Any], changes: list[Change]) -> None:
    """Reorder the host's whole plan in place, after every plugin planned (pytest's ``collection_modifyitems``).

    Called per host once ``gpuprov_plan`` ran for every plugin, in plugin order, for plugins whose section is in
    the play. ``changes`` is every plugin's changes in apply order; a plugin may move its **own** changes (each
    ``Change.plugin`` names its owner) to where they must run — the MPS plugin stops a daemon before the MIG
    plugin's ``mig/gpuN`` change re-creates that daemon's MIG device, and starts it again after. Never drop, alter
    or move another plugin's changes. ``settings`` is this plugin's section; ``facts``/``planned`` as in
    ``gpuprov_plan``. Return nothing.
    """


@hookspec(firstresult=True)
def gpuprov_apply(host: Host, change: Change, connection: Connection) -> bool | None:
    """Apply ``change`` yourself instead of letting the core run its steps in order.

    Called for each change of this plugin during apply; first non-``None`` result wins. For a plugin that must react
    to what a step printed (e.g. read the UUIDs MIG creation returned). Return ``True`` when done; raise
    ``gpuprov.errors.StepFailed`` with the tool's own message on failure; return ``None`` to let the core run the
    steps (the usual case).
    """


@hookspec
def gpuprov_verify(host: Host, facts: Mapping[str, Any], settings: Mapping[str, Any]) -> Sequence[Check] | None:
    """testinfra checks that prove the host is as the play asks, for ``gpuprov verify``.

    Called per host for plugins whose section is in the play. Each :class:`gpuprov.verify.Check` has a name and a
    function taking a testinfra ``host`` (connected over the same transport as the run) that raises
    ``AssertionError`` with a readable message when the host is wrong.
    """


@hookspec
def gpuprov_template_dirs() -> Sequence[Path] | None:
    """Directories holding this plugin's Jinja2 templates. User ``--templates DIR`` directories take precedence."""


@hookspec
def gpuprov_facts_view(host: Host, facts: Mapping[str, Any]) -> Sequence[tuple[str, Sequence[str], Sequence[Sequence[str]]]] | None:  # noqa: E501
    """Tables for ``gpuprov facts``: ``(title, column names, rows)`` built from this plugin's facts."""


@hookspec
def gpuprov_export(host: Host, facts: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """This plugin's playbook section describing ``host`` as it is now, for ``gpuprov export``.

    Called per host after detect. Return ``{section: settings}`` (e.g. ``{"mig": {"layout": [...]}}``) such that a
    play with that section plans nothing on the same host, or ``None`` when the plugin has nothing to say about
    it. Users start a playbook from what their machines already are, instead of typing it.
    """


ALL_HOOKS = (gpuprov_settings_schema, gpuprov_probe, gpuprov_facts, gpuprov_plan, gpuprov_plan_modifychanges,
             gpuprov_apply, gpuprov_verify, gpuprov_template_dirs, gpuprov_facts_view, gpuprov_export)
