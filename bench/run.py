#!/usr/bin/env python3
"""Benchmarks: gpuprov against Ansible, pyinfra and the floor (one Fabric command per host), on the same SSH lab.

Why: how fast a rack comes up and how fast "is anything off?" is answered decide whether people use the tool, and
only a measurement on the same hosts, with the same commands, alternating the tools so a noisy machine hurts all
alike, says whether gpuprov is fast. See bench/README.md for the figures, what each tool ran and what limits it.

    python3 -m venv bench/.venv && bench/.venv/bin/pip install -r bench/requirements.txt   # once
    sudo python3 bench/run.py                      # 16 and 32 hosts, 5 runs, 1,000 sim hosts
    sudo python3 bench/run.py --hosts 4 --runs 1 --sim-hosts 100 --out /tmp/r.json   # a quick check

For each lab size it starts a lab (network namespaces with real sshd, gpuprov.testing.Lab; torn down always,
also on Ctrl-C), then per run, in an order rotated run by run:

- apply from scratch: the rack is reset to its first state (untimed), then one tool converges it
  (``gpuprov apply``; the Ansible playbook; the pyinfra deploy), and ``gpuprov plan`` (untimed) must then find
  nothing to do, which proves the other tools did the same work;
- plan on the converged rack: ``gpuprov plan``, the Ansible playbook and the pyinfra deploy of the detect probes,
  and the floor (bench/floor.py).

The Ansible and pyinfra work is generated from gpuprov itself: its detect probes (the plugins' ``gpuprov_probe``)
and the steps of the plan it makes for the rack from scratch, so all tools run the same shell commands. Then it
plans 1,000 in-process ``sim`` hosts (and 250 and 500, to see that time grows linearly) in a subprocess, measuring
wall time and peak RSS (``os.wait4``'s rusage). It prints a table of medians with the ratios and writes
``bench/results.json`` (the first lab size; further sizes go to ``bench/results-<N>.json``, same shape).

Installs nothing. Talks only to the lab's own namespace addresses. Every subprocess has a timeout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PLAYBOOK = BENCH / "site.yml"
FLOOR = BENCH / "floor.py"
DEPLOY = BENCH / "pyinfra_deploy.py"
LAST_RUN = BENCH / "last-run"
VENV = BENCH / ".venv"
WORK_PARENT = "/var/tmp"  # not /tmp: lab hosts make /tmp private (gpuprov.testing.PRIVATE_PATHS)

# The lab rack: hosts alternate between these (preset, inventory group, MIG layout), like the example rack.
RACK = (("dgx-a100", "infer", "all-balanced"), ("dgx-h100", "train", "all-balanced"))
PYTHON_ON_HOSTS = "/usr/bin/python3"  # the lab hosts see this machine's /usr; Ansible's modules need a Python

PLAN_TOOLS = ("gpuprov", "ansible", "pyinfra", "floor")
APPLY_TOOLS = ("gpuprov", "ansible", "pyinfra")


class BenchError(Exception):
    """The benchmark cannot go on; the message says what failed and what to do."""


def say(message: str) -> None:
    """Progress on stderr, with the time since the start, so a long run shows where it is."""
    elapsed = time.monotonic() - STARTED
    print(f"[{int(elapsed) // 60:02d}:{int(elapsed) % 60:02d}] {message}", file=sys.stderr, flush=True)


STARTED = time.monotonic()


# ---------------------------------------------------------------------------------------------- timed processes


@dataclass(frozen=True)
class Timed:
    """One finished process: its wall time, exit code, output and peak resident memory."""

    seconds: float
    code: int
    stdout: str
    stderr: str
    maxrss_kb: int
    cpu_s: float = 0.0  # user + system CPU of the process and the children it waited for, on this machine

    def tail(self, lines: int = 12) -> str:
        text = (self.stderr.strip() + "\n" + self.stdout.strip()).strip()
        return "\n".join(text.splitlines()[-lines:]) or "(no output)"


def timed(argv: Sequence[str], *, timeout: float, env: Mapping[str, str] | None = None,
          cwd: Path | None = None) -> Timed:
    """Run ``argv`` in its own process group and time it; killed (group and all) on timeout or Ctrl-C.

    ``os.wait4`` reaps it, so the peak RSS is that process's own, not the maximum over all children so far."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                env=dict(env) if env is not None else None, cwd=cwd, start_new_session=True)
        deadline = time.monotonic() + timeout
        try:
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    seconds = time.perf_counter() - t0
                    proc.returncode = os.waitstatus_to_exitcode(status)
                    break
                if time.monotonic() > deadline:
                    _kill(proc)
                    raise BenchError(f"`{' '.join(argv)}` did not finish within {timeout:.0f}s; it was killed")
                time.sleep(0.002)
        except BaseException:
            if proc.returncode is None:
                _kill(proc)
            raise
        out.seek(0)
        err.seek(0)
        return Timed(seconds, proc.returncode, out.read().decode(errors="replace"),
                     err.read().decode(errors="replace"), usage.ru_maxrss, usage.ru_utime + usage.ru_stime)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(3)
            return
        except subprocess.TimeoutExpired:
            continue


# ------------------------------------------------------------------------------------------------------ tools


@dataclass
class Tools:
    """Where each measured program is, checked before any lab starts."""

    gpuprov: str
    ansible_playbook: str
    pyinfra: str
    python: str = sys.executable

    @classmethod
    def find(cls, venv: Path) -> Tools:
        path = os.pathsep.join([str(venv / "bin"), os.environ.get("PATH", "")])
        found = {name: shutil.which(name, path=path) for name in ("gpuprov", "ansible-playbook", "pyinfra")}
        # The gpuprov beside this interpreter, not the first on PATH: a version manager's shim there (pyenv's is a
        # bash script) would add its own second or so to every run measured.
        beside = Path(sys.executable).with_name("gpuprov")
        found["gpuprov"] = (str(beside) if os.access(beside, os.X_OK) else shutil.which("gpuprov")) \
            or found["gpuprov"]
        missing = [name for name, where in found.items() if where is None]
        if missing:
            raise BenchError(
                f"not found: {', '.join(missing)}. Install the tools compared once with\n"
                f"  python3 -m venv {venv} && {venv}/bin/pip install -r {BENCH / 'requirements.txt'}\n"
                "(and gpuprov itself with `pip install -e .`); bench/run.py installs nothing by itself")
        return cls(found["gpuprov"] or "", found["ansible-playbook"] or "", found["pyinfra"] or "")

    def versions(self) -> dict[str, str]:
        def first_line(argv: list[str]) -> str:
            r = timed(argv, timeout=60)
            return (r.stdout.strip() or r.stderr.strip()).splitlines()[0] if r.code == 0 else "?"

        return {"gpuprov": first_line([self.gpuprov, "--version"]),
                "ansible": first_line([self.ansible_playbook, "--version"]),
                "pyinfra": first_line([self.pyinfra, "--version"])}


# ------------------------------------------------------------------------------------------- the same work


def probes_by_host(inventory: Path, playbook: Path) -> dict[str, dict[str, str]]:
    """The detect commands gpuprov runs on each host for this playbook, asked of its plugins the way the runner
    asks (``Plugins.probe`` with the play's rendered settings)."""
    from gpuprov.inventory import load_inventory
    from gpuprov.playbook import load_playbook
    from gpuprov.plugins import Plugins

    plugins = Plugins.load()
    inv = load_inventory([inventory])
    book = load_playbook(playbook, plugins.schemas)
    result: dict[str, dict[str, str]] = {}
    for play in book.plays:
        for host in inv.select(play.hosts):
            settings = play.settings_for(host, plugins.schemas)
            result.setdefault(host.name, {}).update(plugins.probe(host, settings))
    return result


def plan_steps(plan: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Each host's commands and file writes, in the order gpuprov's runner performs them for this saved plan.

    Besides a change's steps and its clean-up steps, this includes the one query the MIG plugin's
    ``gpuprov_apply`` hook runs before a change that needs MIG mode (plugins/gpuprov_mig/__init__.py), so the
    other tools run that command too."""
    steps: dict[str, list[dict[str, Any]]] = {}
    for hp in plan.get("hosts", []):
        out: list[dict[str, Any]] = []
        for change in hp.get("changes", []):
            after = change.get("after")
            if change.get("plugin") in ("", "mig") and isinstance(after, dict) and after.get("requires_mig_mode"):
                index = change["id"].removeprefix("mig/gpu")
                out.append({"kind": "run", "label": f"{change['id']}: MIG mode current?",
                            "command": f"nvidia-smi -i {index} --query-gpu=mig.mode.current --format=csv,noheader"})
            for step in [*change.get("steps", []), *change.get("cleanup", [])]:
                entry = {k: step[k] for k in ("kind", "command", "path", "content", "mode", "owner", "group")
                         if step.get(k) is not None}
                entry["mode"] = int(step.get("mode", 0o644))
                entry["label"] = f"{change['id']}: " + (step.get("description") or _label(step))
                out.append(entry)
        steps[hp["host"]] = out
    return steps


def _label(step: Mapping[str, Any]) -> str:
    if step["kind"] == "run":
        return f"run {step['command']}"
    return f"{step['kind']} {step.get('path')}"


class Unsafe(str):
    """A string Ansible must not template (``!unsafe``): commands and file contents are data, not Jinja."""


class _Dumper(yaml.SafeDumper):
    """YAML as a person writes it: the probe tasks appear twice in apply.yml, spelt out both times (no anchors)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


_Dumper.add_representer(Unsafe, lambda d, s: d.represent_scalar("!unsafe", str(s), style="|" if "\n" in s else None))


def ansible_task(step: Mapping[str, Any], ref: str | None = None) -> dict[str, Any]:
    """The task an Ansible user writes for one step: ``shell`` for a command, ``copy`` for a file, ``file`` to
    remove one. With ``ref`` (``bench_steps[3]``) the values come from the host's variables instead of literals."""
    def val(key: str) -> Any:
        return f"{{{{ {ref}.{key} }}}}" if ref else Unsafe(step[key])

    name = f"{ref}" if ref else str(step["label"])
    if step["kind"] == "run":
        return {"name": name, "ansible.builtin.shell": val("command")}
    if step["kind"] == "write":
        args: dict[str, Any] = {"dest": val("path"), "content": val("content"),
                                "mode": f"{{{{ '%04o' % {ref}.mode }}}}" if ref else f"{int(step['mode']):04o}"}
        for key in ("owner", "group"):
            if step.get(key):
                args[key] = val(key)
        return {"name": name, "ansible.builtin.copy": args}
    if step["kind"] == "remove":
        return {"name": name, "ansible.builtin.file": {"path": val("path"), "state": "absent"}}
    raise BenchError(f"unknown step kind {step['kind']!r}")


def ansible_tasks(per_host: Mapping[str, Sequence[Mapping[str, Any]]], var: str,
                  host_vars: dict[str, dict[str, Any]], **extra: Any) -> list[dict[str, Any]]:
    """Tasks for per-host step lists: literal tasks when every host has the same list (what a user writes for a
    uniform rack); otherwise one task per position and kind, reading each host's own list (``var`` in its
    host_vars), so all hosts still work in parallel instead of one group after another."""
    lists = list(per_host.values())
    if all(steps == lists[0] for steps in lists):
        return [ansible_task(s) | extra for s in lists[0]]
    for host, steps in per_host.items():
        host_vars.setdefault(host, {})[var] = [{k: Unsafe(v) if isinstance(v, str) else v for k, v in s.items()}
                                               for s in steps]
    tasks: list[dict[str, Any]] = []
    for i in range(max((len(s) for s in lists), default=0)):
        kinds = dict.fromkeys(s[i]["kind"] for s in lists if len(s) > i)
        for kind in kinds:
            task = ansible_task({"kind": kind}, f"{var}[{i}]") | extra
            task["when"] = f"{var} | length > {i} and {var}[{i}].kind == '{kind}'"
            tasks.append(task)
    return tasks


def probe_steps(probes: Mapping[str, Mapping[str, str]]) -> dict[str, list[dict[str, Any]]]:
    return {host: [{"kind": "run", "label": f"probe {name}", "command": cmd} for name, cmd in cmds.items()]
            for host, cmds in probes.items()}


def write_ansible(work: Path, lab: Any, probes: Mapping[str, Mapping[str, str]],
                  steps: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, Path]:
    """The Ansible side: ``ansible.cfg``, an inventory (the lab's, plus host_vars when hosts differ) and two
    playbooks: ``plan.yml`` (the detect probes) and ``apply.yml`` (probes, the planned steps, probes again)."""
    d = work / "ansible"
    (d / "host_vars").mkdir(parents=True, exist_ok=True)
    shutil.copy(lab.inventory, d / "inventory.ini")
    host_vars: dict[str, dict[str, Any]] = {}
    probe = {"changed_when": False, "failed_when": False}
    detect = ansible_tasks(probe_steps(probes), "bench_probes", host_vars, **probe)
    work_steps = ansible_tasks(steps, "bench_steps", host_vars)
    play = {"hosts": "all", "gather_facts": False}
    books = {"plan": [play | {"name": "detect", "tasks": detect}],
             "apply": [play | {"name": "detect, apply gpuprov's planned steps, detect again",
                               "tasks": detect + work_steps + detect}]}
    paths = {}
    for name, book in books.items():
        paths[name] = d / f"{name}.yml"
        paths[name].write_text(yaml.dump(book, Dumper=_Dumper, sort_keys=False, width=1000))
    for host, hv in host_vars.items():
        (d / "host_vars" / f"{host}.yml").write_text(yaml.dump(hv, Dumper=_Dumper, sort_keys=False, width=1000))
    (d / "ansible.cfg").write_text(
        "# what bench/run.py runs Ansible with\n"
        "[defaults]\n"
        f"forks = {len(lab)}\n"
        "gathering = explicit\n"
        "host_key_checking = True\n"
        f"interpreter_python = {PYTHON_ON_HOSTS}\n"
        "retry_files_enabled = False\n"
        "[ssh_connection]\n"
        "pipelining = True\n")
    return paths


def write_pyinfra(work: Path, lab: Any, probes: Mapping[str, Mapping[str, str]],
                  steps: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, Path]:
    """The pyinfra side: an inventory of the lab's hosts (its key and known_hosts, strict checking) and the work
    files bench/pyinfra_deploy.py reads (``plan``: probes; ``apply``: probes, steps, probes)."""
    d = work / "pyinfra"
    d.mkdir(parents=True, exist_ok=True)
    hosts = [(h.name, {"ssh_hostname": h.address, "ssh_port": 22, "ssh_user": "root", "ssh_key": str(lab.client_key),
                       "ssh_known_hosts_file": str(lab.known_hosts), "ssh_strict_host_key_checking": "yes",
                       "ssh_allow_agent": False, "ssh_look_for_keys": False}) for h in lab]
    (d / "inventory.py").write_text("# the lab's hosts, written by bench/run.py\nlab = " + repr(hosts) + "\n")
    paths = {"inventory": d / "inventory.py"}
    for mode in ("plan", "apply"):
        paths[mode] = d / f"{mode}.json"
        paths[mode].write_text(json.dumps({"mode": mode, "probes": probes, "steps": steps}, indent=1))
    return paths


def write_floor(work: Path, lab: Any, probes: Mapping[str, Mapping[str, str]]) -> Path:
    """The floor's work: per host the detect probes as one shell command (one after the other, all output kept)."""
    hosts = [{"name": h.name, "address": h.address, "command": "\n".join(probes[h.name].values())} for h in lab]
    path = work / "floor.json"
    path.write_text(json.dumps({"key": str(lab.client_key), "known_hosts": str(lab.known_hosts), "hosts": hosts},
                               indent=1))
    return path


# ---------------------------------------------------------------------------------------------- one lab size


@dataclass
class LabBench:
    """Everything needed to run each tool against one lab, and the times measured."""

    lab: Any
    tools: Tools
    work: Path
    timeout: float
    plan_times: dict[str, list[float]] = field(default_factory=lambda: {t: [] for t in PLAN_TOOLS})
    apply_times: dict[str, list[float]] = field(default_factory=lambda: {t: [] for t in APPLY_TOOLS})
    plan_cpu: dict[str, list[float]] = field(default_factory=lambda: {t: [] for t in PLAN_TOOLS})
    apply_cpu: dict[str, list[float]] = field(default_factory=lambda: {t: [] for t in APPLY_TOOLS})
    snapshot: dict[str, bytes] = field(default_factory=dict)
    written: list[str] = field(default_factory=list)
    ansible: dict[str, Path] = field(default_factory=dict)
    pyinfra: dict[str, Path] = field(default_factory=dict)
    floor: Path | None = None
    changes: int = 0
    steps: int = 0

    @property
    def n(self) -> int:
        return len(self.lab)

    # -- preparing ---------------------------------------------------------------------------------------------
    def prepare(self) -> None:
        for h in self.lab:
            self.snapshot[h.name] = (h.state_dir / "machine.json").read_bytes()
        probes = probes_by_host(self.lab.inventory, PLAYBOOK)
        missing = [h.name for h in self.lab if h.name not in probes]
        if missing:
            raise BenchError(f"{PLAYBOOK} covers no play for {', '.join(missing)}")
        scratch = self.work / "scratch-plan.json"
        r = self.gpuprov("plan", "--out", str(scratch))
        if r.code not in (0, 2):
            raise BenchError(f"gpuprov plan of the fresh rack exited {r.code}:\n{r.tail()}")
        plan = json.loads(scratch.read_text())
        steps = plan_steps(plan)
        self.changes = sum(len(hp["changes"]) for hp in plan["hosts"])
        self.steps = sum(len(s) for s in steps.values())
        self.written = sorted({s["path"] for ss in steps.values() for s in ss if s["kind"] in ("write", "remove")})
        self.ansible = write_ansible(self.work, self.lab, probes, steps)
        self.pyinfra = write_pyinfra(self.work, self.lab, probes, steps)
        self.floor = write_floor(self.work, self.lab, probes)
        say(f"{self.n} hosts: from scratch gpuprov plans {self.changes} change(s), {self.steps} step(s) in all; "
            f"{sum(len(p) for p in probes.values()) // max(1, self.n)} probe(s) per host")

    def reset(self) -> None:
        """Put every host back in its first state (untimed): the simulated machine as the lab made it, an empty
        /etc/systemd/system (as each lab host starts), and no file the from-scratch plan writes."""
        from gpuprov.testing import PRIVATE_PATHS

        private = [p for p in self.written if any(p.startswith(t + "/") for t in PRIVATE_PATHS)]
        script = "find /etc/systemd/system -mindepth 1 -delete"
        if private:
            script += " && rm -f -- " + " ".join(_quote(p) for p in private)

        def one(h: Any) -> None:
            tmp = h.state_dir / "machine.json.bench"
            tmp.write_bytes(self.snapshot[h.name])
            os.replace(tmp, h.state_dir / "machine.json")
            r = self.lab.run(h.name, script, timeout=30)
            if not r.ok:
                raise BenchError(f"{h.name}: resetting the host failed: {r.stderr.strip()}")

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(one, self.lab))

    # -- the tools ---------------------------------------------------------------------------------------------
    def gpuprov(self, command: str, *extra: str) -> Timed:
        return timed([self.tools.gpuprov, command, "-i", str(self.lab.inventory), "-f", str(self.n), *extra,
                      str(PLAYBOOK)], timeout=self.timeout, cwd=self.work)

    def run_ansible(self, mode: str) -> Timed:
        env = dict(os.environ, ANSIBLE_CONFIG=str(self.work / "ansible" / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                   ANSIBLE_LOCAL_TEMP=str(self.work / "ansible" / "tmp"),
                   # a fresh ControlPath directory per run: no run reuses the SSH masters of the one before
                   ANSIBLE_SSH_CONTROL_PATH_DIR=tempfile.mkdtemp(prefix="cp-", dir=self.work))
        return timed([self.tools.ansible_playbook, "-i", str(self.work / "ansible" / "inventory.ini"),
                      str(self.ansible[mode])], timeout=self.timeout, env=env, cwd=self.work / "ansible")

    def run_pyinfra(self, mode: str) -> Timed:
        env = dict(os.environ, GPUPROV_BENCH_WORK=str(self.pyinfra[mode]), PYINFRA_PROGRESS="off")
        return timed([self.tools.pyinfra, "-y", "--parallel", str(self.n), str(self.pyinfra["inventory"]),
                      str(DEPLOY)], timeout=self.timeout, env=env, cwd=self.work / "pyinfra")

    def run_floor(self) -> Timed:
        return timed([self.tools.python, str(FLOOR), str(self.floor)], timeout=self.timeout, cwd=self.work)

    def plan(self, tool: str) -> Timed:
        r = {"gpuprov": lambda: self.gpuprov("plan"), "ansible": lambda: self.run_ansible("plan"),
             "pyinfra": lambda: self.run_pyinfra("plan"), "floor": self.run_floor}[tool]()
        if r.code != 0:
            what = "found changes on a converged rack" if tool == "gpuprov" and r.code == 2 else f"exited {r.code}"
            raise BenchError(f"{tool} plan on the converged rack {what}:\n{r.tail()}")
        return r

    def apply(self, tool: str) -> Timed:
        r = {"gpuprov": lambda: self.gpuprov("apply"), "ansible": lambda: self.run_ansible("apply"),
             "pyinfra": lambda: self.run_pyinfra("apply")}[tool]()
        if r.code != 0:
            raise BenchError(f"{tool} apply from scratch exited {r.code}:\n{r.tail()}")
        if tool == "gpuprov":
            return r  # gpuprov apply re-detects by itself and exits non-zero unless every host converged
        check = self.gpuprov("plan")
        if check.code != 0:
            raise BenchError(f"after the {tool} apply, gpuprov plan still finds work (exit {check.code}), so the "
                             f"work compared is not the same:\n{check.tail(30)}")
        return r

    # -- the runs ----------------------------------------------------------------------------------------------
    def run(self, runs: int, apply_runs: int) -> None:
        """``runs`` rounds; the first ``apply_runs`` of them also apply from scratch with each tool (which leaves
        the rack converged for the plans). Within a round the tools' order rotates from round to round."""
        for i in range(runs):
            if i < apply_runs:
                for tool in _rotate(APPLY_TOOLS, i):
                    self.reset()
                    r = self.apply(tool)
                    self.apply_times[tool].append(r.seconds)
                    self.apply_cpu[tool].append(r.cpu_s)
                    say(f"{self.n} hosts, run {i + 1}/{runs}: apply from scratch  {tool:8} {r.seconds:7.2f}s "
                        f"(CPU here {r.cpu_s:6.2f}s)")
            elif i == 0:
                self.reset()
                self.apply("gpuprov")  # untimed: the plans measure a converged rack
            for tool in _rotate(PLAN_TOOLS, i):
                r = self.plan(tool)
                self.plan_times[tool].append(r.seconds)
                self.plan_cpu[tool].append(r.cpu_s)
                say(f"{self.n} hosts, run {i + 1}/{runs}: plan converged     {tool:8} {r.seconds:7.2f}s "
                    f"(CPU here {r.cpu_s:6.2f}s)")

    def keep(self, target: Path) -> None:
        """Copy the generated playbooks, deploy inputs and the from-scratch plan, for review beside the figures."""
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        for name in ("plan.yml", "apply.yml", "ansible.cfg", "host_vars"):
            src = self.work / "ansible" / name
            if src.is_dir():
                shutil.copytree(src, target / "ansible-host_vars")
            elif src.exists():
                shutil.copy(src, target / f"ansible-{name}")
        shutil.copy(self.pyinfra["apply"], target / "pyinfra-apply.json")
        shutil.copy(self.work / "scratch-plan.json", target / "gpuprov-scratch-plan.json")
        assert self.floor is not None
        shutil.copy(self.floor, target / "floor.json")


def _rotate(items: Sequence[str], i: int) -> list[str]:
    k = i % len(items)
    return list(items[k:]) + list(items[:k])


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


def lab_specs(n: int) -> list[Any]:
    from gpuprov.testing import HostSpec

    specs = []
    for i in range(n):
        preset, group, layout = RACK[i % len(RACK)]
        specs.append(HostSpec(preset=preset, groups=(group,), vars={"mig_layout": layout}))
    return specs


def bench_lab(n: int, runs: int, apply_runs: int, tools: Tools, timeout: float, keep: Path | None) -> dict[str, Any]:
    from gpuprov.testing import Lab

    with tempfile.TemporaryDirectory(prefix="gpuprov-bench-", dir=WORK_PARENT) as tmp:
        say(f"{n} hosts: starting the lab")
        with Lab(lab_specs(n), start_timeout=max(60.0, 2.0 * n)) as lab:
            say(f"{n} hosts: lab up in {lab.start_seconds:.1f}s ({lab.names[0]} at {lab.host(lab.names[0]).address})")
            bench = LabBench(lab, tools, Path(tmp), timeout)
            bench.prepare()
            bench.run(runs, apply_runs)
            if keep is not None:
                bench.keep(keep)
            say(f"{n} hosts: done; tearing the lab down")
    def med(values: list[float]) -> float | None:
        return round(statistics.median(values), 3) if values else None

    return {
        "hosts": n, "runs": runs, "apply_runs": apply_runs,
        "plan_converged_s": {t: med(v) for t, v in bench.plan_times.items()},
        "apply_s": {t: med(v) for t, v in bench.apply_times.items()},
        "_changes": bench.changes, "_steps": bench.steps,
        "_plan_all": bench.plan_times, "_apply_all": bench.apply_times,
        "_plan_cpu": {t: med(v) for t, v in bench.plan_cpu.items()},
        "_apply_cpu": {t: med(v) for t, v in bench.apply_cpu.items()},
    }


# --------------------------------------------------------------------------------------------- sim hosts


def sim_inventory(path: Path, n: int) -> None:
    lines = ["# bench/run.py: simulated hosts in process (ansible_connection=sim)\n"]
    for i in range(n):
        preset, group, layout = RACK[i % len(RACK)]
        lines.append(f"sim{i + 1:04d} sim_preset={preset} mig_layout={layout}\n")
    lines.append("\n[all:vars]\nansible_connection=sim\n")
    path.write_text("".join(lines))


def bench_sim(sizes: Sequence[int], runs: int, tools: Tools, timeout: float) -> dict[str, Any]:
    """Plan ``sizes`` in-process sim hosts in a subprocess: wall time and peak RSS per size (median over
    ``runs`` for the largest, one run for the others), after an untimed first plan that creates their state."""
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="gpuprov-bench-sim-", dir=WORK_PARENT) as tmp:
        env = dict(os.environ, XDG_STATE_HOME=str(Path(tmp) / "state"))
        for n in sizes:
            inv = Path(tmp) / f"sim{n}.ini"
            sim_inventory(inv, n)
            argv = [tools.gpuprov, "plan", "-i", str(inv), str(PLAYBOOK)]
            first = timed(argv, timeout=timeout, env=env, cwd=tmp)
            if first.code not in (0, 2):
                raise BenchError(f"gpuprov plan of {n} sim hosts exited {first.code}:\n{first.tail()}")
            times, rss = [], []
            for i in range(min(runs, 2) if n == max(sizes) else 1):
                r = timed(argv, timeout=timeout, env=env, cwd=tmp)
                if r.code not in (0, 2):
                    raise BenchError(f"gpuprov plan of {n} sim hosts exited {r.code}:\n{r.tail()}")
                times.append(r.seconds)
                rss.append(r.maxrss_kb / 1024)
                say(f"sim, {n} hosts, run {i + 1}: plan {r.seconds:.2f}s, peak {rss[-1]:.0f} MB")
            out[str(n)] = {"plan_s": round(statistics.median(times), 3), "peak_mb": round(max(rss), 1),
                           "first_plan_s": round(first.seconds, 3)}
    return out


# ------------------------------------------------------------------------------------------------ reporting


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{os.cpu_count()} x {model}, {mem:.0f} GiB RAM, Linux {platform.release()}, "
            f"Python {platform.python_version()}")


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a is not None and b else "-"


def secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _met(a: float | None, factor: float, b: float | None) -> str:
    """Whether ``a * factor <= b`` (gpuprov's time, the factor the target asks, the other tool's time)."""
    if a is None or b is None:
        return "not measured"
    return _verdict(a * factor <= b)


def _row(label: str, values: Mapping[str, float | None]) -> str:
    g = values.get("gpuprov")
    cells = [secs(values.get(t)) if t in values else "-" for t in PLAN_TOOLS]
    ratios = [ratio(g, values.get(t)) if t in values else "-" for t in PLAN_TOOLS[1:]]
    return f"| {label} | " + " | ".join(cells + ratios) + " |"


def table(result: Mapping[str, Any]) -> str:
    """The figures as a Markdown table (what bench/README.md records), with the targets of issue 9."""
    p, a = result["plan_converged_s"], result["apply_s"]
    g = p["gpuprov"]
    rows = [
        f"{result['hosts']} lab hosts over SSH, medians (seconds; lower is better):",
        "",
        "| work | gpuprov | Ansible | pyinfra | floor | gpuprov/Ansible | gpuprov/pyinfra | gpuprov/floor |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        _row(f"plan, converged rack ({result['runs']} runs)", p),
        _row(f"apply from scratch ({result['apply_runs']} runs)", a),
        _row("CPU on the control node, plan", result["_plan_cpu"]),
        _row("CPU on the control node, apply", result["_apply_cpu"]),
        "",
        "CPU on the control node: user + system time of the tool's process and the children it waited for "
        "(Ansible's workers and ssh), not the hosts' own work.",
        f"From scratch gpuprov planned {result['_changes']} change(s), {result['_steps']} step(s) over the rack.",
        "Targets: plan <= 1.5x floor: " + _met(g, 1 / 1.5, p["floor"])
        + "; plan >= 4x faster than Ansible: " + _met(g, 4, p["ansible"])
        + "; >= 2x faster than pyinfra: " + _met(g, 2, p["pyinfra"])
        + "; apply >= 3x faster than Ansible: " + _met(a["gpuprov"], 3, a["ansible"]) + ".",
    ]
    return "\n".join(rows)


def sim_table(sim: Mapping[str, Any]) -> str:
    rows = ["In-process `sim` connection, `gpuprov plan` in a subprocess:", "",
            "| sim hosts | plan (s) | per host (ms) | peak RSS (MB) |", "|---:|---:|---:|---:|"]
    for n, r in sorted(sim.items(), key=lambda kv: int(kv[0])):
        rows.append(f"| {n} | {r['plan_s']:.2f} | {1000 * r['plan_s'] / int(n):.2f} | {r['peak_mb']:.0f} |")
    big = sim[max(sim, key=int)]
    rows += ["", f"Target: {max(map(int, sim))} hosts in < 5 s: {_verdict(big['plan_s'] < 5)}; "
             f"< 500 MB: {_verdict(big['peak_mb'] < 500)}."]
    return "\n".join(rows)


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


# ------------------------------------------------------------------------------------------------------ main


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="Example: sudo python3 bench/run.py --hosts 16,32 --runs 5")
    ap.add_argument("--hosts", default="16,32", help="lab sizes, comma-separated (default 16,32)")
    ap.add_argument("--runs", type=int, default=5, help="timed runs per tool and size (default 5)")
    ap.add_argument("--apply-runs", type=int, default=None, help="of those, how many also apply from scratch "
                    "(default: all of them; 0: plans only, the rack converged once by gpuprov, untimed)")
    ap.add_argument("--sim-hosts", type=int, default=1000, help="sim hosts to plan in process (default 1000; "
                                                                "0 skips; also a quarter and a half of it)")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds one tool run may take (default 600)")
    ap.add_argument("--venv", type=Path, default=VENV, help=f"where ansible-core and pyinfra are (default {VENV})")
    ap.add_argument("--out", type=Path, default=BENCH / "results.json", help="results file (default "
                    "bench/results.json; further lab sizes go beside it as results-<N>.json)")
    ap.add_argument("--sim-only", action="store_true", help="only the sim hosts; their figures replace the "
                    "sim1000 entry of the results files already there (--out and its results-<N>.json)")
    ap.add_argument("--keep", action="store_true", help=f"copy the generated Ansible/pyinfra inputs of the first "
                    f"lab size to {LAST_RUN}/ for review")
    args = ap.parse_args(argv)
    try:
        args.sizes = [int(x) for x in args.hosts.split(",") if x.strip()]
    except ValueError:
        ap.error(f"--hosts {args.hosts!r}: give lab sizes as numbers, e.g. --hosts 16,32")
    if not args.sizes or any(n < 1 or n > 64 for n in args.sizes):
        ap.error(f"--hosts {args.hosts!r}: each lab size is 1 to 64 hosts")
    if args.runs < 1 or args.runs > 50:
        ap.error(f"--runs {args.runs}: give 1 to 50")
    if args.apply_runs is None:
        args.apply_runs = args.runs
    if not 0 <= args.apply_runs <= args.runs:
        ap.error(f"--apply-runs {args.apply_runs}: give 0 (plans only) to --runs ({args.runs})")
    return args


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)  # a kill tears the labs down like Ctrl-C does
    try:
        from gpuprov.testing import missing_parts

        missing = missing_parts()
        if missing:
            raise BenchError("the SSH lab cannot run here: " + "; ".join(missing))
        tools = Tools.find(args.venv)
        versions = tools.versions()
        say("tools: " + "; ".join(f"{k}: {v}" for k, v in versions.items()))
        results = []
        for i, n in enumerate([] if args.sim_only else args.sizes):
            results.append(bench_lab(n, args.runs, args.apply_runs, tools, args.timeout,
                                     LAST_RUN if args.keep and i == 0 else None))
        sim: dict[str, Any] = {}
        if args.sim_hosts:
            s = args.sim_hosts
            sim = bench_sim(sorted({max(1, s // 4), max(1, s // 2), s}), min(args.runs, 3), tools, args.timeout)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted; the labs were torn down", file=sys.stderr)
        return 130
    big = sim.get(str(args.sim_hosts), {"plan_s": None, "peak_mb": None})
    if args.sim_only:
        for path in [args.out, *sorted(args.out.parent.glob(f"{args.out.stem}-*{args.out.suffix}"))]:
            if path.is_file():
                shaped = json.loads(path.read_text())
                shaped["sim1000"] = {"plan_s": big["plan_s"], "peak_mb": big["peak_mb"]}
                path.write_text(json.dumps(shaped, indent=1) + "\n")
                say(f"updated the sim figures in {path}")
    for i, result in enumerate(results):
        shaped = {"hosts": result["hosts"], "runs": result["runs"],
                  "plan_converged_s": result["plan_converged_s"], "apply_s": result["apply_s"],
                  "sim1000": {"plan_s": big["plan_s"], "peak_mb": big["peak_mb"]}, "machine": machine()}
        path = args.out if i == 0 else args.out.with_name(f"{args.out.stem}-{result['hosts']}{args.out.suffix}")
        path.write_text(json.dumps(shaped, indent=1) + "\n")
        print(table(result) + "\n")
        say(f"wrote {path}")
    if sim:
        print(sim_table(sim) + "\n")
    print(f"Machine: {machine()}. Tools: " + "; ".join(f"{v}" for v in versions.values()) + ".")
    print("Command: python3 bench/run.py " + " ".join(argv))
    return 0


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
