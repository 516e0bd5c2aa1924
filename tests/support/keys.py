"""The keys file most key-scoped tests use: an operator's key and a dialog-scoped one."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hub.api.auth import hash_key


def write_keys_file(path: Path, helpdesk_dialogs: Sequence[str] = ("helpdesk",)) -> Path:
    """``path`` as a keys file: ``ops-key`` (name ``ops``) sees every dialog,
    ``helpdesk-key`` (name ``helpdesk``) only ``helpdesk_dialogs``."""
    dialogs = ", ".join(f'"{d}"' for d in helpdesk_dialogs)
    path.write_text(f"""
[[keys]]
name = "ops"
sha256 = "{hash_key('ops-key')}"

[[keys]]
name = "helpdesk"
sha256 = "{hash_key('helpdesk-key')}"
dialogs = [{dialogs}]
""")
    return path
