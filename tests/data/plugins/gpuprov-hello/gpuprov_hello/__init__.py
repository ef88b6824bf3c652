"""A third-party gpuprov plugin: keeps a greeting file on each host.

It shows the whole plugin contract in a few lines: a settings section, a probe, facts, a plan made from a template,
and a verify check.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from gpuprov import hookimpl
from gpuprov.plan import Change, Step
from gpuprov.schema import Schema, Setting
from gpuprov.verify import Check

__version__ = "1.2.3"


@hookimpl
def gpuprov_settings_schema():
    return Schema("hello", {
        "greeting": Setting(str, "hello", doc="the first word of the file"),
        "path": Setting(str, "/etc/gpuprov-hello", doc="where the file lives"),
    }, order=90, reads=())  # its facts are its own: a play with only `hello:` probes nothing else


@hookimpl
def gpuprov_probe(settings):
    path = shlex.quote(settings["path"])
    return {"hello.file": f"cat {path}", "hello.gpus": "nvidia-smi -L"}


@hookimpl
def gpuprov_facts(outputs):
    file = outputs["hello.file"]
    gpus = outputs["hello.gpus"]
    return {"hello": {
        "content": file.stdout if file.exit_code == 0 else None,
        "gpu_count": sum(1 for line in gpus.stdout.splitlines() if line.startswith("GPU ")),
    }}


@hookimpl
def gpuprov_plan(host, facts, settings, templates):
    content = templates.render("motd.j2", greeting=settings["greeting"], host=host.name,
                               gpu_count=facts["hello"]["gpu_count"])
    current = facts["hello"]["content"]
    if current == content:
        return []
    return [Change(
        id="hello/file", summary=f"greet with {settings['greeting']!r} in {settings['path']}",
        steps=(Step.write(settings["path"], content, before=current),),
        before=current, after=content,
    )]


@hookimpl
def gpuprov_verify(settings):
    def test(host):
        f = host.file(settings["path"])
        assert f.exists, f"{settings['path']} is missing"
        assert f.contains(settings["greeting"]), f"{settings['path']} does not greet with {settings['greeting']}"

    return [Check("greeting file in place", test)]


@hookimpl
def gpuprov_template_dirs():
    return [Path(__file__).parent / "templates"]
