"""``gpuprov sim``: rehearse commands on a simulated GPU server before typing them on a real one.

A simulated host is a state directory (``machine.json`` plus the host's file tree under ``root/``). ``sim new``
makes one from a preset or a product; ``sim run`` runs one command against it through the same in-process shell
the ``sim`` connection uses, so ``nvidia-smi``, ``nvidia-cuda-mps-control``, ``systemctl``, ``numactl`` and ``lscpu``
print what the real tools print and exit as they exit. ``sim run -i INVENTORY HOST`` acts on an inventory's sim
host instead (its state lives where ``sim_state_dir`` says), so ``gpuprov apply`` on the example rack can be
checked with the tools a person would use.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from ..errors import GpuprovError
from .host import SimHost


@click.group()
def sim() -> None:
    """Simulated GPU hosts: create one, then run the stand-in nvidia-smi, systemctl, ... against it.

    \b
    Example:
      gpuprov sim new a30 --gpu "NVIDIA A30"
      gpuprov sim run a30 -- nvidia-smi -i 0 -mig 1
      gpuprov sim run a30 -- nvidia-smi mig -cgi 14,14 -C
      gpuprov sim run -i inventory.example infer01 -- nvidia-smi -L
    """


@sim.command("new")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--preset", metavar="NAME", help="A server preset: dgx-a100, dgx-a100-40gb, dgx-h100, hgx-h200.")
@click.option("--gpu", "product", metavar="PRODUCT", help='The GPU as `nvidia-smi -L` prints it, e.g. "NVIDIA A30".')
@click.option("--count", type=click.IntRange(0, 64), help="Number of GPUs (default: the preset's, or 1).")
@click.option("--numa-nodes", type=click.IntRange(1, 64), help="NUMA nodes of a --gpu machine (default 1).")
@click.option("--driver", metavar="VERSION", help="Driver version, e.g. 580.126.09 (default) or 470.57.02.")
@click.option("--hostname", metavar="NAME", help="Host name (default: the directory's name); seeds the UUIDs.")
@click.option("--passthrough-vm", is_flag=True, help="A VM with GPU pass-through: GPU reset is not supported.")
@click.option("--force", is_flag=True, help="Replace a simulated host already in DIRECTORY.")
def new(directory: str, preset: str | None, product: str | None, count: int | None, numa_nodes: int | None,
        driver: str | None, hostname: str | None, passthrough_vm: bool, force: bool) -> None:
    """Create a simulated host in DIRECTORY.

    \b
    Example:
      gpuprov sim new h100 --preset dgx-h100
      gpuprov sim new a100 --gpu "NVIDIA A100-SXM4-40GB" --count 2 --driver 470.57.02
    """
    from .presets import new_machine
    from .sysfs import ensure_sysfs

    if (preset is None) == (product is None):
        raise click.UsageError("give exactly one of --preset NAME or --gpu PRODUCT")
    host = SimHost(directory)
    if host.exists and not force:
        raise GpuprovError(f"{directory}: a simulated host exists there already; pass --force to replace it")
    try:
        machine = new_machine(preset=preset, gpu=product, count=count, numa_nodes=numa_nodes, driver=driver,
                              hostname=hostname or Path(directory).resolve().name)
    except ValueError as exc:
        raise GpuprovError(str(exc)) from None
    machine.passthrough_vm = passthrough_vm
    host.save(machine)
    ensure_sysfs(host)
    gpus = ", ".join(sorted({g.product for g in machine.gpus})) or "no GPU"
    click.echo(f"{directory}: {len(machine.gpus)} x {gpus}, {len(machine.numa_nodes)} NUMA node(s), "
               f"driver {machine.driver_version}")


@sim.command("run", context_settings={"ignore_unknown_options": True})
@click.option("-i", "--inventory", "inventories", multiple=True, metavar="PATH",
              help="Act on an inventory's sim host: then the first argument is the host's name.")
@click.argument("args", nargs=-1, required=True, type=click.UNPROCESSED)
def run(inventories: tuple[str, ...], args: tuple[str, ...]) -> None:
    """Run COMMAND on a simulated host: ``run DIR -- COMMAND ARGS...`` or ``run -i INV HOST -- COMMAND ARGS...``.

    Prints what the real tool prints and exits with its exit code. Standard input is passed on to commands that
    read it (``echo get_server_list | gpuprov sim run DIR -- nvidia-cuda-mps-control``).

    \b
    Example:
      gpuprov sim run a30 -- nvidia-smi mig -lgip
      gpuprov sim run -i inventory.example a30-a -- systemctl status gpuprov-mig.service
    """
    from ..connection.sim import login_env
    from .commands import load_all
    from .shell import run_line

    target, argv = args[0], list(args[1:])
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        raise click.UsageError("no command given: gpuprov sim run DIR -- COMMAND ARGS...")
    host = _target(inventories, target)
    func = load_all().get(argv[0])
    reads = getattr(func, "reads_stdin", None)
    stdin = sys.stdin.read() if reads is not None and reads(argv) and not sys.stdin.isatty() else ""
    result = run_line(host, shlex.join(argv), stdin=stdin, env=login_env(host))
    sys.stdout.write(result.stdout)
    sys.stdout.flush()
    sys.stderr.write(result.stderr)
    sys.stderr.flush()
    sys.exit(result.exit_code)


def _target(inventories: tuple[str, ...], target: str) -> SimHost:
    """The simulated host a command names: a state directory, or (with ``-i``) an inventory's sim host."""
    from ..connection.sim import sim_host_for

    if inventories:
        from ..inventory import load_inventory

        inventory = load_inventory(list(inventories))
        if target not in inventory.hosts:
            raise GpuprovError(f"{target}: no such host in {', '.join(inventories)}")
        inv_host = inventory.hosts[target]
        if inv_host.connection != "sim":
            raise GpuprovError(f"{target}: not a simulated host (ansible_connection={inv_host.connection})")
        return sim_host_for(inv_host)
    host = SimHost(target)
    if not host.exists:
        raise GpuprovError(f"{target}: no simulated host here; create one with `gpuprov sim new {target} "
                           "--preset dgx-h100` (or --gpu PRODUCT)")
    return host


@sim.command("reboot")
@click.option("-i", "--inventory", "inventories", multiple=True, metavar="PATH",
              help="Reboot an inventory's sim host: then the argument is the host's name.")
@click.argument("target")
def reboot(inventories: tuple[str, ...], target: str) -> None:
    """Reboot a simulated host: processes end, MIG instances are gone (and on Hopper MIG mode too), a pending MIG
    mode takes effect on Ampere, then systemd starts the enabled units, gpuprov's boot unit among them.

    \b
    Example:
      gpuprov sim reboot -i inventory.example train01
      gpuprov sim run -i inventory.example train01 -- systemctl status gpuprov-mig.service
    """
    from . import mig, systemctl

    host = _target(inventories, target)
    with host.locked() as machine:
        mig.reboot(machine)
        boots = machine.boot_count
    systemctl.boot(host)
    click.echo(f"{target}: rebooted (boot {boots})")


@sim.command("process")
@click.option("-i", "--inventory", "inventories", multiple=True, metavar="PATH",
              help="Act on an inventory's sim host: then the argument is the host's name.")
@click.argument("target")
@click.option("--gpu", type=int, required=True, help="GPU index the process runs on.")
@click.option("--gi", type=int, help="GPU instance ID (a process on a MIG device).")
@click.option("--ci", type=int, help="Compute instance ID (with --gi; default 0).")
@click.option("--name", default="python", show_default=True, help="Process name as nvidia-smi shows it.")
@click.option("--memory", "memory_mib", type=click.IntRange(0), default=1024, show_default=True,
              help="GPU memory it uses, MiB.")
@click.option("--remove", "remove_pid", type=int, metavar="PID", help="End the process with this PID instead.")
def process(inventories: tuple[str, ...], target: str, gpu: int, gi: int | None, ci: int | None, name: str,
            memory_mib: int, remove_pid: int | None) -> None:
    """Start (or end) a compute process on a GPU or MIG device, so "in use" paths can be rehearsed.

    \b
    Example:
      gpuprov sim process a30 --gpu 0 --gi 3 --name train.py
      gpuprov sim run a30 -- nvidia-smi mig -dgi        # refused: in use
    """
    from .machine import Process

    host = _target(inventories, target)
    with host.locked() as machine:
        if remove_pid is not None:
            before = len(machine.processes)
            machine.processes = [p for p in machine.processes if p.pid != remove_pid]
            if len(machine.processes) == before:
                raise GpuprovError(f"{target}: no process with PID {remove_pid}")
            click.echo(f"ended PID {remove_pid}")
            return
        try:
            g = machine.gpu(gpu)
        except KeyError:
            raise GpuprovError(f"{target}: no GPU {gpu} (the host has {len(machine.gpus)})") from None
        if gi is not None and not any(i.id == gi for i in g.gpu_instances):
            raise GpuprovError(f"{target}: GPU {gpu} has no GPU instance {gi}")
        proc = Process(pid=machine.allocate_pid(), name=name, gpu=gpu, gi=gi,
                       ci=(ci if ci is not None else 0) if gi is not None else None, used_memory_mib=memory_mib)
        machine.processes.append(proc)
    click.echo(f"started PID {proc.pid} on GPU {gpu}" + (f" GI {gi} CI {proc.ci}" if gi is not None else ""))
