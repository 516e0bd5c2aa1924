"""Which master serves which shard on a Redis Cluster, said once at start-up.

A shard is one hash slot (its keys share the ``{s}`` hash tag), so it lives on
whichever master owns that slot. The slot ranges ``redis-cli --cluster
create`` hands out do not spread a few shards evenly: with 3 masters, 3
shards leave one master with none and 6 shards split 1/3/2. Nothing fails
when that happens; one master just does most of the work. So a replica says
how the shards are spread when it starts, and warns when it is lopsided.
"""

from __future__ import annotations

import logging

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisClusterException, RedisError

from callhub.keyspace import Keyspace

log = logging.getLogger("callhub.cluster")


def shard_spread(cluster: RedisCluster, keys: Keyspace) -> dict[str, list[int]]:
    """Every master ("host:port") with the shards it serves, from the client's
    slot map (which must be loaded)."""
    spread: dict[str, list[int]] = {node.name: [] for node in cluster.get_primaries()}
    for shard in range(keys.shards):
        node = cluster.get_node_from_key(keys.log(shard))
        spread.setdefault(node.name if node is not None else "no master", []).append(shard)
    return spread


def is_lopsided(spread: dict[str, list[int]]) -> bool:
    """A master with no shard, or one with at least twice the shards of another."""
    counts = [len(shards) for shards in spread.values()]
    return bool(counts) and (min(counts) == 0 or max(counts) >= 2 * min(counts))


def describe_spread(spread: dict[str, list[int]]) -> str:
    return "; ".join(f"{name}: {len(shards)} ({', '.join(map(str, shards)) or 'none'})"
                     for name, shards in sorted(spread.items()))


async def log_shard_spread(cluster: RedisCluster, keys: Keyspace) -> None:
    """Log the spread (a warning if lopsided); a cluster not reachable yet is
    only noted: the readers wait for it anyway."""
    try:
        await cluster.initialize()
    except (RedisError, RedisClusterException, OSError) as error:
        log.info("could not read the cluster's slot map yet (%s)", type(error).__name__)
        return
    spread = shard_spread(cluster, keys)
    if is_lopsided(spread):
        log.warning("the %d shards are spread unevenly over the %d masters (shards per master: "
                    "%s); use more shards or move their slots (docs/cluster.md)",
                    keys.shards, len(spread), describe_spread(spread))
    else:
        log.info("shards per master: %s", describe_spread(spread))
