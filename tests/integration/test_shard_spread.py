"""How the shards spread over a real cluster's masters, and the start-up warning."""

from __future__ import annotations

import logging

import pytest
import redis
from redis.asyncio.cluster import RedisCluster

from callhub.connections import connect_client
from callhub.settings import Settings
from hub.store.shard_spread import describe_spread, is_lopsided, log_shard_spread, shard_spread
from tests.support.redis_servers import RedisClusterNodes


def masters_by_slot(cluster: RedisClusterNodes) -> dict[int, str]:
    """slot -> "host:port" of its master, from CLUSTER SLOTS asked directly."""
    with redis.Redis(port=cluster.servers[0].port) as node:
        ranges = node.execute_command("CLUSTER", "SLOTS")
    owner: dict[int, str] = {}
    for start, end, master, *_ in ranges:
        host, port = master[0].decode(), master[1]
        for slot in range(start, end + 1):
            owner[slot] = f"{host}:{port}"
    return owner


@pytest.mark.parametrize("shards", [3, 12])
async def test_the_spread_names_each_shards_master_and_every_master(
    redis_cluster: RedisClusterNodes, shards: int, caplog: pytest.LogCaptureFixture,
) -> None:
    settings = Settings(redis_url=redis_cluster.url, redis_cluster=True, shards=shards)
    keys = settings.keyspace
    owner = masters_by_slot(redis_cluster)
    client = connect_client(settings)
    assert isinstance(client, RedisCluster)
    try:
        with caplog.at_level(logging.INFO, logger="callhub.cluster"):
            await log_shard_spread(client, keys)
        spread = shard_spread(client, keys)
    finally:
        await client.aclose()
    assert set(spread) == set(owner.values())  # every master, even one with no shard
    with redis.Redis(port=redis_cluster.servers[0].port) as node:
        for name, served in spread.items():
            for shard in served:
                assert owner[node.cluster("KEYSLOT", keys.log(shard))] == name
    assert sorted(s for served in spread.values() for s in served) == list(range(shards))
    record = [r for r in caplog.records if r.name == "callhub.cluster"][-1]
    assert describe_spread(spread) in record.getMessage()
    assert (record.levelno == logging.WARNING) == is_lopsided(spread)
    # The shard tags are chosen for the default ranges of redis-cli --cluster
    # create (callhub.keyspace.shard_tags): 3 masters hold shards / 3 each.
    assert sorted(len(served) for served in spread.values()) == [shards // 3] * 3
    assert not is_lopsided(spread)


def test_lopsided_means_an_idle_master_or_twice_the_shards() -> None:
    assert is_lopsided({"a": [0, 1], "b": [2], "c": []})
    assert is_lopsided({"a": [0], "b": [1, 2, 3], "c": [4, 5]})
    assert not is_lopsided({"a": [0, 1], "b": [2, 3, 4], "c": [5, 6]})
    assert not is_lopsided({})
