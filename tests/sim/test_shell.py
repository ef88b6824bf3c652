"""The sim connection's in-process shell: the sh subset gpuprov uses, against the host root, as bash prints
it."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from pathlib import Path

import pytest
from helpers import require_tool

from gpuprov.sim.host import SimHost
from gpuprov.sim.machine import Gpu, Machine, NumaNode
from gpuprov.sim.shell import HostFS, run_argv, run_line, which


def make_machine(gpus: int = 1) -> Machine:
    return Machine(
        hostname="node1",
        driver_version="580.126.09",
        cuda_version="13.0",
        gpus=[
            Gpu(
                index=i,
                product="NVIDIA H100 80GB HBM3",
                uuid=f"GPU-{i:08x}-2222-3333-4444-555555555555",
                serial=str(1650000000000 + i),
                bus_id=f"00000000:{0x18 + i:02X}:00.0",
                numa_node=0,
                memory_mib=81559,
            )
            for i in range(gpus)
        ],
        numa_nodes=[NumaNode(id=0, cpus=list(range(16)), memory_mb=515000, distances=[10])],
    )


@pytest.fixture
def host(tmp_path: Path) -> SimHost:
    sim = SimHost(tmp_path / "state")
    sim.save(make_machine())
    sim.root.mkdir(parents=True)
    return sim


def sh(host: SimHost, line: str, stdin: str = "", env: dict[str, str] | None = None) -> tuple[str, str, int]:
    result = run_line(host, line, stdin=stdin, env=env)
    return result.stdout, result.stderr, result.exit_code


# --- the same text as bash


BASH_LINES = [
    "echo 'a  b' \"c  d\" e\\ f",
    "echo a; ;",
    "echo a &&",
    "echo 'a",
    'echo "a',
    "echo )",
    "echo a ||| b",
    "if true; then echo",
    "nosuchcommand",
    "true\nnosuchcommand x",
    "echo $((2*3+1)) $((7/2)) $((-7%3)) $((1<2)) $((0x10))",
    "x=5; echo ${x:-d} ${y:-d} ${x:+set} ${#x} ${y-unset}",
    "p=/usr/lib/x.service; echo ${p#*/} ${p##*/} ${p%.*} ${p%%/*}",
    "printf '%5s|%-4d|%x|%05.1f|%c|%%\\n' ab 7 255 3.14159 xyz",
    "printf '%s\\n' a b c",
    "printf 'no newline'",
    "echo -n a; echo -e 'b\\tc'; echo '\\t'",
    "false; echo $?; true; echo $?",
    "false || echo or; true && echo and; false && echo no || echo yes",
    "echo a | false; echo $?",
    "set -o pipefail; false | true; echo $?",
    "! false; echo $?",
    "for i in 1 2 3; do echo $i; done | tr 1 X",
    "i=0; while [ $i -lt 3 ]; do echo $i; i=$((i+1)); done",
    "case abc in a|b) echo one;; a*) echo two;; *) echo three;; esac",
    'f() { echo "in f: $1 $#"; return 4; }; f x y; echo $?',
    "{ echo a; echo b; } | sort -r",
    "(exit 3); echo $?",
    "x=1; (x=2); echo $x",
    "echo $(echo a; echo b) \"$(printf 'c\\nd')\"",
    "echo `echo back`",
    "exit 300",
    "exit abc",
    "test 1 -eq x; echo $?",
    "[ a = a; echo $?",
    "[ -n '' ] || [ -z '' ] && echo empty",
    "[ 2 -gt 1 -a 1 -ge 1 ] && [ ! a = b ] && echo ok",
    "echo err >&2; echo out",
    "echo err 2>&1 >&2 | cat",
    "(echo e >&2) 2>&1 | tr e E",
    "echo $nothing > $nothing",
    "echo a >&3",
    "set -e; false; echo after",
    "set -e; false || true; echo survived",
    "set -u; echo $undefined_var; echo after",
    "bash -c 'echo $0 $1 $#' zero one",
    "sh -c 'exit 7'; echo $?",
    "X=1 sh -c 'echo X=$X'; echo \"${X-unset}\"",
    'read a b <<EOF\nfirst second third\nEOF\necho "$b"',
    "cat <<'EOF'\n$HOME `x`\nEOF",
    'echo a b c | while read x rest; do echo "$rest|$x"; done',
    "IFS=:; set -- a:b:c; echo $2",
    "echo one two | { read x; echo $x; }",
    "echo hello | grep -c l; echo hello | grep -q z; echo $?",
    "printf 'b\\na\\nb\\n' | sort -u",
    "printf '10\\n9\\n100\\n' | sort -n | tail -n 1",
    "printf 'a\\nb\\nc\\n' | head -n 2 | wc -l",
    "echo a:b:c | cut -d: -f2",
    "echo AbC | tr A-Z a-z",
    "echo aGVsbG8K | base64 -d",
    "basename /a/b/c.txt .txt; dirname /a/b/c.txt",
    "command -v cd echo; command -v nosuch; echo $?",
    "type echo",
    "echo ~",
    "trap 'echo bye' EXIT; echo hi",
    'echo "$@" | wc -c',
    "f() { local x=inner; echo $x; }; x=outer; f; echo $x",
    "echo $'a\\tb' $'it\\'s'",
    "for f in /no-such-dir/*.service; do echo \"$f\"; done",
]


@pytest.mark.parametrize("line", BASH_LINES)
def test_prints_what_bash_prints(host: SimHost, line: str) -> None:
    bash = require_tool("bash")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/root", "LC_ALL": "C"}
    real = subprocess.run(
        ["bash", "-c", line], executable=bash, capture_output=True, text=True, env=env, cwd="/", check=False
    )
    out, err, rc = sh(host, line, env={"PATH": "/usr/bin:/bin", "HOME": "/root", "LC_ALL": "C"})
    assert (out, err, rc) == (real.stdout, real.stderr, real.returncode)


# --- the contract


def test_unknown_command_is_127_with_bashs_message(host: SimHost) -> None:
    assert sh(host, "nosuch --flag") == ("", "bash: line 1: nosuch: command not found\n", 127)
    assert sh(host, "echo a\nnosuch") == ("a\n", "bash: line 2: nosuch: command not found\n", 127)


def test_syntax_errors_exit_2_after_earlier_lines_ran(host: SimHost) -> None:
    out, err, rc = sh(host, "echo first\necho a &&")
    assert (out, rc) == ("first\n", 2)
    assert err == "bash: -c: line 3: syntax error: unexpected end of file\n"


def test_stdin_and_env(host: SimHost) -> None:
    assert sh(host, "cat; echo $GREETING", stdin="in\n", env={"GREETING": "hi"}) == ("in\nhi\n", "", 0)
    assert sh(host, "echo $HOME $USER", env=None)[0] == "/root root\n"


def test_files_live_in_the_host_root(host: SimHost) -> None:
    path = "/etc/gpuprov-shell-test-only-in-root/f"
    out, err, rc = sh(host, f"mkdir -p {os.path.dirname(path)} && echo data > {path} && cat {path}")
    assert (out, err, rc) == ("data\n", "", 0)
    assert (host.root / path.lstrip("/")).read_text() == "data\n"
    assert not Path(path).exists()


def test_redirections(host: SimHost) -> None:
    sh(host, "mkdir -p /tmp")
    assert sh(host, "echo a > /tmp/f; echo b >> /tmp/f; cat < /tmp/f") == ("a\nb\n", "", 0)
    assert sh(host, "cat /nope 2>/dev/null; echo $?") == ("1\n", "", 0)
    assert sh(host, "cat /nope 2>&1 >/dev/null") == ("cat: /nope: No such file or directory\n", "", 1)
    assert sh(host, "cat /nope >/dev/null 2>&1; echo rc=$?") == ("rc=1\n", "", 0)
    assert sh(host, "cat < /nope") == ("", "bash: line 1: /nope: No such file or directory\n", 1)
    assert sh(host, "echo x > /nodir/f") == ("", "bash: line 1: /nodir/f: No such file or directory\n", 1)
    assert sh(host, "{ echo 1; echo 2 >&2; } > /tmp/g 2>&1; cat /tmp/g") == ("1\n2\n", "", 0)
    assert sh(host, "echo x &> /tmp/h; cat /tmp/h") == ("x\n", "", 0)


def test_subshell_and_cd(host: SimHost) -> None:
    sh(host, "mkdir -p /etc/x")
    assert sh(host, "(cd /etc/x && pwd); pwd; cd /etc && cat x 2>&1") == (
        "/etc/x\n/\ncat: x: Is a directory\n",
        "",
        1,
    )
    assert sh(host, "cd /nope") == ("", "bash: line 1: cd: /nope: No such file or directory\n", 1)


def test_symbolic_links_resolve_inside_the_root(host: SimHost) -> None:
    out, err, rc = sh(
        host,
        "mkdir -p /usr/lib/u /etc/w && echo unit > /usr/lib/u/a.service && "
        "ln -sf /usr/lib/u/a.service /etc/w/a.service && readlink /etc/w/a.service && "
        "readlink -f /etc/w/a.service && cat /etc/w/a.service && test -L /etc/w/a.service",
    )
    assert (out, err, rc) == ("/usr/lib/u/a.service\n/usr/lib/u/a.service\nunit\n", "", 0)
    assert os.readlink(host.root / "etc/w/a.service") == "/usr/lib/u/a.service"
    assert HostFS(host.root).local("/etc/w/a.service") == host.root / "usr/lib/u/a.service"


@pytest.mark.parametrize(
    ("expr", "status"),
    [
        ("-e /etc/f", 0),
        ("-f /etc/f", 0),
        ("-d /etc/f", 1),
        ("-d /etc", 0),
        ("-s /etc/f", 0),
        ("-s /etc/empty", 1),
        ("-x /etc/f", 1),
        ("-x /etc/run.sh", 0),
        ("-e /nope", 1),
        ("-n x", 0),
        ("-z x", 1),
        ("a = a", 0),
        ("a != a", 1),
        ("-x /usr/bin/nvidia-cuda-mps-control", 0),
        ("-e /usr/bin/no-such-tool", 1),
    ],
)
def test_test_operators(host: SimHost, expr: str, status: int) -> None:
    sh(
        host,
        "mkdir -p /etc && echo x > /etc/f && touch /etc/empty && echo : > /etc/run.sh && chmod +x "
        "/etc/run.sh",
    )
    assert sh(host, f"test {expr}") == ("", "", status)
    assert sh(host, f"[ {expr} ]") == ("", "", status)


def test_file_builtins(host: SimHost) -> None:
    sh(host, "mkdir -p /d/sub && printf 'one\\ntwo\\n' > /d/f")
    digest = hashlib.sha256(b"one\ntwo\n").hexdigest()
    assert sh(host, "sha256sum /d/f") == (f"{digest}  /d/f\n", "", 0)
    assert sh(host, "cp /d/f /d/g && mv /d/g /d/sub/ && ls /d /d/sub") == (
        "/d:\nf\nsub\n\n/d/sub:\ng\n",
        "",
        0,
    )
    assert sh(host, "chmod 0640 /d/f && stat -c '%a %s %F %n' /d/f") == ("640 8 regular file /d/f\n", "", 0)
    assert sh(host, "chmod u+x,g-r /d/f && stat -c %a /d/f") == ("700\n", "", 0)
    assert sh(host, "chown nvidia-mps:video /d/f && stat -c '%U %G' /d/f") == ("nvidia-mps video\n", "", 0)
    assert sh(host, "head -n 1 /d/f; tail -n 1 /d/f; wc -l < /d/f") == ("one\ntwo\n2\n", "", 0)
    assert sh(host, "grep -E '^t.o$' /d/f; grep -F -v one /d/f; grep -c o /d/f") == ("two\ntwo\n2\n", "", 0)
    assert sh(host, "echo x | tee /d/t >/dev/null; cat /d/t") == ("x\n", "", 0)
    assert sh(host, "rm /d/nope") == ("", "rm: cannot remove '/d/nope': No such file or directory\n", 1)
    assert sh(host, "rm -f /d/nope; rm /d/sub") == ("", "rm: cannot remove '/d/sub': Is a directory\n", 1)
    assert sh(host, "rm -rf /d/sub && ls /d") == ("f\nt\n", "", 0)
    assert sh(host, "mkdir /d") == ("", "mkdir: cannot create directory '/d': File exists\n", 1)
    out, _, rc = sh(host, "t=$(mktemp -d) && test -d $t && echo $t")
    assert rc == 0 and out.startswith("/tmp/tmp.") and (host.root / out.strip().lstrip("/")).is_dir()
    assert sh(host, "printf 'a b' | base64 | base64 -d") == ("a b", "", 0)


def test_system_builtins(host: SimHost) -> None:
    assert sh(host, "uname -n; hostname; id -u; id -un") == ("node1\nnode1\n0\nroot\n", "", 0)
    assert sh(host, "uname -r")[0].strip()
    start = time.monotonic()
    assert sh(host, "sleep 30 && echo slept") == ("slept\n", "", 0)
    assert time.monotonic() - start < 1
    assert sh(host, "sleep x") == (
        "",
        "sleep: invalid time interval 'x'\nTry 'sleep --help' for more information.\n",
        1,
    )
    assert sh(host, "command -v nvidia-cuda-mps-control systemctl") == (
        "/usr/bin/nvidia-cuda-mps-control\n/usr/bin/systemctl\n",
        "",
        0,
    )
    assert sh(host, "/usr/bin/nvidia-cuda-mps-control -h | head -n 1") == (
        "CUDA MPS Control for Linux/Unix.\n",
        "",
        0,
    )


# --- real scripts


def test_an_executable_in_the_root_runs_under_real_bash_with_the_stand_ins(host: SimHost) -> None:
    require_tool("bash")
    script = """#!/bin/bash
set -euo pipefail
echo "args: $* in ${BASH_VERSION%%.*}"
CUDA_MPS_PIPE_DIRECTORY=/tmp/p nvidia-cuda-mps-control -d
echo get_default_active_thread_percentage | CUDA_MPS_PIPE_DIRECTORY=/tmp/p nvidia-cuda-mps-control
echo oops >&2
exit 3
"""
    target = host.root / "usr/local/libexec/gpuprov/helper"
    target.parent.mkdir(parents=True)
    target.write_text(script)
    assert sh(host, "/usr/local/libexec/gpuprov/helper a b") == (
        "",
        "bash: line 1: /usr/local/libexec/gpuprov/helper: Permission denied\n",
        126,
    )
    target.chmod(0o755)
    out, err, rc = sh(host, "/usr/local/libexec/gpuprov/helper a b")
    assert (out, err, rc) == ("args: a b in 5\n100.0\n", "oops\n", 3)
    assert (host.root / "tmp/p/control").exists()
    # found on PATH; the second -d on the same pipe directory fails and ``set -e`` ends the script there
    assert sh(host, "PATH=/usr/local/libexec/gpuprov:$PATH helper x 2>&1; echo rc=$?") == (
        "args: x in 5\nAn instance of this daemon is already running\nrc=1\n",
        "",
        0,
    )
    assert sh(host, "/usr/local/libexec/gpuprov/nope") == (
        "",
        "bash: line 1: /usr/local/libexec/gpuprov/nope: No such file or directory\n",
        127,
    )


def test_run_argv_executes_without_a_shell(host: SimHost) -> None:
    assert run_argv(host, ["/bin/sh", "-c", "echo $A"], env={"A": "1"}).stdout == "1\n"
    assert run_argv(host, ["/usr/bin/echo", "$A", "|", "x"], env={"A": "1"}).stdout == "$A | x\n"
    missing = run_argv(host, ["/opt/bin/tool"])
    assert (missing.exit_code, missing.stderr) == (
        127,
        "bash: line 1: /opt/bin/tool: No such file or directory\n",
    )
    assert which(host, "systemctl") == "/usr/bin/systemctl"
    assert which(host, "/usr/bin/nvidia-cuda-mps-control") == "/usr/bin/nvidia-cuda-mps-control"
    assert which(host, "/opt/bin/nvidia-cuda-mps-control") is None
    assert which(host, "nosuch") is None


# --- shims and python -m gpuprov.sim


def test_shims_run_the_stand_ins_for_the_host_in_their_environment(host: SimHost, tmp_path: Path) -> None:
    import sys

    from gpuprov.sim.shims import install_shims

    shellcheck = require_tool("shellcheck")
    shims = tmp_path / "shims"
    (shims).mkdir()
    (shims / "unrelated").write_text("keep me\n")
    (shims / "old-tool").write_text("#!/bin/sh\n# gpuprov simulator shim: stale\n")
    install_shims(shims, sys.executable)
    names = sorted(p.name for p in shims.iterdir())
    assert {"nvidia-cuda-mps-control", "systemctl", "journalctl", "unrelated"} <= set(names)
    assert "old-tool" not in names
    checked = subprocess.run(
        [shellcheck, "-s", "sh", *(str(shims / n) for n in names if n != "unrelated")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout
    env = {
        "PATH": f"{shims}:/usr/bin:/bin",
        "GPUPROV_SIM_STATE": str(host.state_dir),
        "GPUPROV_SIM_ROOT": str(host.root),
    }
    started = subprocess.run(
        ["nvidia-cuda-mps-control", "-d"], env=env, capture_output=True, text=True, check=False
    )
    assert (started.stdout, started.stderr, started.returncode) == ("", "", 0)
    asked = subprocess.run(
        ["sh", "-c", "echo get_default_active_thread_percentage | nvidia-cuda-mps-control"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (asked.stdout, asked.returncode) == ("100.0\n", 0)
    assert (host.root / "tmp/nvidia-mps/control").exists()
    missing = subprocess.run(
        ["systemctl", "start", "x"], env={"PATH": env["PATH"]}, capture_output=True, text=True, check=False
    )
    assert missing.returncode == 1 and "GPUPROV_SIM_STATE is not set" in missing.stderr


def test_python_m_gpuprov_sim_without_a_command(host: SimHost) -> None:
    import sys

    usage = subprocess.run(
        [sys.executable, "-m", "gpuprov.sim"],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert usage.returncode == 2 and usage.stderr.startswith("usage: python -m gpuprov.sim COMMAND")
    unknown = subprocess.run(
        [sys.executable, "-m", "gpuprov.sim", "no-such-tool"],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert (unknown.returncode, unknown.stderr) == (127, "gpuprov.sim: no-such-tool: no such stand-in\n")
