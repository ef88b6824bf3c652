"""The systemctl stand-in: unit files from the host's tree, commands really run, systemd's texts."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from gpuprov.sim import mps
from gpuprov.sim.host import SimHost
from gpuprov.sim.machine import Gpu, Machine, NumaNode
from gpuprov.sim.shell import run_line
from gpuprov.sim.systemctl import boot, unit_state

JOB_FAILED = (
    'Job for {0} failed because {1}.\nSee "systemctl status {0}" and "journalctl -xeu {0}" for details.\n'
)
EXIT_CODE = "the control process exited with error code"


@pytest.fixture
def host(tmp_path: Path) -> SimHost:
    sim = SimHost(tmp_path / "state")
    sim.save(
        Machine(
            hostname="gpu-node-1",
            driver_version="580.126.09",
            cuda_version="13.0",
            gpus=[
                Gpu(
                    index=0,
                    product="NVIDIA A100-SXM4-40GB",
                    uuid="GPU-0a1b2c3d-0000-1111-2222-333344445555",
                    serial="1561221000001",
                    bus_id="00000000:07:00.0",
                    numa_node=0,
                    memory_mib=40960,
                )
            ],
            numa_nodes=[NumaNode(id=0, cpus=list(range(8)), memory_mb=256000, distances=[10])],
        )
    )
    for directory in ("etc/systemd/system", "etc/default", "tmp", "run", "usr/local/libexec/gpuprov"):
        (sim.root / directory).mkdir(parents=True, exist_ok=True)
    return sim


def write(host: SimHost, path: str, text: str, mode: int = 0o644) -> None:
    target = host.root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(textwrap.dedent(text).lstrip("\n"))
    target.chmod(mode)


def sh(host: SimHost, line: str, stdin: str = "") -> tuple[str, str, int]:
    result = run_line(host, line, stdin=stdin)
    return result.stdout, result.stderr, result.exit_code


def read(host: SimHost, path: str) -> str:
    return (host.root / path.lstrip("/")).read_text()


# --- oneshot


def test_oneshot_lifecycle_with_remain_after_exit(host: SimHost) -> None:
    write(
        host,
        "/etc/systemd/system/prep.service",
        """
        [Unit]
        Description=Prepare things

        [Service]
        Type=oneshot
        RemainAfterExit=yes
        ExecStartPre=/bin/sh -c 'echo pre >> /tmp/log'
        ExecStart=/bin/sh -c 'echo start >> /tmp/log'
        ExecStart=/bin/sh -c 'echo start2 >> /tmp/log'
        ExecStop=/bin/sh -c 'echo stop >> /tmp/log'
    """,
    )
    assert sh(host, "systemctl start prep") == ("", "", 0)
    assert sh(host, "systemctl is-active prep.service; systemctl show -p SubState --value prep") == (
        "active\nexited\n",
        "",
        0,
    )
    assert sh(host, "systemctl start prep") == ("", "", 0)  # already active: nothing runs again
    assert sh(host, "systemctl stop prep && systemctl is-active prep") == ("inactive\n", "", 3)
    assert read(host, "/tmp/log") == "pre\nstart\nstart2\nstop\n"
    assert sh(host, "systemctl restart prep; systemctl is-active prep")[0] == "active\n"
    assert read(host, "/tmp/log").endswith("pre\nstart\nstart2\n")


def test_oneshot_without_remain_after_exit_ends_inactive(host: SimHost) -> None:
    write(
        host,
        "/etc/systemd/system/once.service",
        """
        [Service]
        Type=oneshot
        ExecStart=/bin/sh -c 'echo ran >> /tmp/once'
    """,
    )
    assert sh(host, "systemctl start once; systemctl is-active once") == ("inactive\n", "", 3)
    assert sh(host, "systemctl start once") == ("", "", 0)
    assert read(host, "/tmp/once") == "ran\nran\n"


# --- simple / exec / forking with a simulated daemon


def test_simple_service_runs_while_its_daemon_lives(host: SimHost) -> None:
    write(
        host,
        "/etc/systemd/system/mps.service",
        """
        [Service]
        Environment=CUDA_MPS_PIPE_DIRECTORY=/run/mps-a
        ExecStart=/usr/bin/nvidia-cuda-mps-control -f
    """,
    )
    assert sh(host, "systemctl start mps") == ("", "", 0)
    state = unit_state(host, "mps")
    assert (state["active"], state["sub"]) == ("active", "running")
    daemon = mps.daemons(host)["/run/mps-a"]
    assert (
        state["main_pid"] == daemon["pid"] == state["exec_main_pid"]
    )  # -f: the daemon is the process itself
    assert sh(host, "systemctl show -p MainPID --value mps")[0] == f"{daemon['pid']}\n"
    # a person quitting the daemon by hand: systemd sees its main process exit
    assert sh(host, "echo quit | CUDA_MPS_PIPE_DIRECTORY=/run/mps-a nvidia-cuda-mps-control") == ("", "", 0)
    assert sh(host, "systemctl is-active mps") == ("inactive\n", "", 3)
    assert sh(host, "systemctl start mps && systemctl is-active mps") == ("active\n", "", 0)
    assert sh(host, "systemctl stop mps && systemctl is-active mps") == ("inactive\n", "", 3)
    assert mps.daemons(host) == {}  # stop killed what was left in the unit


def test_simple_service_with_a_missing_binary_starts_then_fails(host: SimHost) -> None:
    # systemd reports a simple service started once it forked; exec waits for the binary to run
    write(host, "/etc/systemd/system/s.service", "[Service]\nExecStart=/usr/bin/not-there\n")
    write(host, "/etc/systemd/system/e.service", "[Service]\nType=exec\nExecStart=/usr/bin/not-there\n")
    assert sh(host, "systemctl start s; systemctl is-failed s") == ("failed\n", "", 0)
    out, err, rc = sh(host, "systemctl start e")
    assert (out, err, rc) == ("", JOB_FAILED.format("e.service", EXIT_CODE), 1)
    assert unit_state(host, "e")["exec_main_status"] == 203


def test_forking_service_and_exec_stop(host: SimHost) -> None:
    write(
        host,
        "/etc/systemd/system/mpsd.service",
        """
        [Unit]
        Description=MPS control daemon

        [Service]
        Type=forking
        Environment=CUDA_MPS_PIPE_DIRECTORY=/run/nvidia-mps/d CUDA_MPS_LOG_DIRECTORY=/var/log/nvidia-mps/d
        PIDFile=/run/nvidia-mps/d/nvidia-cuda-mps-control.pid
        ExecStart=/usr/bin/nvidia-cuda-mps-control -d
        ExecStartPost=/bin/sh -c 'echo set_default_active_thread_percentage 40 | nvidia-cuda-mps-control'
        ExecStop=/bin/sh -c 'echo quit | timeout 10 nvidia-cuda-mps-control'
    """,
    )
    assert sh(host, "systemctl start mpsd") == ("", "", 0)
    daemon = mps.daemons(host)["/run/nvidia-mps/d"]
    assert unit_state(host, "mpsd")["main_pid"] == daemon["pid"]
    assert daemon["default_active_thread_percentage"] == 40.0
    out, _, rc = sh(host, "systemctl status mpsd")
    assert rc == 0
    assert out.startswith(
        "\u25cf mpsd.service - MPS control daemon\n     Loaded: loaded "
        "(/etc/systemd/system/mpsd.service; static; preset: enabled)\n     Active: active "
        "(running) since "
    )
    assert f"   Main PID: {daemon['pid']} (nvidia-cuda-mps)\n" in out
    assert "systemd[1]: Started mpsd.service - MPS control daemon.\n" in out
    assert sh(host, "systemctl stop mpsd; systemctl is-active mpsd") == ("inactive\n", "", 3)
    assert mps.daemons(host) == {}
    assert "Cmd:quit" in read(host, "/var/log/nvidia-mps/d/control.log")


def test_forking_service_whose_pid_file_names_no_daemon_fails(host: SimHost) -> None:
    write(host, "/run/stale.pid", "99999\n")
    write(
        host,
        "/etc/systemd/system/f.service",
        """
        [Service]
        Type=forking
        PIDFile=/run/stale.pid
        ExecStart=/bin/true
    """,
    )
    assert sh(host, "systemctl start f") == (
        "",
        JOB_FAILED.format(
            "f.service", "the service did not take the steps required by its unit configuration"
        ),
        1,
    )


# --- failures


def test_a_rendered_unit_with_a_wrong_exec_start_path_fails_like_on_a_real_host(host: SimHost) -> None:
    from jinja2 import Template

    unit = Template(
        textwrap.dedent("""
        [Unit]
        Description=NVIDIA MPS for {{ device }}

        [Service]
        Type=forking
        ExecStart={{ bindir }}/nvidia-cuda-mps-control -d
    """)
    ).render(device="gpu0", bindir="/usr/local/cuda/bin")  # the driver installs it in /usr/bin
    write(host, "/etc/systemd/system/nvidia-mps-gpu0.service", unit)
    assert sh(host, "systemctl start nvidia-mps-gpu0") == (
        "",
        JOB_FAILED.format("nvidia-mps-gpu0.service", EXIT_CODE),
        1,
    )
    assert sh(host, "systemctl is-active nvidia-mps-gpu0; systemctl is-failed nvidia-mps-gpu0") == (
        "failed\nfailed\n",
        "",
        0,
    )
    out, _, rc = sh(host, "systemctl status nvidia-mps-gpu0")
    assert rc == 3
    assert "\u00d7 nvidia-mps-gpu0.service - NVIDIA MPS for gpu0\n" in out
    assert "     Active: failed (Result: exit-code) since " in out
    assert "(code=exited, status=203/EXEC)" in out
    journal = sh(host, "journalctl -u nvidia-mps-gpu0 -o cat")[0]
    assert (
        "Failed at step EXEC spawning /usr/local/cuda/bin/nvidia-cuda-mps-control: No such file or directory"
    ) in journal
    assert mps.daemons(host) == {}
    assert sh(host, "systemctl reset-failed && systemctl is-failed nvidia-mps-gpu0") == ("inactive\n", "", 1)


def test_failing_command_and_ignored_failure(host: SimHost) -> None:
    write(host, "/etc/systemd/system/bad.service", "[Service]\nType=oneshot\nExecStart=/bin/sh -c 'exit 3'\n")
    write(
        host,
        "/etc/systemd/system/ok.service",
        """
        [Service]
        Type=oneshot
        RemainAfterExit=yes
        ExecStartPre=-/bin/false
        ExecStart=-/usr/bin/missing-tool
        ExecStart=/bin/true
    """,
    )
    assert sh(host, "systemctl start bad") == ("", JOB_FAILED.format("bad.service", EXIT_CODE), 1)
    assert unit_state(host, "bad")["exec_main_status"] == 3
    assert sh(host, "systemctl show -p ActiveState,SubState,Result bad") == (
        "Result=exit-code\nActiveState=failed\nSubState=failed\n",
        "",
        0,
    )
    assert sh(host, "systemctl start ok && systemctl is-active ok") == ("active\n", "", 0)


def test_unknown_unit(host: SimHost) -> None:
    assert sh(host, "systemctl start nope") == (
        "",
        "Failed to start nope.service: Unit nope.service not found.\n",
        5,
    )
    assert sh(host, "systemctl stop nope") == (
        "",
        "Failed to stop nope.service: Unit nope.service not loaded.\n",
        5,
    )
    assert sh(host, "systemctl is-active nope") == ("inactive\n", "", 3)
    assert sh(host, "systemctl is-enabled nope") == (
        "",
        "Failed to get unit file state for nope.service: No such file or directory\n",
        1,
    )
    assert sh(host, "systemctl status nope") == ("", "Unit nope.service could not be found.\n", 4)
    assert sh(host, "systemctl show -p LoadState,ActiveState nope") == (
        "LoadState=not-found\nActiveState=inactive\n",
        "",
        0,
    )


# --- environment and drop-ins


def test_environment_and_environment_files(host: SimHost) -> None:
    write(
        host,
        "/etc/default/envy",
        """
        # comment
        PLAIN=value
        QUOTED="with spaces"
        SINGLE='$not expanded'
        OVERRIDE=from-file
    """,
    )
    write(
        host,
        "/etc/systemd/system/envy.service",
        """
        [Service]
        Type=oneshot
        RemainAfterExit=yes
        Environment="GREETING=hello world" OVERRIDE=from-unit
        Environment=EMPTY=
        EnvironmentFile=/etc/default/envy
        EnvironmentFile=-/etc/default/optional-and-missing
        WorkingDirectory=/tmp
        User=nvidia-mps
        RuntimeDirectory=envy
        ExecStart=/bin/sh \\
          -c 'echo "$GREETING|$PLAIN|$QUOTED|$SINGLE|$OVERRIDE|$USER|$(pwd)|$RUNTIME_DIRECTORY" > out'
        ExecStart=/usr/bin/printf %%s\\n $QUOTED ${QUOTED}
    """,
    )
    out, err, rc = sh(host, "systemctl start envy && cat /tmp/out && test -d /run/envy && echo rundir")
    assert (out, err, rc) == (
        "hello world|value|with spaces|$not expanded|from-file|nvidia-mps|/tmp|/run/envy\nrundir\n",
        "",
        0,
    )
    state = unit_state(host, "envy")
    assert state["env"]["GREETING"] == "hello world" and state["env"]["OVERRIDE"] == "from-file"
    assert state["user"] == "nvidia-mps"
    assert "envy[" not in "".join(state["journal"])
    assert "printf[" in "\n".join(state["journal"]) and "]: with\n" in "\n".join(state["journal"]) + "\n"
    assert sh(host, "systemctl show -p Environment,User --value envy") == (
        '"GREETING=hello world" OVERRIDE=from-unit EMPTY=\nnvidia-mps\n',
        "",
        0,
    )
    assert sh(host, "systemctl stop envy && test -d /run/envy") == ("", "", 1)


def test_a_missing_environment_file_fails_the_start(host: SimHost) -> None:
    write(
        host,
        "/etc/systemd/system/noenv.service",
        "[Service]\nEnvironmentFile=/etc/default/absent\nExecStart=/bin/true\n",
    )
    assert sh(host, "systemctl start noenv") == (
        "",
        JOB_FAILED.format("noenv.service", "of unavailable resources or another system error"),
        1,
    )
    assert unit_state(host, "noenv")["result"] == "resources"


def test_drop_ins_override_and_reset_lists(host: SimHost) -> None:
    write(
        host,
        "/usr/lib/systemd/system/vendor.service",
        """
        [Service]
        Type=oneshot
        RemainAfterExit=yes
        Environment=A=vendor B=vendor
        ExecStart=/bin/sh -c 'echo vendor > /tmp/which'
    """,
    )
    write(
        host, "/usr/lib/systemd/system/vendor.service.d/10-vendor.conf", "[Service]\nEnvironment=C=vendor\n"
    )
    write(host, "/etc/systemd/system/vendor.service.d/10-vendor.conf", "[Service]\nEnvironment=C=admin\n")
    write(
        host,
        "/etc/systemd/system/vendor.service.d/override.conf",
        """
        [Service]
        Environment=B=override
        ExecStart=
        ExecStart=/bin/sh -c 'echo "override $A $B $C" > /tmp/which'
    """,
    )
    assert sh(host, "systemctl start vendor && cat /tmp/which") == ("override vendor override admin\n", "", 0)
    assert sh(host, "systemctl show -p FragmentPath,DropInPaths --value vendor") == (
        "/usr/lib/systemd/system/vendor.service\n/etc/systemd/system/vendor.service.d/10-vendor.conf "
        "/etc/systemd/system/vendor.service.d/override.conf\n",
        "",
        0,
    )
    out = sh(host, "systemctl cat vendor")[0]
    assert out.startswith("# /usr/lib/systemd/system/vendor.service\n[Service]\n")
    assert "\n# /etc/systemd/system/vendor.service.d/override.conf\n[Service]\n" in out


def test_a_changed_unit_runs_its_old_configuration_until_daemon_reload(host: SimHost) -> None:
    unit = "[Service]\nType=oneshot\nExecStart=/bin/sh -c 'echo {} >> /tmp/version'\n"
    write(host, "/etc/systemd/system/ver.service", unit.format("one"))
    assert sh(host, "systemctl start ver") == ("", "", 0)
    write(host, "/etc/systemd/system/ver.service", unit.format("two"))
    warning = (
        "Warning: The unit file, source configuration file or drop-ins of ver.service changed on disk. "
        "Run 'systemctl daemon-reload' to reload units.\n"
    )
    assert sh(host, "systemctl start ver") == ("", warning, 0)
    assert sh(host, "systemctl show -p NeedDaemonReload ver") == ("NeedDaemonReload=yes\n", "", 0)
    assert sh(host, "systemctl daemon-reload && systemctl start ver") == ("", "", 0)
    assert sh(host, "systemctl show -p NeedDaemonReload --value ver") == ("no\n", "", 0)
    assert read(host, "/tmp/version") == "one\none\ntwo\n"
    # a drop-in added later counts as a change too
    write(host, "/etc/systemd/system/ver.service.d/x.conf", "[Service]\nEnvironment=X=1\n")
    assert sh(host, "systemctl start ver")[1] == warning
    assert sh(host, "systemctl restart ver")[1] == warning  # once, though restart stops and starts


# --- templates and installation


def test_template_instances_specifiers_and_enablement(host: SimHost) -> None:
    write(
        host,
        "/etc/systemd/system/nvidia-mps@.service",
        """
        [Unit]
        Description=NVIDIA MPS daemon for %I

        [Service]
        Type=oneshot
        RemainAfterExit=yes
        Environment=PIPE=/run/nvidia-mps/%i
        ExecStart=/bin/sh -c 'echo "%n %i %I %p $PIPE" > /tmp/%i.out'

        [Install]
        WantedBy=multi-user.target
    """,
    )
    assert sh(host, "systemctl is-enabled nvidia-mps@gpu0") == ("disabled\n", "", 1)
    out, err, rc = sh(host, "systemctl enable --now nvidia-mps@gpu0 nvidia-mps@gpu0-mig1")
    assert (out, rc) == ("", 0)
    assert err == (
        "Created symlink /etc/systemd/system/multi-user.target.wants/nvidia-mps@gpu0.service \u2192 "
        "/etc/systemd/system/nvidia-mps@.service.\n"
        "Created symlink /etc/systemd/system/multi-user.target.wants/nvidia-mps@gpu0-mig1.service \u2192 "
        "/etc/systemd/system/nvidia-mps@.service.\n"
    )
    assert (
        read(host, "/tmp/gpu0.out") == "nvidia-mps@gpu0.service gpu0 gpu0 nvidia-mps /run/nvidia-mps/gpu0\n"
    )
    assert read(host, "/tmp/gpu0-mig1.out") == (
        "nvidia-mps@gpu0-mig1.service gpu0-mig1 gpu0/mig1 nvidia-mps /run/nvidia-mps/gpu0-mig1\n"
    )
    assert sh(host, "systemctl is-enabled nvidia-mps@gpu0 nvidia-mps@.service") == (
        "enabled\nindirect\n",
        "",
        0,
    )
    assert sh(host, "systemctl show -p Description --value nvidia-mps@gpu0-mig1") == (
        "NVIDIA MPS daemon for gpu0/mig1\n",
        "",
        0,
    )
    assert sh(host, "systemctl enable nvidia-mps@gpu0") == ("", "", 0)  # already enabled: nothing to say
    assert sh(host, "systemctl disable --now nvidia-mps@gpu0") == (
        "",
        'Removed "/etc/systemd/system/multi-user.target.wants/nvidia-mps@gpu0.service".\n',
        0,
    )
    assert sh(host, "systemctl is-active nvidia-mps@gpu0 nvidia-mps@gpu0-mig1") == (
        "inactive\nactive\n",
        "",
        0,
    )
    assert sh(host, "systemctl disable nvidia-mps@.service")[1] == (
        'Removed "/etc/systemd/system/multi-user.target.wants/nvidia-mps@gpu0-mig1.service".\n'
    )
    assert not (host.root / "etc/systemd/system/multi-user.target.wants").exists()


def test_units_without_install_section_and_masking(host: SimHost) -> None:
    write(host, "/usr/lib/systemd/system/helper.service", "[Service]\nType=oneshot\nExecStart=/bin/true\n")
    out, err, rc = sh(host, "systemctl enable helper")
    assert (out, rc) == ("", 0) and err.startswith("The unit files have no installation config (WantedBy=")
    assert sh(host, "systemctl is-enabled helper") == ("static\n", "", 0)
    assert sh(host, "systemctl mask helper") == (
        "",
        "Created symlink /etc/systemd/system/helper.service \u2192 /dev/null.\n",
        0,
    )
    assert sh(host, "systemctl is-enabled helper; systemctl start helper") == (
        "masked\n",
        "Failed to start helper.service: Unit helper.service is masked.\n",
        1,
    )
    write(host, "/etc/systemd/system/local.service", "[Service]\nExecStart=/bin/true\n")
    assert sh(host, "systemctl mask local") == (
        "",
        "Failed to mask unit: File /etc/systemd/system/local.service already exists.\n",
        1,
    )
    assert sh(host, "systemctl unmask helper && systemctl is-enabled helper") == (
        "static\n",
        'Removed "/etc/systemd/system/helper.service".\n',
        0,
    )


def test_requires_and_wants_start_their_units_first(host: SimHost) -> None:
    write(
        host,
        "/etc/systemd/system/base.service",
        "[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/sh -c 'echo base >> /tmp/order'\n",
    )
    write(
        host,
        "/etc/systemd/system/top.service",
        """
        [Unit]
        Requires=base.service
        Wants=nvidia-persistenced.service
        After=base.service nvidia-persistenced.service

        [Service]
        Type=oneshot
        ExecStart=/bin/sh -c 'echo top >> /tmp/order'
    """,
    )
    assert sh(host, "systemctl start top && systemctl is-active base") == ("active\n", "", 0)
    assert read(host, "/tmp/order") == "base\ntop\n"
    write(
        host,
        "/etc/systemd/system/needy.service",
        "[Unit]\nRequires=absent.service\n[Service]\nExecStart=/bin/true\n",
    )
    assert sh(host, "systemctl start needy") == (
        "",
        "Failed to start needy.service: Unit absent.service not found.\n",
        5,
    )


def test_conditions_skip_the_start(host: SimHost) -> None:
    write(
        host,
        "/etc/systemd/system/cond.service",
        """
        [Unit]
        ConditionPathExists=/usr/bin/nvidia-cuda-mps-control
        ConditionPathExists=!/etc/gpuprov/disable-mps

        [Service]
        Type=oneshot
        RemainAfterExit=yes
        ExecStart=/bin/true
    """,
    )
    write(host, "/etc/gpuprov/disable-mps", "")
    assert sh(host, "systemctl start cond; systemctl is-active cond") == ("inactive\n", "", 3)
    assert (
        sh(host, "rm /etc/gpuprov/disable-mps; systemctl start cond; systemctl is-active cond")[0]
        == "active\n"
    )


def test_condition_paths_take_specifiers(host: SimHost) -> None:
    write(host, "/etc/systemd/system/dev@.service",
          "[Unit]\nConditionPathExists=/etc/gpuprov/mps/%i.env\n"
          "[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/true\n")
    write(host, "/etc/gpuprov/mps/gpu0.env", "")
    assert sh(host, "systemctl start dev@gpu0 dev@gpu1; systemctl is-active dev@gpu0 dev@gpu1") == (
        "active\ninactive\n", "", 0)  # is-active exits 0 when any of the units is active


# --- queries


def test_queries_print_what_systemctl_prints(host: SimHost) -> None:
    write(
        host,
        "/etc/systemd/system/a.service",
        "[Unit]\nDescription=Unit A\n[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/true\n",
    )
    write(host, "/etc/systemd/system/b.service", "[Service]\nType=oneshot\nExecStart=/bin/false\n")
    sh(host, "systemctl start a b")
    assert sh(host, "systemctl --version")[0].startswith("systemd 252 (252)\n+PAM ")
    assert sh(host, "systemctl list-units --type=service --no-legend --plain") == (
        "a.service loaded active exited Unit A\nb.service loaded failed failed b.service\n",
        "",
        0,
    )
    out = sh(host, "systemctl list-units --type=service --all")[0]
    assert out.startswith(
        "  UNIT      LOAD   ACTIVE SUB    DESCRIPTION\n  a.service loaded active exited Unit A\n"
        "\u25cf b.service loaded failed failed b.service\n\nLOAD   = Reflects whether"
    )
    assert out.endswith(
        "2 loaded units listed.\nTo show all installed unit files use 'systemctl list-unit-files'.\n"
    )
    assert sh(host, "systemctl show -p Type,ExecStart a")[0] == (
        "Type=oneshot\nExecStart={ path=/bin/true ; argv[]=/bin/true ; ignore_errors=no ; start_time=[n/a] ; "
        "stop_time=[n/a] ; pid=0 ; code=(null) ; status=0/0 }\n"
    )
    assert sh(host, "systemctl frobnicate") == ("", "Unknown command verb 'frobnicate'.\n", 1)


def test_boot_restarts_enabled_units_and_forgets_daemons(host: SimHost) -> None:
    write(
        host,
        "/etc/systemd/system/mps@.service",
        """
        [Unit]
        After=prep.service

        [Service]
        Type=forking
        Environment=CUDA_MPS_PIPE_DIRECTORY=/run/mps/%i
        ExecStart=/usr/bin/nvidia-cuda-mps-control -d

        [Install]
        WantedBy=multi-user.target
    """,
    )
    assert sh(host, "systemctl enable --now mps@gpu0")[2] == 0
    first = mps.daemons(host)["/run/mps/gpu0"]["pid"]
    with host.locked() as machine:
        machine.boot_count += 1
    boot(host)
    assert sh(host, "systemctl is-active mps@gpu0") == ("active\n", "", 0)
    assert mps.daemons(host)["/run/mps/gpu0"]["pid"] != first


def test_unit_files_reload_and_try_restart(host: SimHost) -> None:
    write(
        host,
        "/etc/systemd/system/rl.service",
        """
        [Service]
        Type=forking
        Environment=CUDA_MPS_PIPE_DIRECTORY=/run/rl
        ExecStart=/usr/bin/nvidia-cuda-mps-control -d
        ExecReload=/bin/sh -c 'echo reloaded >> /tmp/rl'

        [Install]
        WantedBy=multi-user.target
    """,
    )
    write(host, "/usr/lib/systemd/system/other.service", "[Service]\nExecStart=/bin/true\n")
    assert sh(
        host, "systemctl enable rl 2>/dev/null; systemctl list-units --all --plain --no-legend 'rl*'"
    ) == ("rl.service loaded inactive dead rl.service\n", "", 0)
    assert sh(host, "systemctl list-unit-files --type=service") == (
        "UNIT FILE     STATE   PRESET\nother.service static  -\nrl.service    enabled enabled\n\n"
        "2 unit files listed.\n",
        "",
        0,
    )
    assert sh(host, "systemctl try-restart rl; systemctl is-active rl") == ("inactive\n", "", 3)
    assert sh(host, "systemctl start rl && systemctl reload-or-restart rl && cat /tmp/rl") == (
        "reloaded\n",
        "",
        0,
    )
    pid = unit_state(host, "rl")["main_pid"]
    assert sh(host, "systemctl try-restart rl && systemctl is-active rl") == ("active\n", "", 0)
    assert unit_state(host, "rl")["main_pid"] != pid
