"""The example dialogs shipped with callhub (helpdesk, billing menu): what the simulator runs
when no ``--dialog`` file is given. They live in ``workers/simulator/dialogs/``."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from workers.dialog.spec import Dialog, load_dialog


def bundled_dialog_paths() -> list[Path]:
    folder = resources.files("workers.simulator").joinpath("dialogs")
    return sorted(Path(str(entry)) for entry in folder.iterdir() if entry.name.endswith(".toml"))


def bundled_dialogs() -> list[Dialog]:
    return [load_dialog(path) for path in bundled_dialog_paths()]
