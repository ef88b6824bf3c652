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
import math
import os
import secrets
import select
import shlex
import socket
import time
from typing import TYPE_CHECKING, Any

from ..errors import ConnectionFailed
from .base import Connection, Result

if TYPE_CHECKING:
    import fabric
    import paramiko

    from ..inventory import Host

SYSTEM_KNOWN_HOSTS = "/etc/ssh/ssh_known_hosts"
USER_KNOWN_HOSTS = os.path.expanduser("~/.ssh/known_hosts")
_CHUNK = 65536


class _TimedOut(Exception):
    """A command ran past its timeout."""


class _SudoRefused(Exception):
    """sudo asked for the become password again, or asked when there was none to give."""


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
        if self._lost:
            raise ConnectionFailed(self._lost)
        timeout = timeout or self.command_timeout
        deadline = time.monotonic() + timeout if timeout else None
        try:
            return self._run(command, stdin, deadline)
        except _TimedOut:
            if self._answers(min(timeout or 5.0, 5.0)):
                return Result("", f"command timed out after {timeout:g}s", 124)
            self._lost = (f"{self.host_name}: connection lost: the host stopped answering (a command ran past "
                          f"its {timeout:g}s timeout and a check of the connection got no reply)")
            raise ConnectionFailed(self._lost) from None
        except _SudoRefused:  # never with the password or sudo's output, which may echo what it was sent
            from ..errors import StepFailed

            raise StepFailed(f"{self.host_name}: sudo refused the become password for user "
                             f"{self.become_user!r}; check -K / GPUPROV_BECOME_PASSWORD") from None
        except (TimeoutError, OSError, EOFError) as exc:
            self._lost = f"{self.host_name}: connection lost: {_explain(exc)}"
            raise ConnectionFailed(self._lost) from None
        except Exception as exc:
            if type(exc).__module__.startswith("paramiko"):
                self._lost = f"{self.host_name}: connection lost: {_explain(exc)}"
                raise ConnectionFailed(self._lost) from None
            raise

    def _run(self, command: str, stdin: str | None, deadline: float | None) -> Result:
        if not self.become:
            return self._exec(command, stdin, deadline)
        # sudo runs its argument as one program, not a shell line: without ``sh -c`` the part after ``&&`` or ``;``
        # would run unprivileged. The user is quoted too: it is a name, never code.
        line = f"sh -c {shlex.quote(command)}"
        if stdin is not None and self._become_password:
            # sudo -S reads the password from stdin, where it would race with the command's own input: park that
            # input in a private file as the login user and let the command (as root) read it from there.
            parked = self._exec('umask 077 && t=$(mktemp) && cat > "$t" && echo "$t"', stdin, deadline)
            if parked.exit_code != 0:
                return parked
            tmp = shlex.quote(parked.stdout.strip())
            inner = f"sh -c {shlex.quote(f'{command}; rc=$?; rm -f {tmp}; exit $rc')} < {tmp}"
            line, stdin = f"sh -c {shlex.quote(inner)}", None
        # A prompt of our own, so that nothing the command prints can pass for it (or hide it).
        prompt = f"[gpuprov {secrets.token_hex(8)}] password: "
        sudo = f"sudo -S -p {shlex.quote(prompt)} -H -u {shlex.quote(self.become_user)} {line}"
        return self._exec(sudo, stdin, deadline, prompt=prompt)

    def _exec(self, command: str, stdin: str | None, deadline: float | None, *, prompt: str | None = None) -> Result:
        """Run one command on a channel of its own, without a thread: Invoke's runner (behind Fabric's ``run``)
        starts three threads per command that each wake every 10 ms, which cost a 32-host apply about 20 s of the
        control node's CPU (bench/README.md). One wait on the channel instead wakes only when the host sends
        something.

        ``prompt`` is sudo's password prompt (``-p``): when it appears on stderr the become password is sent,
        once; a second prompt means it was refused. It is removed from stderr."""
        transport = self.conn.client.get_transport()
        if transport is None or not transport.is_active():
            raise EOFError("the SSH connection is closed")
        channel = transport.open_session(timeout=float(self.conn.connect_timeout or 10))
        try:
            channel.exec_command(command)
            return self._collect(channel, stdin, deadline, prompt)
        finally:
            channel.close()  # on a timeout too: the host's sshd hangs up on the command

    def _collect(self, channel: paramiko.Channel, stdin: str | None, deadline: float | None,
                 prompt: str | None) -> Result:
        out, err = bytearray(), bytearray()
        pending = memoryview(stdin.encode("utf-8", errors="surrogateescape") if stdin is not None else b"")
        password = (self._become_password or None) if prompt is not None else None
        asked = prompt.encode() if prompt is not None else None
        # With a password, stdin stays open until sudo has read it from there. Otherwise it closes once the input
        # is sent (at once when there is none, as with ``ssh host cmd </dev/null``), so a command reading it ends.
        keep_open = password is not None
        if not pending and not keep_open:
            channel.shutdown_write()
        answered = -1  # where the answered prompt ends in stderr
        poller = select.poll()  # not select.select, whose descriptors stop at 1024: a large rack's do not
        poller.register(channel, select.POLLIN)
        while True:
            if pending:
                pending = _feed(channel, pending, keep_open)
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise _TimedOut
            wait = remaining
            if pending:  # sent as the channel's window opens, between reads, so a chatty command cannot deadlock
                wait = 0.0 if channel.send_ready() else min(wait if wait is not None else 0.05, 0.05)
            poller.poll(None if wait is None else math.ceil(wait * 1000))
            if channel.recv_stderr_ready():
                err += channel.recv_stderr(_CHUNK)
            if channel.recv_ready():
                out += channel.recv(_CHUNK)
            if asked is not None:
                answered = _answer_sudo(channel, err, asked, password, answered)
            if channel.closed or (channel.eof_received and not pending):
                break
            if channel.eof_received:  # output done but input left: nothing to read any more, wait to send
                channel.settimeout(remaining)
                pending = _feed(channel, pending, keep_open, block=True)
        for recv, buffer in ((channel.recv, out), (channel.recv_stderr, err)):  # what came with the end of file
            while chunk := recv(_CHUNK):
                buffer += chunk
        if asked is not None:
            if err.count(asked) > (1 if password is not None else 0):  # asked again as the output ended
                raise _SudoRefused
            err = err.replace(asked, b"")
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not channel.status_event.wait(remaining):  # the output ended before the command (it closed them)
            raise _TimedOut
        code = channel.exit_status
        if code < 0 and not channel.get_transport().is_active():
            raise EOFError("the host closed the connection")
        # No exit status (a signal ended the command, or sshd closed the channel): what ``ssh`` exits with then.
        return Result(out.decode("utf-8", errors="surrogateescape"), err.decode("utf-8", errors="surrogateescape"),
                      255 if code < 0 else code)

    def _answers(self, timeout: float) -> bool:
        """Whether the host still answers on this connection (after a command timed out: slow, or cut off?)."""
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


def _feed(channel: paramiko.Channel, data: memoryview, keep_open: bool, *, block: bool = False) -> memoryview:
    """Send what the channel's window takes now (all of it if ``block``, within the channel's timeout), then close
    stdin unless sudo has still to read the password from it. Input the command ended without reading is dropped,
    as a pipe would."""
    try:
        while data and (block or channel.send_ready()):
            sent = channel.send(bytes(data[:_CHUNK]))
            if not sent:  # closed meanwhile: the command ended without reading the rest
                return data[:0]
            data = data[sent:]
    except TimeoutError:
        raise _TimedOut from None
    except OSError:
        if not channel.closed:
            raise
        return data[:0]
    if not data and not keep_open:
        channel.shutdown_write()
    return data


def _answer_sudo(channel: paramiko.Channel, err: bytearray, prompt: bytes, password: str | None,
                 answered: int) -> int:
    """Send the password once sudo's prompt is on stderr (``-S`` reads it without a terminal, so it is never
    echoed) and close stdin. A second prompt means sudo refused it; a prompt without a password, that sudo wants one
    we do not have. Returns where the answered prompt ends in ``err``."""
    at = err.find(prompt, max(answered, 0))
    if at < 0:
        return answered
    if password is None or answered >= 0:
        raise _SudoRefused
    channel.sendall(f"{password}\n".encode())
    channel.shutdown_write()
    return at + len(prompt)


def _explain(exc: BaseException) -> str:
    import paramiko

    if isinstance(exc, paramiko.BadHostKeyException):
        return (f"the host key CHANGED: known_hosts has {fingerprint(exc.expected_key)}, the host offered "
                f"{fingerprint(exc.key)} ({exc.key.get_name()}). Refusing; if the change is expected, remove the "
                f"old entry (ssh-keygen -R {exc.hostname})")
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__
