"""EventFilter: which events a consumer gets, by the fields every stream entry carries.

The event stream's subscribers and the webhook forwarder's subscriptions take
the same filters (``event_types``, ``session_id``, ``dialog_name``) and are
held to the same key scope, so one class decides for both, on the routing
fields of a stored entry (no JSON is decoded to filter).
"""

from __future__ import annotations

from collections.abc import Sequence


class EventFilter:
    """What a stream subscriber or a webhook asked for, plus the dialogs its key may see."""

    __slots__ = ("dialog_name", "event_types", "scope", "session_id")

    def __init__(
        self,
        *,
        event_types: frozenset[bytes] | None = None,
        session_id: str = "",
        dialog_name: str = "",
        scope: frozenset[str] | None = None,
    ) -> None:
        self.event_types = event_types
        self.session_id = session_id.encode()
        self.dialog_name = dialog_name.encode()
        self.scope = frozenset(d.encode() for d in scope) if scope is not None else None

    def matches(self, event_type: bytes, session_id: bytes, dialog: bytes) -> bool:
        return (
            (self.event_types is None or event_type in self.event_types)
            and (not self.session_id or session_id == self.session_id)
            and self.sees_dialog(dialog)
        )

    def sees_dialog(self, dialog: bytes) -> bool:
        """Whether events of ``dialog`` pass the dialog filter and the key's scope."""
        return (not self.dialog_name or dialog == self.dialog_name) and (
            self.scope is None or dialog in self.scope)

    def key(self) -> tuple[object, ...]:
        """Equal for filters that match the same events (they share one group)."""
        return (self.event_types, self.session_id, self.dialog_name, self.scope)

    def index_keys(self) -> tuple[str, Sequence[bytes]]:
        """Where the dispatcher files this filter: its most selective field."""
        if self.session_id:
            return "session", (self.session_id,)
        if self.dialog_name:
            return "dialog", (self.dialog_name,)
        if self.scope is not None:
            return "dialog", sorted(self.scope)
        return "all", (b"",)
