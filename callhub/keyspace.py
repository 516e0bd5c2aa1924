"""The Redis keyspace: every key callhub reads or writes is built here.

All keys of one call live in one shard, and a shard is one Redis Cluster hash
slot fixed by the hash tag ``{s}``: so the commit script, which touches the
shard log, the call's hash and stream and the shard's indexes at once, runs
unchanged on a cluster (DESIGN section 2).

    <prefix>:{s}:log                    stream  every event of the shard's calls
    <prefix>:{s}:call:<sid>:events      stream  one call's events (same entry ids)
    <prefix>:{s}:call:<sid>             hash    the call's status
    <prefix>:{s}:active                 zset    active calls by start time (ms)
    <prefix>:{s}:active:<dialog>        zset    the same, per dialog
    <prefix>:{s}:leases                 zset    call -> lease expiry (ms)
    <prefix>:{s}:ended                  zset    ended calls by end time (ms), for the retention
    <prefix>:{s}:ended:dialog:<dialog>  zset    the same, per dialog
    <prefix>:{s}:ended:caller:<caller>  zset    the same, per caller id
    <prefix>:{s}:ended:dialog:<dialog>:caller:<caller>  zset  per dialog and caller id
    <prefix>:{s}:durable                string  a counter the publisher bumps before WAIT

Webhooks: the subscriptions are one small hash every replica and forwarder
reads; what a forwarder keeps per (subscription, shard) lives in that shard's
slot, beside the log it reads, so a lease check and a cursor move are one
atomic step on a cluster too.

    <prefix>:webhooks                       hash    subscription id -> subscription (JSON)
    <prefix>:{s}:webhook:<id>:cursor        string  delivered up to here in shard s's log
    <prefix>:{s}:webhook:<id>:lease         string  the forwarder delivering shard s (PX)
    <prefix>:{s}:webhook:<id>:redeliver     stream  dead letters of shard s queued to send again
    <prefix>:{s}:webhook:<id>:rewound       string  the last rewind (``/redeliver`` from) applied
    <prefix>:webhook:<id>:deliveries        stream  the last delivery attempts (capped)
    <prefix>:webhook:<id>:dead              stream  dead letters: events given up on
"""

from __future__ import annotations

import binascii
import functools
import re
import zlib
from dataclasses import dataclass, field

MAX_SHARDS = 16384  # one per Redis Cluster hash slot at the most
PREFIX_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")
SLOTS = 16384  # Redis Cluster's hash slots: crc16(tag) % SLOTS
SPREAD_SHARDS = 256  # up to this many shards, tags are chosen for an even spread


@functools.lru_cache(maxsize=128)
def shard_tags(shards: int) -> tuple[str, ...]:
    """Each shard's hash tag, chosen so the shards spread evenly over the masters.

    Shard ``s``'s tag hashes into the ``s``-th of ``shards`` equal slot ranges
    (one slot kept clear at each end: redis-cli rounds its boundaries).
    ``redis-cli --cluster create`` gives M masters M equal ranges, so with
    ``shards`` a multiple of M every master holds ``shards / M`` shards (plain
    ``{s}`` tags put 1, 3 and 2 of 6 shards on 3 masters). The tag is ``s``
    itself when its slot already lies there (one shard keeps ``{0}``), else the
    first of ``s.1``, ``s.2``, ... that does: about ``shards`` tries each, so
    past SPREAD_SHARDS shards the tag is plain ``s`` (that many spread within a
    few percent by chance). Keys written under other tags (the ``{s}`` of
    earlier versions) are not read: docs/cluster.md says how to move them.
    """
    if shards > SPREAD_SHARDS:
        return tuple(str(shard) for shard in range(shards))
    tags = []
    for shard in range(shards):
        low, high = shard * SLOTS / shards, (shard + 1) * SLOTS / shards
        if high - low >= 4:
            low, high = low + 1, high - 1
        candidate, n = str(shard), 0
        while not low <= binascii.crc_hqx(candidate.encode(), 0) % SLOTS < high:
            n += 1
            candidate = f"{shard}.{n}"
        tags.append(candidate)
    return tuple(tags)


@dataclass(frozen=True)
class Keyspace:
    """Key names for one deployment (a prefix and a fixed number of shards)."""

    prefix: str = "callhub"
    shards: int = 1
    _tags: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not PREFIX_PATTERN.fullmatch(self.prefix):
            raise ValueError(
                f"prefix {self.prefix!r} must be 1-64 characters of A-Z a-z 0-9 . _ -"
            )
        if not 1 <= self.shards <= MAX_SHARDS:
            raise ValueError(f"shards must be from 1 to {MAX_SHARDS}, got {self.shards}")
        tags = tuple(f"{self.prefix}:{{{tag}}}" for tag in shard_tags(self.shards))
        object.__setattr__(self, "_tags", tags)

    def shard_of(self, session_id: str) -> int:
        """The shard that holds a call: ``crc32(session_id) % shards``."""
        return zlib.crc32(session_id.encode()) % self.shards

    def log(self, shard: int) -> str:
        return f"{self._tags[shard]}:log"

    def active(self, shard: int) -> str:
        return f"{self._tags[shard]}:active"

    def active_dialog(self, shard: int, dialog_name: str) -> str:
        return f"{self._tags[shard]}:active:{dialog_name}"

    def leases(self, shard: int) -> str:
        return f"{self._tags[shard]}:leases"

    def ended(self, shard: int) -> str:
        return f"{self._tags[shard]}:ended"

    def ended_dialog(self, shard: int, dialog_name: str) -> str:
        return f"{self._tags[shard]}:ended:dialog:{dialog_name}"

    def ended_caller(self, shard: int, caller_id: str) -> str:
        # A dialog name holds no ':', so no caller id makes this a dialog's key.
        return f"{self._tags[shard]}:ended:caller:{caller_id}"

    def ended_dialog_caller(self, shard: int, dialog_name: str, caller_id: str) -> str:
        return f"{self._tags[shard]}:ended:dialog:{dialog_name}:caller:{caller_id}"

    def durable_mark(self, shard: int) -> str:
        return f"{self._tags[shard]}:durable"

    def call(self, session_id: str) -> str:
        return f"{self._tags[self.shard_of(session_id)]}:call:{session_id}"

    def call_events(self, session_id: str) -> str:
        return f"{self.call(session_id)}:events"

    def commit_keys(
        self, session_id: str, dialog_name: str, caller_id: str = ""
    ) -> tuple[str, ...]:
        """The KEYS of the commit script, in its order (``layout.CommitKey``).

        ``caller_id`` names the ended-call indexes of the call's caller: only a
        ``call_terminated`` writes them, and the script checks it against the
        caller its ``call_started`` stored."""
        shard = self.shard_of(session_id)
        call = self.call(session_id)
        return (
            self.log(shard),
            call,
            f"{call}:events",
            self.active(shard),
            self.active_dialog(shard, dialog_name),
            self.leases(shard),
            self.ended(shard),
            self.ended_dialog(shard, dialog_name),
            self.ended_caller(shard, caller_id),
            self.ended_dialog_caller(shard, dialog_name, caller_id),
        )

    # -- webhooks ----------------------------------------------------------------

    def webhooks(self) -> str:
        return f"{self.prefix}:webhooks"

    def webhook_forwarders(self) -> str:
        """The live ``callhub forward`` processes (a sorted set: holder id, expiry ms)."""
        return f"{self.prefix}:webhook-forwarders"

    def webhook_cursor(self, shard: int, subscription_id: str) -> str:
        return f"{self._tags[shard]}:webhook:{subscription_id}:cursor"

    def webhook_lease(self, shard: int, subscription_id: str) -> str:
        return f"{self._tags[shard]}:webhook:{subscription_id}:lease"

    def webhook_redeliveries(self, shard: int, subscription_id: str) -> str:
        return f"{self._tags[shard]}:webhook:{subscription_id}:redeliver"

    def webhook_rewound(self, shard: int, subscription_id: str) -> str:
        return f"{self._tags[shard]}:webhook:{subscription_id}:rewound"

    def webhook_deliveries(self, subscription_id: str) -> str:
        return f"{self.prefix}:webhook:{subscription_id}:deliveries"

    def webhook_dead_letters(self, subscription_id: str) -> str:
        return f"{self.prefix}:webhook:{subscription_id}:dead"
