"""Redis reads of the replica: calls, shard-log readers, cursors and page tokens."""
