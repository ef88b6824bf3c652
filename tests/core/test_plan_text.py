"""The plan as a person reads it: identical hosts of a rack fold into one block, different ones do not."""

from __future__ import annotations

from gpuprov.plan import Change, HostPlan, Plan, Step, render_text


def host_plan(name: str, gpu_uuid: str, layout: str = "3g.40gb") -> HostPlan:
    script = f"# rendered for {name}\napply_gpu 0 {gpu_uuid} {layout}\n"
    return HostPlan(host=name, changes=[
        Change("mig/gpu0", f"GPU 0: layout to {layout}", steps=(Step.run("nvidia-smi mig -i 0 -cgi 9:4 -C"),)),
        Change("mig/boot", "keep the layout", steps=(Step.write("/usr/local/libexec/gpuprov/mig-apply", script),)),
    ])


def test_hosts_differing_only_in_names_and_uuids_fold() -> None:
    plan = Plan(hosts={
        "node01": host_plan("node01", "GPU-abb3313f-8329-0b86-8073-97407164b5d9"),
        "node02": host_plan("node02", "GPU-39f63e51-9420-7c1e-0fbf-90050543b389"),
        "node03": host_plan("node03", "GPU-0f764ebf-010e-2c7e-22d9-c7fb7dad2729"),
        "node10": host_plan("node10", "GPU-b98ba03f-89a9-ceb0-4ebb-8f3c89b22e0e", layout="7g.80gb"),
        "idle": HostPlan(host="idle"),
    })
    text = render_text(plan)
    assert "3 hosts: node01, node02, node03\n" in text
    assert "(as planned for node01; the others differ only in host name and UUIDs)" in text
    assert "+# rendered for node01" in text and "rendered for node02" not in text
    # a host with another layout gets its own block, and a host named inside another's name is not confused
    assert "\nnode10\n" in text and "7g.80gb" in text
    assert "no changes: idle" in text
    assert text.rstrip().endswith("Plan: 8 change(s) on 4 of 5 host(s).")


def test_readings_that_change_by_themselves_are_no_drift() -> None:
    from gpuprov.plan import fingerprint

    facts = {"numa": {"nodes": [{"id": 0, "memory_mb": 1024, "_free_mb": 900}]}, "gpus": [{"index": 0}]}
    moved = {"numa": {"nodes": [{"id": 0, "memory_mb": 1024, "_free_mb": 512}]}, "gpus": [{"index": 0}]}
    changed = {"numa": {"nodes": [{"id": 0, "memory_mb": 2048, "_free_mb": 900}]}, "gpus": [{"index": 0}]}
    assert fingerprint(facts) == fingerprint(moved)
    assert fingerprint(facts) != fingerprint(changed)
