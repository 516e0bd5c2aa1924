"""What callhub's Redis keys hold, and how the commit script is called.

``keyspace.py`` names the keys; this module names what is inside them: the
fields of a stream entry (the shard log and a call's stream hold the same
entries) and of a call hash, and the KEYS and ARGV layout of
``workers/commit/commit_event.lua``, the one writer of both. The script is the
other side of every name here; ``tests/unit/workers/commit/test_script_layout.py``
reads it and fails when the two drift apart.

The field names are plain module-level bytes, the form redis-py returns them
in: the readers index entries with them per event, so a name costs what a
literal costs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

# A stream entry: one committed event, in the shard log and in its call's stream.
ENTRY_TYPE: Final = b"type"  # the event type, e.g. b"call_started"
ENTRY_SESSION_ID: Final = b"session_id"
ENTRY_DIALOG: Final = b"dialog"  # the call's dialog name
ENTRY_SEQ: Final = b"seq"  # the event's seq, as decimal digits
ENTRY_DATA: Final = b"data"  # the event, JSON
# In the order the script writes them.
ENTRY_FIELDS: Final = (ENTRY_TYPE, ENTRY_SESSION_ID, ENTRY_DIALOG, ENTRY_SEQ, ENTRY_DATA)

# A call hash: the call's status, kept by the commit script.
CALL_SESSION_ID: Final = b"session_id"
CALL_CALLER_ID: Final = b"caller_id"
CALL_CALLED_NUMBER: Final = b"called_number"
CALL_DIALOG_NAME: Final = b"dialog_name"
CALL_CURRENT_STATE: Final = b"current_state"  # b"" until the first state_transition
CALL_START_MS: Final = b"start_ms"  # unix ms of the call_started event
CALL_STATUS: Final = b"status"  # one of CALL_STATUSES
CALL_STATE_TRANSITIONS: Final = b"state_transitions"  # a count
CALL_SEQ: Final = b"seq"  # the last committed seq
CALL_LAST_ID: Final = b"last_id"  # the entry id of the last committed event
CALL_END_MS: Final = b"end_ms"  # from call_terminated on
CALL_REASON: Final = b"reason"  # from call_terminated on
CALL_FINAL_STATE: Final = b"final_state"  # from call_terminated on
CALL_FIELDS: Final = (
    CALL_SESSION_ID, CALL_CALLER_ID, CALL_CALLED_NUMBER, CALL_DIALOG_NAME, CALL_CURRENT_STATE,
    CALL_START_MS, CALL_STATUS, CALL_STATE_TRANSITIONS, CALL_SEQ, CALL_LAST_ID, CALL_END_MS,
    CALL_REASON, CALL_FINAL_STATE,
)
CALL_VAR_PREFIX: Final = b"var:"  # + a variable's name: its value, JSON

# The commit script's answer when the caller it was given is not the call's
# (``{REDIRECT_CALLER, stored caller id}``, nothing written): send it again.
REDIRECT_CALLER: Final = b"caller"

# The values of CALL_STATUS.
STATUS_ACTIVE: Final = b"active"
STATUS_ON_HOLD: Final = b"on_hold"
STATUS_TRANSFERRING: Final = b"transferring"
STATUS_TERMINATED: Final = b"terminated"
CALL_STATUSES: Final = (STATUS_ACTIVE, STATUS_ON_HOLD, STATUS_TRANSFERRING, STATUS_TERMINATED)


class CommitKey:
    """The commit script's KEYS by position: the index in ``Keyspace.commit_keys``
    and in a commit's argument list (``KEYS[position + 1]`` in Lua)."""

    LOG: Final = 0  # the shard log
    CALL: Final = 1  # the call hash
    EVENTS: Final = 2  # the call's stream
    ACTIVE: Final = 3  # the shard's active index
    ACTIVE_DIALOG: Final = 4  # the shard's active index of the call's dialog
    LEASES: Final = 5  # the shard's leases
    ENDED: Final = 6  # the shard's ended calls by end time
    ENDED_DIALOG: Final = 7  # the same, of the call's dialog
    ENDED_CALLER: Final = 8  # the same, of the call's caller id
    ENDED_DIALOG_CALLER: Final = 9  # the same, of the call's dialog and caller id


COMMIT_NUMKEYS: Final = 10  # the number of KEYS


class CommitArg:
    """The commit script's ARGV by position: ``ARGV[position + 1]`` in Lua,
    ``COMMIT_NUMKEYS + position`` in a commit's argument list."""

    EVENT_TYPE: Final = 0
    SESSION_ID: Final = 1
    SEQ: Final = 2
    DATA: Final = 3  # the event, JSON
    DIALOG_NAME: Final = 4
    EVENT_MS: Final = 5  # the event's time, unix ms
    LOG_RETENTION_MS: Final = 6  # 0 keeps every log entry
    CALL_RETENTION_MS: Final = 7  # how long an ended call's hash and stream stay
    LEASE_MS: Final = 8  # 0 sets no lease
    ATTRIBUTE_A: Final = 9  # the per-type values: see hash_attributes in the publisher
    ATTRIBUTE_B: Final = 10
    CALLER_ID: Final = 11  # the caller the ENDED_CALLER keys are named by
    VARIABLES: Final = 12  # from here on: name, JSON value pairs (b"null" deletes)


CommitArguments = list[str | bytes | int]


def commit_arguments(
    keys: Sequence[str],
    event_type: str,
    session_id: str,
    seq: int,
    data: bytes,
    dialog_name: str,
    event_ms: int,
    log_retention_ms: int,
    call_retention_ms: int,
    lease_ms: int,
    attribute_a: str,
    attribute_b: str,
    caller_id: str,
) -> CommitArguments:
    """The KEYS (``Keyspace.commit_keys``) and ARGV of one commit, in the
    script's order (``CommitKey``, ``CommitArg``: the parameters are named as
    those are); the variables patch is appended to it in pairs."""
    return [*keys, event_type, session_id, seq, data, dialog_name, event_ms, log_retention_ms,
            call_retention_ms, lease_ms, attribute_a, attribute_b, caller_id]
