"""Faults a rack meets in a change window, over real SSH against the lab, through the real ``gpuprov`` command.

Each test runs ``gpuprov apply`` with only the ``steps`` test plugin (``tests/data/plugins/steps``; the GPU
plugins are switched off with ``GPUPROV_DISABLE_PLUGIN_AUTOLOAD``), whose changes log ``start NAME``/``done NAME``
on the host and write a marker file, so a test controls which step sleeps, fails or stops a service, and can see
afterwards on the host exactly which steps ran and how often. Timeouts are short to keep the suite fast.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpuprov.testing import Lab, lab_hosts, require_lab

STEPS_PLUGIN = Path(__file__).resolve().parents[1] / "data" / "plugins" / "steps"
HOSTS = ["host1", "host2", "host3", "host4"]


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    require_lab()
    with Lab(lab_hosts(4, gpu="NVIDIA A30")) as lab:
        yield lab


@pytest.fixture
def site(lab: Lab, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Site]:
    s = Site(lab, tmp_path, request.node.name)
    yield s
    for h in HOSTS:  # leave every host reachable for the next test
        lab.start_sshd(h)
        lab.link_up(h)


class Site:
    """A working directory with a copy of the lab's inventory (plus ``host_vars``) and a playbook, and the
    ``gpuprov`` command run in it. Each test's steps live in their own directory on the hosts."""

    def __init__(self, lab: Lab, root: Path, test: str) -> None:
        self.lab, self.root = lab, root
        self.dir = f"/var/lib/gpuprov-steps/{test.replace('[', '-').replace(']', '')}"
        (root / "inv").mkdir()
        shutil.copy(lab.inventory, root / "inv" / "hosts")

    def host_vars(self, host: str, **values: Any) -> None:
        (self.root / "inv" / "host_vars").mkdir(exist_ok=True)
        (self.root / "inv" / "host_vars" / f"{host}.yml").write_text(json.dumps(values) + "\n")

    def playbook(self, text: str) -> Path:
        path = self.root / "play.yml"
        path.write_text(textwrap.dedent(text).replace("DIR", self.dir))
        return path

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "gpuprov", *args, "-i", str(self.root / "inv" / "hosts"), "--plugin",
                "gpuprov_steps"]

    def env(self) -> dict[str, str]:
        return dict(os.environ, PYTHONPATH=str(STEPS_PLUGIN), GPUPROV_DISABLE_PLUGIN_AUTOLOAD="1")

    def gpuprov(self, *args: str, timeout: float = 120) -> Run:
        proc = subprocess.run(self.command(*args), capture_output=True, text=True, cwd=self.root, env=self.env(),
                              timeout=timeout)
        return Run(proc.returncode, proc.stdout, proc.stderr)

    def log(self, host: str) -> list[str]:
        r = self.lab.run(host, f"cat {self.dir}/log")
        return [line.strip() for line in r.stdout.splitlines()]

    def files(self, host: str) -> set[str]:
        r = self.lab.run(host, f"ls {self.dir}")
        return set(r.stdout.split()) - {"log"}


class Run:
    """A finished ``gpuprov`` process; with ``--json``, its events by kind."""

    def __init__(self, code: int, stdout: str, stderr: str) -> None:
        self.code, self.stdout, self.stderr = code, stdout, stderr

    def events(self, kind: str) -> list[dict[str, Any]]:
        out = []
        for line in self.stdout.splitlines():
            if line.startswith("{"):
                event = json.loads(line)
                if event["event"] == kind:
                    out.append(event)
        return out

    def hosts(self) -> dict[str, dict[str, Any]]:
        """The recap: each host's outcome (status, message, applied, last_step)."""
        (recap,) = self.events("recap")
        return {h["host"]: h for h in recap["hosts"]}

    def __repr__(self) -> str:
        return f"exit {self.code}\n{self.stdout}\n{self.stderr}"


THREE_STEPS = """\
- hosts: all
  steps:
    dir: DIR
    names: [a, b, c]
    sleep: "{{ steps_sleep | default({}) }}"
    fail: "{{ steps_fail | default([]) }}"
"""


@pytest.mark.lab
def test_a_host_down_from_the_start_is_unreachable_and_retried_alone(site: Site, lab: Lab) -> None:
    site.playbook(THREE_STEPS)
    lab.link_down("host2")
    t0 = time.monotonic()
    run = site.gpuprov("apply", "play.yml", "--json", "--timeout", "3")
    assert run.code == 4, run
    assert time.monotonic() - t0 < 30
    hosts = run.hosts()
    assert hosts["host2"]["status"] == "unreachable", run
    assert "cannot connect to" in hosts["host2"]["message"] and "timed out" in hosts["host2"]["message"]
    for h in ("host1", "host3", "host4"):
        assert hosts[h]["status"] == "changed", run
        assert site.files(h) == {"a", "b", "c"}
    assert (site.root / "play.retry").read_text() == "host2\n"
    assert site.files("host2") == set()

    lab.link_up("host2")
    again = site.gpuprov("apply", "play.yml", "--json", "--limit", "@play.retry")
    assert again.code == 0, again
    assert set(again.hosts()) == {"host2"}  # only the retried host was worked on
    assert again.hosts()["host2"]["status"] == "changed"
    assert site.files("host2") == {"a", "b", "c"}
    assert site.log("host1").count("start a") == 1  # the others were not touched again


@pytest.mark.lab
def test_a_link_dropped_mid_apply_reports_the_last_step_and_a_rerun_converges(site: Site, lab: Lab) -> None:
    site.playbook(THREE_STEPS)
    site.host_vars("host1", steps_sleep={"b": 3})
    proc = subprocess.Popen(site.command("apply", "play.yml", "--json", "--command-timeout", "6"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=site.root,
                            env=site.env())
    try:
        deadline = time.monotonic() + 60
        while "start b" not in site.log("host1"):  # step b is running on host1: cut it off now
            assert time.monotonic() < deadline and proc.poll() is None, "step b never started on host1"
            time.sleep(0.05)
        lab.link_down("host1")
        stdout, stderr = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    run = Run(proc.returncode, stdout, stderr)
    assert run.code == 4, (run.hosts(), stderr)
    host1 = run.hosts()["host1"]
    assert host1["status"] == "unreachable", run
    assert "connection lost" in host1["message"], host1
    assert host1["applied"] == ["steps/a"]
    assert host1["last_step"] == f"steps/a: write {site.dir}/a (mode 0644)"
    assert all(run.hosts()[h]["status"] == "changed" for h in ("host2", "host3", "host4"))

    lab.link_up("host1")
    plain = site.gpuprov("apply", "play.yml", "--limit", "@play.retry")
    assert plain.code == 0, plain
    log = site.log("host1")
    assert log.count("start a") == 1, log  # the completed step was not repeated
    assert log.count("start c") == 1, log
    assert site.files("host1") == {"a", "b", "c"}
    assert site.gpuprov("plan", "play.yml").code == 0  # converged: nothing left to do anywhere


UNIT = """\
[Unit]
Description=holds the GPU while it runs (a stand-in for a monitoring agent)

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/true
"""


@pytest.mark.lab
def test_a_failing_command_fails_its_host_with_the_tools_message_and_restarts_services(site: Site,
                                                                                       lab: Lab) -> None:
    for h in HOSTS:
        lab.run(h, f"cat > /etc/systemd/system/gpu-holder.service <<'EOF'\n{UNIT}EOF\n"
                   "systemctl daemon-reload && systemctl start gpu-holder.service", check=True)
    site.playbook("""\
    - hosts: all
      steps:
        dir: DIR
        names: [a, b]
        service: gpu-holder.service
        fail: "{{ steps_fail | default([]) }}"
        fail_message: "steps-tool: Unable to reset GPU 00000000:17:00.0: In use by another client"
    """)
    site.host_vars("host3", steps_fail=["b"])
    run = site.gpuprov("apply", "play.yml")
    assert run.code == 1, run
    assert "host3: failed" in run.stdout
    assert "steps-tool: Unable to reset GPU 00000000:17:00.0: In use by another client" in run.stdout, run
    assert "exited 3" in run.stdout
    assert "(last step done: steps/b: stop gpu-holder.service)" in run.stdout  # how far host3 got
    for h in HOSTS:
        state = lab.run(h, "systemctl is-active gpu-holder.service").stdout.strip()
        assert state == "active", f"{h}: gpu-holder.service is {state} after the change"
    log = site.log("host3")
    assert log[-2:] == ["start b", "started gpu-holder.service"], log  # stopped for b, started again after
    assert log.count("stopped gpu-holder.service") == 2
    assert site.files("host3") == {"a"}
    assert site.files("host1") == {"a", "b"}
    assert (site.root / "play.retry").read_text() == "host3\n"


@pytest.mark.lab
def test_a_command_slower_than_the_command_timeout_fails_only_its_host(site: Site) -> None:
    site.playbook(THREE_STEPS)
    site.host_vars("host4", steps_sleep={"a": 20})
    t0 = time.monotonic()
    run = site.gpuprov("apply", "play.yml", "--json", "--command-timeout", "4")
    assert time.monotonic() - t0 < 20, "the slow command was waited for"
    assert run.code == 1, run
    host4 = run.hosts()["host4"]
    assert host4["status"] == "failed"  # slow, not gone: the connection still answered
    assert "timed out after 4s" in host4["message"], host4
    assert host4["applied"] == []
    assert all(run.hosts()[h]["status"] == "changed" for h in ("host1", "host2", "host3"))


SILENT_SSHD = """\
import socket, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(({address!r}, 22))
s.listen(16)
held = []
while True:  # accept and never say a word: an sshd that hangs before its banner
    held.append(s.accept()[0])
"""


@pytest.mark.lab
def test_a_host_slower_than_the_connect_timeout_is_unreachable_in_time(site: Site, lab: Lab) -> None:
    site.playbook(THREE_STEPS)
    lab.stop_sshd("host3")
    script = "/tmp/silent-sshd.py"  # the host's own /tmp
    lab.host("host3").path(script).write_text(SILENT_SSHD.format(address=lab.host("host3").address))
    pid = lab.run("host3", f"setsid {sys.executable} {script} </dev/null >/dev/null 2>&1 & echo $!",
                  check=True).stdout.strip()
    try:
        deadline = time.monotonic() + 10
        while lab.run("host3", f"{sys.executable} -c \"import socket; socket.create_connection(("
                               f"'{lab.host('host3').address}', 22), 1)\"").exit_code != 0:
            assert time.monotonic() < deadline, "the silent listener did not start"
            time.sleep(0.05)
        t0 = time.monotonic()
        run = site.gpuprov("apply", "play.yml", "--json", "--timeout", "3")
        elapsed = time.monotonic() - t0
    finally:
        lab.run("host3", f"kill {pid}")
    assert run.code == 4, run
    host3 = run.hosts()["host3"]
    assert host3["status"] == "unreachable", host3
    assert "cannot connect" in host3["message"], host3
    assert elapsed < 13, f"gave up on the silent host after {elapsed:.1f}s, not about 3s"  # paramiko's own: 15 s
    assert all(run.hosts()[h]["status"] == "changed" for h in ("host1", "host2", "host4"))


@pytest.mark.lab
def test_max_fail_percentage_stops_a_rolling_run(site: Site) -> None:
    site.playbook("""\
    - hosts: all
      serial: 1
      max_fail_percentage: 0
      steps:
        dir: DIR
        names: [a]
        fail: "{{ steps_fail | default([]) }}"
    """)
    site.host_vars("host2", steps_fail=["a"])
    run = site.gpuprov("apply", "play.yml")
    assert run.code == 1, run
    assert "stopping, 1 of 1 hosts in the batch failed (max_fail_percentage 0)" in run.stdout, run
    assert site.files("host1") == {"a"}
    assert site.files("host2") == set()
    assert site.files("host3") == set() and site.files("host4") == set(), "the run went on after the failure"
    assert site.log("host3") == [] and site.log("host4") == []


# ------------------------------------------------------------------------------- safety of edited files


@pytest.mark.lab
def test_a_file_edited_by_hand_over_ssh_is_kept_as_a_backup(site: Site, lab: Lab) -> None:
    def play(content: str) -> None:
        site.playbook(f"""\
        - hosts: host1:host2
          steps: {{dir: DIR, names: [unit], mode: file-only, content: {content}}}
        """)

    play("v1")
    assert site.gpuprov("apply", "play.yml").code == 0
    lab.run("host1", f"echo '# hand fix' >> {site.dir}/unit", check=True)
    play("v2")
    run = site.gpuprov("plan", "play.yml")
    assert run.code == 2, run
    edited = lab.run("host1", f"sha256sum {site.dir}/unit", check=True).stdout.split()[0]
    kept = f"/var/lib/gpuprov/backup{site.dir}/unit.{edited[:12]}"
    assert f"{site.dir}/unit was edited since gpuprov wrote it: the current file is kept as {kept}" in run.stdout
    assert run.stdout.count("keep ") == 1, run  # host2's copy was not edited

    assert site.gpuprov("apply", "play.yml").code == 0
    assert lab.run("host1", f"cat {kept}", check=True).stdout == "v1\n# hand fix\n"
    assert lab.run("host1", f"cat {site.dir}/unit", check=True).stdout == "v2\n"
    assert lab.run("host2", f"test -e /var/lib/gpuprov/backup{site.dir}").exit_code == 1
    manifest = lab.run("host1", "cat /var/lib/gpuprov/manifest", check=True).stdout
    assert f"  {site.dir}/unit\n" in manifest
    assert site.gpuprov("plan", "play.yml").code == 0
