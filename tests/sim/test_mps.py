"""The nvidia-cuda-mps-control stand-in: daemons per pipe directory, front-end texts, logs, servers and
clients.

The log cases under ``cases/mps/logs/*.yml`` are run here rather than by ``test_golden.py``: a log line starts
with its date and PID, which that runner compares verbatim. Here both the capture and the simulated log are
normalised first (``[<date> Control <pid>]``, PIDs inside messages), then compared line by line (``lines``),
as a prefix of the simulated log (``prefix``: the capture was cut short) or line by line in any order
(``subset``: documentation examples that are not one session)."""

from __future__ import annotations

import re
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpuprov.sim import mps
from gpuprov.sim.host import SimHost
from gpuprov.sim.machine import ComputeInstance, Gpu, GpuInstance, Machine, NumaNode
from gpuprov.sim.shell import DEFAULT_ENV, run_line

CASES = Path(__file__).parent / "cases" / "mps" / "logs"
H100 = "NVIDIA H100 80GB HBM3"
MIG_UUIDS = ("MIG-5c3f2a16-8d2e-5f0b-9b1e-3a7c4d2e1f01", "MIG-7e1d3b25-0f4a-5c6d-8e9f-1a2b3c4d5e02")


def make_machine(gpu: str = H100, count: int = 1, cuda: str = "13.0", mig: bool = False) -> Machine:
    gpus = []
    for i in range(count):
        g = Gpu(
            index=i,
            product=gpu,
            uuid=f"GPU-{0xA0B1C2D3 + i:08x}-1f2e-3d4c-5b6a-79880a1b2c3d",
            serial=str(1320000000000 + i),
            bus_id=f"00000000:{0x1B + i:02X}:00.0",
            numa_node=0,
            memory_mib=81559,
        )
        if mig and i == 0:
            g.mig_current = g.mig_pending = True
            g.gpu_instances = [
                GpuInstance(
                    id=1,
                    profile_id=9,
                    start=0,
                    size=4,
                    compute_instances=[
                        ComputeInstance(id=0, profile_id=2, start=0, size=3, uuid=MIG_UUIDS[0])
                    ],
                ),
                GpuInstance(
                    id=2,
                    profile_id=9,
                    start=4,
                    size=4,
                    compute_instances=[
                        ComputeInstance(id=0, profile_id=2, start=0, size=3, uuid=MIG_UUIDS[1])
                    ],
                ),
            ]
        gpus.append(g)
    return Machine(
        hostname="node",
        driver_version="580.65.06",
        cuda_version=cuda,
        gpus=gpus,
        numa_nodes=[NumaNode(id=0, cpus=list(range(8)), memory_mb=1024000, distances=[10])],
    )


def new_host(tmp_path: Path, **kwargs: Any) -> SimHost:
    sim = SimHost(tmp_path / "state")
    sim.save(make_machine(**kwargs))
    sim.root.mkdir(parents=True, exist_ok=True)
    return sim


@pytest.fixture
def host(tmp_path: Path) -> SimHost:
    return new_host(tmp_path)


def sh(host: SimHost, line: str, stdin: str = "", **env: str) -> tuple[str, str, int]:
    result = run_line(host, line, stdin=stdin, env={**DEFAULT_ENV, **env})
    return result.stdout, result.stderr, result.exit_code


def ctl(host: SimHost, commands: str, pipe: str = mps.DEFAULT_PIPE_DIR) -> tuple[str, str, int]:
    return sh(host, "nvidia-cuda-mps-control", stdin=commands, CUDA_MPS_PIPE_DIRECTORY=pipe)


# --- the captured logs


_LOG_PREFIX = re.compile(
    r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} (Control|Other|Server|Legacy Server) +\d+\]", re.M
)


def normalise_log(text: str) -> list[str]:
    text = _LOG_PREFIX.sub(r"[<date> \1 <pid>]", text)
    text = re.sub(r"\b(server|SERVER|Server|CLIENT|client) \d+", r"\1 <pid>", text)
    text = re.sub(r"^(\[[^\]]*\] )\d+$", r"\1<pid>", text, flags=re.M)
    text = re.sub(r"GPU-[0-9a-fA-F-]{36}", "GPU-<uuid>", text)
    return [line.rstrip() for line in text.splitlines()]


@pytest.mark.parametrize("case_file", sorted(CASES.glob("*.yml")), ids=lambda p: p.stem)
def test_logs_read_like_the_captures(case_file: Path, fixtures_dir: Path, tmp_path: Path) -> None:
    case = yaml.safe_load(case_file.read_text())
    spec = case["machine"]
    sim = new_host(tmp_path, gpu=spec["gpu"], count=spec.get("count", 1), cuda=spec.get("cuda", "13.0"))
    env = {**DEFAULT_ENV, **case.get("env", {})}
    pipe = env.get("CUDA_MPS_PIPE_DIRECTORY", mps.DEFAULT_PIPE_DIR)
    clients: list[int] = []
    for step in case["steps"]:
        if "run" in step:
            result = run_line(sim, step["run"], env=env)
            assert result.exit_code == step.get("exit_code", 0), result
            if "stdout" in step:
                assert result.stdout == step["stdout"]
        elif "client" in step:
            pid = mps.connect_client(sim, pipe_dir=pipe, **step["client"])
            assert pid is not None
            clients.append(pid)
        elif "disconnect" in step:
            for pid in clients:
                mps.disconnect_client(sim, pid)
    expected_text = (fixtures_dir / case["fixture"]).read_text()
    if "fixture_lines" in case:
        first, last = case["fixture_lines"]
        expected_text = "".join(expected_text.splitlines(keepends=True)[first - 1 : last])
    actual_text = (sim.root / case["log"].lstrip("/")).read_text()
    patterns = [re.compile(p) for p in case["lines"]]

    def keep(text: str) -> list[str]:
        return [line for line in normalise_log(text) if any(p.search(line) for p in patterns)]

    expected, actual = keep(expected_text), keep(actual_text)
    assert expected, f"{case_file.name}: the line patterns match nothing in the capture"
    if case["compare"] == "prefix":
        assert actual[: len(expected)] == expected
    elif case["compare"] == "subset":
        assert [line for line in expected if line not in actual] == []
    else:
        assert actual == expected


def test_log_lines_have_the_captures_prefix(host: SimHost) -> None:
    sh(host, "nvidia-cuda-mps-control -d")
    pid = mps.daemons(host)[mps.DEFAULT_PIPE_DIR]["pid"]
    first = (host.root / "var/log/nvidia-mps/control.log").read_text().splitlines()[0]
    assert re.fullmatch(
        rf"\[\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{{3}} Control {pid:5d}\] Starting control "
        r"daemon using socket /tmp/nvidia-mps/control",
        first,
    )
    server = mps.connect_client(host, name="./a") and int(ctl(host, "get_server_list")[0])
    log = (host.root / "var/log/nvidia-mps/control.log").read_text()
    assert (
        f"Control {server:5d}] Starting new server {server} for user 0\n" in log
    )  # CUDA 13: the server's PID


# --- the daemon


def test_daemon_start_prints_nothing_and_makes_the_pipe_directory(host: SimHost) -> None:
    assert sh(host, "nvidia-cuda-mps-control -d") == ("", "", 0)
    pipe = host.root / "tmp/nvidia-mps"
    modes = {p.name: stat.filemode(p.lstat().st_mode) for p in pipe.iterdir()}
    assert modes == {
        "control": "srw-rw-rw-",
        "control_lock": "-rw-rw-rw-",
        "control_privileged": "srwxr-xr-x",
        "log": "prwxrwxrwx",
        "nvidia-cuda-mps-control.pid": "-rw-rw-rw-",
    }
    pid = mps.daemons(host)[mps.DEFAULT_PIPE_DIR]["pid"]
    assert (pipe / "nvidia-cuda-mps-control.pid").read_text() == f"{pid}\n"
    assert sh(host, "ls /tmp/nvidia-mps; test -S /tmp/nvidia-mps/control && test -p /tmp/nvidia-mps/log") == (
        "control\ncontrol_lock\ncontrol_privileged\nlog\nnvidia-cuda-mps-control.pid\n",
        "",
        0,
    )
    assert sh(host, "cat /tmp/nvidia-mps/log") == ("", "", 0)  # nothing writes into the simulated FIFO


def test_one_daemon_per_pipe_directory(host: SimHost) -> None:
    assert sh(host, "nvidia-cuda-mps-control -d") == ("", "", 0)
    assert sh(host, "nvidia-cuda-mps-control -d") == (
        "An instance of this daemon is already running\n",
        "",
        1,
    )
    assert sh(
        host,
        "nvidia-cuda-mps-control -d",
        CUDA_MPS_PIPE_DIRECTORY="/run/nvidia-mps/gpu1",
        CUDA_MPS_LOG_DIRECTORY="/var/log/nvidia-mps/gpu1",
        CUDA_VISIBLE_DEVICES="1",
    ) == ("", "", 0)
    daemons = mps.daemons(host)
    assert sorted(daemons) == ["/run/nvidia-mps/gpu1", "/tmp/nvidia-mps"]
    assert daemons["/run/nvidia-mps/gpu1"]["visible_devices"] == "1"
    assert daemons["/run/nvidia-mps/gpu1"]["log_dir"] == "/var/log/nvidia-mps/gpu1"
    assert (host.root / "var/log/nvidia-mps/gpu1/control.log").is_file()


def test_front_end_without_a_daemon(host: SimHost) -> None:
    assert ctl(host, "get_server_list\n") == ("Cannot find MPS control daemon process\n", "", 1)
    assert sh(host, "echo quit | nvidia-cuda-mps-control || echo down") == (
        "Cannot find MPS control daemon process\ndown\n",
        "",
        0,
    )


def test_quit_stops_the_daemon_and_forgets_its_defaults(host: SimHost) -> None:
    sh(host, "nvidia-cuda-mps-control -d")
    assert ctl(host, "get_default_active_thread_percentage\n") == ("100.0\n", "", 0)
    assert ctl(host, "set_default_active_thread_percentage 25\nget_default_active_thread_percentage") == (
        "25.0\n25.0\n",
        "",
        0,
    )
    assert ctl(host, "quit\n") == ("", "", 0)
    assert mps.daemons(host) == {}
    assert sorted(p.name for p in (host.root / "tmp/nvidia-mps").iterdir()) == []
    assert "Cmd:quit" in (host.root / "var/log/nvidia-mps/control.log").read_text()
    assert ctl(host, "get_server_list\n") == ("Cannot find MPS control daemon process\n", "", 1)
    sh(host, "nvidia-cuda-mps-control -d")
    assert ctl(host, "get_default_active_thread_percentage") == ("100.0\n", "", 0)


def test_limits_and_values(host: SimHost) -> None:
    sh(host, "nvidia-cuda-mps-control -d")
    assert ctl(
        host, "set_default_active_thread_percentage 33.3\nset_default_active_thread_percentage 0\n"
    ) == ("33.3\nInvalid value: 0\n", "", 0)
    assert ctl(
        host,
        "set_default_device_pinned_mem_limit 0 10G\nget_default_device_pinned_mem_limit 0\n"
        "get_default_device_pinned_mem_limit 1\nset_default_device_pinned_mem_limit 0 10GB\n",
    ) == ("10G\nInvalid value: 0 10GB\n", "", 0)
    assert ctl(host, "set_default_client_priority 1\nget_default_client_priority\nfrobnicate\n") == (
        "1\nUnrecognized command: frobnicate\n",
        "",
        0,
    )
    assert sh(host, "nvidia-cuda-mps-control get_default_active_thread_percentage") == ("33.3\n", "", 0)


def test_foreground_daemon_logs_to_stdout_with_the_callers_pid(host: SimHost) -> None:
    out, err, rc = sh(host, "nvidia-cuda-mps-control -f", GPUPROV_SIM_PID="4321")
    assert (err, rc) == ("", 0)
    assert [line.split("] ", 1)[1] for line in out.splitlines()] == [
        "Starting control daemon using socket /tmp/nvidia-mps/control",
        "To connect CUDA applications to this daemon, set env CUDA_MPS_PIPE_DIRECTORY=/tmp/nvidia-mps",
        "CUDA MPS Control binary version: 13000",
    ]
    assert out.startswith("[") and " Control  4321] " in out
    assert mps.daemons(host)[mps.DEFAULT_PIPE_DIR]["pid"] == 4321


# --- servers, devices, clients


def test_one_server_spans_every_gpu_its_daemon_serves(tmp_path: Path) -> None:
    sim = new_host(tmp_path, gpu="Tesla V100-SXM2-32GB", count=3, cuda="12.4")
    sh(sim, "nvidia-cuda-mps-control -d")
    clients = [
        mps.connect_client(sim, name="/cuda-samples/vectorAdd", device=d, used_memory_mib=10)
        for d in (0, 0, 1, 2)
    ]
    server = int(ctl(sim, "get_server_list")[0])
    rows = sorted((p.gpu, p.pid, p.type, p.name) for p in sim.load().processes)
    assert rows == sorted(
        [(g, server, "C", "nvidia-cuda-mps-server") for g in (0, 1, 2)]
        + [(g, c, "M+C", "/cuda-samples/vectorAdd") for g, c in zip((0, 0, 1, 2), clients, strict=True)]
    )
    assert ctl(sim, f"get_client_list {server}")[0].split() == [str(c) for c in clients]


def test_a_daemon_per_mig_device_shows_as_the_mig_guide_shows(tmp_path: Path) -> None:
    sim = new_host(tmp_path, mig=True)
    for uuid in MIG_UUIDS:
        assert sh(
            sim,
            f"mkdir -p /tmp/{uuid} && nvidia-cuda-mps-control -d",
            CUDA_VISIBLE_DEVICES=uuid,
            CUDA_MPS_PIPE_DIRECTORY=f"/tmp/{uuid}",
        ) == ("", "", 0)
        assert (
            mps.connect_client(sim, pipe_dir=f"/tmp/{uuid}", name="./bin/BlackScholes", used_memory_mib=326)
            is not None
        )
    rows = [
        (p.gpu, p.gi, p.ci, p.type, p.name) for p in sorted(sim.load().processes, key=lambda p: (p.gi, p.pid))
    ]
    # the capture's order: a client asks first, so its PID is below the server's it caused to start
    assert rows == [
        (0, 1, 0, "M+C", "./bin/BlackScholes"),
        (0, 1, 0, "C", "nvidia-cuda-mps-server"),
        (0, 2, 0, "M+C", "./bin/BlackScholes"),
        (0, 2, 0, "C", "nvidia-cuda-mps-server"),
    ]


def test_a_daemon_for_a_device_that_is_gone_runs_but_its_servers_fail(tmp_path: Path) -> None:
    sim = new_host(tmp_path, mig=True)
    stale = "MIG-00000000-1111-2222-3333-444444444444"
    assert sh(sim, "nvidia-cuda-mps-control -d", CUDA_VISIBLE_DEVICES=stale) == ("", "", 0)
    assert ctl(sim, "start_server -uid 0\nget_server_list\n") == ("", "", 0)
    log = (sim.root / "var/log/nvidia-mps/control.log").read_text()
    assert "Server encountered a fatal exception. Shutting down" in log
    assert re.search(r"Server \d+ exited with status 1\n", log)
    assert sim.load().processes == []


@pytest.mark.parametrize(
    ("visible", "expected"),
    [
        (None, [MIG_UUIDS[0], MIG_UUIDS[1], "GPU-a0b1c2d4-1f2e-3d4c-5b6a-79880a1b2c3d"]),
        ("1", [MIG_UUIDS[1]]),
        ("MIG-7e1d3b25", [MIG_UUIDS[1]]),
        ("GPU-a0b1c2d4,MIG-5c3f", ["GPU-a0b1c2d4-1f2e-3d4c-5b6a-79880a1b2c3d", MIG_UUIDS[0]]),
        ("MIG-GPU-a0b1c2d3-1f2e-3d4c-5b6a-79880a1b2c3d/2/0", [MIG_UUIDS[1]]),
        ("GPU-a0b1c2d3", []),  # a MIG-enabled GPU is no CUDA device
        ("7,0", []),  # CUDA stops at the first entry matching nothing
        ("0,bogus,1", [MIG_UUIDS[0]]),
        ("MIG-", []),  # ambiguous
    ],
)
def test_cuda_visible_devices(tmp_path: Path, visible: str | None, expected: list[str]) -> None:
    sim = new_host(tmp_path, mig=True, count=2)
    assert [d["uuid"] for d in mps.resolve_devices(sim.load(), visible)] == expected


def test_clients_of_another_user_wait_for_the_server(host: SimHost) -> None:
    sh(host, "nvidia-cuda-mps-control -d")
    root_client = mps.connect_client(host, uid=0, name="./root-job")
    user_client = mps.connect_client(host, uid=1000, name="./user-job")
    assert root_client and user_client
    assert [p.pid for p in host.load().processes if p.type == "M+C"] == [root_client]
    log = (host.root / "var/log/nvidia-mps/control.log").read_text()
    assert f"NEW CLIENT {user_client} from user 1000: Server is not ready, push client to pending list" in log
    mps.disconnect_client(host, root_client)
    servers = mps.daemons(host)[mps.DEFAULT_PIPE_DIR]["servers"]
    assert [s["uid"] for s in servers.values()] == [1000]
    assert [p.pid for p in host.load().processes if p.type == "M+C"] == [user_client]


def test_quit_waits_for_attached_clients(host: SimHost) -> None:
    sh(host, "nvidia-cuda-mps-control -d")
    client = mps.connect_client(host)
    assert client is not None
    assert ctl(host, "quit") == ("", "", 0)
    assert mps.DEFAULT_PIPE_DIR in mps.daemons(host)  # "MPS refused to quit"
    assert mps.connect_client(host) is None  # no new clients meanwhile
    mps.disconnect_client(host, client)
    assert mps.daemons(host) == {}
    assert host.load().processes == []


def test_terminate_client_and_ps(host: SimHost, fixtures_dir: Path) -> None:
    sh(host, "nvidia-cuda-mps-control -d")
    first = mps.connect_client(host, name="./nbody")
    second = mps.connect_client(host, name="./matrixMul")
    server = ctl(host, "get_server_list")[0].strip()
    out = ctl(host, "ps")[0]
    header = (fixtures_dir / "mps/docs_ps.txt").read_text().splitlines()[0]
    device = host.load().gpus[0].uuid[:22]
    assert out == (
        f"{header}\n{first} 0 {server} {device} 4026531836 ./nbody\n"
        f"{second} 0 {server} {device} 4026531836 ./matrixMul\n"
    )
    assert ctl(host, f"terminate_client {server} {first}") == (
        (fixtures_dir / "mps/docs_terminate_client.txt").read_text(),
        "",
        0,
    )
    assert [p.pid for p in host.load().processes if p.type == "M+C"] == [second]
