"""Managing webhook subscriptions through the API, on a real redis-server (and cluster).

What is checked is what the forwarder relies on (the hash field, every shard's
cursor key, the record streams) and what a receiver sees (a signed ping,
verified with a Standard Webhooks library), besides the API's own answers.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import httpx
import msgspec
import pytest
import redis
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from callhub.cursor import Cursor, format_stream_id, parse_stream_id
from callhub.positions import MAX_SEQ, predecessor
from callhub.settings import Settings
from callhub.webhooks import RECORD_FIELD, DeadLetter, DeliveryAttempt, Subscription
from hub.api.auth import hash_key
from hub.api.openapi import openapi_document
from hub.api.webhook_schemas import UpdateWebhook
from hub.store.subscriptions import STATUS_LOOKBACK
from tests.support.hubs import hub_client
from tests.support.polling import wait_until
from tests.support.processes import free_port
from tests.support.strategies import call_started
from tests.support.webhook_receiver import Receiver, receiving
from workers.commit.publisher import CallPublisher

HOOK = "https://hooks.example.invalid/callhub"  # never resolved: private addresses allowed


def loopback(settings: Settings, **changes: object) -> Settings:
    """Settings under which a receiver on 127.0.0.1 is a valid destination."""
    return msgspec.structs.replace(settings, webhook_allow_http=True,
                                   webhook_allow_private=True, **changes)


@pytest.fixture
async def webhooks_api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with hub_client(loopback(settings)) as client:
        yield client


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with receiving() as running:
        yield running


def stored(sync_redis: redis.Redis, settings: Settings) -> dict[str, Subscription]:
    raw: dict[bytes, bytes] = sync_redis.hgetall(settings.keyspace.webhooks())  # type: ignore[assignment]
    return {k.decode(): msgspec.json.decode(v, type=Subscription) for k, v in raw.items()}


async def create(api: httpx.AsyncClient, url: str = HOOK, **fields: object) -> dict[str, object]:
    answer = await api.post("/v1/webhooks", json={"name": "crm", "url": url, **fields})
    assert answer.status_code == 201, answer.text
    body: dict[str, object] = answer.json()
    return body


@pytest.mark.both_engines
async def test_a_subscription_round_trip(
    settings: Settings, webhooks_api: httpx.AsyncClient, sync_redis: redis.Redis,
) -> None:
    created = await create(webhooks_api, event_types=["call_started", "call_terminated",
                                                      "call_started"],
                           dialog_name="helpdesk", cloudevents=True)
    id_ = str(created["id"])
    secret = str(created["secret"])
    assert id_.startswith("wh_") and secret.startswith("whsec_")
    assert created["event_types"] == ["call_started", "call_terminated"]
    assert created["enabled"] is True and created["scope"] is None
    record = stored(sync_redis, settings)[id_]
    assert [s.secret for s in record.secrets] == [secret]
    assert record.dialog_name == "helpdesk" and record.cloudevents

    view = {k: v for k, v in created.items() if k != "secret"}
    assert (await webhooks_api.get(f"/v1/webhooks/{id_}")).json() == view
    listing = (await webhooks_api.get("/v1/webhooks")).json()
    assert listing == {"webhooks": [view], "next_page_token": ""}
    assert secret not in (await webhooks_api.get("/v1/webhooks")).text

    patched = await webhooks_api.patch(f"/v1/webhooks/{id_}", json={
        "name": "crm-2", "event_types": None, "enabled": False, "session_id": "c-1"})
    assert patched.status_code == 200, patched.text
    assert patched.json()["event_types"] is None
    assert patched.json()["disabled_reason"] == "disabled through the API"
    assert "secret" not in patched.json()
    record = stored(sync_redis, settings)[id_]
    assert (record.name, record.enabled, record.session_id) == ("crm-2", False, "c-1")
    assert record.dialog_name == "helpdesk"  # not given: unchanged
    again = (await webhooks_api.patch(f"/v1/webhooks/{id_}", json={"enabled": True})).json()
    assert (again["enabled"], again["disabled_reason"]) == (True, "")

    keys = settings.keyspace
    sync_redis.set(keys.webhook_lease(0, id_), b"forwarder-1")
    sync_redis.xadd(keys.webhook_deliveries(id_), {RECORD_FIELD: b"{}"})
    sync_redis.xadd(keys.webhook_dead_letters(id_), {RECORD_FIELD: b"{}"})
    assert (await webhooks_api.delete(f"/v1/webhooks/{id_}")).status_code == 204
    assert stored(sync_redis, settings) == {}
    for key in (keys.webhook_cursor(0, id_), keys.webhook_lease(0, id_),
                keys.webhook_deliveries(id_), keys.webhook_dead_letters(id_)):
        assert not sync_redis.exists(key), key
    assert (await webhooks_api.get(f"/v1/webhooks/{id_}")).status_code == 404
    assert (await webhooks_api.delete(f"/v1/webhooks/{id_}")).status_code == 404


@pytest.mark.both_engines
async def test_start_now_and_start_at_a_cursor_set_every_shards_cursor(
    settings: Settings, aredis: aioredis.Redis, sync_redis: redis.Redis,
) -> None:
    settings = loopback(settings, shards=3)
    outcomes = await CallPublisher(aredis, settings).commit_many(
        [call_started(f"c-{n}") for n in range(12)])
    keys = settings.keyspace
    ends = []
    for shard in range(3):
        last = sync_redis.xrevrange(keys.log(shard), "+", "-", count=1)
        ends.append(last[0][0].decode() if last else "0-0")  # type: ignore[index]
    assert any(end != "0-0" for end in ends)
    async with hub_client(settings) as api:
        now = await create(api)
        assert [sync_redis.get(keys.webhook_cursor(s, str(now["id"]))) for s in range(3)] \
            == [end.encode() for end in ends]

        first = parse_stream_id(outcomes[0].entry_id or "")
        cursor = Cursor((first, None, (0, 0)))
        at = await create(api, start=cursor.encode())
        assert [sync_redis.get(keys.webhook_cursor(s, str(at["id"]))) for s in range(3)] \
            == [f"{first[0]}-{first[1]}".encode(), ends[1].encode(), b"0-0"]

        for bad in ("yesterday", Cursor(((1, 0),)).encode()):
            answer = await api.post("/v1/webhooks", json={"name": "x", "url": HOOK,
                                                          "start": bad})
            assert answer.status_code == 400
            assert answer.json()["error"]["param"] == "start"
    assert set(stored(sync_redis, settings)) == {now["id"], at["id"]}


async def test_the_test_ping_is_signed_and_answers_status_and_latency(
    webhooks_api: httpx.AsyncClient, receiver: Receiver,
) -> None:
    created = await create(webhooks_api, url=receiver.url)
    answer = await webhooks_api.post(f"/v1/webhooks/{created['id']}/test")
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["status_code"] == 204 and result["error"] == ""
    assert 0 < result["latency_ms"] < 10_000
    (request,) = receiver.requests
    payload = Webhook(str(created["secret"])).verify(request.body, request.headers)
    assert payload["type"] == "webhook_test"
    assert payload["subscription_id"] == created["id"]
    assert request.headers["callhub-event-type"] == "webhook_test"

    receiver.status = 500
    failed = (await webhooks_api.post(f"/v1/webhooks/{created['id']}/test")).json()
    assert failed["status_code"] == 500 and "500" in failed["error"]
    receiver.status = 307
    moved = (await webhooks_api.post(f"/v1/webhooks/{created['id']}/test")).json()
    assert moved["status_code"] == 307 and "redirect" in moved["error"]


async def test_a_ping_to_a_closed_port_answers_the_error(
    webhooks_api: httpx.AsyncClient,
) -> None:
    created = await create(webhooks_api, url=f"http://127.0.0.1:{free_port()}/hook")
    answer = await webhooks_api.post(f"/v1/webhooks/{created['id']}/test")
    assert answer.status_code == 200
    assert answer.json()["status_code"] == 0
    assert answer.json()["error"] == "could not connect to the receiver"


async def test_rotation_keeps_both_secrets_signing_during_the_grace(
    settings: Settings, receiver: Receiver, sync_redis: redis.Redis,
) -> None:
    async with hub_client(loopback(settings)) as api:
        created = await create(api, url=receiver.url)
        id_ = created["id"]
        rotated = await api.post(f"/v1/webhooks/{id_}/rotate-secret")
        assert rotated.status_code == 200, rotated.text
        new = rotated.json()["secret"]
        assert new.startswith("whsec_") and new != created["secret"]
        (expiry,) = rotated.json()["rotated_secrets_expire_ms"]
        assert expiry > time.time() * 1000 + settings.webhook_rotation_grace_ms - 60_000
        assert "secret" not in (await api.get(f"/v1/webhooks/{id_}")).json()
        await api.post(f"/v1/webhooks/{id_}/test")
        request = receiver.requests[-1]
        for secret in (created["secret"], new):
            Webhook(str(secret)).verify(request.body, request.headers)
        assert len(stored(sync_redis, settings)[str(id_)].secrets) == 2

    async with hub_client(loopback(settings, webhook_rotation_grace_ms=1)) as api:
        newer = (await api.post(f"/v1/webhooks/{id_}/rotate-secret")).json()["secret"]
        short_grace = min(s.expires_ms for s in stored(sync_redis, settings)[str(id_)].secrets
                          if s.expires_ms)
        wait_until(lambda: time.time() * 1000 > short_grace, what="the 1 ms grace to end")
        await api.post(f"/v1/webhooks/{id_}/test")
        request = receiver.requests[-1]
        # The newest signs; the one rotated out with a grace of 1 ms no longer
        # does; the first keeps the grace it was given when it was rotated out.
        for secret in (newer, created["secret"]):
            Webhook(str(secret)).verify(request.body, request.headers)
        with pytest.raises(WebhookVerificationError):
            Webhook(str(new)).verify(request.body, request.headers)
        # The expired secret is dropped at the next rotation.
        await api.post(f"/v1/webhooks/{id_}/rotate-secret")
        kept = {s.secret for s in stored(sync_redis, settings)[str(id_)].secrets}
        assert new not in kept and {newer, created["secret"]} <= kept and len(kept) == 3


async def test_with_the_default_settings_a_loopback_or_http_url_is_refused(
    api: httpx.AsyncClient, sync_redis: redis.Redis, settings: Settings,
) -> None:
    for url, says in (("http://127.0.0.1:9/hook", "http://"),
                      ("https://127.0.0.1:9/hook", "private"),
                      ("https://10.1.2.3/hook", "private"),
                      ("https://user:pw@hooks.example.com/", "credentials"),
                      ("ftp://hooks.example.com/", "https")):
        answer = await api.post("/v1/webhooks", json={"name": "x", "url": url})
        assert answer.status_code == 400, url
        assert answer.json()["error"]["param"] == "url"
        assert says in answer.json()["error"]["message"]
    assert stored(sync_redis, settings) == {}


@pytest.mark.parametrize(("body", "param"), [
    (b"", "body"), (b"{", "body"), (b"[]", "body"), (b"x" * 70_000, "body"),
    (b'{"url": "https://a.example/"}', "name"),
    (b'{"name": "x"}', "url"),
    (b'{"name": 1, "url": "https://a.example/"}', "name"),
    (b'{"name": "x", "url": "https://a.example/", "colour": "red"}', "colour"),
    (b'{"name": "x", "url": "https://a.example/", "event_types": ["call_started", "bogus"]}',
     "event_types"),
    (b'{"name": "x", "url": "https://a.example/", "event_types": []}', "event_types"),
    (b'{"name": "x", "url": "https://a.example/", "event_types": "call_started"}',
     "event_types"),
    (b'{"name": "x", "url": "https://a.example/", "dialog_name": "no spaces"}', "dialog_name"),
    (b'{"name": "x", "url": "https://a.example/", "dialog_name": "helpdesk\\n"}',
     "dialog_name"),
    (b'{"name": "x", "url": "https://a.example/", "session_id": "a/b"}', "session_id"),
    (b'{"name": "x", "url": "https://a.example/", "cloudevents": "yes"}', "cloudevents"),
    (b'{"name": "x", "url": "not a url"}', "url"),
])
async def test_a_bad_create_body_is_a_400_naming_the_field(
    webhooks_api: httpx.AsyncClient, sync_redis: redis.Redis, settings: Settings,
    body: bytes, param: str,
) -> None:
    answer = await webhooks_api.post("/v1/webhooks", content=body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["param"] == param
    assert stored(sync_redis, settings) == {}


async def test_a_bad_patch_changes_nothing(
    webhooks_api: httpx.AsyncClient, sync_redis: redis.Redis, settings: Settings,
) -> None:
    created = await create(webhooks_api)
    before = stored(sync_redis, settings)
    for body, param in (({"url": "ftp://x/"}, "url"), ({"scope": ["a"]}, "scope"),
                        ({"event_types": ["nope"]}, "event_types"),
                        ({"name": "ok", "enabled": "no"}, "enabled"), ({"id": "wh_x"}, "id")):
        answer = await webhooks_api.patch(f"/v1/webhooks/{created['id']}", json=body)
        assert answer.status_code == 400, body
        assert answer.json()["error"]["param"] == param
    assert stored(sync_redis, settings) == before
    for path in ("/v1/webhooks/nope", "/v1/webhooks/wh_missing/deliveries?limit=0",
                 "/v1/webhooks?page_token=abc", "/v1/webhooks?colour=red"):
        assert (await webhooks_api.get(path)).status_code == 400, path


@pytest.mark.both_engines
async def test_deliveries_and_dead_letters_read_back_newest_first(
    settings: Settings, webhooks_api: httpx.AsyncClient, sync_redis: redis.Redis,
) -> None:
    id_ = str((await create(webhooks_api))["id"])
    keys = settings.keyspace
    attempts = [DeliveryAttempt(event_id=f"1-{n}", event_type="call_started", session_id="c-1",
                                attempt=n + 1, status_code=503, latency_ms=1.5,
                                outcome="retrying", at_ms=1000 + n) for n in range(5)]
    for attempt in attempts:
        sync_redis.xadd(keys.webhook_deliveries(id_), {RECORD_FIELD: msgspec.json.encode(attempt)})
    sync_redis.xadd(keys.webhook_deliveries(id_), {b"other": b"x"})  # unreadable: skipped
    letter = DeadLetter(event_id="1-0", shard=0, reason="retry window ran out", at_ms=5)
    sync_redis.xadd(keys.webhook_dead_letters(id_), {RECORD_FIELD: msgspec.json.encode(letter)})

    listed = (await webhooks_api.get(f"/v1/webhooks/{id_}/deliveries")).json()["deliveries"]
    assert [msgspec.convert(a, DeliveryAttempt) for a in listed] == attempts[::-1]
    two = (await webhooks_api.get(f"/v1/webhooks/{id_}/deliveries?limit=3")).json()
    assert [a["attempt"] for a in two["deliveries"]] == [5, 4]  # the newest (unreadable) skipped
    dead = (await webhooks_api.get(f"/v1/webhooks/{id_}/dead-letters")).json()
    assert [msgspec.convert(d, DeadLetter) for d in dead["dead_letters"]] == [letter]
    for limit in ("0", "1001", "x"):
        answer = await webhooks_api.get(f"/v1/webhooks/{id_}/dead-letters?limit={limit}")
        assert answer.status_code == 400
        assert answer.json()["error"]["param"] == "limit"
    assert (await webhooks_api.get("/v1/webhooks/wh_absent/deliveries")).status_code == 404


def entry_ids(sync_redis: redis.Redis, key: str) -> list[tuple[int, int]]:
    """Every entry id of a stream, oldest first."""
    entries: list[tuple[bytes, object]] = sync_redis.xrange(key)  # type: ignore[assignment]
    return [parse_stream_id(entry_id) for entry_id, _ in entries]


@pytest.mark.both_engines
async def test_the_status_shows_the_lag_of_cursors_behind_the_log(
    settings: Settings, aredis: aioredis.Redis, sync_redis: redis.Redis,
) -> None:
    settings = loopback(settings, shards=3)
    keys = settings.keyspace
    async with hub_client(settings) as api:
        id_ = str((await create(api))["id"])
        caught_up = {"lag_ms": 0, "last_delivered_ms": 0, "last_error": "", "last_error_ms": 0}
        assert (await api.get(f"/v1/webhooks/{id_}")).json()["status"] == caught_up

        async def lag_is_the_age_of(entry_ms: int, path: str = f"/v1/webhooks/{id_}") -> None:
            before = int(time.time() * 1000)
            answer = (await api.get(path)).json()
            after = int(time.time() * 1000)
            view = answer["webhooks"][0] if "webhooks" in answer else answer
            assert max(1, before - entry_ms) <= view["status"]["lag_ms"] \
                <= max(1, after - entry_ms), (before, entry_ms, view)

        # Events committed after the subscription, no forwarder running: every
        # shard's cursor is behind its log, by the age of the log's first entry.
        await CallPublisher(aredis, settings).commit_many(
            [call_started(f"c-{n}") for n in range(12)])
        logs = [entry_ids(sync_redis, keys.log(shard)) for shard in range(3)]
        assert all(len(log) >= 2 for log in logs), logs
        oldest = min(log[0][0] for log in logs)
        wait_until(lambda: time.time() * 1000 > oldest + 20, what="the events to age")
        await lag_is_the_age_of(oldest)
        await lag_is_the_age_of(oldest, "/v1/webhooks")

        # Two shards caught up, the third at its first entry: the lag is that
        # shard's, counted from the entry after its cursor.
        for shard in (0, 1):
            sync_redis.set(keys.webhook_cursor(shard, id_), format_stream_id(logs[shard][-1]))
        sync_redis.set(keys.webhook_cursor(2, id_), format_stream_id(logs[2][0]))
        await lag_is_the_age_of(logs[2][1][0])

        # Caught up everywhere (shard 0 as an idle forwarder leaves it: past the
        # last entry, up to the clock): 0, in the list and in a PATCH answer too.
        sync_redis.set(keys.webhook_cursor(2, id_), format_stream_id(logs[2][-1]))
        assert (await api.get(f"/v1/webhooks/{id_}")).json()["status"] == caught_up
        sync_redis.set(keys.webhook_cursor(0, id_), format_stream_id(
            (int(time.time() * 1000), MAX_SEQ)))
        assert (await api.get("/v1/webhooks")).json()["webhooks"][0]["status"] == caught_up
        patched = await api.patch(f"/v1/webhooks/{id_}", json={"enabled": False})
        assert patched.json()["status"] == caught_up

        # Created at a cursor before shard 1's first entry: behind from its first answer.
        before = int(time.time() * 1000)
        at = await create(api, start=Cursor((None, predecessor(logs[1][0]), None)).encode())
        assert at["status"]["lag_ms"] >= before - logs[1][0][0]  # type: ignore[index]
        await lag_is_the_age_of(logs[1][0][0], f"/v1/webhooks/{at['id']}")


async def test_the_status_shows_the_last_delivery_and_the_last_error(
    settings: Settings, webhooks_api: httpx.AsyncClient, sync_redis: redis.Redis,
) -> None:
    created = await create(webhooks_api)
    id_, secret = str(created["id"]), str(created["secret"])
    key = settings.keyspace.webhook_deliveries(id_)

    def attempt(outcome: str, at_ms: int, status_code: int = 200, error: str = "") -> None:
        record = DeliveryAttempt(event_id="1-0", event_type="call_started", session_id="c-1",
                                 attempt=1, status_code=status_code, latency_ms=3.0,
                                 outcome=outcome, at_ms=at_ms, error=error)  # type: ignore[arg-type]
        sync_redis.xadd(key, {RECORD_FIELD: msgspec.json.encode(record)})

    async def status() -> dict[str, object]:
        answer = await webhooks_api.get(f"/v1/webhooks/{id_}")
        assert secret not in answer.text
        listed = (await webhooks_api.get("/v1/webhooks")).json()["webhooks"]
        assert [w["status"] for w in listed] == [answer.json()["status"]]
        body: dict[str, object] = answer.json()["status"]
        return body

    attempt("delivered", 1_000)
    attempt("retrying", 2_000, 503, "HTTP 503")
    attempt("retrying", 3_000, 0, "timed out: ReadTimeout")
    sync_redis.xadd(key, {b"other": b"x"})  # unreadable: skipped
    assert await status() == {"lag_ms": 0, "last_delivered_ms": 1_000,
                              "last_error": "timed out: ReadTimeout", "last_error_ms": 3_000}
    # Delivery recovered: the last error stays, older than the last delivery.
    attempt("delivered", 4_000)
    assert await status() == {"lag_ms": 0, "last_delivered_ms": 4_000,
                              "last_error": "timed out: ReadTimeout", "last_error_ms": 3_000}
    # A 410 disables: its error is the answer's status.
    attempt("disabled", 5_000, 410, "HTTP 410")
    assert (await status())["last_error"] == "HTTP 410"
    # The status looks back a bounded number of attempts: an error further back is not shown.
    for n in range(STATUS_LOOKBACK):
        attempt("delivered", 6_000 + n)
    assert await status() == {"lag_ms": 0, "last_delivered_ms": 6_000 + STATUS_LOOKBACK - 1,
                              "last_error": "", "last_error_ms": 0}


async def test_listing_pages_through_every_subscription(
    webhooks_api: httpx.AsyncClient,
) -> None:
    made = [str((await create(webhooks_api, name=f"n-{n}"))["id"]) for n in range(5)]
    seen: list[str] = []
    params = {"page_size": "2"}
    while True:
        page = (await webhooks_api.get("/v1/webhooks", params=params)).json()
        seen += [w["id"] for w in page["webhooks"]]
        if not page["next_page_token"]:
            break
        params["page_token"] = page["next_page_token"]
    assert sorted(seen) == sorted(made) and len(seen) == 5


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys.toml"
    path.write_text(f"""
[[keys]]
name = "ops"
sha256 = "{hash_key('ops-key')}"
webhooks = true

[[keys]]
name = "reader"
sha256 = "{hash_key('reader-key')}"

[[keys]]
name = "helpdesk-integration"
sha256 = "{hash_key('helpdesk-key')}"
dialogs = ["helpdesk"]
webhooks = true

[[keys]]
name = "support-integration"
sha256 = "{hash_key('support-key')}"
dialogs = ["helpdesk", "billing"]
webhooks = true
""")
    return path


async def test_a_key_needs_the_webhooks_flag(
    settings: Settings, keys_file: Path, sync_redis: redis.Redis,
) -> None:
    settings = loopback(settings, api_keys_file=str(keys_file), api_keys="plain-key")
    async with hub_client(settings) as api:
        reader = {"X-API-Key": "reader-key"}
        assert (await api.get("/v1/calls", headers=reader)).status_code == 200
        for method, path in (("POST", "/v1/webhooks"), ("GET", "/v1/webhooks"),
                             ("GET", "/v1/webhooks/wh_a"), ("PATCH", "/v1/webhooks/wh_a"),
                             ("DELETE", "/v1/webhooks/wh_a"),
                             ("POST", "/v1/webhooks/wh_a/rotate-secret"),
                             ("POST", "/v1/webhooks/wh_a/test"),
                             ("GET", "/v1/webhooks/wh_a/deliveries"),
                             ("GET", "/v1/webhooks/wh_a/dead-letters")):
            answer = await api.request(method, path, headers=reader,
                                       json={"name": "x", "url": HOOK})
            assert answer.status_code == 403, (method, path)
            assert answer.json()["error"]["code"] == "forbidden"
            assert (await api.request(method, path)).status_code == 401
        assert stored(sync_redis, settings) == {}
        for key in ("plain-key", "ops-key"):
            answer = await api.post("/v1/webhooks", headers={"X-API-Key": key},
                                    json={"name": key, "url": HOOK})
            assert answer.status_code == 201, key
            assert answer.json()["scope"] is None


async def test_a_scoped_key_is_confined_to_its_dialogs(
    settings: Settings, keys_file: Path, sync_redis: redis.Redis,
) -> None:
    settings = loopback(settings, api_keys_file=str(keys_file))
    ops, helpdesk, support = ({"X-API-Key": k} for k in ("ops-key", "helpdesk-key",
                                                          "support-key"))
    async with hub_client(settings) as api:
        async def made(headers: dict[str, str], **fields: object) -> dict[str, object]:
            answer = await api.post("/v1/webhooks", headers=headers,
                                    json={"name": "x", "url": HOOK, **fields})
            assert answer.status_code == 201, answer.text
            body: dict[str, object] = answer.json()
            return body

        everything = await made(ops)
        narrow = await made(helpdesk)
        wide = await made(support, dialog_name="billing")
        assert narrow["scope"] == ["helpdesk"]
        assert wide["scope"] == ["billing", "helpdesk"]
        outside = await api.post("/v1/webhooks", headers=helpdesk,
                                 json={"name": "x", "url": HOOK, "dialog_name": "billing"})
        assert outside.status_code == 400
        assert outside.json()["error"]["param"] == "dialog_name"

        def ids(page: httpx.Response) -> set[object]:
            return {w["id"] for w in page.json()["webhooks"]}

        assert ids(await api.get("/v1/webhooks", headers=helpdesk)) == {narrow["id"]}
        assert ids(await api.get("/v1/webhooks", headers=support)) == {narrow["id"], wide["id"]}
        assert ids(await api.get("/v1/webhooks", headers=ops)) == {
            everything["id"], narrow["id"], wide["id"]}

        before = stored(sync_redis, settings)
        for hidden in (everything["id"], wide["id"]):
            for method, path in (("GET", ""), ("PATCH", ""), ("DELETE", ""),
                                 ("POST", "/rotate-secret"), ("POST", "/test"),
                                 ("GET", "/deliveries"), ("GET", "/dead-letters")):
                answer = await api.request(method, f"/v1/webhooks/{hidden}{path}",
                                           headers=helpdesk,
                                           json={"name": "mine"} if method == "PATCH" else None)
                assert answer.status_code == 404, (method, path)
        assert stored(sync_redis, settings) == before

        # No change widens a scope: the dialog filter stays inside it, and the
        # scope itself is not a field a PATCH takes.
        for body in ({"dialog_name": "billing"}, {"scope": None}):
            answer = await api.patch(f"/v1/webhooks/{narrow['id']}", headers=ops, json=body)
            assert answer.status_code == 400, body
        assert stored(sync_redis, settings) == before
        mine = await api.patch(f"/v1/webhooks/{narrow['id']}", headers=helpdesk,
                               json={"dialog_name": "helpdesk"})
        assert mine.json()["scope"] == ["helpdesk"]
        assert (await api.delete(f"/v1/webhooks/{narrow['id']}", headers=helpdesk)
                ).status_code == 204


def test_every_webhook_path_is_documented() -> None:
    paths = openapi_document()["paths"]
    assert {p for p in paths if p.startswith("/v1/webhooks")} == {
        "/v1/webhooks", "/v1/webhooks/{id}", "/v1/webhooks/{id}/rotate-secret",
        "/v1/webhooks/{id}/test", "/v1/webhooks/{id}/deliveries",
        "/v1/webhooks/{id}/dead-letters", "/v1/webhooks/{id}/redeliver"}
    assert set(paths["/v1/webhooks"]) == {"get", "post"}
    assert set(paths["/v1/webhooks/{id}"]) == {"get", "patch", "delete"}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                max_size=4),
    max_leaves=12)
hostile_bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(msgspec.json.encode),
    st.fixed_dictionaries({}, optional={
        "name": json_values, "url": st.sampled_from(["ftp://x/", "https://10.0.0.1/", "", 7]),
        "event_types": json_values, "dialog_name": json_values, "session_id": json_values,
        "cloudevents": json_values, "start": json_values, "enabled": json_values,
        "scope": json_values, "secrets": json_values, "dead_letters": json_values,
        "from": json_values,
    }).map(msgspec.json.encode),
)
hostile_ids = st.one_of(st.text(max_size=80), st.sampled_from(["wh_", "wh_x", "wh_" + "a" * 65]))
hostile_queries = st.dictionaries(
    st.sampled_from(["limit", "page_size", "page_token", "api_key", "x"]),
    st.text(max_size=20), max_size=3)


@hypothesis_settings(max_examples=150, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=hostile_bodies, id_=hostile_ids, query=hostile_queries,
       which=st.integers(0, 9), known=st.booleans())
async def test_hostile_requests_never_5xx_and_store_nothing(
    webhooks_api: httpx.AsyncClient, sync_redis: redis.Redis, settings: Settings,
    body: bytes, id_: str, query: dict[str, str], which: int, known: bool,
) -> None:
    existing = stored(sync_redis, settings)
    if not existing:
        await create(webhooks_api)
        existing = stored(sync_redis, settings)
    target = next(iter(existing)) if known else quote(id_, safe="")
    method, path = (("POST", "/v1/webhooks"), ("GET", "/v1/webhooks"),
                    ("GET", f"/v1/webhooks/{target}"), ("PATCH", f"/v1/webhooks/{target}"),
                    ("DELETE", f"/v1/webhooks/{target}"),
                    ("POST", f"/v1/webhooks/{target}/rotate-secret"),
                    ("POST", f"/v1/webhooks/{target}/test"),
                    ("GET", f"/v1/webhooks/{target}/deliveries"),
                    ("GET", f"/v1/webhooks/{target}/dead-letters"),
                    ("POST", f"/v1/webhooks/{target}/redeliver"))[which]
    changes_when_valid = method == "DELETE" or path.endswith("/rotate-secret") or (
        method in ("POST", "PATCH") and not path.endswith("/test"))
    if known and changes_when_valid and (method != "PATCH" or _valid_patch(body)):
        return  # a valid change to a real subscription is meant to store something
    answer = await webhooks_api.request(method, path, content=body, params=query)
    assert answer.status_code < 500, (method, path, answer.text)
    if answer.status_code >= 400:
        assert set(answer.json()) == {"error"}
    assert stored(sync_redis, settings) == existing or (
        answer.status_code < 300 and changes_when_valid)


def _valid_patch(body: bytes) -> bool:
    try:
        msgspec.json.decode(body, type=UpdateWebhook)
    except msgspec.DecodeError:
        return False
    return True
