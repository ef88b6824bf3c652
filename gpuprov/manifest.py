"""What gpuprov wrote on a host, so that a file a person edited since is kept rather than silently replaced.

Why: an operator who hand-fixes a unit file on one node at 3 a.m. must not lose that fix to the next ``apply``
without a trace. gpuprov therefore keeps, on every host, a manifest of the files it wrote with the SHA-256 of the
content it wrote (``/var/lib/gpuprov/manifest``, one ``<sha256>  <path>`` line per file, the format of
``sha256sum``; the host variable ``gpuprov_manifest`` moves it). On the control node itself
(``ansible_connection=local``) it lives with the user's state instead, ``$XDG_STATE_HOME/gpuprov/manifest``
(``~/.local/state``), like the sim hosts' state: a run as an ordinary user can keep it, and test runs on the
control node do not leave it in ``/var/lib``.

- **detect** reads the manifest and hashes each listed file in the *same* round trip as the plugins' probes
  (:func:`probe_command`), into the facts as ``facts["gpuprov"]["written"][path] = {"recorded", "current"}``; the
  facts' fingerprint covers it, so a file edited between ``plan --out`` and ``apply FILE`` makes ``apply`` refuse.
- **plan**: :func:`guard` looks at every write and remove step. When the file on the host is not what gpuprov
  last wrote (edited, or there before gpuprov and different), a step is put in front that copies it to
  ``backup/<path>.<first 12 hex of its sha256>`` beside the manifest, and the change gets a warning saying so; the
  plan shows both. The backup name depends only on the edited content, so plans stay deterministic and a second
  edit gets a second backup.
- **apply**: after each change the runner writes the manifest again with the hashes of what it wrote
  (:meth:`Written.recorded_text`); files listed but gone from the host are dropped from it.

Files gpuprov never wrote and whose content the plugin did not report (``Step.before`` is ``None``) cannot be
judged and are replaced as before.
"""

from __future__ import annotations

import hashlib
import posixpath
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .inventory import Host
    from .plan import Change, Step

MANIFEST_PATH = "/var/lib/gpuprov/manifest"
PROBE = "gpuprov.manifest"
FACTS_KEY = "gpuprov"


def manifest_path(host: Host) -> str:
    """Where ``host`` keeps its manifest: ``gpuprov_manifest``, else the user's state dir for ``local``, else
    :data:`MANIFEST_PATH`."""
    if host.vars.get("gpuprov_manifest"):
        return str(host.vars["gpuprov_manifest"])
    if host.connection == "local":
        import os

        state = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
        return posixpath.join(state, "gpuprov", "manifest")
    return MANIFEST_PATH


def sha256(content: str | bytes) -> str:
    data = content.encode("utf-8", errors="surrogateescape") if isinstance(content, str) else content
    return hashlib.sha256(data).hexdigest()


def probe_command(path: str) -> str:
    """One POSIX sh command printing ``<current sha256 or -> <recorded sha256>  <path>`` per manifest line."""
    m = shlex.quote(path)
    return (f"[ -f {m} ] || exit 0; while IFS= read -r line; do p=${{line#*  }}; "
            'if [ -f "$p" ]; then c=$(sha256sum < "$p"); c=${c%% *}; else c=-; fi; '
            f"printf '%s %s\\n' \"$c\" \"$line\"; done < {m}")


def parse_probe(stdout: str) -> dict[str, dict[str, str | None]]:
    """The probe's output as ``{path: {"recorded": sha, "current": sha or None}}``; malformed lines are skipped
    (a manifest a person truncated must not stop a run: its files are then simply not protected)."""
    written: dict[str, dict[str, str | None]] = {}
    for line in stdout.splitlines():
        current, _, rest = line.partition(" ")
        recorded, sep, path = rest.partition("  ")
        if not sep or not path.startswith("/") or len(recorded) != 64:
            continue
        written[path] = {"recorded": recorded, "current": None if current == "-" else current}
    return written


def backup_path(path: str, digest: str, manifest: str = MANIFEST_PATH) -> str:
    """Where the edited ``path`` (content hash ``digest``) is kept: ``backup/`` beside the host's manifest."""
    return posixpath.join(posixpath.dirname(manifest), "backup", path.lstrip("/")) + f".{digest[:12]}"


def _edited(step: Step, written: Mapping[str, Mapping[str, Any]]) -> tuple[str, str] | None:
    """``(sha256 of the file on the host, why it is kept)`` when the step would destroy someone's edit."""
    assert step.path is not None
    entry = written.get(step.path)
    if entry is not None:
        current = entry.get("current")
        if current and current != entry.get("recorded"):
            return str(current), "was edited since gpuprov wrote it"
        return None
    if step.before is not None and (step.kind == "remove" or step.before != step.content):
        return sha256(step.before), "was not written by gpuprov"
    return None


def guard(changes: Iterable[Change], written: Mapping[str, Mapping[str, Any]],
          manifest: str = MANIFEST_PATH) -> list[Change]:
    """``changes`` with a backup step in front of every write or remove that would destroy a person's edit."""
    from .plan import Step

    out: list[Change] = []
    for change in changes:
        steps: list[Step] = []
        warnings = list(change.warnings)
        for step in change.steps:
            if step.kind in ("write", "remove") and step.path:
                edited = _edited(step, written)
                if edited is not None:
                    digest, why = edited
                    target = backup_path(step.path, digest, manifest)
                    q = shlex.quote
                    steps.append(Step.run(f"mkdir -p {q(posixpath.dirname(target))} && cp -p {q(step.path)} "
                                          f"{q(target)}", description=f"keep {step.path} as {target}"))
                    warnings.append(f"{step.path} {why}: the current file is kept as {target}")
            steps.append(step)
        if len(steps) != len(change.steps):
            change = replace(change, steps=tuple(steps), warnings=tuple(warnings))
        out.append(change)
    return out


@dataclass
class Written:
    """One host's manifest during apply: what detect read, updated as steps write and remove files."""

    path: str
    entries: dict[str, dict[str, str | None]] = field(default_factory=dict)
    dirty: bool = False

    def wrote(self, path: str, content: str) -> None:
        digest = sha256(content)
        self.entries[path] = {"recorded": digest, "current": digest}
        self.dirty = True

    def removed(self, path: str) -> None:
        self.entries.pop(path, None)
        self.dirty = True

    def recorded_text(self) -> str:
        """The manifest file: files still on the host, with the hash gpuprov recorded for each."""
        return "".join(f"{e['recorded']}  {p}\n" for p, e in sorted(self.entries.items())
                       if e.get("current") is not None and "\n" not in p)
