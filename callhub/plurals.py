"""Counted nouns for messages people read: ``1 event``, ``2 events``, ``1 retry``.

Every CLI message and status line that counts something says it through
``counted``, so none reads "1 events".
"""

from __future__ import annotations

from typing import Final

# Nouns these messages use whose plural is not noun + "s".
_IRREGULAR: Final = {"retry": "retries", "entry": "entries", "reply": "replies"}


def plural(noun: str) -> str:
    return _IRREGULAR.get(noun, noun + "s")


def counted(amount: int, noun: str, many: str | None = None) -> str:
    """``amount`` and ``noun``, the noun plural unless ``amount`` is 1 (``many``
    overrides the plural)."""
    word = noun if amount == 1 else (many or plural(noun))
    return f"{amount:,} {word}"
