"""A plugin whose gpuprov_plan asks for an argument the hook does not have."""

from gpuprov import hookimpl


@hookimpl
def gpuprov_plan(host, facts, layout):
    return []
