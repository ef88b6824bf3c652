"""A pynvml-shaped face of a simulated host, so detection through NVML is tested against the same state as
detection through ``nvidia-smi``.

``SimNvml(host)`` answers the calls gpuprov's local detection makes, with pynvml's own types where a caller hands
NVML an array (``c_nvmlGpuInstancePlacement_t``, ``c_nvmlGpuInstance_t``...) and pynvml's ``NVMLError`` with
NVML's return codes where the real library fails (``NOT_SUPPORTED`` for MIG calls on a GPU without MIG,
``NOT_FOUND`` past the last MIG device). Values come from the one machine model through the same view the
``nvidia-smi`` reports print (:func:`gpuprov.sim.nvidia_smi_report.build`), so the two faces cannot disagree:
identifiers, the MIG device numbering (ascending GI, then CI), processes with their GPU/compute instance.

Only reading is modelled: gpuprov changes MIG layouts with ``nvidia-smi`` on every connection, so that the plan a
person reviews names the commands that will run.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pynvml

from . import migprofiles
from .host import SimHost
from .machine import Machine

_NO_ID = 0xFFFFFFFF
_ARCH = {"Kepler": 2, "Maxwell": 3, "Pascal": 4, "Volta": 5, "Turing": 6, "Ampere": 7, "Ada Lovelace": 8,
         "Hopper": 9, "Blackwell": 10}
_COMPUTE = {"Default": 0, "Exclusive_Thread": 1, "Prohibited": 2, "Exclusive_Process": 3}


def gi_profile_slot(profile: migprofiles.GiProfile) -> int:
    """NVML's ``NVML_GPU_INSTANCE_PROFILE_*`` index of a profile (the driver prints a different number, its id)."""
    me = "+me" in profile.name and "+me." not in profile.name
    if profile.slices == 1:
        if me:
            return int(pynvml.NVML_GPU_INSTANCE_PROFILE_1_SLICE_REV1)
        if profile.size == 2:  # the 1g with twice the memory of the 8-slice parts (1g.10gb on an A100 40GB)
            return int(pynvml.NVML_GPU_INSTANCE_PROFILE_1_SLICE_REV2)
        return int(pynvml.NVML_GPU_INSTANCE_PROFILE_1_SLICE)
    if profile.slices == 2 and me:
        return int(pynvml.NVML_GPU_INSTANCE_PROFILE_2_SLICE_REV1)
    return int(getattr(pynvml, f"NVML_GPU_INSTANCE_PROFILE_{profile.slices}_SLICE"))


def _error(code: int) -> Exception:
    return pynvml.NVMLError(code)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class _Device:
    gpu: int


@dataclass(frozen=True)
class _MigHandle:
    gpu: int
    number: int


class SimNvml:
    """The subset of ``pynvml`` gpuprov reads, over one simulated host's state (re-read at ``nvmlInit``)."""

    NVMLError = pynvml.NVMLError
    c_nvmlGpuInstancePlacement_t = pynvml.c_nvmlGpuInstancePlacement_t
    c_nvmlGpuInstance_t = pynvml.c_nvmlGpuInstance_t
    c_nvmlComputeInstance_t = pynvml.c_nvmlComputeInstance_t
    NVML_GPU_INSTANCE_PROFILE_COUNT = pynvml.NVML_GPU_INSTANCE_PROFILE_COUNT
    NVML_COMPUTE_INSTANCE_PROFILE_COUNT = pynvml.NVML_COMPUTE_INSTANCE_PROFILE_COUNT

    def __init__(self, host: SimHost) -> None:
        self.host = host
        self._machine: Machine | None = None
        self._report: Any = None
        self._handles: dict[int, tuple[int, ...]] = {}  # opaque GI/CI handle value -> (gpu, gi[, ci])

    # -- library ---------------------------------------------------------------------------------------------
    def nvmlInit(self) -> None:  # noqa: N802 - pynvml's names
        from .nvidia_smi_report import build

        self._machine = self.host.load()
        self._report = build(self._machine)
        self._handles.clear()

    def nvmlShutdown(self) -> None:  # noqa: N802
        self._machine = self._report = None

    @property
    def machine(self) -> Machine:
        if self._machine is None:
            raise _error(pynvml.NVML_ERROR_UNINITIALIZED)
        return self._machine

    def nvmlSystemGetDriverVersion(self) -> str:  # noqa: N802
        return self.machine.driver_version

    def nvmlSystemGetCudaDriverVersion_v2(self) -> int:  # noqa: N802
        major, _, minor = self.machine.cuda_version.partition(".")
        return int(major) * 1000 + int(minor or 0) * 10

    def nvmlSystemGetProcessName(self, pid: int) -> str:  # noqa: N802
        for p in self.machine.processes:
            if p.pid == pid:
                return p.name
        raise _error(pynvml.NVML_ERROR_NOT_FOUND)

    # -- devices ---------------------------------------------------------------------------------------------
    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        return len(self.machine.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> _Device:  # noqa: N802
        if not 0 <= index < len(self.machine.gpus):
            raise _error(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return _Device(index)

    def _gpu(self, handle: _Device | _MigHandle) -> Any:
        return next(r for r in self._report.all_gpus if r.gpu.index == handle.gpu)

    def nvmlDeviceGetName(self, handle: _Device) -> str:  # noqa: N802
        return str(self._gpu(handle).gpu.product)

    def nvmlDeviceGetUUID(self, handle: _Device | _MigHandle) -> str:  # noqa: N802
        report = self._gpu(handle)
        if isinstance(handle, _MigHandle):
            return str(report.mig_devices[handle.number].uuid)
        return str(report.gpu.uuid)

    def nvmlDeviceGetPciInfo(self, handle: _Device) -> Any:  # noqa: N802
        from .sysfs import pci_device_id

        gpu = self._gpu(handle).gpu
        return SimpleNamespace(busId=gpu.bus_id, pciDeviceId=(pci_device_id(gpu.product) << 16) | 0x10DE)

    def nvmlDeviceGetMemoryInfo(self, handle: _Device) -> Any:  # noqa: N802
        report = self._gpu(handle)
        mib = 1024 * 1024
        return SimpleNamespace(total=report.gpu.memory_mib * mib, used=report.used_mib * mib,
                               free=report.free_mib * mib)

    def nvmlDeviceGetArchitecture(self, handle: _Device) -> int:  # noqa: N802
        arch = self._gpu(handle).board.architecture
        if arch not in _ARCH:
            raise _error(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return _ARCH[arch]

    def nvmlDeviceGetVirtualizationMode(self, handle: _Device) -> int:  # noqa: N802
        return 1 if self.machine.passthrough_vm else 0

    def nvmlDeviceGetComputeMode(self, handle: _Device) -> int:  # noqa: N802
        return _COMPUTE.get(self._gpu(handle).gpu.compute_mode, 0)

    def nvmlDeviceGetMigMode(self, handle: _Device) -> tuple[int, int]:  # noqa: N802
        report = self._gpu(handle)
        if not report.mig_capable:
            raise _error(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return int(report.gpu.mig_current), int(report.gpu.mig_pending)

    def _processes(self, handle: _Device, kinds: tuple[str, ...]) -> list[Any]:
        out = []
        for p in self._gpu(handle).processes:
            if p.type in kinds:
                out.append(SimpleNamespace(pid=p.pid, usedGpuMemory=p.used_memory_mib * 1024 * 1024,
                                           gpuInstanceId=_NO_ID if p.gi is None else p.gi,
                                           computeInstanceId=_NO_ID if p.ci is None else p.ci))
        return out

    def nvmlDeviceGetComputeRunningProcesses(self, handle: _Device) -> list[Any]:  # noqa: N802
        return self._processes(handle, ("C", "C+G"))

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: _Device) -> list[Any]:  # noqa: N802
        return self._processes(handle, ("G", "C+G"))

    def nvmlDeviceGetMPSComputeRunningProcesses(self, handle: _Device) -> list[Any]:  # noqa: N802
        return self._processes(handle, ("M+C",))

    # -- MIG -------------------------------------------------------------------------------------------------
    def _mig_on(self, handle: _Device) -> Any:
        report = self._gpu(handle)
        if not report.mig_capable:
            raise _error(pynvml.NVML_ERROR_NOT_SUPPORTED)
        if not report.gpu.mig_current:
            raise _error(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return report

    def _profiles(self, gpu: Any) -> tuple[migprofiles.GiProfile, ...]:
        return migprofiles.gi_profiles(gpu.product, self.machine.driver_version)

    def nvmlDeviceGetGpuInstanceProfileInfoV(self, handle: _Device, slot: int) -> Any:  # noqa: N802
        report = self._mig_on(handle)
        for prof in self._profiles(report.gpu):
            if gi_profile_slot(prof) == slot:
                return SimpleNamespace(id=prof.id, isP2pSupported=0, sliceCount=prof.slices,
                                       instanceCount=prof.max_count, multiprocessorCount=prof.sm_count,
                                       copyEngineCount=prof.ce, decoderCount=prof.dec, encoderCount=prof.enc,
                                       jpegCount=prof.jpeg, ofaCount=prof.ofa, memorySizeMB=prof.memory_mib,
                                       name=f"MIG {prof.name}")
        raise _error(pynvml.NVML_ERROR_NOT_SUPPORTED)

    def _profile(self, handle: _Device, profile_id: int) -> migprofiles.GiProfile:
        report = self._mig_on(handle)
        prof = migprofiles.gi_profile(report.gpu.product, self.machine.driver_version, int(profile_id))
        if prof is None:
            raise _error(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return prof

    def nvmlDeviceGetGpuInstanceRemainingCapacity(self, handle: _Device, profile_id: int) -> int:  # noqa: N802
        from .mig import free_count

        prof = self._profile(handle, profile_id)
        return free_count(self.machine, self.machine.gpu(handle.gpu), prof)

    @staticmethod
    def _fill(array: Any, count: Any, items: list[Any]) -> None:
        if len(items) > len(array):
            raise _error(pynvml.NVML_ERROR_INSUFFICIENT_SIZE)
        for i, item in enumerate(items):
            array[i] = item
        count._obj.value = len(items)

    def nvmlDeviceGetGpuInstancePossiblePlacements(self, handle: _Device, profile_id: int, array: Any,  # noqa: N802
                                                   count: Any) -> None:
        prof = self._profile(handle, profile_id)
        self._fill(array, count, [pynvml.c_nvmlGpuInstancePlacement_t(s, prof.size) for s in prof.starts])

    def _handle(self, kind: Any, key: tuple[int, ...]) -> Any:
        value = 0x1000 + len(self._handles) * 0x10
        self._handles[value] = key
        return ctypes.cast(ctypes.c_void_p(value), kind)

    def _key(self, handle: Any) -> tuple[int, ...]:
        value = ctypes.cast(handle, ctypes.c_void_p).value
        if value not in self._handles:
            raise _error(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return self._handles[value]

    def _gi(self, gi_handle: Any) -> tuple[Any, Any]:
        gpu_index, gi_id = self._key(gi_handle)[:2]
        gpu = self.machine.gpu(gpu_index)
        return gpu, next(g for g in gpu.gpu_instances if g.id == gi_id)

    def nvmlDeviceGetGpuInstances(self, handle: _Device, profile_id: int, array: Any, count: Any) -> None:  # noqa: N802
        self._profile(handle, profile_id)
        gpu = self._gpu(handle).gpu
        gis = sorted((g for g in gpu.gpu_instances if g.profile_id == int(profile_id)), key=lambda g: g.id)
        self._fill(array, count, [self._handle(pynvml.c_nvmlGpuInstance_t, (gpu.index, g.id)) for g in gis])

    def nvmlGpuInstanceGetInfo(self, gi_handle: Any) -> Any:  # noqa: N802
        gpu, gi = self._gi(gi_handle)
        return SimpleNamespace(id=gi.id, profileId=gi.profile_id,
                               placement=SimpleNamespace(start=gi.start, size=gi.size))

    def nvmlGpuInstanceGetComputeInstanceProfileInfoV(self, gi_handle: Any, slot: int,  # noqa: N802
                                                      engine: int) -> Any:
        gpu, gi = self._gi(gi_handle)
        prof = migprofiles.gi_profile(gpu.product, self.machine.driver_version, gi.profile_id)
        ci = None if prof is None else migprofiles.ci_profile(prof, slot)
        if prof is None or ci is None:
            raise _error(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return SimpleNamespace(id=ci.id, sliceCount=ci.slices, instanceCount=ci.max_count,
                               multiprocessorCount=ci.sm_count, sharedCopyEngineCount=prof.ce,
                               sharedDecoderCount=prof.dec, sharedEncoderCount=prof.enc, sharedJpegCount=prof.jpeg,
                               sharedOfaCount=prof.ofa, name=f"MIG {ci.name}")

    def nvmlGpuInstanceGetComputeInstances(self, gi_handle: Any, profile_id: int, array: Any,  # noqa: N802
                                           count: Any) -> None:
        gpu, gi = self._gi(gi_handle)
        cis = sorted((c for c in gi.compute_instances if c.profile_id == int(profile_id)), key=lambda c: c.id)
        self._fill(array, count, [self._handle(pynvml.c_nvmlComputeInstance_t, (gpu.index, gi.id, c.id))
                                  for c in cis])

    def nvmlComputeInstanceGetInfo(self, ci_handle: Any) -> Any:  # noqa: N802
        gpu_index, gi_id, ci_id = self._key(ci_handle)
        gi = next(g for g in self.machine.gpu(gpu_index).gpu_instances if g.id == gi_id)
        ci = next(c for c in gi.compute_instances if c.id == ci_id)
        return SimpleNamespace(id=ci.id, profileId=ci.profile_id,
                               placement=SimpleNamespace(start=ci.start, size=ci.size))

    def nvmlDeviceGetMaxMigDeviceCount(self, handle: _Device) -> int:  # noqa: N802
        report = self._mig_on(handle)
        return max((p.slices for p in self._profiles(report.gpu)), default=0)  # one per compute slice

    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle: _Device, number: int) -> _MigHandle:  # noqa: N802
        report = self._mig_on(handle)
        if not 0 <= number < len(report.mig_devices):
            raise _error(pynvml.NVML_ERROR_NOT_FOUND)
        return _MigHandle(handle.gpu, number)

    def _mig_device(self, mig: _MigHandle) -> Any:
        return self._gpu(mig).mig_devices[mig.number]

    def nvmlDeviceGetGpuInstanceId(self, mig: _MigHandle) -> int:  # noqa: N802
        return int(self._mig_device(mig).gi)

    def nvmlDeviceGetComputeInstanceId(self, mig: _MigHandle) -> int:  # noqa: N802
        return int(self._mig_device(mig).ci)
