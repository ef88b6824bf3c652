"""gpuprov's MIG plugin: validated layouts, minimal safe changes, layouts that survive reboots.

A play's ``mig:`` section says which MIG layout each GPU should have; this plugin detects what the GPUs have
(:mod:`.facts`), plans the smallest safe change per GPU with explicit placements (:mod:`.plan`, on top of the
profile catalogue and placement solver in :mod:`.profiles` and :mod:`.layout`), and renders a boot unit that
re-creates the layout after a reboot. It registers through the ``gpuprov.plugins`` entry point like any other
plugin::

    - hosts: infer
      mig:
        layout: all-balanced            # or [3g.40gb, 2 x 1g.10gb, 1g.10gb+me], or "{{ mig_layout }}"
        devices: {"0-3": all-1g, "NVIDIA H100 80GB HBM3": all-max}
        reset: auto                     # never: a mode change waits for a reboot instead of a GPU reset
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
    from gpuprov.connection import Connection
    from gpuprov.inventory import Host
    from gpuprov.plan import Change
    from gpuprov.render import Templates

__version__ = "0.1.0"
__all__ = ["SCHEMA", "__version__"]


def _check(values: Mapping[str, Any]) -> list[tuple[str | None, str]]:
    """Section-level rules the per-key types cannot say (run after Jinja rendering, per host)."""
    problems: list[tuple[str | None, str]] = []
    if values.get("config") and not values.get("mig_parted_config"):
        problems.append(("config", "names a configuration of a mig-parted file: give mig_parted_config too"))
    if values.get("mig_parted_config") and (values.get("layout") is not None or values.get("devices")):
        problems.append(("mig_parted_config", "a mig-parted file already says each GPU's layout: drop layout and "
                                              "devices, or drop mig_parted_config"))
    for key, value in (values.get("devices") or {}).items():
        if value is None:
            problems.append(("devices", f"devices[{key!r}] has no layout (use all-disabled, all-enabled, a named "
                                        "layout or a list of profiles)"))
    for name in values.get("services") or ():
        if not isinstance(name, str) or not name.strip() or any(c.isspace() for c in name):
            problems.append(("services", f"{name!r} is not a systemd unit name"))
    return problems


SCHEMA = Schema(
    "mig",
    {
        "enabled": Setting(bool, True, doc="MIG mode on for the GPUs this play covers; false turns it off (and "
                                           "destroys their instances)"),
        "layout": Setting((list, str), None, doc="every MIG-capable GPU's layout: a named layout (all-disabled, "
                                                 "all-enabled, all-1g, all-balanced, all-max) or a list of "
                                                 "GPU-instance profiles such as [3g.40gb, 2 x 1g.10gb]; unset "
                                                 "leaves instances as they are"),
        "devices": Setting(dict, None, doc="per-GPU layouts, keyed by index (0), index range (\"0-3\") or product "
                                           "name (\"NVIDIA A100-SXM4-80GB\"); they win over layout"),
        "reset": Setting(str, "auto", choices=("auto", "never"),
                         doc="auto: reset an idle Ampere GPU to make a MIG mode change effective; never: leave it "
                             "pending until a reboot"),
        "services": Setting(list, None, doc="systemd units to stop around a MIG mode change and start again "
                                            "afterwards (default: nvidia-persistenced, nvidia-dcgm, dcgm, "
                                            "dcgm-exporter, nvsm — only those running)"),
        "mig_parted_config": Setting(str, None, doc="a mig-parted config file (on the control node) to take the "
                                                    "layouts from"),
        "config": Setting(str, None, doc="the configuration of mig_parted_config to use"),
        "boot_unit": Setting(bool, True, doc="install gpuprov-mig.service, which re-creates the layout at boot"),
    },
    order=10,
    reads=(),  # its own probes say all it needs
    doc="MIG partitioning of the host's GPUs",
    check=_check,
)


@hookimpl
def gpuprov_settings_schema() -> Schema:
    return SCHEMA


def _nvml_for(host: Host) -> Any | None:
    """pynvml when detecting the control node itself and the library loads; otherwise nvidia-smi over the link."""
    return _facts.load_nvml() if host.connection == "local" else None


@hookimpl
def gpuprov_probe(host: Host, settings: Mapping[str, Any]) -> dict[str, str]:
    return _facts.probes(settings, with_smi=_nvml_for(host) is None)


@hookimpl
def gpuprov_facts(host: Host, outputs: Mapping[str, Any]) -> dict[str, Any]:
    nvml = None
    if "mig.query" not in outputs:  # the probe chose NVML
        nvml = _facts.load_nvml()
        if nvml is None:
            raise ValueError("NVML loaded for the probes but not for reading the GPUs; run again")
    return _facts.gather(outputs, nvml)


@hookimpl
def gpuprov_facts_view(facts: Mapping[str, Any]) -> list[tuple[str, Sequence[str], Sequence[Sequence[str]]]]:
    rows = _facts.gpu_view(facts)
    if not rows:
        return []
    driver = (facts.get("mig") or {}).get("driver")
    title = "MIG" + (f" (driver {driver})" if driver else "")
    return [(title, ("GPU", "product", "MIG mode", "instances"), rows)]


@hookimpl
def gpuprov_export(facts: Mapping[str, Any]) -> dict[str, Any]:
    return _plan.export_settings(facts)


@hookimpl
def gpuprov_plan(host: Host, facts: Mapping[str, Any], settings: Mapping[str, Any], planned: dict[str, Any],
                 templates: Templates) -> list[Change]:
    targets = _plan.resolve_targets(host.name, facts, settings)
    return _plan.plan_host(host.name, facts, settings, planned, templates, targets)


@hookimpl
def gpuprov_apply(change: Change, connection: Connection) -> bool | None:
    """Skip the instance steps of a GPU whose MIG mode did not take effect (it waits for a reboot).

    The plan creates instances right after enabling MIG mode; on an Ampere GPU that cannot be reset the mode stays
    pending, and the instances can only be made after the reboot (the boot unit makes them). The core then
    detects again and, seeing only the reboot left, ends the host ``reboot-required`` instead of failed.
    """
    if change.plugin not in ("", "mig") or not isinstance(change.after, dict):
        return None
    if not change.after.get("requires_mig_mode"):
        return None
    index = change.id.removeprefix("mig/gpu")
    result = connection.run(f"nvidia-smi -i {index} --query-gpu=mig.mode.current --format=csv,noheader")
    if result.ok and result.stdout.strip() == "Enabled":
        return None
    return True


@hookimpl
def gpuprov_verify(host: Host, facts: Mapping[str, Any], settings: Mapping[str, Any]) -> list[Check]:
    targets = _plan.resolve_targets(host.name, facts, settings)
    checks = [Check("MIG layout as planned", lambda ti: _plan.verify_layout(ti, targets))]
    if settings.get("boot_unit", True) and any(t.mig for t in targets.values()):
        checks.append(Check(f"{_facts.UNIT_NAME} enabled", _plan.verify_boot_unit))
    return checks


@hookimpl
def gpuprov_template_dirs() -> list[Path]:
    return [Path(__file__).parent / "templates"]
