"""How a new shell runs this same ``callhub``: what the demo tells people to type.

``make demo`` runs ``.venv/bin/callhub``, which a new shell's PATH does not
find until the virtualenv is activated: printing a bare ``callhub tail`` there
gets ``command not found``. So the command is ``callhub`` only when the PATH
finds this very script, else its path (relative to the working directory when
inside it, as a person copying it would be), with the activation that puts it
on the PATH.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple


class OwnCommand(NamedTuple):
    command: str  # what to type: "callhub" or a path to it
    activate: str | None  # a shell line that makes a bare "callhub" work, if one is needed


def own_command(environ: Mapping[str, str] = os.environ, executable: str = sys.executable,
                cwd: Path | None = None) -> OwnCommand:
    """The ``callhub`` beside this interpreter (a virtualenv's bin/), as a new shell runs it."""
    script = Path(executable).parent / "callhub"
    if not script.exists():
        return OwnCommand("callhub", None)
    found = shutil.which("callhub", path=environ.get("PATH", ""))
    if found is not None and Path(found).resolve() == script.resolve():
        return OwnCommand("callhub", None)
    here = (cwd or Path.cwd()).resolve()
    # The script's own path, not resolved: a venv's bin/ may hold symlinks.
    absolute = script if script.is_absolute() else here / script
    try:
        shown = str(absolute.relative_to(here))
    except ValueError:
        shown = str(absolute)
    activate = absolute.parent / "activate"
    if not activate.exists():
        return OwnCommand(shown, None)
    bin_dir = str(Path(shown).parent)
    return OwnCommand(shown, f". {bin_dir}/activate")
