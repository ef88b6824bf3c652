"""Host facts for MPS tests, built by the MIG plugin's own parsers from real captures in ``fixtures/``.

The A100 is the SSUP2 capture session (A100-SXM4-40GB, driver 580.126.09: a 4g.20gb at 0:4, a 2g.10gb at 4:2 split
into two 1c.2g.10gb, a 1g.5gb at 6:1, with the MIG UUIDs ``nvidia-smi -L`` printed); the GPU record itself (what
``-q -x`` would say) is written out with the capture's identity. A second, whole GPU (MIG off) is added with the
T4 capture's bus id, for the whole-GPU cases.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from gpuprov_mig import facts as mig_facts

SSUP2 = {
    "lgip": "nvidia-smi/a100-sxm4-40gb-r580_mig_-i_0_-lgip.txt",
    "lgipp": "nvidia-smi/a100-sxm4-40gb_mig_-lgipp.txt",
    "lgi": "nvidia-smi/a100-sxm4-40gb-r580_mig_-i_0_-lgi.txt",
    "lci": "nvidia-smi/a100-sxm4-40gb-r580_mig_-i_0_-lci.txt",
    "list": "nvidia-smi/a100-sxm4-40gb-r580_-L.txt",
}
A100 = mig_facts.GpuRecord(
    index=0, product="NVIDIA A100-SXM4-40GB", architecture="Ampere", uuid="GPU-9e4aeb94-01c0-5173-4811-4ca60f77b3a9",
    bus_id="00000000:10:1C.0", pci_device_id="0x20B010DE", virtualization="None", mig_capable=True, mig_current=True,
    mig_pending=True, memory_mib=40960, compute_mode="Default")
WHOLE = mig_facts.GpuRecord(
    index=1, product="NVIDIA A100-SXM4-40GB", architecture="Ampere", uuid="GPU-0b6c2a51-7e3d-4b1f-9a2c-5d8e1f3a7c90",
    bus_id="00002C74:00:00.0", pci_device_id="0x20B010DE", virtualization="None", mig_capable=True,
    mig_current=False, mig_pending=False, memory_mib=40960, compute_mode="Default")

# The MIG UUIDs of the capture, by (GI, CI), as the MIG plugin matched them to the listing.
MIG_UUIDS = {
    (2, 0): "MIG-c42101f0-a1fa-5b68-8908-7c5c887f28bd",
    (3, 0): "MIG-8970491e-16e0-5140-9f8f-d561baa3c186",
    (3, 1): "MIG-239565ce-30e3-52d7-8197-5630d3ce21fa",
    (9, 0): "MIG-20301a31-77fa-59ec-b0b8-7ef543821f29",
}


def host_facts(fixtures: Path, *, whole_compute_mode: str = "Default",
               processes: tuple[mig_facts.Process, ...] = ()) -> dict[str, Any]:
    """GPU 0 (MIG, the capture's layout) and GPU 1 (whole), as the MIG plugin's facts; ``processes`` on GPU 0."""
    def read(key: str) -> str:
        return (fixtures / SSUP2[key]).read_text()

    listings = mig_facts.Listings(
        profiles=mig_facts.parse_lgip(read("lgip")), placements=mig_facts.parse_lgipp(read("lgipp")),
        gis=mig_facts.parse_lgi(read("lgi")), cis=mig_facts.parse_lci(read("lci")),
        devices=mig_facts.parse_gpu_list(read("list")))
    gpus = (replace(A100, processes=processes), replace(WHOLE, compute_mode=whole_compute_mode))
    facts = mig_facts.assemble(mig_facts.QueryRecord("580.126.09", "13.0", gpus), listings)
    facts["mig"]["units"] = {}
    facts["mig"]["boot"] = {"unit": None, "script": None, "enabled": None}
    return facts
