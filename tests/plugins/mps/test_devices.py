"""Device names and the ``devices`` selection, on a host built from real captures (see ``captures``)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from gpuprov_mps.devices import SelectionError, host_devices, instance_name, select
from hypothesis import given, settings
from hypothesis import strategies as st

from .captures import MIG_UUIDS, host_facts


def test_devices_of_a_host_with_a_split_gpu_instance(fixtures_dir: Path) -> None:
    devices = host_devices(host_facts(fixtures_dir))
    assert [(d.name, d.instance, d.uuid) for d in devices] == [
        ("gpu0/mig@0", "gpu0-mig0", MIG_UUIDS[(2, 0)]),
        ("gpu0/mig@4/ci0", "gpu0-mig4-ci0", MIG_UUIDS[(3, 0)]),
        ("gpu0/mig@4/ci1", "gpu0-mig4-ci1", MIG_UUIDS[(3, 1)]),
        ("gpu0/mig@6", "gpu0-mig6", MIG_UUIDS[(9, 0)]),
        ("gpu1", "gpu1", "GPU-0b6c2a51-7e3d-4b1f-9a2c-5d8e1f3a7c90"),
    ]
    assert devices[0].unit == "nvidia-mps@gpu0-mig0.service"
    assert all(d.gpu_uuid == "GPU-9e4aeb94-01c0-5173-4811-4ca60f77b3a9" for d in devices if d.is_mig)


def test_a_planned_device_keeps_its_name_without_ids(fixtures_dir: Path) -> None:
    """In ``planned`` a device the MIG plugin will create has no GI id and no UUID; its name is the same."""
    planned = copy.deepcopy(host_facts(fixtures_dir))
    for d in planned["mig_devices"]:
        if d["placement"][0] == 6:
            d.update(gi=None, uuid=None)
    device = next(d for d in host_devices(planned) if d.mig_start == 6)
    assert (device.name, device.gi, device.uuid) == ("gpu0/mig@6", None, None)


@pytest.mark.parametrize(("wanted", "names"), [
    ("all", ["gpu0/mig@0", "gpu0/mig@4/ci0", "gpu0/mig@4/ci1", "gpu0/mig@6", "gpu1"]),
    ("mig", ["gpu0/mig@0", "gpu0/mig@4/ci0", "gpu0/mig@4/ci1", "gpu0/mig@6"]),
    ("gpus", ["gpu1"]),
    ([1, "gpu0/mig@6"], ["gpu0/mig@6", "gpu1"]),
    (["gpu0-mig4-ci1", "1", "gpu1"], ["gpu0/mig@4/ci1", "gpu1"]),
    (["gpu0/mig"], ["gpu0/mig@0", "gpu0/mig@4/ci0", "gpu0/mig@4/ci1", "gpu0/mig@6"]),
])
def test_selection(fixtures_dir: Path, wanted: object, names: list[str]) -> None:
    devices = host_devices(host_facts(fixtures_dir))
    assert [d.name for d in select(devices, wanted, mig_gpus=[0])] == names


@pytest.mark.parametrize(("wanted", "message"), [
    ([0], "GPU 0 is in MIG mode, so CUDA (and MPS) sees only its MIG devices"),
    (["gpu0/mig@2"], "'gpu0/mig@2' names no device of this host (after this play's MIG changes); devices: "
                     "gpu0/mig@0, gpu0/mig@4/ci0"),
    (["gpu0/mig@4"], "split into 2 compute instances; name one: gpu0/mig@4/ci0, gpu0/mig@4/ci1"),
    (["gpu7"], "names no device"),
    (["gpu1/mig"], "GPU 1 has no MIG devices"),
    (["nvidia0"], "is not a device name: use a GPU index (0), gpu0, gpu0/mig"),
])
def test_selection_errors_say_what_exists(fixtures_dir: Path, wanted: object, message: str) -> None:
    devices = host_devices(host_facts(fixtures_dir))
    with pytest.raises(SelectionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        select(devices, wanted, mig_gpus=[0])


def test_instance_names() -> None:
    assert instance_name("gpu0/mig@4/ci1") == "gpu0-mig4-ci1"
    assert instance_name("gpu12") == "gpu12"


@st.composite
def layouts(draw: st.DrawFn) -> dict[str, Any]:
    """Hosts of 1-4 GPUs, each whole or in MIG mode with GPU instances at distinct slices, 1-3 CIs each."""
    gpus, devices = [], []
    for index in range(draw(st.integers(1, 4))):
        mig = draw(st.booleans())
        gpus.append({"index": index, "uuid": f"GPU-{index:08x}", "mig_current": mig})
        if not mig:
            continue
        for start in sorted(draw(st.sets(st.integers(0, 7), max_size=4))):
            for ci in range(draw(st.integers(1, 3))):
                devices.append({"gpu": index, "gi": None, "ci": ci, "profile": "1g.10gb", "uuid": None,
                                "placement": [start, 1]})
    return {"gpus": gpus, "mig_devices": devices}


@settings(max_examples=200, deadline=None)
@given(layouts())
def test_every_device_is_found_by_its_name_and_its_instance(state: dict[str, Any]) -> None:
    """Names are unique, and both spellings (gpu0/mig@4/ci1, gpu0-mig4-ci1) select exactly that device."""
    devices = host_devices(state)
    assert len({d.name for d in devices}) == len({d.instance for d in devices}) == len(devices)
    mig_gpus = [g["index"] for g in state["gpus"] if g["mig_current"]]
    for d in devices:
        assert select(devices, [d.name], mig_gpus) == [d]
        assert select(devices, [d.instance], mig_gpus) == [d]
    assert select(devices, "all", mig_gpus) == devices
    assert sorted(select(devices, "mig", mig_gpus) + select(devices, "gpus", mig_gpus), key=lambda d: d.key) == \
        devices
