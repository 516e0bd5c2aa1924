"""Reading calls: Get Call and List Calls over the call hashes and active indexes.

List Calls is keyset pagination (DESIGN section 3): a page token names the last
(start_ms, session_id) returned, and the next page starts strictly after it in
every index it reads, merged across shards. So walking the pages while calls
start and end never returns a call twice and never skips one that stayed
active throughout; an offset would do both.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Sequence
from typing import Literal

import msgspec
from redis.asyncio.cluster import RedisCluster

from callhub.call_summary import CallSummary
from callhub.connections import RedisClient
from callhub.cursor import Cursor, parse_stream_id
from callhub.events import Scalar
from callhub.keyspace import Keyspace
from callhub.layout import (
    CALL_CALLED_NUMBER,
    CALL_CALLER_ID,
    CALL_CURRENT_STATE,
    CALL_DIALOG_NAME,
    CALL_END_MS,
    CALL_FINAL_STATE,
    CALL_LAST_ID,
    CALL_REASON,
    CALL_START_MS,
    CALL_STATUS,
    CALL_VAR_PREFIX,
)
from callhub.tokens import InvalidToken, seal, unseal
from hub.errors import BadParameter, NotFound
from hub.store.hash_reader import CoalescedHashReader, PipelinedHashReader

_PAGE_KIND = b"callhub-page"
_PAGE_VERSION = 1
_VAR_LEN = len(CALL_VAR_PREFIX)

CallStatus = Literal["active", "on_hold", "transferring", "terminated"]
Scope = frozenset[str] | None  # the dialogs a key may see; None sees all


class CallView(msgspec.Struct, frozen=True, omit_defaults=True):
    """The spec's call object, plus the cursor this snapshot reflects.

    ``cursor`` is a stream position: subscribing to ``/v1/calls/events`` with
    it as ``last_event_id`` continues exactly after the last event this
    snapshot includes. ``end_time``, ``reason`` and ``final_state`` appear once
    the call has ended, and Get Call adds its ``summary`` then.
    """

    session_id: str
    caller_id: str
    called_number: str
    dialog_name: str
    current_state: str
    start_time: str
    duration_seconds: int
    status: CallStatus
    variables: dict[str, Scalar]
    cursor: str
    end_time: str | None = None
    reason: str | None = None
    final_state: str | None = None
    summary: CallSummary | None = None


class ListCallsPage(msgspec.Struct, frozen=True):
    """One page of active calls; ``next_page_token`` is empty on the last page."""

    calls: list[CallView]
    next_page_token: str
    total_count: int


class PagePosition(msgspec.Struct, frozen=True, array_like=True):
    """What a page token holds: the listing it belongs to and where it stopped."""

    dialog: str
    start_ms: int
    session_id: str


def encode_page_token(position: PagePosition) -> str:
    return seal(_PAGE_KIND, _PAGE_VERSION, position)


def decode_page_token(token: str, dialog: str) -> PagePosition:
    """The position in a token from an earlier page of the same listing."""
    try:
        position = unseal(_PAGE_KIND, _PAGE_VERSION, token, PagePosition)
    except InvalidToken as error:
        raise BadParameter(f"page_token is not valid: {error}", param="page_token") from None
    if position.dialog != dialog:
        raise BadParameter(
            "page_token belongs to a listing with a different dialog_name", param="page_token"
        )
    return position


def iso_ms(ms: int) -> str:
    """ISO 8601 in UTC, milliseconds only when there are any: ``2025-06-14T18:30:00Z``.

    ``time.gmtime`` and %-formatting: Get Call formats one or two of these per
    request, and this costs about half of going through ``datetime``.
    """
    seconds, millis = divmod(ms, 1000)
    t = time.gmtime(seconds)
    if millis:
        return _ISO_MS % (t[0], t[1], t[2], t[3], t[4], t[5], millis)
    return _ISO % (t[0], t[1], t[2], t[3], t[4], t[5])


_ISO = "%04d-%02d-%02dT%02d:%02d:%02dZ"
_ISO_MS = "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ"
_variable: msgspec.json.Decoder[Scalar] = msgspec.json.Decoder(Scalar)


class CallStore:
    """Reads call state for the API; never writes."""

    def __init__(self, redis: RedisClient, keyspace: Keyspace) -> None:
        self._redis = redis
        self._keys = keyspace
        # One pipelined link reaches one node: on a cluster the pooled pipeline
        # (routed per node by the cluster client) serves Get Call.
        self._hashes: PipelinedHashReader | CoalescedHashReader = (
            CoalescedHashReader(redis) if isinstance(redis, RedisCluster)
            else PipelinedHashReader(redis))

    async def get_call(self, session_id: str, scope: Scope) -> CallView:
        fields = await self._hashes.hgetall(self._keys.call(session_id))
        view = self._view(session_id, fields, time.time())
        if view is None or not _visible(view.dialog_name, scope):
            raise NotFound(f"call {session_id} does not exist", param="id")
        return view

    async def list_calls(
        self, dialog: str, page_size: int, after: PagePosition | None, scope: Scope
    ) -> ListCallsPage:
        indexes = self._indexes(dialog, scope)
        if not indexes:
            return ListCallsPage(calls=[], next_page_token="", total_count=0)
        candidates, total = await self._scan(indexes, page_size, after)
        page = candidates[:page_size]
        more = len(candidates) > page_size
        pipe = self._redis.pipeline(transaction=False)
        for _, session_id in page:
            pipe.hgetall(self._keys.call(session_id))
        now = time.time()
        calls = []
        for (_, session_id), fields in zip(page, await pipe.execute(), strict=True):
            view = self._view(session_id, fields, now)
            if view is not None and view.status != "terminated":  # ended since the scan
                calls.append(view)
        token = ""
        if more and page:
            start_ms, session_id = page[-1]
            token = encode_page_token(PagePosition(dialog, start_ms, session_id))
        return ListCallsPage(calls=calls, next_page_token=token, total_count=total)

    def _indexes(self, dialog: str, scope: Scope) -> list[str]:
        shards = range(self._keys.shards)
        if dialog:
            if not _visible(dialog, scope):
                return []
            return [self._keys.active_dialog(s, dialog) for s in shards]
        if scope is not None:
            return [self._keys.active_dialog(s, d) for s in shards for d in sorted(scope)]
        return [self._keys.active(s) for s in shards]

    async def _scan(
        self, indexes: Sequence[str], page_size: int, after: PagePosition | None
    ) -> tuple[list[tuple[int, str]], int]:
        """Up to page_size + 1 entries after ``after``, merged over ``indexes``,
        and the total of the indexes' sizes.

        Keyset order is (start_ms, session_id), the zset's own order. Per
        index, one round trip reads the entries with a greater score and the
        ties on the position's score (many calls can start in the same
        millisecond); ties at or before the position's session id are
        dropped. Only a tie group longer than a page takes more round trips.
        """
        want = page_size + 1
        pipe = self._redis.pipeline(transaction=False)
        for key in indexes:
            low = f"({after.start_ms}" if after else "-inf"
            pipe.zrange(key, low, "+inf", byscore=True, offset=0, num=want, withscores=True)
            if after:
                pipe.zrange(key, after.start_ms, after.start_ms, byscore=True, offset=0,
                            num=want, withscores=True)
            pipe.zcard(key)
        replies = iter(await pipe.execute())
        found: list[list[tuple[int, str]]] = []
        total = 0
        for key in indexes:
            later = [(int(score), member.decode()) for member, score in next(replies)]
            if after:
                ties = await self._ties_after(key, after, next(replies), want)
                later = ties + later
            total += next(replies)
            found.append(later)
        return list(heapq.merge(*found))[:want], total

    async def _ties_after(
        self, key: str, after: PagePosition, chunk: list[tuple[bytes, float]], want: int
    ) -> list[tuple[int, str]]:
        """The entries scored ``after.start_ms`` that sort after its session id."""
        ties: list[tuple[int, str]] = []
        offset = 0
        while True:
            ties += [(after.start_ms, m.decode()) for m, _ in chunk
                     if m.decode() > after.session_id]
            offset += len(chunk)
            if len(chunk) < want or len(ties) >= want:
                return ties
            chunk = await self._redis.zrange(  # type: ignore[assignment]
                key, after.start_ms, after.start_ms, byscore=True, offset=offset, num=want,
                withscores=True,
            )

    def _view(self, session_id: str, fields: dict[bytes, bytes], now: float) -> CallView | None:
        """The call object of a call hash (None: no such call). Reads only the
        fields it shows: this runs once per Get Call and once per listed call."""
        start = fields.get(CALL_START_MS)
        if start is None:
            return None
        start_ms = int(start)
        status: CallStatus = fields[CALL_STATUS].decode()  # type: ignore[assignment]
        ended = status == "terminated"
        end_ms = int(fields[CALL_END_MS]) if ended else int(now * 1000)
        variables = {k[_VAR_LEN:].decode(): _variable.decode(v)
                     for k, v in fields.items() if k[:_VAR_LEN] == CALL_VAR_PREFIX}
        shard = self._keys.shard_of(session_id) if self._keys.shards > 1 else 0
        cursor = Cursor.at(self._keys.shards, shard, parse_stream_id(fields[CALL_LAST_ID]))
        return CallView(
            session_id=session_id,
            caller_id=fields[CALL_CALLER_ID].decode(),
            called_number=fields[CALL_CALLED_NUMBER].decode(),
            dialog_name=fields[CALL_DIALOG_NAME].decode(),
            current_state=fields[CALL_CURRENT_STATE].decode(),
            start_time=iso_ms(start_ms),
            duration_seconds=max(0, (end_ms - start_ms) // 1000),
            status=status,
            variables=variables,
            cursor=cursor.encode(),
            end_time=iso_ms(end_ms) if ended else None,
            reason=_text(fields.get(CALL_REASON)) if ended else None,
            final_state=_text(fields.get(CALL_FINAL_STATE)) if ended else None,
        )


def _text(value: bytes | None) -> str | None:
    return value.decode() if value is not None else None


def _visible(dialog: str, scope: Scope) -> bool:
    return scope is None or dialog in scope
