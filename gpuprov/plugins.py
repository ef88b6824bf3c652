"""Loading plugins and calling their hooks through one typed façade.

Plugins come from the ``gpuprov.plugins`` entry-point group (built-ins included, like any third party's) and from
``--plugin module.path``. The runner never builds hook calls by hand: it calls :class:`Plugins` methods, which call
each plugin in its declared order so results can be attributed to the plugin that made them.
"""

from __future__ import annotations

import importlib
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

from . import hookspecs
from .errors import GpuprovError, PluginError
from .schema import Schema

if TYPE_CHECKING:
    from .connection import Connection, Result
    from .inventory import Host
    from .plan import Change
    from .render import Templates
    from .verify import Check

ENTRY_POINT_GROUP = "gpuprov.plugins"


@dataclass
class PluginInfo:
    """What ``gpuprov plugins`` shows about one plugin."""

    name: str
    module: str
    version: str
    source: str  # "entry point (dist NAME)" or "--plugin"
    hooks: list[str] = field(default_factory=list)
    schema: Schema | None = None

    @property
    def order(self) -> int:
        return self.schema.order if self.schema else 50


class Plugins:
    """The loaded plugins of a run."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}

    # -- loading -------------------------------------------------------------------------------------------------
    @classmethod
    def load(cls, extra: Sequence[str] = (), entry_points: bool = True) -> Plugins:
        plugins = cls()
        if entry_points:
            for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
                if ep.name in plugins.infos:
                    continue  # the same distribution seen twice on sys.path
                try:
                    module = ep.load()
                except Exception as exc:
                    raise PluginError(
                        f"plugin {ep.name!r} (entry point {ep.value!r} in group {ENTRY_POINT_GROUP}) failed to "
                        f"import: {type(exc).__name__}: {exc}"
                    ) from None
                dist = ep.dist.name if ep.dist else "?"
                version = ep.dist.version if ep.dist else _version_of(module)
                plugins.register(ep.name, module, version=version, source=f"entry point of {dist}")
        for path in extra:
            try:
                module = importlib.import_module(path)
            except Exception as exc:
                raise PluginError(f"plugin {path!r} (--plugin) failed to import: {type(exc).__name__}: {exc}") \
                    from None
            plugins.register(path, module, version=_version_of(module), source="--plugin")
        plugins._load_schemas()
        return plugins

    def register(self, name: str, plugin: Any, *, version: str = "?", source: str = "") -> None:
        try:
            self.pm.register(plugin, name=name)
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            if self.pm.has_plugin(name):
                self.pm.unregister(name=name)
            raise PluginError(f"plugin {name!r} does not match the hook API: {_explain_validation(exc)}") from None
        except ValueError as exc:
            raise PluginError(f"plugin {name!r}: {exc}") from None
        hooks = sorted(
            h for h in dir(self.pm.hook)
            if h.startswith("gpuprov_") and any(i.plugin_name == name for i in getattr(self.pm.hook, h).get_hookimpls())
        )
        module = getattr(plugin, "__name__", type(plugin).__name__)
        self.infos[name] = PluginInfo(name, module, version, source, hooks)

    def _load_schemas(self) -> None:
        sections: dict[str, str] = {}
        for name in list(self.infos):
            schema = self._call_one(name, "gpuprov_settings_schema")
            if schema is None:
                continue
            if not isinstance(schema, Schema):
                raise PluginError(f"plugin {name!r}: gpuprov_settings_schema must return gpuprov.schema.Schema, "
                                  f"got {type(schema).__name__}")
            if schema.section in sections:
                raise PluginError(f"plugins {sections[schema.section]!r} and {name!r} both claim the playbook "
                                  f"section {schema.section!r}")
            sections[schema.section] = name
            self.infos[name].schema = schema

    # -- the façade ----------------------------------------------------------------------------------------------
    @property
    def ordered(self) -> list[PluginInfo]:
        return sorted(self.infos.values(), key=lambda i: (i.order, i.name))

    @property
    def schemas(self) -> dict[str, Schema]:
        return {i.schema.section: i.schema for i in self.ordered if i.schema}

    def section_of(self, name: str) -> str | None:
        info = self.infos[name]
        return info.schema.section if info.schema else None

    def _call_one(self, name: str, hook: str, **kwargs: Any) -> Any:
        for impl in getattr(self.pm.hook, hook).get_hookimpls():
            if impl.plugin_name != name:
                continue
            args = {k: kwargs[k] for k in impl.argnames}
            try:
                return impl.function(**args)
            except GpuprovError:
                raise
            except Exception as exc:
                where = traceback.extract_tb(exc.__traceback__)[-1]
                raise PluginError(
                    f"plugin {name!r} failed in {hook}: {type(exc).__name__}: {exc} "
                    f"({Path(where.filename).name}:{where.lineno})"
                ) from exc
        return None

    def _settings_for(self, name: str, settings: Mapping[str, Mapping[str, Any]]) -> Mapping[str, Any]:
        section = self.section_of(name)
        info = self.infos[name]
        if section is None or info.schema is None:
            return {}
        return settings.get(section) or info.schema.defaults()

    def detecting(self, settings: Mapping[str, Mapping[str, Any]]) -> list[PluginInfo]:
        """The plugins whose facts a run with these sections needs: the sections set, the sections those read
        (:attr:`Schema.reads`, followed through), and every plugin without a section."""
        sections = self.schemas
        wanted: set[str] = set()
        todo = [s for s in settings if s in sections]
        while todo:
            section = todo.pop()
            if section in wanted:
                continue
            wanted.add(section)
            reads = sections[section].reads
            todo.extend(sections if reads is None else (r for r in reads if r in sections))
        return [i for i in self.ordered if i.schema is None or i.schema.section in wanted]

    def probe(self, host: Host, settings: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
        commands: dict[str, str] = {}
        owner: dict[str, str] = {}
        for info in self.detecting(settings):
            result = self._call_one(info.name, "gpuprov_probe", host=host,
                                    settings=self._settings_for(info.name, settings))
            for probe, command in (result or {}).items():
                if probe in commands:
                    raise PluginError(f"plugins {owner[probe]!r} and {info.name!r} both use the probe name "
                                      f"{probe!r}; prefix probe names with the plugin's section")
                commands[probe], owner[probe] = command, info.name
        return commands

    def facts(self, host: Host, outputs: Mapping[str, Result],
              settings: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        facts: dict[str, Any] = {}
        for info in self.detecting(settings):
            part = self._call_one(info.name, "gpuprov_facts", host=host, outputs=outputs, facts=facts)
            if part:
                facts.update(part)
        return facts

    def plan(self, host: Host, facts: Mapping[str, Any], settings: Mapping[str, Mapping[str, Any]],
             planned: dict[str, Any], templates: Templates) -> list[Change]:
        changes: list[Change] = []
        for info in self.ordered:
            section = self.section_of(info.name)
            if section is None or section not in settings:
                continue
            result = self._call_one(info.name, "gpuprov_plan", host=host, facts=facts, settings=settings[section],
                                    planned=planned, templates=templates)
            changes.extend(replace(c, plugin=c.plugin or info.name) for c in result or ())
        for info in self.ordered:  # then each may move its own changes relative to the others' (hookspecs)
            section = self.section_of(info.name)
            if section is not None and section in settings:
                self._call_one(info.name, "gpuprov_plan_modifychanges", host=host, facts=facts,
                               settings=settings[section], planned=planned, changes=changes)
        return changes

    def apply(self, host: Host, change: Change, connection: Connection) -> bool:
        if change.plugin in self.infos:
            return bool(self._call_one(change.plugin, "gpuprov_apply", host=host, change=change,
                                       connection=connection))
        return False

    def verify(self, host: Host, facts: Mapping[str, Any],
               settings: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, Check]]:
        checks: list[tuple[str, Check]] = []
        for info in self.ordered:
            section = self.section_of(info.name)
            if section is None or section not in settings:
                continue
            for check in self._call_one(info.name, "gpuprov_verify", host=host, facts=facts,
                                        settings=settings[section]) or ():
                checks.append((info.name, check))
        return checks

    def template_dirs(self) -> list[Path]:
        dirs: list[Path] = []
        for info in self.ordered:
            dirs.extend(Path(d) for d in self._call_one(info.name, "gpuprov_template_dirs") or ())
        return dirs

    def facts_view(self, host: Host, facts: Mapping[str, Any]) -> list[tuple[str, Sequence[str],
                                                                             Sequence[Sequence[str]]]]:
        tables: list[tuple[str, Sequence[str], Sequence[Sequence[str]]]] = []
        for info in self.ordered:
            tables.extend(self._call_one(info.name, "gpuprov_facts_view", host=host, facts=facts) or ())
        return tables


    def export(self, host: Host, facts: Mapping[str, Any], sections: Sequence[str] = ()) -> dict[str, Any]:
        """The playbook sections that describe ``host`` as it is (only ``sections``, when given)."""
        out: dict[str, Any] = {}
        for info in self.ordered:
            section = self.section_of(info.name)
            if sections and section not in sections:
                continue
            out.update(self._call_one(info.name, "gpuprov_export", host=host, facts=facts) or {})
        return out

    def exporting_sections(self) -> list[str]:
        """Sections whose plugin implements ``gpuprov_export`` (each gets a ``gpuprov SECTION export`` command)."""
        return [s for i in self.ordered if "gpuprov_export" in i.hooks and (s := self.section_of(i.name))]


def _version_of(module: Any) -> str:
    version = getattr(module, "__version__", None)
    if version:
        return str(version)
    top = getattr(module, "__name__", "").split(".")[0]
    try:
        return metadata.version(top)
    except metadata.PackageNotFoundError:
        return "?"


def _explain_validation(exc: pluggy.PluginValidationError) -> str:
    message = str(exc)
    for spec in hookspecs.ALL_HOOKS:
        if spec.__name__ in message:
            import inspect

            sig = inspect.signature(spec)
            params = ", ".join(sig.parameters)
            return f"{message}. Expected {spec.__name__}({params}) or a subset of those arguments"
    return message + ". Hook names: " + ", ".join(s.__name__ for s in hookspecs.ALL_HOOKS)

