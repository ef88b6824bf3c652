"""The SSH lab: simulated GPU servers on this machine, each reachable over real SSH.

Why: gpuprov talks to GPU servers over SSH, and no GPU, multi-socket server or network exists where it is
built and tested. The lab gives every test (ours, and those of people writing gpuprov plugins) a rack of hosts
that behave like the real thing end to end: real ``sshd``, real host keys, real ``known_hosts`` checking, a
real network path that can be cut, and ``nvidia-smi``/``systemctl``/``numactl`` answering from a simulated
machine.

Each host is

- a **network namespace** (``gpl<pid>-<lab>-<n>``) joined to this machine by a veth pair in a private ``/30``
  taken from ``10.213.0.0/16`` (override with ``GPUPROV_LAB_NETWORK``); only this machine can reach it;
- a **mount and UTS namespace** where ``/etc/systemd/system``, ``/usr/local/libexec``, ``/run`` and ``/tmp``
  start empty,
  ``/usr/local/bin`` (with the simulator's stand-ins on top), ``/etc``, ``/var/lib`` and ``/var/log``
  are copy-on-write overlays of this machine's (writes stay in the host: ``/etc/gpuprov``, ``/etc/sysctl.d``
  and whatever else a plugin writes never reach this machine), and the simulated sysfs
  (``/sys/devices/system/node``, ``/sys/bus/pci/devices``) is bound over the real paths; ``hostname`` prints
  the host's name;
- a real ``sshd`` on ``<address>:22`` with its own ed25519 host key, accepting the lab's client key for root,
  whose sessions get ``GPUPROV_SIM_STATE`` so the stand-ins act on *this* host's simulated machine.

Everything the lab owns lives in ``/var/tmp/gpuprov-lab/<lab>/`` (override the parent with
``GPUPROV_LAB_DIR``; it must not be under a path the hosts make private, such as ``/tmp``): the client key,
``known_hosts``, ``inventory.ini`` and one directory per host (``state/`` is its simulator state). Teardown
kills every process in the hosts' namespaces, deletes the veths and namespaces and removes that directory,
also when the test failed; leftovers of a crashed run (``kill -9``) are removed by the next lab that starts
(:func:`cleanup_stale`).

A plugin author's test, with the ``gpuprov_lab`` fixture this module provides as a pytest plugin::

    import pytest
    from gpuprov.testing import lab_hosts

    @pytest.mark.lab
    def test_my_plugin_sees_busy_gpu(gpuprov_lab):
        lab = gpuprov_lab(lab_hosts(2, preset="dgx-h100") + lab_hosts(1, gpu="NVIDIA A30", count=4),
                          groups={"inference": ["host3"]})
        lab.add_process("host1", gpu=0, name="python3")
        result = lab.run("host1", "nvidia-smi --query-compute-apps=pid --format=csv,noheader")
        assert result.ok
        # lab.inventory is an Ansible INI inventory: run gpuprov against it over SSH
        ...

Outside pytest, :class:`Lab` is a context manager: ``with Lab(3, preset="dgx-a100") as lab: ...``. The lab
needs root, ``ip`` (iproute2), ``unshare``/``nsenter``/``mount`` (util-linux), ``sshd`` (openssh-server) and
overlayfs. Without them a lab test skips, naming what is missing; under ``CI=true`` it fails instead.
"""

from __future__ import annotations

import atexit
import copy
import ipaddress
import itertools
import os
import pwd
import re
import selectors
import shlex
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .connection.base import Result
from .errors import GpuprovError

if TYPE_CHECKING:
    import paramiko

    from .sim.host import SimHost
    from .sim.machine import Machine

try:  # the fixtures exist when pytest does; the Lab itself works without it
    import pytest
except ImportError:  # pragma: no cover - pytest is a test dependency
    pytest = None  # type: ignore[assignment]

__all__ = [
    "HostSpec",
    "Lab",
    "LabError",
    "LabHost",
    "LabUnavailable",
    "cleanup_stale",
    "lab_hosts",
    "missing_parts",
    "require_lab",
]

DEFAULT_BASE = "/var/tmp/gpuprov-lab"
BASE_ENV = "GPUPROV_LAB_DIR"
NETWORK_ENV = "GPUPROV_LAB_NETWORK"
DEFAULT_NETWORK = "10.213.0.0/16"
NS_PREFIX = "gpl"  # network namespaces: gpl<pid>-<lab>-<host>
VETH_PREFIX = "gpv"  # root-side veths: gpv<4 hex digits>, alias "gpuprov-lab:<netns>"
ALIAS_PREFIX = "gpuprov-lab:"
SSHD = "/usr/sbin/sshd"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"
INSTALL_HINT = "apt-get install openssh-server iproute2 util-linux mount"
# Paths every lab host makes its own: the lab's files must live elsewhere to stay visible inside the hosts.
PRIVATE_PATHS = (
    "/etc/systemd/system",
    "/usr/local/bin",
    "/usr/local/libexec",  # where plugins install helper scripts: one host's must not be another's
    "/etc",  # copy-on-write: a host's /etc/gpuprov, /etc/sysctl.d ... are its own, never this machine's
    "/run",
    "/var/lib",
    "/var/log",
    "/tmp",
)
HOST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # what sshd gives root on Debian

_ns_re = re.compile(rf"^{NS_PREFIX}(\d+)-(\d+)-(\d+)$")
_lab_re = re.compile(rf"^{NS_PREFIX}(\d+)-(\d+)$")
_name_re = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_lab_counter = itertools.count()
_lab_counter_lock = threading.Lock()


class LabError(GpuprovError):
    """The lab could not be started, driven or torn down; the message names the host and the failing step."""


class LabUnavailable(LabError):
    """A part the lab needs is missing on this machine (root, a tool, a kernel feature); ``missing`` lists
    them."""

    def __init__(self, missing: list[str]) -> None:
        self.missing = missing
        super().__init__("the SSH lab cannot run here: " + "; ".join(missing))


# --------------------------------------------------------------------------------------- what's needed


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/local/sbin:/usr/sbin:/sbin:/usr/bin:/bin")


def missing_parts() -> list[str]:
    """What this machine lacks to run a lab, each with how to get it; empty when the lab can run.

    Cheap and without side effects, so a test can call it before deciding to skip (or, under CI, to fail)."""
    missing: list[str] = []
    if os.geteuid() != 0:
        missing.append(
            "root (network and mount namespaces need it): run the lab tests as root, e.g. in a VM "
            "or container with CAP_SYS_ADMIN and CAP_NET_ADMIN"
        )
    for tool, package in (
        ("ip", "iproute2"),
        ("unshare", "util-linux"),
        ("nsenter", "util-linux"),
        ("mount", "mount"),
        ("hostname", "hostname"),
    ):
        if _which(tool) is None:
            missing.append(f"{tool} (apt-get install {package})")
    if not os.access(SSHD, os.X_OK):
        missing.append(f"{SSHD} (apt-get install openssh-server)")
    elif not os.access(SFTP_SERVER, os.X_OK):
        missing.append(f"{SFTP_SERVER} (apt-get install openssh-sftp-server)")
    try:
        filesystems = Path("/proc/filesystems").read_text()
    except OSError:
        filesystems = ""
    if "overlay" not in filesystems.split():
        missing.append("the overlay filesystem (modprobe overlay)")
    try:
        import paramiko  # noqa: F401
    except ImportError:
        missing.append("paramiko (pip install paramiko)")
    return missing


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no", "off")


def require_lab() -> None:
    """In a pytest test: skip when the lab cannot run here, naming what is missing; fail under ``CI=true``.

    CI must never pass by skipping the tests that matter, so there a missing part is an error with the fix in
    it. The ``gpuprov_lab`` fixture calls this; call it yourself when you drive :class:`Lab` directly."""
    missing = missing_parts()
    if missing:
        _skip_or_fail(str(LabUnavailable(missing)))


def _skip_or_fail(message: str) -> None:
    if pytest is None:  # pragma: no cover
        raise LabError(message)
    if _in_ci():
        pytest.fail(message + " (CI=true: lab tests never skip)", pytrace=False)
    pytest.skip(message)


# ------------------------------------------------------------------------------------------ host specs


@dataclass
class HostSpec:
    """What one lab host simulates, and how it appears in the inventory.

    The machine comes from ``machine`` (used as is, renamed), else from ``sim_vars`` (inventory-style
    ``sim_*`` host variables, as for the ``sim`` connection), else from
    ``preset``/``gpu``/``count``/``numa_nodes``/``driver``/``seed`` (see
    :func:`gpuprov.sim.presets.new_machine`). ``name`` defaults to ``host<N>`` by position; ``groups`` are
    inventory groups for this host and ``vars`` extra inventory host variables."""

    name: str | None = None
    preset: str | None = None
    gpu: str | None = None
    count: int | None = None  # None: the preset's GPU count (8 on a DGX), or 1 GPU of ``gpu``
    numa_nodes: int | None = None
    driver: str | None = None
    seed: int | None = None
    machine: Machine | None = None
    sim_vars: dict[str, Any] | None = None
    groups: tuple[str, ...] = ()
    vars: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def coerce(cls, value: HostSpec | str | Mapping[str, Any] | Machine) -> HostSpec:
        """A spec from what a test wrote: a spec, a preset name, a ``Machine``, or a mapping.

        A mapping holds either spec fields (``{"preset": "dgx-a100", "groups": ["a100"]}``) or inventory host
        variables (``{"sim_gpu": "NVIDIA A30", "sim_gpu_count": 2}``); ``name``, ``groups`` and ``vars`` may
        be mixed into the latter."""
        if isinstance(value, HostSpec):
            return value
        if isinstance(value, str):
            return cls(preset=value)
        if isinstance(value, Mapping):
            data = dict(value)
            sim = {k: data.pop(k) for k in list(data) if k.startswith("sim_")}
            groups = data.pop("groups", ())
            spec = cls(**data)
            spec.groups = (groups,) if isinstance(groups, str) else tuple(groups)
            if sim:
                spec.sim_vars = sim
            return spec
        if hasattr(value, "gpus") and hasattr(value, "numa_nodes"):
            return cls(machine=value)
        raise TypeError(
            f"not a lab host description: {value!r} (a HostSpec, preset name, Machine or mapping)"
        )

    def build(self, hostname: str) -> Machine:
        """The simulated machine for a host called ``hostname``."""
        if self.machine is not None:
            machine = copy.deepcopy(self.machine)
            machine.hostname = hostname
            return machine
        if self.sim_vars is not None:
            from .sim.presets import machine_from_vars

            return machine_from_vars(hostname, dict(self.sim_vars))
        from .sim.presets import new_machine

        return new_machine(
            preset=self.preset,
            gpu=self.gpu,
            count=self.count,
            numa_nodes=self.numa_nodes,
            driver=self.driver,
            hostname=hostname,
            seed=self.seed,
        )


def lab_hosts(
    n: int,
    *,
    preset: str | None = None,
    gpu: str | None = None,
    count: int | None = None,
    numa_nodes: int | None = None,
    driver: str | None = None,
    seed: int | None = None,
    groups: Iterable[str] = (),
    vars: Mapping[str, Any] | None = None,
) -> list[HostSpec]:
    """``n`` alike host specs; add lists together for a mixed rack.

    ``lab_hosts(4, preset="dgx-h100", groups=["h100"]) + lab_hosts(2, gpu="NVIDIA A30", count=2)`` describes
    six hosts named ``host1``..``host6`` by the lab. ``seed``, when given, is offset per host so serials
    differ."""
    if n < 0:
        raise ValueError(f"a lab has zero or more hosts, not {n}")
    return [
        HostSpec(
            preset=preset,
            gpu=gpu,
            count=count,
            numa_nodes=numa_nodes,
            driver=driver,
            seed=None if seed is None else seed + i,
            groups=tuple(groups),
            vars=dict(vars or {}),
        )
        for i in range(n)
    ]


# ------------------------------------------------------------------------------------------- lab hosts


@dataclass
class LabHost:
    """One running lab host. ``address`` is where its sshd listens (port 22); ``state_dir`` holds its
    simulator state; ``sim`` edits that state (``with host.sim.locked() as machine: ...``)."""

    name: str
    index: int
    netns: str
    veth: str
    address: str
    gateway: str  # this machine's end of the veth
    dir: Path
    spec: HostSpec
    groups: tuple[str, ...] = ()
    keeper: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    sshd: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    host_key_line: str = ""

    @property
    def state_dir(self) -> Path:
        return self.dir / "state"

    @property
    def sim(self) -> SimHost:
        from .sim.host import SimHost

        return SimHost(self.state_dir, "/")

    @property
    def machine(self) -> Machine:
        """A fresh read of the host's simulated machine."""
        return self.sim.load()

    @property
    def sshd_config(self) -> Path:
        return self.dir / "ssh" / "sshd_config"

    @property
    def sshd_log(self) -> Path:
        return self.dir / "sshd.log"

    @property
    def keeper_pid(self) -> int:
        """A process that holds the host's namespaces for as long as the host exists (``nsenter -t`` it)."""
        if self.keeper is None or self.keeper.poll() is not None:
            raise LabError(f"{self.name}: the host is not running (its namespace holder is gone)")
        return self.keeper.pid

    def path(self, host_path: str) -> Path:
        """Where the host's ``/etc/systemd/system/...``, ``/run/...`` or ``/tmp/...`` file lives here.

        Only those start empty and are kept in the lab directory; read other paths with :meth:`Lab.run`."""
        for private, local in (
            ("/etc/systemd/system", "etc-systemd-system"),
            ("/run", "run"),
            ("/tmp", "tmp"),
        ):
            if host_path == private or host_path.startswith(private + "/"):
                return self.dir / "fs" / local / host_path[len(private) :].lstrip("/")
        raise ValueError(
            f"{self.name}: {host_path} is not kept in the lab directory; use lab.run(host, 'cat ...')"
        )


HostRef = str | LabHost


# ------------------------------------------------------------------------------------------------- Lab


class Lab:
    """N simulated GPU hosts on this machine, each with its own network, file tree and real ``sshd``.

    ``hosts`` is a count (all alike, described by the keyword arguments) or a list of per-host descriptions
    (:class:`HostSpec`, a preset name, a ``Machine``, or a mapping; see :meth:`HostSpec.coerce`). ``groups``
    maps inventory group names to host names, on top of each spec's own ``groups``.

    ::

        with Lab(lab_hosts(2, preset="dgx-a100") + ["dgx-h100"], groups={"train": ["host1", "host2"]}) as lab:
            client = lab.ssh("host3")           # paramiko, host key checked against lab.known_hosts
            print(lab.inventory.read_text())    # hostN ansible_host=10.213.x.y ansible_user=root ...
            lab.link_down("host2")              # host2 is now unreachable; link_up() brings it back
    """

    def __init__(
        self,
        hosts: int | Sequence[HostSpec | str | Mapping[str, Any] | Machine] = 1,
        *,
        preset: str | None = None,
        gpu: str | None = None,
        count: int | None = None,
        numa_nodes: int | None = None,
        driver: str | None = None,
        seed: int | None = None,
        groups: Mapping[str, Iterable[str]] | None = None,
        base_dir: str | Path | None = None,
        start_timeout: float = 30.0,
    ) -> None:
        if isinstance(hosts, int):
            specs = lab_hosts(
                hosts, preset=preset, gpu=gpu, count=count, numa_nodes=numa_nodes, driver=driver, seed=seed
            )
        else:
            if any(v is not None for v in (preset, gpu, count, numa_nodes, driver, seed)):
                raise TypeError(
                    "pass machine details either as keywords with a host count or inside the host list"
                )
            specs = [HostSpec.coerce(h) for h in hosts]
        self.specs = specs
        self.extra_groups = {g: list(names) for g, names in (groups or {}).items()}
        self.base_dir = Path(base_dir or os.environ.get(BASE_ENV) or DEFAULT_BASE)
        self.start_timeout = start_timeout
        with _lab_counter_lock:
            serial = next(_lab_counter)
        self.name = f"{NS_PREFIX}{os.getpid()}-{serial}"
        self.dir = self.base_dir / self.name
        self.hosts: list[LabHost] = []
        self.started = False
        self.closed = False
        self.start_seconds = 0.0  # how long start() took, sshds accepting included
        self.stop_seconds = 0.0  # how long close() took
        self._atexit: Callable[[], None] | None = None
        self._names = self._assign_names(specs)

    # -------------------------------------------------------------------------------------- properties

    @property
    def client_key(self) -> Path:
        """The private key (OpenSSH ed25519) every host accepts for root."""
        return self.dir / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        """A ``known_hosts`` with every host's key, for ``UserKnownHostsFile`` / paramiko's
        ``load_host_keys``."""
        return self.dir / "known_hosts"

    @property
    def inventory(self) -> Path:
        """The lab's Ansible INI inventory, written at start (see :meth:`write_inventory` for other
        groupings)."""
        return self.dir / "inventory.ini"

    @property
    def names(self) -> list[str]:
        return [h.name for h in self.hosts]

    def host(self, host: HostRef) -> LabHost:
        """A host by name (or the host itself)."""
        if isinstance(host, LabHost):
            return host
        for h in self.hosts:
            if h.name == host:
                return h
        raise KeyError(f"no lab host {host!r}; the lab has {', '.join(self.names) or 'no hosts'}")

    def __iter__(self) -> Iterator[LabHost]:
        return iter(self.hosts)

    def __len__(self) -> int:
        return len(self.hosts)

    def __enter__(self) -> Lab:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------- start

    @staticmethod
    def _assign_names(specs: list[HostSpec]) -> list[str]:
        taken = {s.name for s in specs if s.name}
        names: list[str] = []
        counter = 0
        for spec in specs:
            if spec.name:
                if not _name_re.match(spec.name):
                    raise ValueError(f"lab host name {spec.name!r}: use letters, digits, '-', '_' and '.'")
                name = spec.name
            else:
                counter += 1
                while f"host{counter}" in taken:
                    counter += 1
                name = f"host{counter}"
                taken.add(name)
            if name in names:
                raise ValueError(f"two lab hosts are named {name!r}")
            names.append(name)
        return names

    def _check_paths(self) -> None:
        import sys

        def private(path: str) -> str | None:
            for p in PRIVATE_PATHS:
                if path == p or path.startswith(p + "/"):
                    return p
            return None

        base = str(self.base_dir.resolve())
        hidden = private(base)
        if hidden:
            raise LabError(
                f"the lab directory {base} is under {hidden}, which every lab host replaces with its "
                f"own; set {BASE_ENV} to a directory elsewhere (default {DEFAULT_BASE})"
            )
        if re.search(r"[\s,:'\"\\]", base):
            raise LabError(f"the lab directory {base} must not contain blanks, quotes, ',' or ':'")
        package = str(Path(__file__).resolve().parents[1])
        for what, path in (("the gpuprov package", package), ("the Python interpreter", sys.executable)):
            hidden = private(os.path.realpath(path))
            # overlays keep what lies beneath visible; emptied paths get gpuprov's own code bound back
            if hidden and hidden not in ("/usr/local/bin", "/etc", "/var/lib", "/var/log", "/tmp", "/run"):
                raise LabError(
                    f"{what} at {path} is under {hidden}, which every lab host replaces with its own, "
                    "so the stand-ins could not run there; install gpuprov elsewhere (a venv in /opt)"
                )

    def start(self) -> Lab:
        """Create the hosts, start their sshds in parallel and wait until each accepts connections."""
        if self.started:
            return self
        missing = missing_parts()
        if missing:
            raise LabUnavailable(missing)
        self._check_paths()
        self.started = True
        self._atexit = self.close
        atexit.register(self._atexit)
        t0 = time.monotonic()
        try:
            self.base_dir.mkdir(parents=True, exist_ok=True)
            os.chmod(self.base_dir, 0o755)
            with _base_lock(self.base_dir):
                cleanup_stale(self.base_dir, _locked=True)
                self.dir.mkdir(mode=0o755)
                (self.dir / "owner").write_text(f"{os.getpid()} {_start_time(os.getpid())}\n")
                subnets = _allocate_subnets(len(self.specs))
                for i, (spec, name, subnet) in enumerate(
                    zip(self.specs, self._names, subnets, strict=True), 1
                ):
                    hosts = list(subnet.hosts())
                    self.hosts.append(
                        LabHost(
                            name=name,
                            index=i,
                            netns=f"{self.name}-{i}",
                            veth=f"{VETH_PREFIX}{_subnet_index(subnet):04x}",
                            address=str(hosts[1]),
                            gateway=str(hosts[0]),
                            dir=self.dir / name,
                            spec=spec,
                            groups=tuple(spec.groups),
                        )
                    )
                self._create_links()
            self._write_client_key()
            from .sim.commands import load_all

            load_all()  # import the stand-ins once, before the threads write their shims
            with ThreadPoolExecutor(max_workers=min(16, max(1, len(self.hosts)))) as pool:
                list(pool.map(self._start_host, self.hosts))
            self._write_known_hosts()
            deadline = t0 + self.start_timeout
            for h in self.hosts:
                self._wait_port(h, deadline)
            self.write_inventory()
        except BaseException:
            self.close()
            raise
        self.start_seconds = time.monotonic() - t0
        return self

    def _create_links(self) -> None:
        lines: list[str] = []
        for h in self.hosts:
            lines += [
                f"netns add {h.netns}",
                f"link add {h.veth} type veth peer name eth0 netns {h.netns}",
                f"link set {h.veth} alias {ALIAS_PREFIX}{h.netns}",
                f"addr add {h.gateway}/30 dev {h.veth}",
                f"link set {h.veth} up",
            ]
        _ip_batch(lines)

    def _write_client_key(self) -> None:
        private, public = _ed25519_pair(f"gpuprov-lab-{self.name}")
        _write(self.client_key, private, 0o600)
        _write(self.client_key.with_suffix(".pub"), public + "\n", 0o644)
        _write(self.dir / "authorized_keys", public + "\n", 0o644)

    def _write_known_hosts(self) -> None:
        # For port 22 OpenSSH and paramiko both look the bare address up ("[addr]:22" would never match).
        lines = [f"{h.address} {h.host_key_line}\n" for h in self.hosts]
        _write(self.known_hosts, "".join(lines), 0o644)

    def _start_host(self, h: LabHost) -> None:
        from .sim.shims import install_shims
        from .sim.sysfs import write_sysfs

        for sub in ("state", "ssh", "shims", "fs/etc-systemd-system", "fs/usr-local-libexec", "fs/run/sshd", "fs/tmp",
                    "fs/upper"):
            (h.dir / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(h.dir / "fs" / "tmp", 0o1777)
        machine = h.spec.build(h.name)
        machine.hostname = h.name
        sim = h.sim
        sim.save(machine)
        write_sysfs(machine, h.state_dir / "sysfs")  # where the stand-ins refresh it (sysfs.ensure_sysfs)
        install_shims(h.dir / "shims")
        private, public = _ed25519_pair(f"root@{h.name}")
        _write(h.dir / "ssh" / "ssh_host_ed25519_key", private, 0o600)
        _write(h.dir / "ssh" / "ssh_host_ed25519_key.pub", public + "\n", 0o644)
        h.host_key_line = " ".join(public.split()[:2])
        _write(h.sshd_config, self._sshd_config(h), 0o644)
        self._start_keeper(h)
        self.start_sshd(h, wait=False)

    def _sshd_config(self, h: LabHost) -> str:
        return f"""\
# sshd of lab host {h.name} ({self.name}); written by gpuprov.testing, removed at teardown
Port 22
ListenAddress {h.address}:22
AddressFamily inet
HostKey {h.dir}/ssh/ssh_host_ed25519_key
PidFile {h.dir}/ssh/sshd.pid
PermitRootLogin prohibit-password
PubkeyAuthentication yes
AuthorizedKeysFile {self.dir}/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
PrintMotd no
PrintLastLog no
X11Forwarding no
MaxStartups 100:30:200
MaxSessions 100
LoginGraceTime 30
Subsystem sftp {SFTP_SERVER}
SetEnv GPUPROV_SIM_STATE={h.state_dir} GPUPROV_SIM_ROOT=/
"""

    def _setup_script(self, h: LabHost) -> str:
        q = shlex.quote
        d = h.dir
        lines = [
            "set -e",
            f"hostname {q(h.name)}",
            "ip link set lo up",
            f"ip addr add {h.address}/30 dev eth0",
            "ip link set eth0 up",
            # copies of /run/netns/* (other hosts and labs) would keep those namespaces alive while this lives
            "if mountpoint -q /run/netns; then umount -R -l /run/netns; fi",
            f"mount -t tmpfs -o mode=0755,size=512m gpuprov-lab {q(str(d / 'fs/upper'))}",
        ]

        def overlay(target: str, lower: str) -> None:
            upper, work = (
                d / "fs/upper" / target.strip("/").replace("/", "-"),
                d / "fs/upper" / (target.strip("/").replace("/", "-") + ".work"),
            )
            lines.extend(
                [
                    f"mkdir -p {q(str(upper))} {q(str(work))}",
                    f"chmod --reference={q(target)} {q(str(upper))}",
                    f"chown --reference={q(target)} {q(str(upper))}",
                    f"mount -t overlay gpuprov-lab -o lowerdir={lower},upperdir={upper},workdir={work} "
                    f"{q(target)}",
                ]
            )

        overlay("/usr/local/bin", f"{d}/shims:/usr/local/bin")
        for target in ("/etc", "/var/lib", "/var/log"):  # /etc first: /etc/systemd/system is emptied inside it
            overlay(target, target)
        emptied = (("/etc/systemd/system", "etc-systemd-system"), ("/usr/local/libexec", "usr-local-libexec"),
                   ("/run", "run"), ("/tmp", "tmp"))
        # gpuprov itself (a checkout CI cloned under /tmp, say) must stay visible where the host empties a path:
        # hold it aside before the path is replaced and bind it back afterwards.
        kept = [path for path in _code_paths() if any(path == t or path.startswith(t + "/") for t, _ in emptied)]
        for i, path in enumerate(kept):
            hold = q(str(d / "fs" / f"keep{i}"))
            lines += [f"mkdir -p {hold}", f"mount --bind {q(path)} {hold}"]
        for target, local in emptied:
            # /usr/local/libexec may not exist here yet: an empty directory is what a fresh server has too
            lines.append(f"mkdir -p {q(target)} && mount --bind {q(str(d / 'fs' / local))} {q(target)}")
        for i, path in enumerate(kept):
            lines += [f"mkdir -p {q(path)}", f"mount --bind {q(str(d / 'fs' / f'keep{i}'))} {q(path)}"]
        home = pwd.getpwuid(0).pw_dir or "/root"
        for dot in ("bashrc", "profile"):
            # bash sources ~/.bashrc for every command sshd runs: this machine's (pyenv, conda...) would slow
            # each one and is not what a fresh server has, so the host gets Debian's defaults for root.
            default = Path(f"/usr/share/base-files/dot.{dot}")
            if default.is_file() and Path(home, f".{dot}").is_file():
                lines.append(f"mount --bind {default} {q(f'{home}/.{dot}')}")
        if _root_locked():
            # sshd without PAM refuses a locked account ('!' in shadow) even for key logins: unlock it here.
            shadow = d / "fs" / "shadow"
            shadow.write_text(_unlocked_shadow())
            os.chmod(shadow, 0o640)
            lines.append(f"mount --bind {q(str(shadow))} /etc/shadow")
        for source, target in _sysfs_binds(h.state_dir / "sysfs"):
            if source.exists():  # a path this kernel lacks (no NUMA balancing) stays absent in the host too
                lines.append(f"if [ -e {q(target)} ]; then mount --bind {q(str(source))} {q(target)}; fi")
        lines += ["echo ready", "exec sleep infinity </dev/null >/dev/null 2>&1"]
        return "\n".join(lines) + "\n"

    def _start_keeper(self, h: LabHost) -> None:
        log = open(h.dir / "setup.log", "wb")  # noqa: SIM115 - handed to the child
        try:
            h.keeper = subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    h.netns,
                    "unshare",
                    "--mount",
                    "--uts",
                    "--propagation",
                    "private",
                    "--",
                    "/bin/sh",
                    "-c",
                    self._setup_script(h),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,
            )
        finally:
            log.close()
        assert h.keeper.stdout is not None
        line = _read_line(h.keeper.stdout, timeout=self.start_timeout)
        h.keeper.stdout.close()
        if line != b"ready\n":
            with suppress(ProcessLookupError):
                h.keeper.kill()
            h.keeper.wait(5)
            raise LabError(f"{h.name}: setting up its namespaces failed: {_tail(h.dir / 'setup.log')}")

    def _wait_port(self, h: LabHost, deadline: float) -> None:
        attempts = 0
        last = "no attempt"
        while attempts < 2000:
            attempts += 1
            if h.sshd is not None and h.sshd.poll() is not None:
                raise LabError(f"{h.name}: sshd exited with {h.sshd.returncode}: {_tail(h.sshd_log)}")
            try:
                with socket.create_connection((h.address, 22), timeout=1.0) as s:
                    s.settimeout(2.0)
                    if s.recv(64).startswith(b"SSH-"):
                        return
                    last = "no SSH banner"
            except OSError as exc:
                last = str(exc)
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
        raise LabError(
            f"{h.name}: sshd on {h.address}:22 did not accept connections in time ({last}); "
            f"log: {_tail(h.sshd_log)}"
        )

    # --------------------------------------------------------------------------------------- inventory

    def write_inventory(
        self,
        path: str | Path | None = None,
        *,
        groups: Mapping[str, Iterable[str]] | None = None,
        vars: Mapping[str, Any] | None = None,
    ) -> Path:
        """Write an Ansible INI inventory of the lab's hosts and return its path (default :attr:`inventory`).

        Each host line carries ``ansible_host``, ``ansible_user=root``, the lab's private key and
        ``ansible_ssh_common_args`` pointing at the lab's ``known_hosts`` with strict checking, so gpuprov (or
        ``ansible``) reaches the hosts over SSH with their keys verified. Groups are the specs' groups, those
        given to the lab, and ``groups`` here; ``vars`` go to ``[all:vars]``."""
        target = Path(path) if path is not None else self.inventory
        members: dict[str, list[str]] = {}
        for h in self.hosts:
            for g in h.groups:
                members.setdefault(g, []).append(h.name)
        for source in (self.extra_groups, groups or {}):
            for g, names in source.items():
                for n in names:
                    self.host(n)  # an unknown name is an error here, not a silent empty group
                    if n not in members.setdefault(g, []):
                        members[g].append(n)
        ssh_args = f"-o UserKnownHostsFile={self.known_hosts} -o StrictHostKeyChecking=yes"
        out = [
            f"# gpuprov lab {self.name}: {len(self.hosts)} simulated hosts, reachable over SSH from here\n"
        ]
        for h in self.hosts:
            hv: dict[str, Any] = {
                "ansible_host": h.address,
                "ansible_port": 22,
                "ansible_user": "root",
                "ansible_connection": "ssh",
                "ansible_ssh_private_key_file": str(self.client_key),
                "ansible_ssh_common_args": ssh_args,
            }
            hv.update(h.spec.vars)
            out.append(h.name + "".join(f" {k}={_ini_value(v)}" for k, v in hv.items()) + "\n")
        for g, names in members.items():
            out.append(f"\n[{g}]\n" + "".join(n + "\n" for n in names))
        if vars:
            out.append("\n[all:vars]\n" + "".join(f"{k}={v}\n" for k, v in vars.items()))
        _write(target, "".join(out), 0o644)
        return target

    # ----------------------------------------------------------------------------------- driving hosts

    def run(
        self,
        host: HostRef,
        command: str,
        *,
        stdin: str | bytes | None = None,
        timeout: float = 60.0,
        check: bool = False,
    ) -> Result:
        """Run a shell command line inside the host — its network, file tree and hostname — as an SSH session
        would (root's shell, the same ``PATH`` and ``GPUPROV_SIM_*``), without SSH: for test assertions.

        ``check=True`` raises :class:`LabError` when the command exits non-zero."""
        h = self.host(host)
        shell = pwd.getpwuid(0).pw_shell or "/bin/sh"
        env = {
            "PATH": HOST_PATH,
            "HOME": "/root",
            "USER": "root",
            "LOGNAME": "root",
            "SHELL": shell,
            "LANG": "C.UTF-8",
            "GPUPROV_SIM_STATE": str(h.state_dir),
            "GPUPROV_SIM_ROOT": "/",
        }
        data = stdin.encode() if isinstance(stdin, str) else stdin
        try:
            proc = subprocess.run(
                [
                    "nsenter",
                    "--target",
                    str(h.keeper_pid),
                    "--mount",
                    "--net",
                    "--uts",
                    "--wd=/root",
                    shell,
                    "-c",
                    command,
                ],
                input=data,
                stdin=None if data is not None else subprocess.DEVNULL,
                capture_output=True,
                env=env,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            raise LabError(f"{h.name}: {command!r} did not finish within {timeout}s") from None
        result = Result(
            proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace"), proc.returncode
        )
        if check and not result.ok:
            raise LabError(f"{h.name}: {command!r} exited {result.exit_code}: {result.stderr.strip()}")
        return result

    def ssh(self, host: HostRef, *, timeout: float = 10.0) -> paramiko.SSHClient:
        """A connected paramiko client for root on ``host``; unknown host keys are refused (``RejectPolicy``).

        The caller closes it (it is a context manager)."""
        import paramiko

        h = self.host(host)
        client = paramiko.SSHClient()
        client.get_host_keys().load(str(self.known_hosts))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.connect(
                h.address,
                port=22,
                username="root",
                key_filename=str(self.client_key),
                timeout=timeout,
                banner_timeout=timeout,
                auth_timeout=timeout,
                allow_agent=False,
                look_for_keys=False,
            )
        except BaseException:
            client.close()
            raise
        return client

    def link_down(self, host: HostRef) -> None:
        """Cut the host off the network: connections to it time out, as to a crashed or unplugged node.

        The host's end of the veth goes down; this machine's end and its route stay, so packets are dropped on
        the link rather than sent towards the default gateway."""
        h = self.host(host)
        _ip(["-n", h.netns, "link", "set", "eth0", "down"])

    def link_up(self, host: HostRef, *, wait: float = 10.0) -> None:
        """Reconnect a host taken down with :meth:`link_down`, and wait (up to ``wait`` s) until sshd
        answers."""
        h = self.host(host)
        _ip(["-n", h.netns, "link", "set", "eth0", "up"])
        if wait and h.sshd is not None and h.sshd.poll() is None:
            self._wait_port(h, time.monotonic() + wait)

    def stop_sshd(self, host: HostRef) -> None:
        """Stop the host's sshd listener (connections are refused); open sessions live on, as with
        ``systemctl stop ssh`` on Debian."""
        h = self.host(host)
        if h.sshd is None:
            return
        if h.sshd.poll() is None:
            h.sshd.terminate()
            try:
                h.sshd.wait(5)
            except subprocess.TimeoutExpired:
                h.sshd.kill()
                h.sshd.wait(5)
        h.sshd = None

    def start_sshd(self, host: HostRef, *, wait: bool | float = True) -> None:
        """Start the host's sshd (again); with ``wait`` (seconds, default 10) return once it accepts."""
        h = self.host(host)
        if h.sshd is not None and h.sshd.poll() is None:
            return
        with open(h.sshd_log, "ab") as log:
            h.sshd = subprocess.Popen(
                [
                    "nsenter",
                    "--target",
                    str(h.keeper_pid),
                    "--mount",
                    "--net",
                    "--uts",
                    "--wd=/",
                    SSHD,
                    "-D",
                    "-e",
                    "-f",
                    str(h.sshd_config),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                env={"PATH": HOST_PATH, "LANG": "C.UTF-8"},
            )
        if wait:
            self._wait_port(h, time.monotonic() + (10.0 if wait is True else float(wait)))

    def add_process(
        self,
        host: HostRef,
        gpu: int,
        gi: int | None = None,
        ci: int | None = None,
        *,
        name: str = "python3",
        used_memory_mib: int = 1024,
        type: str = "C",
        user: str = "root",
    ) -> int:
        """Place a simulated process on GPU ``gpu`` (or on its MIG device ``gi``/``ci``); returns its PID.

        The stand-ins then report the GPU as in use (``nvidia-smi`` lists it; MIG changes and resets are
        refused), which is how a test reaches a plugin's "GPU busy" paths."""
        from .sim.machine import Process

        h = self.host(host)
        with h.sim.locked() as machine:
            try:
                g = machine.gpu(gpu)
            except KeyError:
                raise LabError(f"{h.name}: no GPU {gpu}; it has {len(machine.gpus)}") from None
            if ci is not None and gi is None:
                raise LabError(f"{h.name}: a compute instance needs its GPU instance (gi=...)")
            if gi is not None:
                inst = next((x for x in g.gpu_instances if x.id == gi), None)
                if inst is None:
                    raise LabError(f"{h.name}: GPU {gpu} has no GPU instance {gi}")
                if ci is not None and not any(c.id == ci for c in inst.compute_instances):
                    raise LabError(f"{h.name}: GPU {gpu} instance {gi} has no compute instance {ci}")
            pid = machine.allocate_pid()
            machine.processes.append(
                Process(
                    pid=pid,
                    name=name,
                    gpu=gpu,
                    gi=gi,
                    ci=ci,
                    type=type,
                    used_memory_mib=used_memory_mib,
                    user=user,
                )
            )
        return pid

    def remove_process(self, host: HostRef, pid: int) -> None:
        """End a process placed with :meth:`add_process`."""
        h = self.host(host)
        with h.sim.locked() as machine:
            before = len(machine.processes)
            machine.processes[:] = [p for p in machine.processes if p.pid != pid]
            if len(machine.processes) == before:
                raise LabError(f"{h.name}: no simulated process {pid}")

    # ---------------------------------------------------------------------------------------- teardown

    def close(self) -> None:
        """Tear the lab down: kill every process in its hosts, delete veths and namespaces, remove its files.

        Safe to call twice and after a failed start; errors are collected and raised once everything was
        tried."""
        if self.closed:
            return
        self.closed = True
        if self._atexit is not None:
            atexit.unregister(self._atexit)
            self._atexit = None
        t0 = time.monotonic()
        errors = _teardown(
            self.dir,
            [h.netns for h in self.hosts],
            [h.veth for h in self.hosts],
            [p for h in self.hosts for p in (h.sshd, h.keeper) if p is not None],
        )
        self.stop_seconds = time.monotonic() - t0
        if errors:
            raise LabError(f"lab {self.name}: teardown left something behind: " + "; ".join(errors))


# ------------------------------------------------------------------------------------ teardown helpers


def _code_paths() -> list[str]:
    """Directories the stand-ins need inside a lab host: gpuprov's own tree and the Python installation."""
    import sys

    paths = {str(Path(__file__).resolve().parents[1]), os.path.realpath(sys.prefix)}
    return sorted(paths)


def _netns_inodes(names: Iterable[str]) -> dict[tuple[int, int], str]:
    found: dict[tuple[int, int], str] = {}
    for ns in names:
        with suppress(OSError):
            st = os.stat(f"/run/netns/{ns}")
            found[(st.st_dev, st.st_ino)] = ns
    return found


def _lab_pids(netns: Iterable[str], lab_dir: Path) -> set[int]:
    """Processes in the lab's network namespaces or naming its directory on their command line."""
    inodes = _netns_inodes(netns)
    marker = (str(lab_dir) + "/").encode()
    me = os.getpid()
    pids: set[int] = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        pid = int(entry.name)
        try:
            st = os.stat(f"/proc/{pid}/ns/net")
            if (st.st_dev, st.st_ino) in inodes:
                pids.add(pid)
                continue
        except OSError:
            pass
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if marker in f.read():
                    pids.add(pid)
        except OSError:
            pass
    return pids


def _teardown(
    lab_dir: Path, netns: list[str], veths: list[str], procs: list[subprocess.Popen[bytes]]
) -> list[str]:
    errors: list[str] = []
    for p in procs:
        with suppress(ProcessLookupError, OSError):
            os.killpg(p.pid, signal.SIGKILL)
        with suppress(ProcessLookupError, OSError):
            p.kill()
    deadline = time.monotonic() + 10
    for _ in range(200):
        pids = _lab_pids(netns, lab_dir)
        for pid in pids:
            with suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        for p in procs:
            with suppress(subprocess.TimeoutExpired, OSError):
                p.wait(0)
        if not pids or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    left = _lab_pids(netns, lab_dir)
    if left:
        errors.append(f"processes still alive: {sorted(left)}")
    # Links are matched by their alias (the namespace they lead to), never by name alone: a name is reused by
    # the next lab as soon as its subnet is free. Deleting a namespace also destroys the veth pair into it.
    ours = set(netns)
    lines = [f"link del {link}" for link, ns in _lab_links().items() if ns in ours and link in veths]
    present = set(_list_netns())
    lines += [f"netns del {n}" for n in netns if n in present]
    if lines:
        try:
            _ip_batch(lines, force=True)
        except LabError as exc:
            errors.append(str(exc))
    leftover = [n for n in netns if n in set(_list_netns())]
    leftover += [link for link, ns in _lab_links().items() if ns in ours]
    if leftover:
        errors.append(f"namespaces or links still present: {leftover}")
    for mount in reversed(_mounts_under(lab_dir)):
        subprocess.run(["umount", "-l", mount], capture_output=True)
    if _mounts_under(lab_dir):
        errors.append(f"mounts left under {lab_dir}: {_mounts_under(lab_dir)}")
    if lab_dir.exists():
        try:
            shutil.rmtree(lab_dir)
        except OSError as exc:
            errors.append(f"cannot remove {lab_dir}: {exc}")
    return errors


def _mounts_under(directory: Path) -> list[str]:
    prefix = str(directory)
    found = []
    with suppress(OSError), open("/proc/self/mounts", encoding="utf-8") as f:
        for line in f:
            target = line.split()[1].replace("\\040", " ")
            if target == prefix or target.startswith(prefix + "/"):
                found.append(target)
    return found


def _list_netns() -> list[str]:
    try:
        return sorted(os.listdir("/run/netns"))
    except OSError:
        return []


def _lab_links() -> dict[str, str]:
    """Root-namespace links made by a lab: name -> the namespace named in its alias."""
    proc = subprocess.run(["ip", "-o", "link", "show", "type", "veth"], capture_output=True, text=True)
    links: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        m = re.match(r"\d+:\s+([^:@\s]+)", line)
        alias = re.search(r"alias (\S+)", line)
        if m and m.group(1).startswith(VETH_PREFIX):
            links[m.group(1)] = (
                alias.group(1)[len(ALIAS_PREFIX) :]
                if alias and alias.group(1).startswith(ALIAS_PREFIX)
                else ""
            )
    return links


def _start_time(pid: int) -> str:
    """A process's start time in clock ticks, so a recycled PID is not mistaken for a live lab's owner."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]


def _owner_alive(base: Path, lab: str, pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    if state in ("Z", "X"):  # killed, not yet reaped: its lab is as good as orphaned
        return False
    try:
        owner = (base / lab / "owner").read_text().split()
    except OSError:
        return True  # no record to compare with: a live PID is taken at its word
    return len(owner) == 2 and owner[0] == str(pid) and owner[1] == _start_time(pid)


def cleanup_stale(base_dir: str | Path | None = None, *, _locked: bool = False) -> list[str]:
    """Remove what labs of crashed runs left on this machine; return what was removed.

    A lab belongs to the process whose PID is in its name (``gpl<pid>-<n>``); when that process is gone (or
    the PID was reused, judged by its start time), its processes, namespaces, veths, mounts and directory are
    removed. Labs of live processes — other test runs in parallel — are left alone. Every :class:`Lab` calls
    this on start.
    """
    base = Path(base_dir or os.environ.get(BASE_ENV) or DEFAULT_BASE)
    if not _locked:
        base.mkdir(parents=True, exist_ok=True)
        with _base_lock(base):
            return cleanup_stale(base, _locked=True)
    stale: dict[str, tuple[list[str], list[str]]] = {}

    def lab_of(ns: str) -> str | None:
        m = _ns_re.match(ns)
        if not m:
            return None
        lab = f"{NS_PREFIX}{m.group(1)}-{m.group(2)}"
        return None if _owner_alive(base, lab, int(m.group(1))) else lab

    for ns in _list_netns():
        lab = lab_of(ns)
        if lab:
            stale.setdefault(lab, ([], []))[0].append(ns)
    for link, ns in _lab_links().items():
        lab = lab_of(ns) if ns else None
        if lab:
            stale.setdefault(lab, ([], []))[1].append(link)
    with suppress(OSError):
        for entry in base.iterdir():
            m = _lab_re.match(entry.name)
            if m and entry.is_dir() and not _owner_alive(base, entry.name, int(m.group(1))):
                stale.setdefault(entry.name, ([], []))
    removed: list[str] = []
    for lab, (namespaces, links) in sorted(stale.items()):
        _teardown(base / lab, namespaces, links, [])
        removed.append(lab)
    return removed


# ------------------------------------------------------------------------------------------- utilities


@contextmanager
def _base_lock(base: Path) -> Iterator[None]:
    """Serialise labs of concurrent test runs while they clean up and pick subnets."""
    import fcntl

    with open(base / ".lock", "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _pool() -> ipaddress.IPv4Network:
    raw = os.environ.get(NETWORK_ENV) or DEFAULT_NETWORK
    try:
        net = ipaddress.IPv4Network(raw)
    except ValueError as exc:
        raise LabError(f"{NETWORK_ENV}={raw!r} is not an IPv4 network: {exc}") from None
    if not net.is_private or net.prefixlen > 30 or net.prefixlen < 16:
        raise LabError(f"{NETWORK_ENV}={raw}: use a private IPv4 network between /16 and /30")
    return net


def _subnet_index(subnet: ipaddress.IPv4Network) -> int:
    return (int(subnet.network_address) - int(_pool().network_address)) >> 2


def _used_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 destination this machine routes (all tables) or has an address in, the default route
    aside."""
    used: list[ipaddress.IPv4Network] = []
    for args in (["-4", "-o", "route", "show", "table", "all"], ["-4", "-o", "addr", "show"]):
        proc = subprocess.run(["ip", *args], capture_output=True, text=True)
        for line in proc.stdout.splitlines():
            words = line.split()
            if args[2] == "addr":
                words = words[3:] if len(words) > 3 and words[2] == "inet" else []
            elif words and words[0] in (
                "local",
                "broadcast",
                "unicast",
                "multicast",
                "blackhole",
                "unreachable",
                "prohibit",
                "throw",
                "anycast",
                "nat",
            ):
                words = words[1:]
            if not words or words[0] == "default":
                continue
            with suppress(ValueError):
                used.append(ipaddress.IPv4Network(words[0], strict=False))
    return used


def _allocate_subnets(n: int) -> list[ipaddress.IPv4Network]:
    """``n`` free /30s of the lab pool (called under the base lock, so concurrent labs never collide)."""
    pool = _pool()
    used = _used_networks()
    free: list[ipaddress.IPv4Network] = []
    for subnet in pool.subnets(new_prefix=30):
        if not any(subnet.overlaps(u) for u in used):
            free.append(subnet)
            if len(free) == n:
                return free
    raise LabError(
        f"no {n} free /30 subnets left in {pool} (something else routes into it); set {NETWORK_ENV} "
        "to another private network"
    )


def _ip(args: list[str]) -> None:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise LabError(f"ip {' '.join(args)} failed: {proc.stderr.strip()}")


def _ip_batch(lines: list[str], *, force: bool = False) -> None:
    proc = subprocess.run(
        ["ip", *(["-force"] if force else []), "-batch", "-"],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        if "Operation not permitted" in proc.stderr:
            raise LabUnavailable(
                [
                    f"permission to create network namespaces ({proc.stderr.strip()}); run as root "
                    "with CAP_SYS_ADMIN and CAP_NET_ADMIN"
                ]
            )
        raise LabError(f"ip -batch failed: {proc.stderr.strip()}")


def _ed25519_pair(comment: str) -> tuple[str, str]:
    """A new ed25519 key as (OpenSSH private key text, ``ssh-ed25519 AAAA... comment``)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    return private, f"{public} {comment}"


def _write(path: Path, text: str, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(path, mode)


def _ini_value(value: Any) -> str:
    text = str(value)
    return shlex.quote(text) if text == "" or re.search(r"[\s'\"#;=]", text) else text


def _read_line(stream: Any, timeout: float) -> bytes:
    """One line from a child's pipe, or what came before EOF/the timeout."""
    buf = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(stream, selectors.EVENT_READ)
        while not buf.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                break
            chunk = os.read(stream.fileno(), 256)
            if not chunk:
                break
            buf += chunk
    return buf


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:]) or "(empty log)"


def _sysfs_binds(root: Path) -> list[tuple[Path, str]]:
    """(simulated tree, real path) pairs to bind in a host: whole directories where the GPUs' entries would
    not exist here (the NUMA node directory, ``/sys/bus/pci/devices``), single files for CPU lists and the
    like."""
    from .sim import sysfs

    binds = getattr(sysfs, "bind_mounts", None)
    if binds is not None:
        return [(Path(src), str(dst)) for src, dst in binds(root)]
    return [(root / rel, "/" + rel) for rel in ("sys/devices/system/node", "sys/bus/pci/devices")]


def _root_locked() -> bool:
    try:
        for line in Path("/etc/shadow").read_text().splitlines():
            fields = line.split(":")
            if fields[0] == "root" and len(fields) > 1:
                return fields[1].startswith("!")
    except OSError:
        pass
    return False


def _unlocked_shadow() -> str:
    out = []
    for line in Path("/etc/shadow").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == "root":
            fields[1] = "*"
        out.append(":".join(fields))
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------- pytest plugin

if pytest is not None:

    def pytest_configure(config: pytest.Config) -> None:
        config.addinivalue_line(
            "markers",
            "lab: needs the SSH lab (network namespaces, sshd); fails instead of skipping under CI=true",
        )

    @pytest.fixture
    def gpuprov_lab() -> Iterator[Callable[..., Lab]]:
        """Start labs of simulated GPU hosts reachable over SSH; all of them are torn down after the test.

        Call it with a host count and machine keywords, or a list of host descriptions (see :class:`Lab`)::

            def test_rack(gpuprov_lab):
                lab = gpuprov_lab(8, preset="dgx-h100")
                lab = gpuprov_lab(lab_hosts(2, preset="dgx-a100") + [{"sim_gpu": "NVIDIA A30"}])

        Skips (fails under ``CI=true``) when this machine cannot run a lab, naming what is missing."""
        labs: list[Lab] = []

        def make(hosts: int | Sequence[Any] = 1, **kwargs: Any) -> Lab:
            require_lab()
            lab = Lab(hosts, **kwargs)
            labs.append(lab)
            try:
                lab.start()
            except LabUnavailable as exc:
                _skip_or_fail(str(exc))
            return lab

        yield make
        errors = []
        for lab in reversed(labs):
            try:
                lab.close()
            except LabError as exc:
                errors.append(str(exc))
        if errors:
            raise LabError("; ".join(errors))
