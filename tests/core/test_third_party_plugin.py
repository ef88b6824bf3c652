"""A third-party plugin, installed with pip, takes part in detect, plan, apply and verify like a built-in."""

from __future__ import annotations

from pathlib import Path

from helpers import Gpuprov


def test_installed_plugin_is_listed_with_its_version_and_hooks(gpuprov: Gpuprov, hello_site: Path) -> None:
    r = gpuprov("plugins", site=hello_site)
    assert r.returncode == 0, r.stderr
    line = next(line for line in r.stdout.splitlines() if line.startswith("hello "))
    assert "1.2.3" in line and "section: hello" in line and "entry point of gpuprov-hello" in line
    hooks = r.stdout.splitlines()[r.stdout.splitlines().index(line) + 1]
    for hook in ("gpuprov_settings_schema", "gpuprov_probe", "gpuprov_facts", "gpuprov_plan", "gpuprov_verify",
                 "gpuprov_template_dirs"):
        assert hook in hooks
    # the built-ins come through the same entry-point group
    assert "entry point of gpuprov" in r.stdout


def test_plugin_detects_plans_applies_and_converges(gpuprov: Gpuprov, hello_site: Path, tmp_path: Path) -> None:
    target = tmp_path / "etc" / "hello"
    inventory = tmp_path / "hosts"
    inventory.write_text("localhost ansible_connection=local\n")
    playbook = tmp_path / "hello.yml"
    playbook.write_text(f"- hosts: all\n  hello:\n    greeting: hi there\n    path: {target}\n")

    r = gpuprov("plan", "-i", str(inventory), str(playbook), site=hello_site)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "+ hello/file: greet with 'hi there'" in r.stdout
    assert "+hi there from localhost" in r.stdout  # the diff of the file to be written
    assert not target.exists()  # plan never changes a host

    r = gpuprov("apply", "-i", str(inventory), str(playbook), site=hello_site)
    assert r.returncode == 0, r.stdout + r.stderr
    assert target.read_text().splitlines()[1].startswith("hi there from localhost")

    r = gpuprov("plan", "-i", str(inventory), str(playbook), site=hello_site)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "no changes: localhost" in r.stdout

    r = gpuprov("verify", "-i", str(inventory), str(playbook), site=hello_site)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "PASS hello: greeting file in place" in r.stdout

    target.write_text("edited by a person\n")
    r = gpuprov("verify", "-i", str(inventory), str(playbook), site=hello_site)
    assert r.returncode == 1 and "FAIL hello: greeting file in place" in r.stdout


def test_saved_plan_is_applied_only_while_facts_are_unchanged(gpuprov: Gpuprov, hello_site: Path,
                                                              tmp_path: Path) -> None:
    target = tmp_path / "hello"
    (tmp_path / "hosts").write_text("localhost ansible_connection=local\n")
    (tmp_path / "p.yml").write_text(f"- hosts: all\n  hello: {{path: {target}}}\n")
    r = gpuprov("plan", "-i", "hosts", "p.yml", "--out", "plan.json", site=hello_site)
    assert r.returncode == 2, r.stderr
    target.write_text("someone was here\n")  # the host drifts after the plan was made
    r = gpuprov("apply", "-i", "hosts", "plan.json", site=hello_site)
    assert r.returncode == 1
    assert "facts changed since the plan was made" in r.stdout
    assert target.read_text() == "someone was here\n"

    r = gpuprov("plan", "-i", "hosts", "p.yml", "--out", "plan.json", site=hello_site)
    r = gpuprov("apply", "-i", "hosts", "plan.json", site=hello_site)
    assert r.returncode == 0, r.stdout + r.stderr
    assert target.read_text().startswith("# Managed by gpuprov")


def test_json_events(gpuprov: Gpuprov, hello_site: Path, tmp_path: Path) -> None:
    import json

    (tmp_path / "hosts").write_text("localhost ansible_connection=local\n")
    (tmp_path / "p.yml").write_text(f"- hosts: all\n  hello: {{path: {tmp_path / 'h'}}}\n")
    r = gpuprov("plan", "-i", "hosts", "p.yml", "--json", site=hello_site)
    events = [json.loads(line) for line in r.stdout.splitlines()]
    plan = next(e for e in events if e["event"] == "plan")["plan"]
    assert plan["hosts"][0]["changes"][0]["id"] == "hello/file"
    assert {e["event"] for e in events} >= {"host_started", "host_done", "plan"}


def test_plugin_converges_a_simulated_host(gpuprov: Gpuprov, hello_site: Path, tmp_path: Path) -> None:
    """The same plugin against the in-process ``sim`` connection: files land in the host's own tree."""
    (tmp_path / "hosts").write_text("[rack]\nnode[1:3] ansible_connection=sim sim_preset=dgx-h100\n")
    (tmp_path / "p.yml").write_text("- hosts: rack\n  hello: {greeting: moin}\n")
    assert gpuprov("plan", "-i", "hosts", "p.yml", site=hello_site).returncode == 2
    r = gpuprov("apply", "-i", "hosts", "p.yml", site=hello_site)
    assert r.returncode == 0, r.stdout + r.stderr
    tree = tmp_path / "state" / "gpuprov" / "sim" / "node2" / "root"
    assert (tree / "etc" / "gpuprov-hello").read_text().splitlines()[1].startswith("moin from node2")
    assert not Path("/etc/gpuprov-hello").exists() or "moin" not in Path("/etc/gpuprov-hello").read_text()
    r = gpuprov("plan", "-i", "hosts", "p.yml", site=hello_site)
    assert r.returncode == 0 and "no changes: node1, node2, node3" in r.stdout
