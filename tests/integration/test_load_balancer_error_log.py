"""What the shipped load balancer's error log holds when the replicas fail.

nginx's error log cannot be masked: the context of each line is the request
line as sent (``request: "GET /v1/calls/events?… HTTP/1.1"``, and the proxied
``upstream: "http://…?…"``). deploy/nginx.conf therefore serves a request with
a key in its URL from a location whose error log is at ``crit``, and lets a
stream token's request log as any other (the token lives minutes). A real
nginx with the shipped file in front of a real ``callhub serve``, which is then
stopped: dashboard-style requests with a stream token, with ``api_key`` in
every spelling the masks know, and with the key in a header.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from tests.support.nginx import start_nginx
from tests.support.polling import wait_until
from tests.support.processes import start_hub

KEY = "chk_live_errlog_5d2c8e1f7a3b9c4d6e0f1a2b3c4d5e6f"
SECRET = "load-balancer-error-log-secret-0123456789"
KEY_TARGETS = (f"/v1/calls/events?include_history=true&api_key={KEY}",
               f"/v1/calls/events?API_KEY={KEY}",
               f"/v1/calls/events?event_types=call_started&api%5Fkey={KEY}",
               f"/v1/calls?%61pi_key={KEY}&page_size=5")


def _errors(log: str) -> list[str]:
    return [line for line in log.splitlines() if re.search(r"\[(warn|error|crit)\]", line)]


def test_a_failing_replica_logs_the_token_request_but_never_a_key(
    redis_url: str, tmp_path: Path
) -> None:
    hub = start_hub(redis_url, env={"CALLHUB_API_KEYS": KEY, "CALLHUB_SECRET": SECRET},
                    log_dir=tmp_path)
    nginx = start_nginx(tmp_path / "nginx", [hub.url.removeprefix("http://")])
    try:
        with httpx.Client(base_url=nginx.url, timeout=10) as client:
            grant = client.post("/v1/stream-tokens", headers={"X-API-Key": KEY})
            assert grant.status_code == 200, grant.text
            token = grant.json()["token"]
            # While the replica is up, a key in the URL is proxied as sent.
            assert client.get(f"/v1/calls?page_size=1&api_key={KEY}").status_code == 200
            hub.stop()

            token_target = f"/v1/calls/events?include_history=true&token={token}"
            for target in (token_target, *KEY_TARGETS):
                assert client.get(target).status_code == 502, target
            assert client.get("/v1/calls", headers={"X-API-Key": KEY}).status_code == 502

        wait_until(lambda: 'request: "GET /v1/calls HTTP/1.1"' in nginx.log(),
                   what="the error line of the last request")
        log = nginx.log()
        errors = _errors(log)
        # No key anywhere: not in the error log, not in the access log, not a piece of it.
        assert KEY not in log and KEY[9:25] not in log, errors
        # The token's request is there, as sent (what docs/security.md says): the
        # operator still sees the dashboard's streams fail.
        with_token = [line for line in errors if token in line]
        assert with_token and all("/v1/calls/events?include_history=true&token=" in line
                                  for line in with_token), errors
        assert any(f'request: "GET {token_target} HTTP/1.1"' in line for line in with_token)
        # So is the failure of the request with the key in a header, which logs no key.
        assert any('request: "GET /v1/calls HTTP/1.1"' in line for line in errors), errors
        # The requests with a key in the URL left no error line at all.
        assert not [line for line in errors if "api" in line.lower()], errors
        # The access log has all six, masked.
        access = [line for line in log.splitlines() if "request_time=" in line]
        assert sum(" 502 " in line for line in access) == 6, access
        assert token not in "".join(access)
    finally:
        nginx.stop()
        hub.stop()
