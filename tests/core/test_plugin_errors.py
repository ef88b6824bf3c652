"""A broken plugin gets an error that names it, the hook and what was expected; never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import Gpuprov

HERE = Path(__file__).parent


@pytest.mark.parametrize(("module", "expected"), [
    ("wrong_signature", ["plugin 'wrong_signature'", "gpuprov_plan", "layout", "Expected gpuprov_plan(host, facts, "
                                                                               "settings, planned, templates)"]),
    ("import_fails", ["plugin 'import_fails' (--plugin) failed to import", "gpuprov_no_such_dependency"]),
    ("unknown_hook", ["plugin 'unknown_hook'", "gpuprov_plann"]),
])
def test_broken_plugin_is_named(gpuprov: Gpuprov, module: str, expected: list[str]) -> None:
    r = gpuprov("plugins", "--plugin", module, env={"PYTHONPATH": str(HERE / "plugins_bad")})
    assert r.returncode == 1
    for text in expected:
        assert text in r.stderr
    assert "Traceback" not in r.stderr
