"""gpuprov's MPS plugin: one NVIDIA MPS control daemon per GPU or MIG device, as systemd units, with limits.

A play's ``mps:`` section says which devices get a daemon and with which limits; this plugin detects the daemons
gpuprov runs (:mod:`.facts`), plans against the host *as the MIG plugin leaves it* (``planned``: MIG devices about
to be created have no UUID yet), and renders a template unit ``nvidia-mps@.service`` with one instance and one
environment file per device, a helper that finds a MIG device's current UUID each time its daemon starts, and an
``mps-run DEVICE -- COMMAND`` wrapper for jobs (:mod:`.plan`, ``templates/``)::

    - hosts: infer
      mig:
        layout: [3g.40gb, 3g.40gb]
      mps:
        devices: mig                    # gpus | mig | all | [0, gpu1/mig@4]
        active_thread_percentage: 50
        pinned_mem_limit: 10G

Devices are named by where they are, not by UUID: ``gpu0`` (a whole GPU), ``gpu0/mig@4`` (the MIG device whose GPU
instance starts at memory slice 4; see :mod:`.devices`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpuprov import hookimpl
from gpuprov.schema import Schema
from gpuprov.verify import Check

from . import facts as _facts
from . import plan as _plan
from .schema import SCHEMA

if TYPE_CHECKING:
    from gpuprov.inventory import Host
    from gpuprov.plan import Change
    from gpuprov.render import Templates

__version__ = "0.1.0"
__all__ = ["SCHEMA", "__version__"]


@hookimpl
def gpuprov_settings_schema() -> Schema:
    return SCHEMA


@hookimpl
def gpuprov_probe() -> dict[str, str]:
    return _facts.probes()


@hookimpl
def gpuprov_facts(outputs: Mapping[str, Any], facts: Mapping[str, Any]) -> dict[str, Any]:
    return _facts.gather(outputs, facts)


@hookimpl
def gpuprov_facts_view(facts: Mapping[str, Any]) -> list[tuple[str, Sequence[str], Sequence[Sequence[str]]]]:
    rows = []
    for d in (facts.get("mps") or {}).get("daemons") or ():
        env = d.get("env") or {}
        state = d["unit"]["active"] or "-"
        pct = d.get("active_thread_percentage")
        rows.append([env.get("GPUPROV_MPS_DEVICE", d["instance"]), state, d.get("bound_uuid") or "-",
                     env.get("CUDA_MPS_PIPE_DIRECTORY", "-"), "-" if pct is None else f"{pct:g}",
                     d.get("pinned_mem_limit") or "-", str(len(d.get("servers") or ())),
                     ", ".join(str(c["pid"]) for c in d.get("clients") or ()) or "-"])
    if not rows:
        return []
    return [("MPS daemons", ("device", "unit", "bound to", "pipe directory", "threads %", "pinned", "servers",
                             "clients"), rows)]


@hookimpl
def gpuprov_export(facts: Mapping[str, Any]) -> dict[str, Any] | None:
    return _plan.export_settings(facts)


@hookimpl
def gpuprov_plan(host: Host, facts: Mapping[str, Any], settings: Mapping[str, Any], planned: dict[str, Any],
                 templates: Templates) -> list[Change]:
    return _plan.plan_host(host.name, facts, settings, planned, templates)


@hookimpl
def gpuprov_plan_modifychanges(changes: list[Change]) -> None:
    """Stop daemons before the MIG plugin re-creates or removes their devices (see ``plan.order_around_mig``)."""
    _plan.order_around_mig(changes)


@hookimpl
def gpuprov_verify(host: Host, facts: Mapping[str, Any], settings: Mapping[str, Any]) -> list[Check]:
    if not settings.get("enabled", True):
        return [Check("no MPS daemons left", _plan.verify_none)]
    return [Check("MPS daemons run for the selected devices", lambda ti: _plan.verify_daemons(ti, facts, settings))]


@hookimpl
def gpuprov_template_dirs() -> list[Path]:
    return [Path(__file__).parent / "templates"]
