"""gpuprov's NUMA plugin: GPU work runs next to its memory.

It detects the host's NUMA topology and each GPU's node (:mod:`.facts`: sysfs first, ``nvidia-smi topo -m`` when
the firmware gives no node, ``numactl -H``/``lscpu -J`` without sysfs), and plans (:mod:`.plan`) one ``numactl``
wrapper per GPU and per MIG device, drop-ins that place the MPS daemons (``NUMAPolicy=``/``NUMAMask=``/
``CPUAffinity=``, or ``numactl`` in the command on systemd older than 243) and, if asked, ``kernel.numa_balancing``.
It needs no other plugin's section in the play: it finds the GPUs itself when no earlier plugin did, and reads the
MIG devices (those the MIG plugin is about to create included) and MPS units from ``planned``::

    - hosts: gpu
      numa:
        memory_policy: bind        # preferred | interleave | local
        cpu_binding: node          # none, or a CPU list such as "0-7,64-71"
        wrapper_dir: /usr/local/bin
        wrapper_name: "gpu{gpu}-run"
        mig_wrapper_name: "gpu{gpu}-mig{device}-run"
        place_mps: true
        numa_balancing: false      # true | false | unchanged
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpuprov import hookimpl
from gpuprov.schema import Schema, Setting
from gpuprov.verify import Check

from . import facts as _facts
from . import plan as _plan

if TYPE_CHECKING:
    from gpuprov.inventory import Host
    from gpuprov.plan import Change
    from gpuprov.render import Templates

__version__ = "0.1.0"
__all__ = ["SCHEMA", "__version__"]


def _check(values: Mapping[str, Any]) -> list[tuple[str | None, str]]:
    """Section-level rules the per-key types cannot say (run after Jinja rendering, per host)."""
    problems: list[tuple[str | None, str]] = []
    try:
        _plan.cpu_setting(values.get("cpu_binding", "node"))
    except ValueError as exc:
        problems.append(("cpu_binding", str(exc)))
    for key, mig in (("wrapper_name", False), ("mig_wrapper_name", True)):
        value = values.get(key)
        if value is not None:
            why = _plan.check_name_pattern(str(value), mig)
            if why:
                problems.append((key, f"{value!r}: {why}"))
    wrapper_dir = values.get("wrapper_dir")
    if wrapper_dir is not None and (not str(wrapper_dir).startswith("/") or any(c in str(wrapper_dir) for c in "*?[")):
        problems.append(("wrapper_dir", f"{wrapper_dir!r}: an absolute directory without glob characters, e.g. "
                                        "/usr/local/bin"))
    return problems


SCHEMA = Schema(
    "numa",
    {
        "wrappers": Setting(bool, True, doc="install one numactl wrapper per GPU and MIG device"),
        "wrapper_dir": Setting(str, "/usr/local/bin", doc="where the wrappers go"),
        "wrapper_name": Setting(str, "gpu{gpu}-run", doc="a GPU's wrapper name; {gpu} is its index"),
        "mig_wrapper_name": Setting(str, "gpu{gpu}-mig{device}-run",
                                    doc="a MIG device's wrapper name; {device} is where it is: its GPU instance's "
                                        "first memory slice (4), with -ciN for a split GPU instance (4-ci1)"),
        "memory_policy": Setting(str, "bind", choices=("bind", "preferred", "interleave", "local"),
                                 doc="bind: memory only on the GPU's node; preferred: there first; interleave: "
                                     "across the nodes with CPUs and memory; local: where the CPU runs"),
        "cpu_binding": Setting((str, list, int), "node",
                               doc="node: the CPUs of the GPU's node; none; or a CPU list such as 0-7,64-71"),
        "place_mps": Setting(bool, True, doc="drop-ins placing each MPS daemon (nvidia-mps@DEVICE.service) on its "
                                             "device's node"),
        "numa_balancing": Setting((bool, str), "unchanged", choices=(True, False, "unchanged"),
                                  doc="kernel.numa_balancing now and at boot (a sysctl.d file); unchanged leaves it"),
    },
    order=30,
    reads=("mig", "mps"),  # MIG devices get wrappers, MPS daemons drop-ins
    doc="NUMA placement of GPU work: numactl wrappers, MPS unit drop-ins, NUMA balancing",
    check=_check,
)


@hookimpl
def gpuprov_settings_schema() -> Schema:
    return SCHEMA


@hookimpl
def gpuprov_probe(settings: Mapping[str, Any]) -> dict[str, str]:
    return _facts.probes(settings)


@hookimpl
def gpuprov_facts(outputs: Mapping[str, Any], facts: Mapping[str, Any]) -> dict[str, Any]:
    return _facts.gather(outputs, facts)


@hookimpl
def gpuprov_facts_view(facts: Mapping[str, Any]) -> list[tuple[str, Sequence[str], Sequence[Sequence[str]]]]:
    numa = facts.get("numa") or {}
    if not numa.get("nodes"):
        return []
    rows = _facts.view(facts)
    extra = []
    if numa.get("systemd") is not None:
        extra.append(f"systemd {numa['systemd']}")
    if numa.get("balancing") is not None:
        extra.append(f"numa_balancing {numa['balancing']}")
    title = f"NUMA topology ({len(numa['nodes'])} node(s) from {numa['source']}" + \
        "".join(f", {e}" for e in extra) + ")"
    return [(title, ("device", "node", "CPUs", "memory", "source"), rows)]


@hookimpl
def gpuprov_plan(host: Host, facts: Mapping[str, Any], settings: Mapping[str, Any], planned: dict[str, Any],
                 templates: Templates) -> list[Change]:
    return _plan.plan_host(host.name, facts, settings, planned, templates)


@hookimpl
def gpuprov_verify(host: Host, facts: Mapping[str, Any], settings: Mapping[str, Any]) -> list[Check]:
    targets = _plan.wrapper_targets(host.name, facts, settings)
    if not targets:
        return []
    return [Check("wrappers bind each device to its NUMA node", lambda ti: _plan.verify_wrappers(ti, targets))]


@hookimpl
def gpuprov_template_dirs() -> list[Path]:
    return [Path(__file__).parent / "templates"]
