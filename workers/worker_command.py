"""Placeholder: this command is being built (issue #6)."""

from __future__ import annotations

import argparse

from hub.settings import Settings

HELP = "(not built yet)"
DESCRIPTION = "This command is being built."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the command's own options (the Redis options are added by the CLI)."""


def run(args: argparse.Namespace, settings: Settings) -> int:
    print("not built yet")
    return 2
