"""Security over real SSH against the lab, through the real ``gpuprov`` command: host keys, values that look like
shell code, and sudo passwords.

- An unknown host key is refused unless ``--accept-new-host-keys`` (which records it); a *changed* key is refused
  always, with both fingerprints in the message.
- Inventory and playbook values full of shell metacharacters (``$(touch owned)``, ``; reboot``, backticks, quotes,
  newlines) reach the hosts as data: the files and log lines hold them literally and nothing they spell runs
  (each host gets a ``reboot`` of its own on PATH that would leave a mark, so a leak is seen, not suffered).
- A sudo password (``GPUPROV_BECOME_PASSWORD`` or the ``-K`` prompt) works for a login user whose sudo asks for
  one, and appears nowhere: not in the output, the ``--json`` events, a saved plan, the retry file or the hosts'
  sshd logs; a wrong one is reported as such.
- One connection, command by command: binary files and multi-byte text of a few hundred kB come back byte for byte
  (through sudo too), exit codes and timeouts are those of ``ssh``, and sudo's prompt never reaches stderr.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_faults import Run, Site

from gpuprov.connection.ssh import SSHConnection
from gpuprov.errors import StepFailed
from gpuprov.inventory import load_inventory
from gpuprov.testing import Lab, lab_hosts, require_lab


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    require_lab()
    with Lab(lab_hosts(2, gpu="NVIDIA A30")) as lab:
        yield lab


@pytest.fixture
def site(lab: Lab, tmp_path: Path, request: pytest.FixtureRequest) -> Site:
    return Site(lab, tmp_path, request.node.name)


def fingerprint(key_line: str) -> str:
    """``SHA256:...`` of a ``type base64`` public key, as OpenSSH prints it."""
    blob = base64.b64decode(key_line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def with_known_hosts(site: Site, lab: Lab, lines: str) -> Path:
    """Point the site's inventory at a known_hosts file of our own holding ``lines``."""
    known = site.root / "known_hosts"
    known.write_text(lines)
    inventory = site.root / "inv" / "hosts"
    inventory.write_text(inventory.read_text().replace(str(lab.known_hosts), str(known)))
    return known


PLAY = """\
- hosts: all
  steps: {dir: DIR, names: [a], mode: file-only}
"""

# ------------------------------------------------------------------------------------------ host keys


@pytest.mark.lab
def test_unknown_host_keys_are_refused_by_default_and_recorded_when_asked(site: Site, lab: Lab) -> None:
    known = with_known_hosts(site, lab, "")
    site.playbook(PLAY)
    run = site.gpuprov("plan", "play.yml", "--json")
    assert run.code == 4, run
    for h in lab:
        message = run.hosts()[h.name]["message"]
        assert run.hosts()[h.name]["status"] == "unreachable"
        assert f"unknown host key for {h.address} (ssh-ed25519 {fingerprint(h.host_key_line)})" in message
        assert "refusing to connect" in message and "--accept-new-host-keys" in message
    assert known.read_text() == ""

    run = site.gpuprov("plan", "play.yml", "--accept-new-host-keys")
    assert run.code == 2, run
    recorded = sorted(known.read_text().splitlines())
    assert recorded == sorted(f"{h.address} {h.host_key_line}" for h in lab)
    assert site.gpuprov("plan", "play.yml").code == 2  # now known: no flag needed


@pytest.mark.lab
def test_a_changed_host_key_is_refused_always_with_both_fingerprints(site: Site, lab: Lab) -> None:
    one, two = lab.host("host1"), lab.host("host2")
    lines = f"{one.address} {two.host_key_line}\n{two.address} {two.host_key_line}\n"  # host1's key "changed"
    known = with_known_hosts(site, lab, lines)
    site.playbook(PLAY)
    run = site.gpuprov("apply", "play.yml", "--json", "--accept-new-host-keys")
    assert run.code == 4, run
    host1 = run.hosts()["host1"]
    assert host1["status"] == "unreachable"
    assert (f"the host key CHANGED: known_hosts has {fingerprint(two.host_key_line)}, the host offered "
            f"{fingerprint(one.host_key_line)}") in host1["message"], host1
    assert f"ssh-keygen -R {one.address}" in host1["message"]
    assert run.hosts()["host2"]["status"] == "changed"
    assert known.read_text() == lines  # nothing was recorded over the old key
    assert site.files("host1") == set()


@pytest.mark.lab
def test_a_jump_hosts_key_is_checked_too(site: Site, lab: Lab) -> None:
    """Through ``-o ProxyJump=`` the gateway's key is checked like the target's: unknown, it is refused."""
    one, two = lab.host("host1"), lab.host("host2")
    with_known_hosts(site, lab, f"{one.address} {one.host_key_line}\n")  # the target known, the jump host not
    inventory = site.root / "inv" / "hosts"
    lines = inventory.read_text().splitlines(keepends=True)
    inventory.write_text("".join(line.replace("-o StrictHostKeyChecking=yes",
                                              f"-o StrictHostKeyChecking=yes -o ProxyJump=root@{two.address}")
                                 if line.startswith("host1 ") else line for line in lines))
    site.playbook(PLAY)
    run = site.gpuprov("plan", "play.yml", "--json", "--timeout", "5")
    host1 = run.hosts()["host1"]
    assert host1["status"] == "unreachable", run
    assert f"unknown host key for {two.address} (ssh-ed25519 {fingerprint(two.host_key_line)})" in host1["message"]


# ------------------------------------------------------------------------------ values are data, not code

LEAKS = ["/tmp/owned", "/tmp/owned-bt", "/tmp/owned-semi", "/tmp/owned-and", "/tmp/owned-nl", "/tmp/rebooted",
         "/tmp/owned-content", "/tmp/owned-dir", "/root/owned", "/root/owned-name", "owned", "owned-name"]
LABEL = ("$(touch /tmp/owned) `touch /tmp/owned-bt` ; touch /tmp/owned-semi ; reboot && touch /tmp/owned-and "
         "' \" \\ | cat\nsecond line\ntouch /tmp/owned-nl")
CONTENT = "first\n$(touch /tmp/owned-content)\n'\";reboot `reboot` \\$HOME"
NAMES = ["semi; reboot", "`touch owned-name`", "$(touch owned)", "q'uo\"te", "dollar $HOME", "-rf"]
FAKE_REBOOT = "#!/bin/sh\ntouch /tmp/rebooted\n"


@pytest.mark.lab
def test_shell_metacharacters_in_values_reach_hosts_as_data(site: Site, lab: Lab) -> None:
    for h in lab:
        lab.run(h, f"cat > /usr/local/bin/reboot <<'EOF'\n{FAKE_REBOOT}EOF\nchmod 755 /usr/local/bin/reboot",
                check=True)
    site.host_vars("host1", steps_label=LABEL, steps_names=NAMES)
    site.host_vars("host2", steps_label=LABEL, steps_names=NAMES)
    directory = "/var/lib/gpuprov-meta/a dir; reboot $(touch /tmp/owned-dir)"
    site.playbook(f"""\
    - hosts: all
      vars:
        content: {json.dumps(CONTENT)}
      steps:
        dir: {json.dumps(directory)}
        names: "{{{{ steps_names }}}}"
        label: "{{{{ steps_label }}}}"
        content: "{{{{ content }}}}"
    """)
    run = site.gpuprov("apply", "play.yml")
    assert run.code == 0, run
    assert site.gpuprov("plan", "play.yml").code == 0  # read back exactly as written: converged
    for h in lab:
        for leak in LEAKS:
            assert lab.run(h, f"test -e {leak}").exit_code == 1, f"{h.name}: {leak} exists: a value ran as code"
        listing = lab.run(h, f"ls -A {shlex_quote(directory)}", check=True).stdout.splitlines()
        assert sorted(listing) == sorted([*NAMES, "log"])
        log = lab.run(h, f"cat {shlex_quote(directory + '/log')}", check=True).stdout
        assert f"start semi; reboot {LABEL}\n" in log
        body = lab.run(h, f"cat {shlex_quote(directory + '/$(touch owned)')}", check=True).stdout
        assert body == CONTENT + "\n"
        manifest = lab.run(h, "cat /var/lib/gpuprov/manifest", check=True).stdout
        assert f"  {directory}/`touch owned-name`\n" in manifest
    for leak in ("/root/owned", "/root/owned-name", site.root / "owned", site.root / "owned-name"):
        assert not Path(leak).exists(), f"{leak} exists on this machine: a value ran as code"


def shlex_quote(value: str) -> str:
    import shlex

    return shlex.quote(value)


# -------------------------------------------------------------------------------------- sudo passwords

PASSWORD = "c0rrect-h0rse;$(touch /tmp/pw-owned)'"
WRONG = "wr0ng-batt3ry-staple"


def add_sudo_user(lab: Lab, host: str) -> None:
    """A login user ``ops`` on ``host`` whose sudo asks for PASSWORD, in the host's own mount namespace only
    (sudo keeps the lab's ``GPUPROV_SIM_*`` so the stand-ins still find their host)."""
    crypted = subprocess.run(["openssl", "passwd", "-6", "-stdin"], input=PASSWORD, capture_output=True,
                             text=True, check=True).stdout.strip()
    script = f"""
set -e
cp /etc/passwd /tmp/passwd && echo 'ops:x:4242:4242:ops:/tmp/ops-home:/bin/sh' >> /tmp/passwd
cp /etc/group /tmp/group && echo 'ops:x:4242:' >> /tmp/group
cp /etc/shadow /tmp/shadow && echo 'ops:{crypted}:19000:0:99999:7:::' >> /tmp/shadow && chmod 640 /tmp/shadow
printf '%s\\n' 'Defaults env_reset' 'Defaults env_keep += "GPUPROV_SIM_STATE GPUPROV_SIM_ROOT"' \
    'Defaults !lecture' 'Defaults timestamp_timeout=0' \
    'root ALL=(ALL:ALL) ALL' 'ops ALL=(ALL:ALL) ALL' > /tmp/sudoers && chmod 440 /tmp/sudoers
mkdir -p /tmp/ops-home && chown 4242:4242 /tmp/ops-home
for f in passwd group shadow sudoers; do mount --bind /tmp/$f /etc/$f; done
"""
    lab.run(host, script, check=True)


@pytest.fixture(scope="module")
def sudo_site(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Site:
    if shutil.which("sudo") is None:
        import os

        message = "sudo is not installed (apt-get install sudo): the become tests need a sudo that asks"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    add_sudo_user(lab, "host2")
    site = Site(lab, tmp_path_factory.mktemp("sudo"), "sudo")
    inventory = site.root / "inv" / "hosts"
    lines = [line.replace("ansible_user=root", "ansible_user=ops ansible_become=true")
             if line.startswith("host2 ") else line for line in inventory.read_text().splitlines(keepends=True)]
    inventory.write_text("".join(line for line in lines if not line.startswith("host1 ")))
    site.playbook("""\
    - hosts: host2
      steps: {dir: /var/lib/gpuprov-become, names: [a, b], service: gpu-holder.service}
    """)
    lab.run("host2", "printf '[Service]\\nType=oneshot\\nRemainAfterExit=yes\\nExecStart=/bin/true\\n' > "
                     "/etc/systemd/system/gpu-holder.service && systemctl daemon-reload", check=True)
    return site


def no_password_anywhere(site: Site, lab: Lab, run: Run, *secrets: str) -> None:
    places = {"stdout": run.stdout, "stderr": run.stderr}
    for path in site.root.rglob("*"):
        if path.is_file():
            places[str(path)] = path.read_text(errors="replace")
    for h in lab:
        places[f"{h.name} sshd log"] = h.sshd_log.read_text(errors="replace")
        places[f"{h.name} /tmp"] = lab.run(h, "cat /tmp/* 2>/dev/null").stdout
    for secret in secrets:
        for where, text in places.items():
            assert secret not in text, f"the become password appears in {where}"


@pytest.mark.lab
def test_a_sudo_password_from_the_environment_works_and_is_never_shown(sudo_site: Site, lab: Lab,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    site = sudo_site
    assert lab.run("host2", "su ops -c 'sudo -n true'").exit_code != 0  # sudo really asks this user
    monkeypatch.setenv("GPUPROV_BECOME_PASSWORD", PASSWORD)
    run = site.gpuprov("plan", "play.yml", "--json", "--out", "change.json")
    assert run.code == 2, run
    run = site.gpuprov("apply", "change.json", "--json")
    assert run.code == 0, run
    owner = lab.run("host2", "stat -c %U /var/lib/gpuprov-become/a /var/lib/gpuprov/manifest", check=True)
    assert owner.stdout.split() == ["root", "root"]  # written as root through sudo, stdin and all
    assert lab.run("host2", "systemctl is-active gpu-holder.service").stdout.strip() == "active"
    assert lab.run("host2", "test -e /tmp/pw-owned").exit_code == 1
    no_password_anywhere(site, lab, run, PASSWORD)

    monkeypatch.setenv("GPUPROV_BECOME_PASSWORD", WRONG)
    run = site.gpuprov("plan", "play.yml", "--json")
    assert run.code == 1, run  # reached, but refused: a failed host, not an unreachable one
    assert run.hosts()["host2"]["status"] == "failed"
    message = run.hosts()["host2"]["message"]
    assert "sudo refused the become password for user 'root'" in message, message
    no_password_anywhere(site, lab, run, WRONG, PASSWORD)


@pytest.mark.lab
def test_a_sudo_password_from_the_prompt_is_never_shown(sudo_site: Site, lab: Lab,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    site = sudo_site
    monkeypatch.delenv("GPUPROV_BECOME_PASSWORD", raising=False)
    lab.run("host2", "rm -rf /var/lib/gpuprov-become", check=True)
    env = site.env()
    env.pop("GPUPROV_BECOME_PASSWORD", None)
    proc = subprocess.run(site.command("apply", "play.yml", "-K"), input=PASSWORD + "\n", capture_output=True,
                          text=True, cwd=site.root, env=env, timeout=120, start_new_session=True)
    run = Run(proc.returncode, proc.stdout, proc.stderr)
    assert run.code == 0, run
    assert "BECOME password" in run.stderr
    assert lab.run("host2", "cat /var/lib/gpuprov-become/b", check=True).stdout == "done\n"
    no_password_anywhere(site, lab, run, PASSWORD)


@pytest.mark.lab
def test_a_become_user_with_metacharacters_is_a_name_not_code(sudo_site: Site, lab: Lab,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    site = sudo_site
    monkeypatch.setenv("GPUPROV_BECOME_PASSWORD", PASSWORD)
    (site.root / "inv" / "host_vars").mkdir(exist_ok=True)
    (site.root / "inv" / "host_vars" / "host2.yml").write_text(
        'ansible_become_user: "root; touch /tmp/become-owned"\n')
    try:
        run = site.gpuprov("plan", "play.yml")
    finally:
        (site.root / "inv" / "host_vars" / "host2.yml").unlink()
    assert run.code == 1, run
    assert re.search(r"unknown user:? root; touch /tmp/become-owned", run.stdout), run
    assert lab.run("host2", "test -e /tmp/become-owned").exit_code == 1


# ------------------------------------------------------------------------------- one connection, command by command


def ssh_connection(inventory: Path, host: str, **kwargs: Any) -> SSHConnection:
    return SSHConnection(load_inventory([inventory]).hosts[host], connect_timeout=5, **kwargs)


BINARY = bytes(range(256)) * 800  # 200 kB: every byte value, multi-byte sequences split across SSH packets
TEXT = "x" + "é€😀" * 30000  # 270 kB of 2-, 3- and 4-byte characters, one byte off the packet boundaries


@pytest.mark.lab
def test_one_connection_keeps_bytes_exit_codes_and_timeouts(lab: Lab) -> None:
    with ssh_connection(lab.inventory, "host1") as conn:
        conn.put("/tmp/binary", BINARY)
        assert conn.get("/tmp/binary") == BINARY
        r = conn.run("cat", stdin=TEXT)
        assert (r.stdout, r.stderr, r.exit_code) == (TEXT, "", 0)
        r = conn.run("echo out; echo err >&2; exit 3")
        assert (r.stdout, r.stderr, r.exit_code) == ("out\n", "err\n", 3)
        assert conn.run("cat", timeout=5).exit_code == 0  # no input: stdin is closed, not left open
        assert conn.run("kill -9 $$").exit_code == 255  # no exit status, as with ssh
        t0 = time.monotonic()
        r = conn.run("sleep 30", timeout=1)
        assert (r.stdout, r.stderr, r.exit_code) == ("", "command timed out after 1s", 124)
        assert time.monotonic() - t0 < 8
        assert conn.run("echo still here").stdout == "still here\n"  # slow, not lost: the connection stays


@pytest.mark.lab
def test_become_over_one_connection_answers_sudo_once_and_hides_its_prompt(sudo_site: Site, lab: Lab,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GPUPROV_BECOME_PASSWORD", raising=False)
    inventory = sudo_site.root / "inv" / "hosts"
    with ssh_connection(inventory, "host2", become_password=PASSWORD) as conn:
        r = conn.run("id -un; echo err >&2")
        assert (r.stdout, r.exit_code) == ("root\n", 0)
        assert r.stderr.endswith("err\n") and "password" not in r.stderr  # sudo's prompt taken out
        r = conn.run("cat; id -un", stdin=TEXT)  # the input parked in a file, the password alone on stdin
        assert (r.stdout, r.exit_code) == (TEXT + "root\n", 0)
        conn.put("/tmp/binary", BINARY, owner="root")
        assert conn.get("/tmp/binary") == BINARY
    for password in (WRONG, None):  # refused, or asked for one there is none of: a failed step, at once
        with ssh_connection(inventory, "host2", become_password=password) as conn:
            t0 = time.monotonic()
            with pytest.raises(StepFailed, match="sudo refused the become password for user 'root'"):
                conn.run("true", timeout=30)
            assert time.monotonic() - t0 < 15
    no_password_anywhere(sudo_site, lab, Run(0, "", ""), PASSWORD, WRONG)


@pytest.mark.lab
def test_written_files_have_their_mode_and_new_directories_stay_enterable(site: Site, lab: Lab) -> None:
    """The temporary file is private until renamed into place; directories gpuprov creates are not."""
    site.playbook("""\
    - hosts: host1
      steps: {dir: /usr/local/libexec/gpuprov-test/deeper, names: [a], mode: file-only}
    """)
    assert site.gpuprov("apply", "play.yml").code == 0
    modes = lab.run("host1", "stat -c '%a %n' /usr/local/libexec/gpuprov-test /usr/local/libexec/gpuprov-test/deeper "
                             "/usr/local/libexec/gpuprov-test/deeper/a", check=True).stdout.split("\n")
    assert [m.split()[0] for m in modes if m] == ["755", "755", "644"], modes
    leftovers = lab.run("host1", "ls -A /usr/local/libexec/gpuprov-test/deeper", check=True).stdout.split()
    assert leftovers == ["a"]  # no temporary file left beside it
