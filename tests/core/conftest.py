"""Helpers for core tests: a third-party plugin installed for real."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HELLO = Path(__file__).resolve().parents[1] / "data" / "plugins" / "gpuprov-hello"


@pytest.fixture(scope="session")
def hello_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The gpuprov-hello package installed with pip (its entry point included) into a directory of its own."""
    target = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("build")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "--target", str(target), str(HELLO)],
        check=True, cwd=build, capture_output=True,
    )
    return target


@pytest.fixture
def steps_rack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two simulated A30 hosts and the steps test plugin alone, run from ``tmp_path``, which holds the inventory
    (``hosts``); returns that directory for the test's playbook."""
    from test_bad_input import STEPS_PLUGIN

    monkeypatch.syspath_prepend(str(STEPS_PLUGIN))
    monkeypatch.setenv("GPUPROV_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "hosts").write_text("".join(
        f"n{i} ansible_connection=sim sim_gpu='NVIDIA A30' sim_state_dir={tmp_path}/n{i}\n" for i in (1, 2)))
    return tmp_path
