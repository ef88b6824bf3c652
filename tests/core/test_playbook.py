"""Playbooks: valid plays load; every broken one is an InputError at the right ``file:line:col``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from gpuprov.errors import InputError
from gpuprov.inventory import Host
from gpuprov.playbook import load_playbook
from gpuprov.plugins import Plugins

HELLO = Path(__file__).resolve().parents[1] / "data" / "plugins" / "gpuprov-hello"


@pytest.fixture(scope="module")
def schemas() -> dict:
    sys.path.insert(0, str(HELLO))
    try:
        return Plugins.load(["gpuprov_hello"], entry_points=False).schemas
    finally:
        sys.path.remove(str(HELLO))


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "play.yml"
    path.write_text(text)
    return path


def test_valid_playbook(tmp_path: Path, schemas: dict) -> None:
    book = load_playbook(write(tmp_path, """\
- name: greet
  hosts: [gpu, "!a30"]
  serial: ["25%", 2]
  forks: 3
  max_fail_percentage: 20
  vars: {who: world}
  hello:
    greeting: "hi {{ who }} on {{ inventory_hostname }}"
- hosts: all
  hello:
"""), schemas)
    first, second = book.plays
    assert first.hosts == "gpu:!a30" and first.forks == 3 and first.serial == ["25%", 2]
    assert [len(b) for b in first.batches(list(range(10)))] == [2, 2, 2, 2, 2]
    assert [len(b) for b in second.batches(list(range(3)))] == [3]
    host = Host("n1", {"ansible_connection": "sim"}, ("all", "gpu"))
    settings = first.settings_for(host, schemas)
    assert settings["hello"] == {"greeting": "hi world on n1", "path": "/etc/gpuprov-hello"}
    assert second.settings_for(host, schemas)["hello"]["greeting"] == "hello"


BAD = [
    ("- hosts: all\n  hello: {greeting: [unclosed\n", "3:1", "while parsing"),
    ("hosts: all\n", "1:1", "a playbook is a YAML list of plays"),
    ("", "1", "a playbook is a YAML list of plays"),
    ("- just a string\n", "1:3", "play 1 must be a mapping"),
    ("- name: x\n", "1:3", "has no 'hosts:'"),
    ("- hosts: all\n  host: gpu\n", "2:3", "unknown key 'host'"),
    ("- hosts: all\n  mog: {}\n", "2:3", "unknown key 'mog'"),
    ("- hosts: all\n  forks: ten\n", "2:3", "forks must be an integer"),
    ("- hosts: all\n  forks: 0\n", "2:3", "forks must be at least 1"),
    ("- hosts: all\n  forks: true\n", "2:3", "forks must be an integer"),
    ("- hosts: all\n  serial: abc\n", "2:3", "serial 'abc' is not a batch size"),
    ("- hosts: all\n  serial: [2, -1]\n", "2:3", "serial -1 is not a batch size"),
    ("- hosts: all\n  serial: '150%'\n", "2:3", "serial '150%' is not a batch size"),
    ("- hosts: all\n  max_fail_percentage: 150\n", "2:3", "between 0 and 100"),
    ("- hosts: all\n  any_errors_fatal: 'yes'\n", "2:3", "any_errors_fatal must be true/false"),
    ("- hosts: all\n  vars: [1, 2]\n", "2:3", "vars must be a mapping"),
    ("- hosts: 5\n", "1:3", "hosts must be a string or a list"),
    ("- hosts: all\n  name: [a]\n", "2:3", "name must be a string"),
    ("- hosts: all\n  hello: [a, b]\n", "2:3", "hello: must be a mapping"),
    ("- hosts: all\n  hello:\n    greeting: 5\n", "3:5", "hello.greeting: expected a string, got int 5"),
    ("- hosts: all\n  hello:\n    greting: hi\n", "3:5", "unknown setting hello.greting; hello takes: greeting"),
    ("- hosts: all\n\thello: {}\n", "2:1", "found character '\\t'"),
    ("- hosts: all\n- 7\n", "2:3", "play 2 must be a mapping"),
]


@pytest.mark.parametrize(("text", "where", "message"), BAD, ids=[m for _, _, m in BAD])
def test_bad_playbook(tmp_path: Path, schemas: dict, text: str, where: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(InputError) as info:
        load_playbook(path, schemas)
    error = str(info.value)
    assert error.startswith(f"{path}:{where}"), error
    assert message in error


def test_bad_value_after_rendering_names_the_host_and_line(tmp_path: Path, schemas: dict) -> None:
    path = write(tmp_path, "- hosts: all\n  hello:\n    greeting: '{{ nope }}'\n")
    play = load_playbook(path, schemas).plays[0]
    with pytest.raises(InputError) as info:
        play.settings_for(Host("n1", {}, ("all",)), schemas)
    assert str(info.value).startswith(f"{path}:3:5: hello.greeting for host n1: 'nope' is undefined")
