"""The ``ssh`` connection, through Fabric/paramiko, with host keys checked.

Fabric accepts any host key unless told otherwise and does not read ``known_hosts`` itself, so every connection
(the gateways of a ProxyJump chain included) gets a policy that refuses unknown keys and loads the system and user
``known_hosts`` files. ``accept_new_host_keys`` records unknown keys instead (like ``StrictHostKeyChecking=
accept-new``); a *changed* key is refused always.

Inventory variables honoured (Ansible's names): ``ansible_host``, ``ansible_port``, ``ansible_user``,
``ansible_ssh_private_key_file``, ``ansible_ssh_common_args``/``ansible_ssh_extra_args`` (``-o ProxyJump=``,
``-J``, ``-o UserKnownHostsFile=``, ``-o ConnectTimeout=``), ``ansible_ssh_timeout``, ``ansible_become``,
``ansible_become_user``, ``ansible_become_password``. ``~/.ssh/config`` applies as it does for ``ssh``.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import shlex
import socket
from typing import TYPE_CHECKING, Any

from ..errors import ConnectionFailed
from .base import Connection, Result

if TYPE_CHECKING:
    import fabric
    import paramiko

    from ..inventory import Host

SYSTEM_KNOWN_HOSTS = "/etc/ssh/ssh_known_hosts"
USER_KNOWN_HOSTS = os.path.expanduser("~/.ssh/known_hosts")


def fingerprint(key: paramiko.PKey) -> str:
    """The key's fingerprint as OpenSSH prints it (``SHA256:...``)."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _ssh_options(args: str) -> dict[str, str]:
    """``-o Key=Value`` and ``-J host`` options from Ansible's ``ansible_ssh_common_args`` style strings."""
    options: dict[str, str] = {}
    words = shlex.split(args or "")
    i = 0
    while i < len(words):
        word = words[i]
        value: str | None = None
        if word in ("-o", "-J") and i + 1 < len(words):
            value, i = words[i + 1], i + 1
        elif word.startswith("-o") and len(word) > 2:
            value = word[2:]
        if value is not None:
            if word.startswith("-J"):
                options["proxyjump"] = value
            else:
                key, _, val = value.replace("=", " ", 1).partition(" ")
                options[key.strip().lower()] = val.strip()
        i += 1
    return options


def _key_policy(known_hosts: str, accept_new: bool) -> Any:
    import paramiko

    class Policy(paramiko.MissingHostKeyPolicy):  # type: ignore[misc]
        def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
            if not accept_new:
                raise paramiko.SSHException(
                    f"unknown host key for {hostname} ({key.get_name()} {fingerprint(key)}): refusing to connect. "
                    f"Check the fingerprint out of band, then add it to {known_hosts} or run with "
                    "--accept-new-host-keys to record it"
                )
            client.get_host_keys().add(hostname, key.get_name(), key)
            os.makedirs(os.path.dirname(known_hosts) or ".", mode=0o700, exist_ok=True)
            with open(known_hosts, "a", encoding="utf-8") as f:
                f.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")

    return Policy()


class _Stdin(io.StringIO):
    """A command's stdin, handed to Invoke in large pieces.

    Invoke reads a stream that is not a terminal one character per call and sleeps 10 ms after each read, so
    sending the 5 kB detect script took about 50 s and writing a 2 kB unit file 20 s (found with py-spy by
    bench/run.py). Returning up to 64 kB per read sends either in one go; Invoke still closes the remote stdin at
    the end of the stream."""

    def read(self, size: int | None = -1) -> str:
        return super().read(-1 if size is None or size < 0 else max(size, 65536))


class SSHConnection(Connection):
    """One Fabric connection per host, opened at construction and kept for the whole run."""

    def __init__(self, host: Host, *, accept_new_host_keys: bool = False, connect_timeout: float | None = None,
                 command_timeout: float | None = None, become_password: str | None = None) -> None:
        import fabric

        self.host_name = host.name
        hv = host.vars
        args = " ".join(str(hv.get(k, "")) for k in ("ansible_ssh_common_args", "ansible_ssh_extra_args"))
        self.options = _ssh_options(args)
        self.known_hosts = os.path.expanduser(self.options.get("userknownhostsfile", USER_KNOWN_HOSTS))
        strict = self.options.get("stricthostkeychecking", "").lower()
        self.accept_new = accept_new_host_keys or strict == "accept-new"
        timeout = connect_timeout or hv.get("ansible_ssh_timeout") or self.options.get("connecttimeout") or 10
        self.command_timeout = command_timeout
        self.become = str(hv.get("ansible_become", False)).lower() in ("1", "true", "yes", "on")
        self.become_user = str(hv.get("ansible_become_user", "root"))
        self._become_password = (become_password or hv.get("ansible_become_password")
                                 or hv.get("ansible_become_pass") or os.environ.get("GPUPROV_BECOME_PASSWORD"))
        # paramiko waits 15 s for the banner and 30 s for authentication whatever the connect timeout: a host that
        # accepts TCP but never answers (sshd hung, overloaded) must be given up on within the same timeout.
        connect_kwargs: dict[str, Any] = {"allow_agent": True, "banner_timeout": float(timeout),
                                          "auth_timeout": float(timeout)}
        self._lost = ""  # why the connection is known dead: later commands fail at once instead of timing out
        key = hv.get("ansible_ssh_private_key_file") or hv.get("ansible_private_key_file")
        if key:
            connect_kwargs["key_filename"] = [os.path.expanduser(str(key))]
        port = host.port
        gateway = None
        jump = self.options.get("proxyjump")
        if jump is None:
            probe = fabric.Connection(host.address)
            jump = probe.ssh_config.get("proxyjump")
        if jump and jump.lower() != "none":
            for hop in reversed(jump.split(",")):
                gateway = self._secure(fabric.Connection(hop, gateway=gateway, connect_timeout=int(timeout)))
        self.conn: fabric.Connection = self._secure(fabric.Connection(
            host.address, user=host.user, port=port, connect_timeout=int(float(timeout)),
            connect_kwargs=connect_kwargs, gateway=gateway,
        ))
        try:
            self.conn.open()
        except Exception as exc:  # paramiko raises many kinds; all mean "unreachable" to the runner
            raise ConnectionFailed(f"{host.name}: cannot connect to {host.address}:{port or 22}: {_explain(exc)}") \
                from None

    def _secure(self, conn: fabric.Connection) -> fabric.Connection:
        client = conn.client
        client.set_missing_host_key_policy(_key_policy(self.known_hosts, self.accept_new))
        if os.path.exists(SYSTEM_KNOWN_HOSTS):
            client.get_host_keys().load(SYSTEM_KNOWN_HOSTS)
        if os.path.exists(self.known_hosts):
            client.load_host_keys(self.known_hosts)
        return conn

    def run(self, command: str, *, stdin: str | None = None, timeout: float | None = None) -> Result:
        from invoke.exceptions import CommandTimedOut

        if self._lost:
            raise ConnectionFailed(self._lost)
        timeout = timeout or self.command_timeout
        try:
            r = self._run(command, stdin, timeout)
        except CommandTimedOut:
            if self._answers(min(timeout or 5.0, 5.0)):
                return Result("", f"command timed out after {timeout:g}s", 124)
            self._lost = (f"{self.host_name}: connection lost: the host stopped answering (a command ran past "
                          f"its {timeout:g}s timeout and a check of the connection got no reply)")
            raise ConnectionFailed(self._lost) from None
        except (TimeoutError, OSError, EOFError) as exc:
            self._lost = f"{self.host_name}: connection lost: {_explain(exc)}"
            raise ConnectionFailed(self._lost) from None
        except Exception as exc:
            from invoke.exceptions import AuthFailure

            if isinstance(exc, AuthFailure):  # its text names the prompt, never the password
                from ..errors import StepFailed

                raise StepFailed(f"{self.host_name}: sudo refused the become password for user "
                                       f"{self.become_user!r}; check -K / GPUPROV_BECOME_PASSWORD") from None
            if type(exc).__module__.startswith("paramiko"):
                self._lost = f"{self.host_name}: connection lost: {_explain(exc)}"
                raise ConnectionFailed(self._lost) from None
            raise
        return Result(r.stdout, r.stderr, r.exited)

    def _run(self, command: str, stdin: str | None, timeout: float | None) -> Any:
        kwargs: dict[str, Any] = {"hide": True, "warn": True, "pty": False, "timeout": timeout,
                                  "in_stream": _Stdin(stdin) if stdin is not None else False}
        if not self.become:
            return self.conn.run(command, **kwargs)
        # sudo runs its argument as one program, not a shell line: without ``sh -c`` the part after ``&&`` or ``;``
        # would run unprivileged. The user is quoted too (Fabric puts it in the command line as given).
        line = f"sh -c {shlex.quote(command)}"
        if stdin is not None and self._become_password:
            # sudo -S reads the password from stdin, where it would race with the command's own input: park that
            # input in a private file as the login user and let the command (as root) read it from there.
            parked = self.conn.run('umask 077 && t=$(mktemp) && cat > "$t" && echo "$t"', **kwargs)
            if parked.exited != 0:
                return parked
            tmp = shlex.quote(parked.stdout.strip())
            inner = f"sh -c {shlex.quote(f'{command}; rc=$?; rm -f {tmp}; exit $rc')} < {tmp}"
            line = f"sh -c {shlex.quote(inner)}"
            kwargs["in_stream"] = False
        # Fabric answers sudo's prompt from a watcher and never echoes the password.
        return self.conn.sudo(line, user=shlex.quote(self.become_user), password=self._become_password or "",
                              **kwargs)

    def _answers(self, timeout: float) -> bool:
        """Whether the host still answers on this connection (after a command timed out: slow, or cut off?)."""
        import time

        # paramiko itself, not Fabric: opening a session on a dead link would wait for ever without a timeout.
        transport = self.conn.client.get_transport()
        if transport is None or not transport.is_active():
            return False
        deadline = time.monotonic() + timeout
        try:
            channel = transport.open_session(timeout=timeout)
            try:
                channel.exec_command("true")
                while not channel.exit_status_ready():
                    if time.monotonic() > deadline:
                        return False
                    time.sleep(0.05)
                return bool(channel.recv_exit_status() == 0)
            finally:
                channel.close()
        except Exception:  # no channel, or the transport went: either way no answer
            return False

    def put(self, path: str, content: bytes, *, mode: int = 0o644, owner: str | None = None,
            group: str | None = None) -> None:
        directory, name = os.path.split(path)
        tmp = f"{directory}/.{name}.gpuprov-tmp"
        chown = ""
        if owner or group:
            chown = f" && chown {shlex.quote((owner or '') + (':' + group if group else ''))} {shlex.quote(tmp)}"
        # Content goes through stdin so it never appears in a command line; the rename makes the write atomic.
        # The directories are made before the umask: only the temporary file is private, not a new
        # /usr/local/libexec/gpuprov that job users must be able to enter.
        script = (f"mkdir -p {shlex.quote(directory)} && umask 077 && cat > {shlex.quote(tmp)}"
                  f" && chmod {mode:o} {shlex.quote(tmp)}{chown} && mv -f {shlex.quote(tmp)} {shlex.quote(path)}")
        result = self.run(f"sh -c {shlex.quote(script)}", stdin=content.decode("utf-8", errors="surrogateescape"))
        if not result.ok:
            from ..errors import StepFailed

            raise StepFailed(f"{self.host_name}: writing {path} failed: {result.stderr.strip() or result.stdout}")

    def get(self, path: str) -> bytes | None:
        result = self.run(f"cat {shlex.quote(path)}")
        if result.exit_code != 0:
            return None
        return result.stdout.encode("utf-8", errors="surrogateescape")

    def close(self) -> None:
        self.conn.close()


def _explain(exc: BaseException) -> str:
    import paramiko

    if isinstance(exc, paramiko.BadHostKeyException):
        return (f"the host key CHANGED: known_hosts has {fingerprint(exc.expected_key)}, the host offered "
                f"{fingerprint(exc.key)} ({exc.key.get_name()}). Refusing; if the change is expected, remove the "
                f"old entry (ssh-keygen -R {exc.hostname})")
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__
