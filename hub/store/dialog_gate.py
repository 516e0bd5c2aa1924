"""The scope check that comes before any of a call is read: its dialog alone.

Get Call and a call's events, transcript and summary all ask it first for a
dialog-scoped key, so that another dialog's call is refused exactly as an
unknown id is: one ``HGET`` of the call's dialog, one decode and one set
lookup, then the same ``NotFound`` — nothing of the call (its hash, its
events, a view of it) is read or built before the key is known to see it, and
no branch is taken for one that the other skips (``bench/not_found_timing.py``
measures the two 404s; ``tests/integration/test_foreign_call_not_found.py``
checks what Redis runs for each).
"""

from __future__ import annotations

from typing import cast

from callhub.connections import RedisClient
from callhub.layout import CALL_DIALOG_NAME
from hub.errors import NotFound


async def check_dialog(redis: RedisClient, call_key: str, session_id: str,
                       scope: frozenset[str]) -> None:
    """A 404 unless the call at ``call_key`` is of a dialog in ``scope``.

    An unknown call reads as the empty dialog, which no scope holds (dialog
    names are never empty): both 404s then run the same code."""
    dialog = cast("bytes | None", await redis.hget(call_key, CALL_DIALOG_NAME))
    if (dialog or b"").decode() not in scope:
        raise NotFound(f"call {session_id} does not exist", param="id")
