"""The shapes of a Redis stream, named once for every reader of the shard logs.

The replica's shard readers, its stream engine and its metrics handle the
entries redis-py returns as they are (no copy into objects: a batch goes to a
thousand subscribers in a few hundred microseconds); the write side's readers
of the same logs will too. So the aliases live in the kernel, beneath all of
them. Their fields' names are in ``callhub.keyspace``.
"""

from __future__ import annotations

Entry = tuple[bytes, dict[bytes, bytes]]  # an XREAD/XRANGE entry: (id, fields)
StreamId = tuple[int, int]  # an entry id "ms-seq" as integers, compared as a pair
