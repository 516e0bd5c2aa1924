"""API keys and dialog scopes: every check here fails if the check is removed."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from callhub.settings import Settings, SettingsError
from hub.api.auth import ApiKeys, hash_key
from tests.support.hubs import hub_client
from tests.support.processes import start_hub
from tests.support.strategies import call_started
from workers.commit.publisher import CallPublisher


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys.toml"
    path.write_text(f"""
[[keys]]
name = "ops"
sha256 = "{hash_key('ops-key')}"

[[keys]]
name = "helpdesk-dashboard"
sha256 = "{hash_key('helpdesk-key')}"
dialogs = ["helpdesk"]
""")
    return path


@pytest.fixture
async def calls(aredis: aioredis.Redis, settings: Settings) -> None:
    await CallPublisher(aredis, settings).commit_many([
        call_started("h-1", dialog="helpdesk"), call_started("h-2", dialog="helpdesk"),
        call_started("b-1", dialog="billing"),
    ])


async def test_with_keys_configured_every_v1_endpoint_needs_one(
    redis_url: str, calls: None
) -> None:
    settings = Settings(redis_url=redis_url, api_keys="k1, k2")
    async with hub_client(settings) as api:
        for path in ("/v1/calls", "/v1/calls/h-1", "/v1/calls/nope"):
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-API-Key": "k3"},
                            {"Authorization": "Basic azE6"}, {"Authorization": "Bearer "}):
                answer = await api.get(path, headers=headers)
                assert answer.status_code == 401, (path, headers)
                assert answer.json()["error"]["code"] == "unauthorized"
                assert answer.headers["www-authenticate"].startswith("Bearer")
        for headers, params in (({"Authorization": "Bearer k1"}, {}),
                                ({"X-API-Key": "k2"}, {}),
                                ({}, {"api_key": "k1"})):
            answer = await api.get("/v1/calls/h-1", headers=headers, params=params)
            assert answer.status_code == 200, (headers, params)
        assert (await api.get("/healthz")).status_code == 200
        assert (await api.get("/readyz")).status_code == 200


async def test_without_keys_the_api_is_open_and_says_so(
    redis_url: str, calls: None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="callhub.hub"):
        async with hub_client(Settings(redis_url=redis_url)) as api:
            assert (await api.get("/v1/calls/h-1")).status_code == 200
    assert "no API keys are configured" in caplog.text


async def test_a_scoped_key_sees_only_its_dialogs(
    redis_url: str, calls: None, keys_file: Path
) -> None:
    settings = Settings(redis_url=redis_url, api_keys_file=str(keys_file))
    async with hub_client(settings) as api:
        scoped = {"X-API-Key": "helpdesk-key"}
        assert (await api.get("/v1/calls/h-1", headers=scoped)).status_code == 200
        foreign = await api.get("/v1/calls/b-1", headers=scoped)
        assert foreign.status_code == 404  # not 403: it does not reveal the call exists
        listing = (await api.get("/v1/calls", headers=scoped)).json()
        assert sorted(c["session_id"] for c in listing["calls"]) == ["h-1", "h-2"]
        assert listing["total_count"] == 2
        billing = (await api.get("/v1/calls", params={"dialog_name": "billing"},
                                 headers=scoped)).json()
        assert billing == {"calls": [], "next_page_token": "", "total_count": 0}

        ops = {"Authorization": "Bearer ops-key"}
        assert (await api.get("/v1/calls/b-1", headers=ops)).status_code == 200
        assert (await api.get("/v1/calls", headers=ops)).json()["total_count"] == 3


async def test_a_scoped_key_pages_through_only_its_dialogs(
    redis_url: str, aredis: aioredis.Redis, keys_file: Path
) -> None:
    settings = Settings(redis_url=redis_url, api_keys_file=str(keys_file), shards=2)
    await CallPublisher(aredis, settings).commit_many(
        [call_started(f"c-{n}", dialog=("helpdesk", "billing")[n % 2], at=n) for n in range(20)]
    )
    async with hub_client(settings) as api:
        seen: list[str] = []
        params = {"page_size": "3"}
        while True:
            page = (await api.get("/v1/calls", params=params,
                                  headers={"X-API-Key": "helpdesk-key"})).json()
            assert page["total_count"] == 10
            seen += [c["session_id"] for c in page["calls"]]
            if not page["next_page_token"]:
                break
            params["page_token"] = page["next_page_token"]
    assert seen == [f"c-{n}" for n in range(0, 20, 2)]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[[keys]]\nname = 'a'\nsha256 = 'abc'\n", "sha256"),
        ("[[keys]]\nname = 'a'\n", "sha256"),
        ("keys = 5", "keys"),
        ("[[keys]]\nname='a'\nsha256='" + "0" * 64 + "'\ndialogs=['a b']\n", "dialog_name"),
        ("[[keys]]\nname='a'\nsha256='" + "0" * 64 + "'\ndialogs=[]\n", "must not be empty"),
        ("[[keys]]\nname='a'\nsha256='" + "0" * 64 + "'\nscope='x'\n", "scope"),
        ("not toml [", "not a valid keys file"),
    ],
)
def test_a_bad_keys_file_fails_at_start_naming_the_file(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "keys.toml"
    path.write_text(content)
    with pytest.raises(SettingsError) as error:
        ApiKeys.load(None, str(path))
    assert "CALLHUB_API_KEYS_FILE" in str(error.value)
    assert message in str(error.value)


def test_a_key_in_the_query_never_reaches_the_access_log(redis_url: str) -> None:
    hub = start_hub(redis_url, env={"CALLHUB_API_KEYS": "s3cret-key-value"})
    try:
        for _ in range(2):
            answer = httpx.get(f"{hub.url}/v1/calls", params={"api_key": "s3cret-key-value"})
            assert answer.status_code == 200
        httpx.get(f"{hub.url}/v1/calls", params={"api_key": "wrong-s3cret"})
        httpx.get(f"{hub.url}/v1/calls", headers={"Authorization": "Bearer s3cret-key-value"})
    finally:
        hub.stop()
    output = hub.output()
    assert "GET /v1/calls?api_key=***" in output
    assert "s3cret" not in output


@pytest.mark.parametrize("plain", [" ", ",,", " , ,"])
def test_keys_that_are_set_but_hold_no_key_stop_the_replica(plain: str) -> None:
    with pytest.raises(SettingsError, match="CALLHUB_API_KEYS is set but holds no key"):
        ApiKeys.load(plain, None)


@pytest.mark.parametrize("content", ["", "# nothing yet\n", "keys = []\n"])
def test_a_keys_file_without_keys_stops_the_replica(tmp_path: Path, content: str) -> None:
    path = tmp_path / "keys.toml"
    path.write_text(content)
    with pytest.raises(SettingsError, match=r"CALLHUB_API_KEYS_FILE .* holds no key"):
        ApiKeys.load(None, str(path))


def test_an_empty_keys_variable_counts_as_unset() -> None:
    """Compose files pass an unset variable through as ``VAR=``: that is no keys, not an error."""
    assert not ApiKeys.load("", None).enabled
    assert not ApiKeys.load(None, "").enabled


def test_a_key_configured_twice_is_an_error_naming_both(tmp_path: Path, keys_file: Path) -> None:
    with pytest.raises(SettingsError) as twice:
        ApiKeys.load("one-key,other-key,one-key", None)
    assert "CALLHUB_API_KEYS key 1 and CALLHUB_API_KEYS key 3" in str(twice.value)

    with pytest.raises(SettingsError) as both:
        ApiKeys.load("x-key,helpdesk-key", str(keys_file))
    assert ("CALLHUB_API_KEYS key 2 and CALLHUB_API_KEYS_FILE key 2 (helpdesk-dashboard)"
            in str(both.value))
    assert "helpdesk-key" not in str(both.value) and hash_key("helpdesk-key") not in str(both.value)

    path = tmp_path / "twice.toml"
    path.write_text(keys_file.read_text() + f"""
[[keys]]
name = "ops-again"
sha256 = "{hash_key('ops-key')}"
dialogs = ["billing"]
""")
    with pytest.raises(SettingsError, match=r"CALLHUB_API_KEYS_FILE key 1 \(ops\) and "
                                            r"CALLHUB_API_KEYS_FILE key 3 \(ops-again\)"):
        ApiKeys.load(None, str(path))


def test_a_keys_file_that_is_not_utf8_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    path.write_bytes(b"[[keys]]\nname = '\xff\xfe'\nsha256 = '" + b"0" * 64 + b"'\n")
    with pytest.raises(SettingsError, match=r"CALLHUB_API_KEYS_FILE .* is not UTF-8"):
        ApiKeys.load(None, str(path))


def test_start_up_says_where_the_keys_came_from_without_a_key(
        redis_url: str, keys_file: Path) -> None:
    hub = start_hub(redis_url, env={"CALLHUB_API_KEYS": "s3cret-one,s3cret-two",
                                    "CALLHUB_API_KEYS_FILE": str(keys_file)})
    try:
        assert httpx.get(f"{hub.url}/v1/calls", headers={"X-API-Key": "s3cret-one"}
                         ).status_code == 200
    finally:
        hub.stop()
    output = hub.output()
    assert ("API keys: 2 from CALLHUB_API_KEYS, 2 from CALLHUB_API_KEYS_FILE "
            f"({keys_file}: 1 scoped to dialogs, 0 may manage webhooks)") in output
    assert "s3cret" not in output and hash_key("s3cret-one") not in output


def test_a_key_in_any_spelling_of_the_parameter_never_reaches_the_access_log(
        redis_url: str) -> None:
    hub = start_hub(redis_url, env={"CALLHUB_API_KEYS": "s3cret-key-value"})
    try:
        for name in ("api%5Fkey", "%61pi_key"):  # the server decodes these: they authenticate
            answer = httpx.get(f"{hub.url}/v1/calls?{name}=s3cret-key-value")
            assert answer.status_code == 200, name
        httpx.get(f"{hub.url}/v1/calls?API_KEY=s3cret-key-value")
        httpx.get(f"{hub.url}/v1/calls/events?token=s3cret-token&api_key=s3cret-key-value",
                  timeout=5)
    finally:
        hub.stop()
    assert "s3cret" not in hub.output()
