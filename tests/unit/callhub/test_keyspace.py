"""The keyspace: one slot per call, the shard function, the documented names."""

from __future__ import annotations

import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.crc import key_slot

from callhub.keyspace import Keyspace
from tests.support.strategies import dialog_names, session_ids


@given(session_ids, dialog_names, st.text(max_size=64), st.integers(1, 64))
def test_every_commit_key_of_a_call_is_in_one_hash_slot(
    sid: str, dialog: str, caller: str, shards: int
) -> None:
    keys = Keyspace(shards=shards).commit_keys(sid, dialog, caller)  # braces in a caller too
    assert len({key_slot(key.encode()) for key in keys}) == 1


@given(session_ids, st.integers(1, 1000))
def test_shard_is_crc32_of_the_session_id_modulo_shards(sid: str, shards: int) -> None:
    keyspace = Keyspace(shards=shards)
    assert keyspace.shard_of(sid) == zlib.crc32(sid.encode()) % shards
    assert f"{{{keyspace.shard_of(sid)}}}" in keyspace.call(sid)


def test_key_names_are_the_designs() -> None:
    keys = Keyspace(prefix="callhub", shards=1)
    assert keys.commit_keys("call-abc-123", "helpdesk", "+15551234567") == (
        "callhub:{0}:log",
        "callhub:{0}:call:call-abc-123",
        "callhub:{0}:call:call-abc-123:events",
        "callhub:{0}:active",
        "callhub:{0}:active:helpdesk",
        "callhub:{0}:leases",
        "callhub:{0}:ended",
        "callhub:{0}:ended:dialog:helpdesk",
        "callhub:{0}:ended:caller:+15551234567",
        "callhub:{0}:ended:dialog:helpdesk:caller:+15551234567",
    )


@pytest.mark.parametrize("prefix", ["", "a{b", "a}b", "a:b", "x" * 65, "sp ace"])
def test_a_prefix_that_would_break_hash_tags_or_key_names_is_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        Keyspace(prefix=prefix)


@pytest.mark.parametrize("shards", [0, -1, 16385])
def test_shard_count_is_bounded(shards: int) -> None:
    with pytest.raises(ValueError, match="shards"):
        Keyspace(shards=shards)
