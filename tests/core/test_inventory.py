"""Host patterns, ranges and inventory errors (the ``ansible-inventory`` comparison is in test_inventory_ansible)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpuprov.errors import InputError
from gpuprov.inventory import expand_range, load_inventory

INVENTORY = """\
[train]
train[01:04]
[infer]
infer[01:02]
[a30]
a30-[a:b]
[gpu:children]
train
infer
a30
[spare]
train04
"""


@pytest.fixture
def inventory(tmp_path: Path):
    path = tmp_path / "hosts"
    path.write_text(INVENTORY)
    return load_inventory([path])


@pytest.mark.parametrize(("pattern", "expected"), [
    ("all", "train01 train02 train03 train04 infer01 infer02 a30-a a30-b"),
    ("infer", "infer01 infer02"),
    ("infer:a30", "infer01 infer02 a30-a a30-b"),
    ("infer,a30-b", "infer01 infer02 a30-b"),
    ("gpu:!train", "infer01 infer02 a30-a a30-b"),
    ("train:&spare", "train04"),
    ("train0*", "train01 train02 train03 train04"),
    ("a30-?", "a30-a a30-b"),
    ("~infer0[2-9]", "infer02"),
    ("nosuchgroup", ""),
])
def test_patterns(inventory, pattern: str, expected: str) -> None:
    assert " ".join(h.name for h in inventory.select(pattern)) == expected


def test_limit_and_retry_file(inventory, tmp_path: Path) -> None:
    assert [h.name for h in inventory.select("gpu", "a30")] == ["a30-a", "a30-b"]
    retry = tmp_path / "site.retry"
    retry.write_text("infer02\ntrain01\n")
    assert [h.name for h in inventory.select("gpu", f"@{retry}")] == ["train01", "infer02"]


def test_host_groups_include_ancestors(inventory) -> None:
    assert set(inventory.hosts["train04"].groups) == {"all", "gpu", "train", "spare"}


@pytest.mark.parametrize(("name", "expected"), [
    ("node[01:03]", ["node01", "node02", "node03"]),
    ("n[1:9:4]", ["n1", "n5", "n9"]),
    ("gpu-[a:c]", ["gpu-a", "gpu-b", "gpu-c"]),
    ("r[1:2]-g[0:1]", ["r1-g0", "r1-g1", "r2-g0", "r2-g1"]),
])
def test_ranges(name: str, expected: list[str]) -> None:
    assert expand_range(name) == expected


@pytest.mark.parametrize(("text", "where", "message"), [
    ("[g]\nnode[01:3]\n", "hosts:2", "zero-padded bounds must be as wide"),
    ("[g]\nnode[a:1]\n", "hosts:2", "bounds are both numbers or both single letters"),
    ("[g:weird]\nx\n", "hosts:1:1", "unknown section type :weird"),
    ("[g\nx\n", "hosts:1:1", "bad section header"),
    ("[g]\nhost1 novalue\n", "hosts:2:1", "expected key=value after the host name"),
    ("[g:vars]\njustaword\n", "hosts:2:1", "expected key=value in [g:vars]"),
    ("[g]\nhost1 x='unclosed\n", "hosts:2:1", "cannot parse"),
])
def test_bad_ini(tmp_path: Path, text: str, where: str, message: str) -> None:
    path = tmp_path / "hosts"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        load_inventory([path])
    assert str(info.value).startswith(f"{tmp_path}/{where}"), str(info.value)
    assert message in str(info.value)


@pytest.mark.parametrize(("text", "where", "message"), [
    ("all:\n  hosts: {a: [1]}\n", "2:11", "its variables must be a mapping"),
    ("all:\n  hostz: {}\n", "2:3", "unknown key 'hostz'"),
    ("- a\n", "1:1", "a YAML inventory is a mapping of groups"),
    ("all: {hosts: {a: }\n", "2:1", "YAML syntax error"),
    ("all:\n  vars: [1]\n", "2:3", "vars of group 'all' must be a mapping"),
])
def test_bad_yaml(tmp_path: Path, text: str, where: str, message: str) -> None:
    path = tmp_path / "hosts.yml"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        load_inventory([path])
    assert str(info.value).startswith(f"{path}:{where}"), str(info.value)
    assert message in str(info.value)


def test_missing_inventory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="inventory not found"):
        load_inventory([tmp_path / "nope"])
