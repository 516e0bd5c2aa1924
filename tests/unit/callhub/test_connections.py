"""The URL a shard reader uses for the cluster node that serves its shard."""

from __future__ import annotations

import pytest

from callhub.connections import describe, with_address


@pytest.mark.parametrize(("url", "host", "port", "expected"), [
    ("redis://10.0.0.1:7000/0", "10.0.0.2", 7001, "redis://10.0.0.2:7001/0"),
    ("redis://app:s3cret@10.0.0.1:7000", "10.0.0.3", 7002, "redis://app:s3cret@10.0.0.3:7002"),
    ("rediss://:pw@node-a:6380/0?ssl_cert_reqs=required", "node-b", 6381,
     "rediss://:pw@node-b:6381/0?ssl_cert_reqs=required"),
    ("redis://[::1]:7000", "::1", 7003, "redis://[::1]:7003"),
])
def test_a_node_url_keeps_scheme_credentials_database_and_options(
    url: str, host: str, port: int, expected: str,
) -> None:
    assert with_address(url, host, port) == expected


def test_the_node_url_is_still_safe_to_log() -> None:
    assert "s3cret" not in describe(with_address("redis://app:s3cret@a:1/2", "b", 3))
