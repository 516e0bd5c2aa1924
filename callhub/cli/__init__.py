"""The command line, on top of everything.

``callhub serve | demo | worker | publish | tail | hash-key``.

Each sub-command is a module of its own, imported only when it runs, so a
command loads (and validates) only what it uses.
"""

from callhub.cli.main import main

__all__ = ["main"]
