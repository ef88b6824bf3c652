"""The ``nvidia-smi`` stand-in: argument parsing, the MIG family, ``-L``, ``-mig``, ``-r``, ``-c`` and ``-pm``.

Texts, column widths and exit codes follow the captures in ``shared/fixtures/nvidia-smi/`` (and the two ``-c``
captures in ``fixtures/mps/``); the rules behind them are :mod:`gpuprov.sim.mig`'s. The full reports (``-q``,
``-x``, ``--query-gpu``, ``--query-compute-apps``, ``topo``, the default table) are
:func:`gpuprov.sim.nvidia_smi_report.report`'s; this module only dispatches to it.

Layouts differ by driver (``Machine.driver_version``), as the captures show them:

- ``-lgip``: 79 columns before R580 (guide, A30, GH200, H100 525/560), 81 from R580 (the Name column 2 wider).
- ``-lgi``: 54 columns before R510 (the guide's examples), 57 for R510-R575 (510.47.03, 525.125.06, the A30),
  59 from R580.
- ``-lci``: no Placement column before R510 (guide, 57 columns); 70 columns with it from R510.
- ``-cci``: before R510 the success line has no CI ID (the guide's wording); the CI lines of ``-cgi -C`` have it
  in every capture (the same guide page, and the GH200).
- ``-L``: before R470 ``MIG 3g.20gb Device 0:`` single-spaced, from R470 the name padded to 12 and the device
  number to 2; A100 products are printed without "NVIDIA " before R510 (``A100-SXM4-40GB`` in R450/R470 output).

Choices where no capture shows the behaviour: a MIG listing when no selected GPU is in MIG mode prints ``No
MIG-enabled devices found.`` (``No MIG-supported devices found.`` when none can be), exit 6; an empty listing
prints ``No GPU instances found: Not Found`` / ``No compute instances found: Not Found``, exit 6; failures exit
with the NVML code of the error (``In use by another client`` 19, ``Insufficient Resources`` 23, ``Invalid
Argument`` 2, ``Not Supported`` 3, ``Not Found`` 6); ``-cgi`` first checks that the list asks for no more of a
profile than its Free count, which is why ``-cgi 20,20,20`` on a GH200 fails before creating anything, as
captured; destroying continues past a refused instance and reports the failure at the end.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from . import mig, migprofiles
from .commands import stand_in
from .host import Result, SimHost
from .machine import Gpu, GpuInstance, Machine
from .migprofiles import GiProfile, driver_at_least

__all__ = ["UsageError", "nvidia_smi", "printed_name", "select_gpus"]

_HINT = "Please run 'nvidia-smi -h' for help."
_OLD_NAMES = {  # R450/R470 printed A100 names without the brand (guide examples); from R510 with it
    "NVIDIA A100-SXM4-40GB": "A100-SXM4-40GB",
    "NVIDIA A100-PCIE-40GB": "A100-PCIE-40GB",
    "NVIDIA A100-SXM4-80GB": "A100-SXM4-80GB",
}
_PERSISTENCE_WARNING = (
    "Warning: persistence mode is disabled on device {bus}. See the Known Issues section of the nvidia-smi(1) man "
    "page for more information. Run with [--help | -h] switch to get more information on how to enable persistence "
    "mode.")
_IN_USE_MODE = (
    "{bus} is currently being used by one or more other processes (e.g. CUDA application or a monitoring "
    "application such as another instance of nvidia-smi). Please first kill all processes using the device and "
    "retry the command or reboot the system to make MIG mode effective.")
_IN_USE_RESET = (
    "{count} currently being used by one or more other processes (e.g., Fabric Manager, CUDA application, graphics "
    "application such as an X server, or a monitoring application such as another instance of nvidia-smi). Please "
    "first kill all processes using this device and all compute applications running in the system.")


class UsageError(Exception):
    """A command line nvidia-smi rejects: its message and exit code."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def printed_name(product: str, driver: str) -> str:
    """The product name as this driver prints it (``-L``, ``-q``)."""
    if not driver_at_least(driver, "510") and product in _OLD_NAMES:
        return _OLD_NAMES[product]
    return product


def select_gpus(machine: Machine, spec: str | None) -> list[Gpu]:
    """The GPUs ``-i`` names (see :meth:`Machine.select_gpus`); none: nvidia-smi's "No devices were found"."""
    try:
        return machine.select_gpus(spec)
    except KeyError:
        raise UsageError("No devices were found", 6) from None


# -- argument parsing --------------------------------------------------------------------------------------------


@dataclass
class _Args:
    ids: str | None = None
    actions: dict[str, str | None] = field(default_factory=dict)  # option -> its value (None for flags)
    report: bool = False  # something only the report writer prints


# option spellings -> (canonical name, takes a value)
_TOP: dict[str, tuple[str, bool]] = {
    "-i": ("id", True), "--id": ("id", True),
    "-L": ("list", False), "--list-gpus": ("list", False),
    "-mig": ("mig", True), "--multi-instance-gpu": ("mig", True),
    "-r": ("reset", False), "--gpu-reset": ("reset", False),
    "-c": ("compute-mode", True), "--compute-mode": ("compute-mode", True),
    "-pm": ("persistence-mode", True), "--persistence-mode": ("persistence-mode", True),
}
_REPORT_FLAGS = {"-q", "--query", "-x", "--xml-format", "-qx", "--dtd"}
_REPORT_VALUES = {"-d", "--display", "--query-gpu", "--query-compute-apps", "--format", "-f", "--filename"}
_MIG: dict[str, tuple[str, bool | None]] = {  # None: an optional value
    "-i": ("id", True), "--id": ("id", True),
    "-lgip": ("lgip", False), "--list-gpu-instance-profiles": ("lgip", False),
    "-lgipp": ("lgipp", False), "--list-gpu-instance-possible-placements": ("lgipp", False),
    "-lgi": ("lgi", False), "--list-gpu-instances": ("lgi", False),
    "-lcip": ("lcip", False), "--list-compute-instance-profiles": ("lcip", False),
    "-lci": ("lci", False), "--list-compute-instances": ("lci", False),
    "-cgi": ("cgi", True), "--create-gpu-instance": ("cgi", True),
    "-C": ("default-ci", False), "--default-compute-instance": ("default-ci", False),
    "-cci": ("cci", None), "--create-compute-instance": ("cci", None),
    "-gi": ("gi", True), "--gpu-instance-id": ("gi", True),
    "-ci": ("ci", True), "--compute-instance-id": ("ci", True),
    "-dci": ("dci", False), "--destroy-compute-instance": ("dci", False),
    "-dgi": ("dgi", False), "--destroy-gpu-instance": ("dgi", False),
}


def _parse(argv: Sequence[str], table: Mapping[str, tuple[str, bool | None]]) -> tuple[_Args, list[str] | None]:
    """Options as nvidia-smi spells them (``-i 0``, ``--id=0``); stops at ``mig`` and returns what follows it."""
    args = _Args()
    items = list(argv)
    i = 0
    while i < len(items):
        item = items[i]
        if item == "mig" and table is _TOP:
            return args, items[i + 1:]
        if item == "topo" and table is _TOP:  # a subcommand of its own: what follows is the report's
            args.report = True
            return args, None
        key, _, inline = item.partition("=") if item.startswith("--") else (item, "", "")
        if table is _TOP and (key in _REPORT_FLAGS or key in _REPORT_VALUES):
            args.report = True
            if key in _REPORT_VALUES and not inline:
                i += 1
            i += 1
            continue
        if key not in table:
            raise UsageError(f"Invalid combination of input arguments. {_HINT}")
        name, takes = table[key]
        value: str | None = None
        if inline:
            value = inline
        elif takes or (takes is None and i + 1 < len(items) and not items[i + 1].startswith("-")):
            i += 1
            if i >= len(items):
                raise UsageError(f'Option "{key}" is missing a value. {_HINT}')
            value = items[i]
        if name == "id":
            args.ids = value
        else:
            args.actions[name] = value
        i += 1
    return args, None


# -- the stand-in ------------------------------------------------------------------------------------------------


@stand_in("nvidia-smi")
def nvidia_smi(host: SimHost, argv: list[str], stdin: str, env: Mapping[str, str]) -> Result:
    """``nvidia-smi ARGS``: the commands this module implements, the reports through ``nvidia_smi_report``."""
    try:
        args, rest = _parse(argv[1:], _TOP)
        if rest is not None:
            if args.actions or args.report:
                raise UsageError(f"Invalid combination of input arguments. {_HINT}")
            sub, _ = _parse(rest, _MIG)
            return _mig(host, sub.ids or args.ids, sub.actions)
        if args.report or not args.actions:
            if args.actions:
                raise UsageError(f"Invalid combination of input arguments. {_HINT}")
            return _report(host, argv, env)
        if len(args.actions) != 1:
            raise UsageError(f"Invalid combination of input arguments. {_HINT}")
        (name, value), = args.actions.items()
        handler = {"list": _list, "mig": _mig_mode, "reset": _reset, "compute-mode": _compute_mode,
                   "persistence-mode": _persistence_mode}[name]
        return handler(host, args.ids, value)
    except UsageError as exc:
        return Result(stdout=exc.message + "\n", exit_code=exc.code)


def _report(host: SimHost, argv: list[str], env: Mapping[str, str]) -> Result:
    from .nvidia_smi_report import report

    return report(host, argv, env)


def _lines(lines: Sequence[str], code: int = 0) -> Result:
    return Result(stdout="".join(f"{line}\n" for line in lines), exit_code=code)


# -- -L ----------------------------------------------------------------------------------------------------------


def _list(host: SimHost, ids: str | None, value: str | None) -> Result:
    machine = host.machine
    old = not driver_at_least(machine.driver_version, "470")
    out = []
    for gpu in select_gpus(machine, ids):
        out.append(f"GPU {gpu.index}: {printed_name(gpu.product, machine.driver_version)} (UUID: {gpu.uuid})")
        for number, gi, ci in mig.mig_devices(gpu):
            name = migprofiles.mig_device_name(mig.gi_profile_of(machine, gpu, gi),
                                               mig.ci_profile_of(machine, gpu, gi, ci))
            if old:
                out.append(f"  MIG {name} Device {number}: (UUID: {ci.uuid})")
            else:
                out.append(f"  MIG {name:<11} Device {number:>2}: (UUID: {ci.uuid})")
    return _lines(out)


# -- -mig, -r, -c, -pm -------------------------------------------------------------------------------------------


def _on_off(value: str | None) -> bool:
    """``-mig``/``-pm`` values as nvidia-smi takes them: 0/1 or DISABLED/ENABLED."""
    wanted = {"0": False, "DISABLED": False, "1": True, "ENABLED": True}.get((value or "").upper())
    if wanted is None:
        raise UsageError(f"Invalid combination of input arguments. {_HINT}")
    return wanted


def _mig_mode(host: SimHost, ids: str | None, value: str | None) -> Result:
    wanted = _on_off(value)
    word = "enable" if wanted else "disable"
    out: list[str] = []
    with host.locked() as machine:
        for gpu in select_gpus(machine, ids):
            bus = gpu.bus_id
            change = mig.set_mig_mode(machine, gpu, wanted)
            if change.outcome == "not-supported":
                out += [f"Unable to {word} MIG Mode for GPU {bus}: Not Supported", "Treating as warning and moving on."]
            elif change.outcome == "pending" and change.reason == mig.IN_USE:
                out += [f"Warning: MIG mode is in pending {word} state for GPU {bus}:{mig.IN_USE}",
                        _IN_USE_MODE.format(bus=bus)]
            elif change.outcome == "pending":
                out += [f"Warning: MIG mode is in pending {word} state for GPU {bus}:{change.reason}",
                        f"Reboot the system or try nvidia-smi --gpu-reset to make MIG mode effective on GPU {bus}"]
            else:
                out.append(f"{'Enabled' if wanted else 'Disabled'} MIG Mode for GPU {bus}")
                if not gpu.persistence_mode:
                    out += ["", _PERSISTENCE_WARNING.format(bus=bus)]
    out.append("All done.")
    return _lines(out)


def _reset(host: SimHost, ids: str | None, value: str | None) -> Result:
    with host.locked() as machine:
        gpus = select_gpus(machine, ids)
        if machine.passthrough_vm:
            return _lines([f"Resetting GPU {g.bus_id} is not supported." for g in gpus], mig.CODES[mig.NOT_SUPPORTED])
        busy = [g for g in gpus if mig.holders(machine, g)]
        if busy:
            count = "1 device is" if len(busy) == 1 else f"{len(busy)} devices are"
            lines = [f"GPU {g.bus_id} is currently in use by another process." for g in busy]
            return _lines([*lines, "", _IN_USE_RESET.format(count=count)], mig.CODES[mig.IN_USE])
        out = []
        for gpu in gpus:
            mig.reset_gpu(machine, gpu)
            out.append(f"GPU {gpu.bus_id} was successfully reset.")
    return _lines(out)


_COMPUTE_MODES = {"0": "DEFAULT", "DEFAULT": "DEFAULT", "2": "PROHIBITED", "PROHIBITED": "PROHIBITED",
                  "3": "EXCLUSIVE_PROCESS", "EXCLUSIVE_PROCESS": "EXCLUSIVE_PROCESS"}
_MODE_STORED = {"DEFAULT": "Default", "PROHIBITED": "Prohibited", "EXCLUSIVE_PROCESS": "Exclusive_Process"}


def _compute_mode(host: SimHost, ids: str | None, value: str | None) -> Result:
    mode = _COMPUTE_MODES.get((value or "").upper())
    if mode is None:
        raise UsageError(f"Invalid combination of input arguments. {_HINT}")
    out: list[str] = []
    with host.locked() as machine:
        for gpu in select_gpus(machine, ids):
            if mode == "EXCLUSIVE_PROCESS" and gpu.mig_current:
                out += [f"Setting compute mode to {mode} is not supported on a MIG-enabled device.",
                        f"Unable to set the compute mode for GPU {gpu.bus_id}: Not Supported",
                        "Treating as warning and moving on."]
            elif gpu.compute_mode == _MODE_STORED[mode]:
                out.append(f"Compute mode is already set to {mode} for GPU {gpu.bus_id}.")
            else:
                gpu.compute_mode = _MODE_STORED[mode]
                out.append(f"Set compute mode to {mode} for GPU {gpu.bus_id}.")
    out.append("All done.")
    return _lines(out)


def _persistence_mode(host: SimHost, ids: str | None, value: str | None) -> Result:
    wanted = _on_off(value)
    word = "Enabled" if wanted else "Disabled"
    out: list[str] = []
    with host.locked() as machine:
        for gpu in select_gpus(machine, ids):
            if gpu.persistence_mode == wanted:
                out.append(f"Persistence mode is already {word} for GPU {gpu.bus_id}.")
            else:
                gpu.persistence_mode = wanted
                out.append(f"{word} persistence mode for GPU {gpu.bus_id}.")
    out.append("All done.")
    return _lines(out)


# -- nvidia-smi mig ----------------------------------------------------------------------------------------------


def _id_list(text: str | None, what: str) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"Invalid {what} ID list: {text}. {_HINT}") from None


def _mig(host: SimHost, ids: str | None, actions: dict[str, str | None]) -> Result:
    commands = [a for a in actions if a in ("lgip", "lgipp", "lgi", "lcip", "lci", "cgi", "cci", "dci", "dgi")]
    if len(commands) != 1 or ("default-ci" in actions and commands != ["cgi"]):
        raise UsageError(f"Invalid combination of input arguments. {_HINT}")
    command = commands[0]
    changes = command in ("cgi", "cci", "dci", "dgi")
    if changes:
        with host.locked() as machine:
            return _mig_on(machine, command, ids, actions)
    return _mig_on(host.machine, command, ids, actions)


def _mig_on(machine: Machine, command: str, ids: str | None, actions: dict[str, str | None]) -> Result:
    selected = select_gpus(machine, ids)
    capable = [g for g in selected if mig.profiles(machine, g)]
    if not capable:
        return _lines(["No MIG-supported devices found."], 6)
    enabled = [g for g in capable if g.mig_current]
    if not enabled:
        return _lines(["No MIG-enabled devices found."], 6)
    gis = _id_list(actions.get("gi"), "GPU instance")
    cis = _id_list(actions.get("ci"), "compute instance")
    handlers: dict[str, Callable[..., Result]] = {
        "lgip": _lgip, "lgipp": _lgipp, "lgi": _lgi, "lcip": _lcip, "lci": _lci, "cgi": _cgi, "cci": _cci,
        "dci": _dci, "dgi": _dgi}
    return handlers[command](machine, enabled, actions, gis, cis)


def _listed(machine: Machine, gpu: Gpu) -> list[GpuInstance]:
    """GIs in listing order: by profile in -lgip order, then ascending GI ID."""
    order = {p.id: n for n, p in enumerate(mig.profiles(machine, gpu))}
    return sorted(gpu.gpu_instances, key=lambda gi: (order.get(gi.profile_id, len(order)), gi.id))


def _table(width: int, title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    rule = "+" + "-" * (width - 2) + "+"
    out = [rule, f"| {title}".ljust(width - 1) + "|", *header, "|" + "=" * (width - 2) + "|"]
    for row in rows:
        out += [*row, rule]
    return out


def _lgip(machine: Machine, gpus: list[Gpu], actions: dict[str, str | None], gis: list[int] | None,
          cis: list[int] | None) -> Result:
    wide = driver_at_least(machine.driver_version, "580")
    name_w = 18 if wide else 16
    width = 81 if wide else 79
    header = [f"| GPU   {'Name':<{name_w + 1}}ID    Instances   Memory     P2P    SM    DEC   ENC  |",
              "|" + " " * (name_w + 14) + "Free/Total   GiB              CE    JPEG  OFA  |"]
    rows = []
    for gpu in gpus:
        for p in mig.profiles(machine, gpu):
            free = f"{mig.free_count(machine, gpu, p)}/{p.max_count}"
            first = (f"|{gpu.index:>4}  {'MIG ' + p.name:<{name_w}}{p.id:>4}     {free:<11}"
                     f"{p.memory_mib / 1024:<11.2f}{'No':<7}{p.sm_count:<6}{p.dec:>2}    {p.enc:>2}   |")
            second = "|" + " " * (name_w + 44) + f"{p.ce:>2}    {p.jpeg:>2}    {p.ofa:>2}   |"
            rows.append((first, second))
    return _lines(_table(width, "GPU instance profiles:", header, rows))


def _lgipp(machine: Machine, gpus: list[Gpu], actions: dict[str, str | None], gis: list[int] | None,
           cis: list[int] | None) -> Result:
    out = []
    for gpu in gpus:
        for p in mig.profiles(machine, gpu):
            label = "Placements:" if len(p.starts) > 1 else "Placement :"
            out.append(f"GPU {gpu.index:>2} Profile ID {p.id:>2} {label} {{{','.join(map(str, p.starts))}}}:{p.size}")
    return _lines(out)


def _lgi_name_width(driver: str) -> int:
    if driver_at_least(driver, "580"):
        return 20
    return 18 if driver_at_least(driver, "510") else 15


def _lgi(machine: Machine, gpus: list[Gpu], actions: dict[str, str | None], gis: list[int] | None,
         cis: list[int] | None) -> Result:
    w = _lgi_name_width(machine.driver_version)
    rows = []
    for gpu in gpus:
        for gi in _listed(machine, gpu):
            if gis is not None and gi.id not in gis:
                continue
            p = mig.gi_profile_of(machine, gpu, gi)
            rows.append((f"|{gpu.index:>4}  {'MIG ' + p.name:<{w}}{p.id:>4}{gi.id:>9}          "
                         f"{gi.start}:{gi.size}     |",))
    if not rows:
        return _lines(["No GPU instances found: Not Found"], 6)
    header = [f"| GPU   {'Name':<{w - 1}}Profile  Instance   Placement  |",
              "|" + " " * (w + 8) + "ID       ID       Start:Size |"]
    return _lines(_table(w + 39, "GPU instances:", header, rows))


def _selected_gis(machine: Machine, gpu: Gpu, gis: list[int] | None) -> list[GpuInstance]:
    return [gi for gi in _listed(machine, gpu) if gis is None or gi.id in gis]


def _lcip(machine: Machine, gpus: list[Gpu], actions: dict[str, str | None], gis: list[int] | None,
          cis: list[int] | None) -> Result:
    rows = []
    for gpu in gpus:
        for gi in _selected_gis(machine, gpu, gis):
            p = mig.gi_profile_of(machine, gpu, gi)
            for c in p.ci_profiles:
                free = f"{mig.ci_free_count(machine, gpu, gi, c)}/{c.max_count}"
                star = "*" if c.default else " "
                rows.append((f"|{gpu.index:>4}{gi.id:>7}       {'MIG ' + c.name:<18}{c.id:>4}{star}     {free:<14}"
                             f"{c.sm_count:<3}{p.dec:>8}{p.enc:>6}{p.ofa:>6}   |",
                             "|" + " " * 63 + f"{p.ce:>8}{p.jpeg:>6}" + " " * 9 + "|"))
    if not rows:
        return _lines(["No GPU instances found: Not Found"], 6)
    header = ["| GPU     GPU       Name             Profile  Instances   Exclusive       Shared       |",
              "|       Instance                       ID     Free/Total     SM       DEC   ENC   OFA  |",
              "|         ID                                                          CE    JPEG       |"]
    return _lines(_table(88, "Compute instance profiles:", header, rows))


def _lci(machine: Machine, gpus: list[Gpu], actions: dict[str, str | None], gis: list[int] | None,
         cis: list[int] | None) -> Result:
    placement = driver_at_least(machine.driver_version, "510")
    rows = []
    for gpu in gpus:
        for gi in _selected_gis(machine, gpu, gis):
            for ci in gi.compute_instances:
                if cis is not None and ci.id not in cis:
                    continue
                c = mig.ci_profile_of(machine, gpu, gi, ci)
                row = f"|{gpu.index:>4}{gi.id:>7}       {'MIG ' + c.name:<18}{c.id:>4}{ci.id:>10}"
                rows.append((row + (f"          {ci.start}:{ci.size}     |" if placement else "     |"),))
    if not rows:
        return _lines(["No compute instances found: Not Found"], 6)
    if placement:
        header = ["| GPU     GPU       Name             Profile   Instance   Placement  |",
                  "|       Instance                       ID        ID       Start:Size |",
                  "|         ID                                                         |"]
    else:
        header = ["| GPU     GPU       Name             Profile   Instance |",
                  "|       Instance                       ID        ID     |",
                  "|         ID                                            |"]
    return _lines(_table(70 if placement else 57, "Compute instances:", header, rows))


def _cci_line(machine: Machine, gpu: Gpu, gi: GpuInstance, ci_id: int, name: str, profile_id: int,
              with_id: bool = False) -> str:
    """A created CI's line; ``-cgi ... -C`` prints the CI ID in every capture, ``-cci`` only from R510."""
    if with_id or driver_at_least(machine.driver_version, "510"):
        return (f"Successfully created compute instance ID {ci_id:>2} on GPU {gpu.index:>2} GPU instance ID "
                f"{gi.id:>2} using profile MIG {name} (ID {profile_id:>2})")
    return (f"Successfully created compute instance on GPU {gpu.index:>2} GPU instance ID {gi.id:>2} using profile "
            f"MIG {name} (ID {profile_id:>2})")


def _cgi(machine: Machine, gpus: list[Gpu], actions: dict[str, str | None], gis: list[int] | None,
         cis: list[int] | None) -> Result:
    spec = actions.get("cgi") or ""
    tokens = [t.strip() for t in spec.split(",") if t.strip()]
    if not tokens:
        raise UsageError(f"Invalid combination of input arguments. {_HINT}")
    out: list[str] = []
    for gpu in gpus:
        failure = _cgi_one(machine, gpu, tokens, "default-ci" in actions, out)
        if failure:
            out.append(f"Failed to create GPU instances: {failure}")
            return _lines(out, mig.CODES[failure])
    return _lines(out)


def _cgi_one(machine: Machine, gpu: Gpu, tokens: list[str], default_ci: bool, out: list[str]) -> str | None:
    """Create the GIs ``tokens`` name on one GPU, appending nvidia-smi's lines; the failure reason or None."""
    wanted: list[tuple[str, GiProfile | None, int | None]] = []
    for token in tokens:
        name, _, start_text = token.partition(":")
        profile = migprofiles.gi_profile(gpu.product, machine.driver_version, name)
        if start_text and not start_text.strip().isdigit():
            profile = None
        wanted.append((token, profile, int(start_text) if start_text.strip().isdigit() else None))

    def unable(token: str, reason: str) -> str:
        out.append(f"Unable to create a GPU instance on GPU {gpu.index:>2} using profile {token}: {reason}")
        return reason

    if any(p.gi is None for p in mig.holders(machine, gpu)):
        return unable(tokens[0], mig.IN_USE)
    for token, profile, _ in wanted:
        if profile is None:
            return unable(token, mig.INVALID_ARGUMENT)
    counts: dict[int, int] = {}
    for token, profile, _ in wanted:
        assert profile is not None
        counts[profile.id] = counts.get(profile.id, 0) + 1
        if counts[profile.id] > mig.free_count(machine, gpu, profile):
            return unable(token, mig.INSUFFICIENT_RESOURCES)
    for token, profile, start in wanted:
        assert profile is not None
        try:
            gi = mig.create_gpu_instance(machine, gpu, profile, start)
        except mig.MigError as exc:
            return unable(token, exc.reason)
        out.append(f"Successfully created GPU instance ID {gi.id:>2} on GPU {gpu.index:>2} using profile "
                   f"MIG {profile.name} (ID {profile.id:>2})")
        if default_ci:
            c = next(c for c in profile.ci_profiles if c.default)
            ci = mig.create_compute_instance(machine, gpu, gi, c)
            out.append(_cci_line(machine, gpu, gi, ci.id, c.name, c.id, with_id=True))
    return None


def _cci(machine: Machine, gpus: list[Gpu], actions: dict[str, str | None], gis: list[int] | None,
         cis: list[int] | None) -> Result:
    tokens = [t.strip() for t in (actions.get("cci") or "").split(",") if t.strip()]
    out: list[str] = []
    for gpu in gpus:
        targets = _selected_gis(machine, gpu, gis)
        if gis is not None and len(targets) < len(set(gis)):
            missing = next(i for i in gis if i not in {gi.id for gi in targets})
            out += [f"Unable to find GPU instance ID {missing:>2} on GPU {gpu.index:>2}: Not Found",
                    f"Failed to create compute instances: {mig.NOT_FOUND}"]
            return _lines(out, mig.CODES[mig.NOT_FOUND])
        for gi in sorted(targets, key=lambda g: g.id):
            profile = mig.gi_profile_of(machine, gpu, gi)
            for token in tokens or [next(str(c.id) for c in profile.ci_profiles if c.default)]:
                c = migprofiles.ci_profile(profile, token)
                try:
                    if c is None:
                        raise mig.MigError(mig.INVALID_ARGUMENT)
                    ci = mig.create_compute_instance(machine, gpu, gi, c)
                except mig.MigError as exc:
                    out += [f"Unable to create a compute instance on GPU {gpu.index:>2} GPU instance ID {gi.id:>2} "
                            f"using profile {token}: {exc.reason}",
                            f"Failed to create compute instances: {exc.reason}"]
                    return _lines(out, exc.code)
                out.append(_cci_line(machine, gpu, gi, ci.id, c.name, c.id))
    if not out:
        return _lines(["No GPU instances found: Not Found"], 6)
    return _lines(out)


def _dci(machine: Machine, gpus: list[Gpu], actions: dict[str, str | None], gis: list[int] | None,
         cis: list[int] | None) -> Result:
    out: list[str] = []
    failure: str | None = None
    found = False
    for gpu in gpus:
        for gi in _selected_gis(machine, gpu, gis):
            for ci in list(gi.compute_instances):
                if cis is not None and ci.id not in cis:
                    continue
                found = True
                try:
                    mig.destroy_compute_instance(machine, gpu, gi, ci)
                except mig.MigError as exc:
                    failure = failure or exc.reason
                    out.append(f"Unable to destroy compute instance ID {ci.id:>2} from GPU {gpu.index:>2} GPU "
                               f"instance ID {gi.id:>2}: {exc.reason}")
                    continue
                out.append(f"Successfully destroyed compute instance ID {ci.id:>2} from GPU {gpu.index:>2} GPU "
                           f"instance ID {gi.id:>2}")
    if not found:
        return _lines(["No compute instances found: Not Found"], 6)
    if failure:
        out.append(f"Failed to destroy compute instances: {failure}")
        return _lines(out, mig.CODES[failure])
    return _lines(out)


def _dgi(machine: Machine, gpus: list[Gpu], actions: dict[str, str | None], gis: list[int] | None,
         cis: list[int] | None) -> Result:
    out: list[str] = []
    failure: str | None = None
    found = False
    for gpu in gpus:
        for gi in sorted(_selected_gis(machine, gpu, gis), key=lambda g: g.id):
            found = True
            try:
                mig.destroy_gpu_instance(machine, gpu, gi)
            except mig.MigError as exc:
                failure = failure or exc.reason
                out.append(f"Unable to destroy GPU instance ID {gi.id:>2} from GPU {gpu.index:>2}: {exc.reason}")
                continue
            out.append(f"Successfully destroyed GPU instance ID {gi.id:>2} from GPU {gpu.index:>2}")
    if not found:
        return _lines(["No GPU instances found: Not Found"], 6)
    if failure:
        out.append(f"Failed to destroy GPU instances: {failure}")
        return _lines(out, mig.CODES[failure])
    return _lines(out)
