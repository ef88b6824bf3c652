"""A plugin implementing a hook that does not exist (a typo)."""

from gpuprov import hookimpl


@hookimpl
def gpuprov_plann(host):
    return []
