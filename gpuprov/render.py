"""The Jinja2 environments: one for templates of files put on hosts, one for expressions in playbook values.

Undefined variables are errors (``StrictUndefined``): a unit rendered with a silently empty value is worse than no
unit. User ``--templates`` directories come first, so a site can override any plugin template by name.
"""

from __future__ import annotations

import functools
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jinja2
import jinja2.nativetypes

from .errors import GpuprovError


def _shell_quote(value: Any) -> str:
    return shlex.quote(str(value))


class Templates:
    """Renders the templates of the loaded plugins (``templates.render("nvidia-mps@.service.j2", ...)``)."""

    def __init__(self, dirs: Sequence[Path], user_dirs: Sequence[Path] = ()) -> None:
        self.dirs = [Path(d) for d in (*user_dirs, *dirs)]
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader([str(d) for d in self.dirs]),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
            autoescape=False,
        )
        self.env.filters["shquote"] = _shell_quote

    def render(self, name: str, /, **context: Any) -> str:
        try:
            return self.env.get_template(name).render(**context)
        except jinja2.TemplateNotFound:
            raise GpuprovError(f"template {name!r} not found in {', '.join(map(str, self.dirs))}") from None
        except jinja2.UndefinedError as exc:
            raise GpuprovError(f"template {name!r}: {exc.message}") from None


_VALUES = jinja2.nativetypes.NativeEnvironment(undefined=jinja2.StrictUndefined)


@functools.lru_cache(maxsize=4096)
def _expression(source: str) -> jinja2.Template:
    """A playbook value compiled once: Jinja compiles ``from_string`` anew on every call (about 3 ms), which was
    most of a 1,000-host plan's settings (the same ``{{ mig_layout }}`` rendered per host)."""
    return _VALUES.from_string(source)


def render_value(value: Any, variables: Mapping[str, Any]) -> Any:
    """Render Jinja expressions inside a playbook value with a host's variables, keeping native types.

    ``"{{ mig_layout }}"`` becomes the list the variable holds, not its string form. Raises ``ValueError`` with
    Jinja's message (the caller adds ``file:line`` and the host).
    """
    if isinstance(value, str):
        if "{{" not in value and "{%" not in value:
            return value
        try:
            result = _expression(value).render(**variables)
            if isinstance(result, jinja2.Undefined):
                str(result)  # a lone undefined expression: make StrictUndefined raise
            return result
        except jinja2.UndefinedError as exc:
            raise ValueError(f"{exc.message} (define it in the inventory, group_vars/host_vars or the play's vars)") \
                from None
        except jinja2.TemplateError as exc:
            raise ValueError(f"bad Jinja expression {value!r}: {exc}") from None
    if isinstance(value, list):
        return [render_value(v, variables) for v in value]
    if isinstance(value, dict):
        return {k: render_value(v, variables) for k, v in value.items()}
    return value
