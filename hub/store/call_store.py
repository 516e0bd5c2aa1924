"""Reading calls: Get Call and List Calls over the call hashes and indexes.

List Calls is keyset pagination (DESIGN section 3): a page token names the last
(start_ms, session_id) returned, and the next page starts strictly after it in
every index it reads, merged across shards. So walking the pages while calls
start and end never returns a call twice and never skips one that stayed
active throughout; an offset would do both.

Ended calls are listed the same way over the ended-call indexes the commit
script keeps (by end time, newest first: the position is the last (end_ms,
session_id) returned, and the next page starts strictly before it). A call
that ends during a walk joins them at the newest end, before the position,
so it is neither repeated nor does it shift the calls after the position.
An index member whose call hash has expired (the index is trimmed when calls
end, the hash by its own TTL) or belongs to a newer call of the same session
id is skipped.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Sequence
from typing import Literal

import msgspec
from redis.asyncio.cluster import RedisCluster

from callhub.call_views import CallStatus, CallView, ListCallsPage
from callhub.commit_time import MAX_CLOCK_SKEW_MS, entry_ms, skew_ms, start_ms
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
from hub.store.dialog_gate import check_dialog
from hub.store.hash_reader import CoalescedHashReader, PipelinedHashReader

_PAGE_KIND = b"callhub-page"
_PAGE_VERSION = 1
_VAR_LEN = len(CALL_VAR_PREFIX)

ListStatus = Literal["active", "terminated", "all"]  # what List Calls lists
LIST_STATUSES: tuple[ListStatus, ...] = ("active", "terminated", "all")
Scope = frozenset[str] | None  # the dialogs a key may see; None sees all


class CallFilter(msgspec.Struct, frozen=True):
    """What a List Calls request asks for. ``ended_after_ms`` is inclusive,
    ``ended_before_ms`` exclusive (so consecutive windows tile time); both, and
    ``caller_id``, narrow the ended calls only."""

    status: ListStatus = "active"
    dialog: str = ""
    caller_id: str = ""
    ended_after_ms: int | None = None
    ended_before_ms: int | None = None


class PagePosition(msgspec.Struct, frozen=True, array_like=True):
    """What a page token holds: the listing it belongs to and where it stopped.

    ``start_ms`` is the last call's start, or its end once ``ended`` (the
    position is among the ended calls). The fields after ``session_id`` came
    with the ended calls; a token without them is an active listing's, as
    before them.
    """

    dialog: str
    start_ms: int
    session_id: str
    status: str = "active"
    caller_id: str = ""
    ended_after_ms: int | None = None
    ended_before_ms: int | None = None
    ended: bool = False


def encode_page_token(position: PagePosition) -> str:
    return seal(_PAGE_KIND, _PAGE_VERSION, position)


# The filters a token is bound to, as (parameter, field of both structs).
_BOUND = (("status", "status"), ("dialog_name", "dialog"), ("caller_id", "caller_id"),
          ("ended_after", "ended_after_ms"), ("ended_before", "ended_before_ms"))


def decode_page_token(token: str, listing: CallFilter) -> PagePosition:
    """The position in a token from an earlier page of the same listing."""
    try:
        position = unseal(_PAGE_KIND, _PAGE_VERSION, token, PagePosition)
    except InvalidToken as error:
        raise BadParameter(f"page_token is not valid: {error}", param="page_token") from None
    for param, name in _BOUND:
        if getattr(position, name) != getattr(listing, name):
            raise BadParameter(
                f"page_token belongs to a listing with a different {param}", param="page_token"
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
        """The call, or a 404 that costs the same whether the call is unknown or
        another dialog's: a scoped key reads the call's dialog alone first and
        refuses a foreign call before its hash (or its first commit) is read or a
        view built (else the 404's timing would say the call exists;
        bench/not_found_timing.py)."""
        key = self._keys.call(session_id)
        if scope is not None:
            await check_dialog(self._redis, key, session_id, scope)
        fields = await self._hashes.hgetall(key)
        first_commit = await self._first_commit_ms([session_id], [fields])
        view = self._view(session_id, fields, time.time(), first_commit[0])
        if view is None or not _visible(view.dialog_name, scope):
            # Gone since, or (its session id starting a fresh call) another dialog's now.
            raise NotFound(f"call {session_id} does not exist", param="id")
        return view

    async def list_calls(
        self, listing: CallFilter, page_size: int, after: PagePosition | None, scope: Scope
    ) -> ListCallsPage:
        """A page of ``listing``: active calls oldest first, ended ones newest
        first, or (``all``) the active ones and then the ended ones."""
        status = listing.status
        in_ended = status == "terminated" or (status == "all" and after is not None
                                              and after.ended)
        picked: list[tuple[bool, int, str]] = []  # (ended, score, session id)
        more, total = False, 0
        if status != "terminated":
            indexes = self._indexes(listing.dialog, scope)
            if in_ended:  # past the active calls: only their count
                total = await self._count(indexes)
            else:
                active, total = await self._scan(indexes, page_size, after)
                picked = [(False, score, sid) for score, sid in active[:page_size]]
                more = len(active) > page_size
                in_ended = not more
        if status != "active":
            room = page_size - len(picked)
            ended, ended_total = await self._scan_ended(
                self._ended_indexes(listing, scope), room, listing,
                after if after is not None and after.ended else None)
            total += ended_total
            if in_ended:
                picked += [(True, score, sid) for score, sid in ended[:room]]
                more = more or len(ended) > room
        calls = await self._views(picked)
        token = ""
        if more and picked:
            ended_last, score, session_id = picked[-1]
            token = encode_page_token(PagePosition(
                listing.dialog, score, session_id, status, listing.caller_id,
                listing.ended_after_ms, listing.ended_before_ms, ended_last))
        return ListCallsPage(calls=calls, next_page_token=token, total_count=total)

    async def _count(self, indexes: Sequence[str]) -> int:
        pipe = self._redis.pipeline(transaction=False)
        for key in indexes:
            pipe.zcard(key)
        return sum(await pipe.execute()) if indexes else 0

    async def _views(self, picked: list[tuple[bool, int, str]]) -> list[CallView]:
        """The call objects of a page's index entries, in one round trip; an
        entry whose call has ended since the scan (active), or whose hash has
        expired or is a newer call's (ended), is left out."""
        if not picked:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for _, _, session_id in picked:
            pipe.hgetall(self._keys.call(session_id))
        hashes = await pipe.execute()
        first_commits = await self._first_commit_ms([sid for _, _, sid in picked], hashes)
        now = time.time()
        calls = []
        for (ended, score, session_id), fields, first_commit in zip(
                picked, hashes, first_commits, strict=True):
            view = self._view(session_id, fields, now, first_commit)
            if view is None or (view.status == "terminated") != ended:
                continue
            if ended and fields.get(CALL_END_MS) != b"%d" % score:
                continue  # the session id's newer call; its own entry is elsewhere
            calls.append(view)
        return calls

    def _ended_indexes(self, listing: CallFilter, scope: Scope) -> list[str]:
        """The ended-call indexes that hold exactly what ``listing`` may show
        a key of ``scope``: a scoped key reads only its dialogs' indexes."""
        keys, caller = self._keys, listing.caller_id
        shards = range(keys.shards)
        if listing.dialog:
            if not _visible(listing.dialog, scope):
                return []
            dialogs: Sequence[str] = (listing.dialog,)
        elif scope is not None:
            dialogs = sorted(scope)
        elif caller:
            return [keys.ended_caller(s, caller) for s in shards]
        else:
            return [keys.ended(s) for s in shards]
        if caller:
            return [keys.ended_dialog_caller(s, d, caller) for s in shards for d in dialogs]
        return [keys.ended_dialog(s, d) for s in shards for d in dialogs]

    async def _scan_ended(
        self, indexes: Sequence[str], room: int, listing: CallFilter,
        after: PagePosition | None,
    ) -> tuple[list[tuple[int, str]], int]:
        """Up to room + 1 ended calls before ``after`` (newest first: (end_ms,
        session_id) descending, the zset's reverse order) within the listing's
        time bounds, merged over ``indexes``, and how many the bounds hold.

        As ``_scan``, reversed: per index one round trip reads the entries
        scored below the position and the ties on its score."""
        if not indexes:
            return [], 0
        want = room + 1
        low = "-inf" if listing.ended_after_ms is None else str(listing.ended_after_ms)
        top = "+inf" if listing.ended_before_ms is None else f"({listing.ended_before_ms}"
        ties = False
        if after is not None and (listing.ended_before_ms is None
                                  or after.start_ms < listing.ended_before_ms):
            top = f"({after.start_ms}"
            ties = listing.ended_after_ms is None or after.start_ms >= listing.ended_after_ms
        count_top = "+inf" if listing.ended_before_ms is None else f"({listing.ended_before_ms}"
        pipe = self._redis.pipeline(transaction=False)
        for key in indexes:
            pipe.zrange(key, top, low, desc=True, byscore=True, offset=0, num=want,
                        withscores=True)
            if ties and after is not None:
                pipe.zrange(key, after.start_ms, after.start_ms, desc=True, byscore=True,
                            offset=0, num=want, withscores=True)
            pipe.zcount(key, low, count_top)
        replies = iter(await pipe.execute())
        found: list[list[tuple[int, str]]] = []
        total = 0
        for key in indexes:
            earlier = [(int(score), member.decode()) for member, score in next(replies)]
            if ties and after is not None:
                earlier = await self._ties_after(key, after, next(replies), want,
                                                 desc=True) + earlier
            total += next(replies)
            found.append(earlier)
        return list(heapq.merge(*found, reverse=True))[:want], total

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
        if not indexes:
            return [], 0
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
        self, key: str, after: PagePosition, chunk: list[tuple[bytes, float]], want: int,
        desc: bool = False,
    ) -> list[tuple[int, str]]:
        """The entries scored ``after.start_ms`` that come after its session id
        in the listing's order (ascending, or descending when ``desc``)."""
        ties: list[tuple[int, str]] = []
        offset = 0
        while True:
            ties += [(after.start_ms, m.decode()) for m, _ in chunk
                     if (m.decode() < after.session_id if desc
                         else m.decode() > after.session_id)]
            offset += len(chunk)
            if len(chunk) < want or len(ties) >= want:
                return ties
            chunk = await self._redis.zrange(  # type: ignore[assignment]
                key, after.start_ms, after.start_ms, desc=desc, byscore=True, offset=offset,
                num=want, withscores=True,
            )

    async def _first_commit_ms(
        self, session_ids: Sequence[str], hashes: Sequence[dict[bytes, bytes]]
    ) -> list[int | None]:
        """When Redis committed each call's first event, for the calls whose
        start may be implausibly dated (None for the others, and for no call).

        Only a call whose ``call_started`` timestamp is farther than the
        plausible skew from its last commit can be one, so a call of the last
        few minutes (most calls) costs nothing more; the rest cost one XRANGE
        each, in one round trip.
        """
        wanted = [i for i, fields in enumerate(hashes)
                  if CALL_START_MS in fields and CALL_LAST_ID in fields
                  and abs(int(fields[CALL_START_MS]) - entry_ms(fields[CALL_LAST_ID]))
                  > MAX_CLOCK_SKEW_MS]
        found: list[int | None] = [None] * len(hashes)
        if not wanted:
            return found
        pipe = self._redis.pipeline(transaction=False)
        for i in wanted:
            pipe.xrange(self._keys.call_events(session_ids[i]), "-", "+", count=1)
        for i, first in zip(wanted, await pipe.execute(), strict=True):
            found[i] = entry_ms(first[0][0]) if first else None
        return found

    def _view(self, session_id: str, fields: dict[bytes, bytes], now: float,
              first_commit_ms: int | None = None) -> CallView | None:
        """The call object of a call hash (None: no such call). Reads only the
        fields it shows: this runs once per Get Call and once per listed call."""
        start = fields.get(CALL_START_MS)
        if start is None:
            return None
        started_ms = int(start)
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
            start_time=iso_ms(started_ms),
            duration_seconds=_duration_s(
                started_ms, end_ms, first_commit_ms,
                entry_ms(fields[CALL_LAST_ID]) if ended else None),
            status=status,
            variables=variables,
            cursor=cursor.encode(),
            end_time=iso_ms(end_ms) if ended else None,
            reason=_text(fields.get(CALL_REASON)) if ended else None,
            final_state=_text(fields.get(CALL_FINAL_STATE)) if ended else None,
        )


def _duration_s(started_ms: int, end_ms: int, first_commit_ms: int | None,
                end_commit_ms: int | None) -> int:
    """A call's duration as the reaper counts it: from its ``call_started``'s
    timestamp, or from its first commit when that timestamp is implausible
    (``callhub/commit_time.py``), to now or its end. A call stamped on the
    producer's clock at both ends (an ended backfill: its end, too, far from
    its commit) keeps the producer's own duration."""
    backfill = end_commit_ms is not None and skew_ms(end_ms, end_commit_ms) is not None
    begin = started_ms if backfill else start_ms(started_ms, first_commit_ms)
    return max(0, (end_ms - begin) // 1000)


def _text(value: bytes | None) -> str | None:
    return value.decode() if value is not None else None


def _visible(dialog: str, scope: Scope) -> bool:
    return scope is None or dialog in scope
