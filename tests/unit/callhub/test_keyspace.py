"""The keyspace: one slot per call, the shard function, the documented names."""

from __future__ import annotations

import math
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.crc import key_slot

from callhub.keyspace import SLOTS, SPREAD_SHARDS, Keyspace, shard_tags
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
    assert f"{{{shard_tags(shards)[keyspace.shard_of(sid)]}}}" in keyspace.call(sid)


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


def create_ranges(masters: int) -> list[range]:
    """The slot ranges `redis-cli --cluster create` gives ``masters`` masters
    (clusterManagerCommandCreate: float steps, each end rounded with lround)."""
    per_master = SLOTS / masters
    ranges, first, cursor = [], 0, 0.0
    for index in range(masters):
        last = math.floor(cursor + per_master - 1 + 0.5)
        if last > SLOTS or index == masters - 1:
            last = SLOTS - 1
        last = max(last, first)
        ranges.append(range(first, last + 1))
        first, cursor = last + 1, cursor + per_master
    return ranges


def shards_per_master(shards: int, masters: int) -> list[int]:
    keys = Keyspace(shards=shards)
    slots = [key_slot(keys.log(shard).encode()) for shard in range(shards)]
    return [sum(slot in owned for slot in slots) for owned in create_ranges(masters)]


@pytest.mark.parametrize("masters", [1, 2, 3, 4, 5, 6, 7, 8])
def test_shards_spread_evenly_over_the_ranges_redis_cli_creates(masters: int) -> None:
    largest = SPREAD_SHARDS // masters * masters
    for shards in [*range(masters, 8 * masters + 1, masters), largest]:
        assert shards_per_master(shards, masters) == [shards // masters] * masters, shards


def test_plain_index_tags_spread_unevenly_which_is_why_tags_are_chosen() -> None:
    slots = [key_slot(f"callhub:{{{shard}}}:log".encode()) for shard in range(6)]
    counts = [sum(slot in owned for slot in slots) for owned in create_ranges(3)]
    assert counts == [1, 3, 2]  # the README's example: what the chosen tags fix


@given(st.integers(1, SPREAD_SHARDS))
def test_each_tag_hashes_into_its_shards_range_and_names_its_shard(shards: int) -> None:
    for shard, tag in enumerate(shard_tags(shards)):
        assert tag == str(shard) or tag.startswith(f"{shard}.")
        slot = key_slot(f"{{{tag}}}".encode())
        assert shard * SLOTS / shards <= slot < (shard + 1) * SLOTS / shards


def test_one_shard_keeps_the_tag_it_always_had_and_many_shards_keep_plain_tags() -> None:
    assert shard_tags(1) == ("0",)
    assert shard_tags(SPREAD_SHARDS + 1) == tuple(str(s) for s in range(SPREAD_SHARDS + 1))
