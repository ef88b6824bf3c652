"""``python -m gpuprov``: the same as the ``gpuprov`` command."""

from .cli import main

main()
