"""The code stays as the style guide asks: ruff's lint over the tree, mypy --strict over the core."""

from __future__ import annotations

import subprocess
import sys

from helpers import ROOT


def test_ruff() -> None:
    r = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "gpuprov", "plugins", "tests", "bench"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy_strict_on_the_core() -> None:
    r = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
