"""Local detection through NVML and remote detection through nvidia-smi give the same facts.

Both read one simulated machine: NVML through the simulator's pynvml-shaped face (``SimNvml``), nvidia-smi
through the stand-in run by the sim connection, exactly as a detect does. States cover what the plan reads: MIG
off and on, pending modes, instances with compute splits, processes on whole GPUs and on MIG devices, MPS
clients, a GPU without MIG.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from gpuprov_mig import facts as mig_facts

from gpuprov.connection.sim import login_env
from gpuprov.sim import mig, migprofiles
from gpuprov.sim.host import SimHost
from gpuprov.sim.machine import Machine, Process
from gpuprov.sim.nvml import SimNvml
from gpuprov.sim.presets import new_machine
from gpuprov.sim.shell import run_line
from gpuprov.sim.sysfs import ensure_sysfs


class _Result:
    def __init__(self, stdout: str, stderr: str, exit_code: int) -> None:
        self.stdout, self.stderr, self.exit_code = stdout, stderr, exit_code


def smi_facts(host: SimHost) -> dict:
    outputs = {}
    for name, command in mig_facts.SMI_PROBES.items():
        r = run_line(host, command, env=login_env(host))
        outputs[name] = _Result(r.stdout, r.stderr, r.exit_code)
    return mig_facts.facts_from_smi(outputs)


def layout(machine: Machine, gpu_index: int, spec: list[tuple[str, int, list[str] | None]]) -> None:
    """Create GIs (profile name, start) with their CIs (names; None: the default CI) through the engine."""
    gpu = machine.gpu(gpu_index)
    gpu.mig_current = gpu.mig_pending = True
    for name, start, cis in spec:
        prof = migprofiles.gi_profile(gpu.product, machine.driver_version, name)
        assert prof is not None, name
        gi = mig.create_gpu_instance(machine, gpu, prof, start)
        for ci_name in cis or [next(c.name for c in prof.ci_profiles if c.default)]:
            ci = migprofiles.ci_profile(prof, ci_name)
            assert ci is not None, ci_name
            mig.create_compute_instance(machine, gpu, gi, ci)


def dgx_a100_mixed() -> Machine:
    m = new_machine(preset="dgx-a100", hostname="infer07")
    layout(m, 0, [("3g.40gb", 4, None), ("2g.20gb", 0, None), ("1g.10gb", 2, None), ("1g.10gb", 3, None)])
    layout(m, 1, [("4g.40gb", 0, ["1c.4g.40gb", "1c.4g.40gb", "2c.4g.40gb"]), ("3g.40gb", 4, None)])
    m.gpu(2).mig_pending = True  # asked for, waiting for a reset
    gi = m.gpu(0).gpu_instances[0]
    m.processes.append(Process(pid=m.allocate_pid(), name="python3", gpu=0, gi=gi.id, ci=0,
                               used_memory_mib=2048))
    m.processes.append(Process(pid=m.allocate_pid(), name="/usr/bin/ffmpeg", gpu=5, used_memory_mib=512))
    return m


def a30_box() -> Machine:
    m = new_machine(gpu="NVIDIA A30", count=2, numa_nodes=2, hostname="a30-a")
    layout(m, 1, [("1g.6gb", 0, None), ("1g.6gb", 1, None), ("2g.12gb", 2, None)])
    return m


def h100_mps() -> Machine:
    m = new_machine(gpu="NVIDIA H100 80GB HBM3", count=1, hostname="train01")
    layout(m, 0, [("3g.40gb", 0, None), ("3g.40gb", 4, None)])
    gi = m.gpu(0).gpu_instances[0]
    m.processes.append(Process(pid=m.allocate_pid(), name="nvidia-cuda-mps-server", gpu=0, gi=gi.id, ci=0,
                               used_memory_mib=30))
    m.processes.append(Process(pid=m.allocate_pid(), name="python", gpu=0, gi=gi.id, ci=0, type="M+C",
                               used_memory_mib=600))
    return m


def no_mig() -> Machine:
    return new_machine(gpu="NVIDIA L40S", count=2, hostname="viz01")


@pytest.mark.parametrize("make", [dgx_a100_mixed, a30_box, h100_mps, no_mig, lambda: new_machine(preset="dgx-h100")],
                         ids=["dgx-a100-mixed", "a30", "h100-mps", "l40s-no-mig", "dgx-h100-idle"])
def test_nvml_and_nvidia_smi_agree(make, tmp_path: Path) -> None:
    host = SimHost(tmp_path / "host")
    host.save(make())
    ensure_sysfs(host)
    via_smi = smi_facts(host)
    via_nvml = mig_facts.facts_from_nvml(SimNvml(host))
    assert via_nvml == via_smi
    assert len(via_smi["gpus"]) == len(host.machine.gpus)  # not two empty answers
