"""The dashboard's webhooks panel in a real headless Chromium, against a `callhub
serve` process and a real redis-server: subscriptions made through the API,
what the forwarder leaves (a disabled reason, a failed attempt, a cursor behind
the log) written to Redis as it writes them.

The screenshot goes to ``tests/artifacts/dashboard-webhooks.png``.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec
import redis
import redis.asyncio as aioredis
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By

from callhub.settings import Settings
from callhub.webhooks import RECORD_FIELD, DeliveryAttempt, Subscription
from hub.api.auth import hash_key
from tests.support.browser import script_errors
from tests.support.paths import ARTIFACTS
from tests.support.polling import wait_until
from tests.support.processes import start_hub
from tests.support.strategies import call_started
from workers.commit.publisher import CallPublisher

OPS_KEY = "chk_webhooks-ops-key"
READER_KEY = "chk_webhooks-reader-key"
HOSTILE_NAME = 'crm <img src=x onerror="window.__injected=1"> & "billing"'
GONE = "the receiver answered 410 Gone"
# Never resolved: the hub runs with CALLHUB_WEBHOOK_ALLOW_PRIVATE, which skips the lookup.
HOOK = "https://hooks.example.invalid/callhub"
OTHER_HOOK = "https://crm.example.invalid:8443/in?token=abc"


def keys_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys.toml"
    path.write_text(f"""
[[keys]]
name = "ops"
sha256 = "{hash_key(OPS_KEY)}"
webhooks = true

[[keys]]
name = "reader"
sha256 = "{hash_key(READER_KEY)}"
""")
    return path


def hub_env(tmp_path: Path) -> dict[str, str]:
    return {"CALLHUB_API_KEYS_FILE": str(keys_file(tmp_path)),
            "CALLHUB_WEBHOOK_ALLOW_PRIVATE": "true"}


def create(hub_url: str, name: str, url: str) -> str:
    answer = httpx.post(f"{hub_url}/v1/webhooks", headers={"X-API-Key": OPS_KEY},
                        json={"name": name, "url": url}, timeout=10)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def use_key(driver: WebDriver, key: str) -> None:
    field = driver.find_element(By.ID, "api-key")
    field.clear()
    field.send_keys(key)
    driver.find_element(By.ID, "api-key-save").click()


def panel(driver: WebDriver) -> dict[str, Any]:
    """The panel as the page shows it, read in one script call."""
    result: dict[str, Any] = driver.execute_script("""
        const panel = document.getElementById('webhooks-panel');
        const text = (row, css) => row.querySelector(css).textContent;
        return {
          state: panel.dataset.state, hidden: panel.hidden,
          visible: panel.getBoundingClientRect().height > 0,
          images: panel.querySelectorAll('img').length,
          rows: [...document.querySelectorAll('#webhooks-body tr')].map(r => ({
            id: r.dataset.id, state: r.dataset.state, lag_ms: Number(r.dataset.lagMs),
            name: text(r, 'td.name'), host: text(r, 'td.host'), reason: text(r, '.reason'),
            lag: text(r, 'td.lag'), error: text(r, 'td.error'),
            delivered: text(r, 'td.delivered')})),
        };""")
    return result


def rows_by_id(driver: WebDriver) -> dict[str, dict[str, Any]]:
    return {row["id"]: row for row in panel(driver)["rows"]}


def test_the_webhooks_panel_shows_state_lag_and_last_error_as_text(
    browser: WebDriver, redis_url: str, sync_redis: redis.Redis, tmp_path: Path,
) -> None:
    keys = Settings().keyspace
    hub = start_hub(redis_url, env=hub_env(tmp_path))
    try:
        browser.get(f"{hub.url}/")
        use_key(browser, OPS_KEY)
        wait_until(lambda: panel(browser)["state"] == "empty", what="the empty answer")
        assert panel(browser)["hidden"] and not panel(browser)["visible"]

        commit_calls(redis_url)
        hostile = create(hub.url, HOSTILE_NAME, HOOK)
        plain = create(hub.url, "plain", OTHER_HOOK)  # from now: caught up
        # What the forwarder leaves: the hostile one disabled by a 410 after a
        # failed attempt, its cursor behind the log's events.
        stored = msgspec.json.decode(
            sync_redis.hget(keys.webhooks(), hostile), type=Subscription)  # type: ignore[arg-type]
        sync_redis.hset(keys.webhooks(), hostile, msgspec.json.encode(
            msgspec.structs.replace(stored, enabled=False, disabled_reason=GONE)))
        failed_at = int(time.time() * 1000)
        failed = DeliveryAttempt(event_id="1-0", event_type="call_started", session_id="c-1",
                                 attempt=3, status_code=410, latency_ms=4.0, outcome="disabled",
                                 at_ms=failed_at, error="HTTP 410")
        sync_redis.xadd(keys.webhook_deliveries(hostile),
                        {RECORD_FIELD: msgspec.json.encode(failed)})
        sync_redis.set(keys.webhook_cursor(0, hostile), "0-0")

        def settled() -> dict[str, dict[str, Any]] | None:
            rows = rows_by_id(browser)
            done = len(rows) == 2 and rows[hostile]["state"] == "disabled" and \
                rows[hostile]["lag_ms"] > 0 and rows[hostile]["error"] != "—"
            return rows if done else None

        shown = wait_until(settled, timeout=15, what="both subscriptions as stored, in the panel")
        view = panel(browser)
        assert view["state"] == "shown" and view["visible"], view
        assert [row["id"] for row in view["rows"]] == [hostile, plain]  # oldest first

        # Markup in a name is text: shown exactly, no element made of it, no script run.
        row = shown[hostile]
        assert row["name"] == HOSTILE_NAME
        assert view["images"] == 0
        assert browser.execute_script("return window.__injected") is None
        assert row["host"] == "hooks.example.invalid"
        assert (row["state"], row["reason"]) == ("disabled", GONE)
        assert row["lag_ms"] > 0 and row["lag"] != "caught up", row
        assert row["error"].startswith("HTTP 410"), row
        assert time.strftime("%H:%M:%S", time.localtime(failed_at / 1000)) in row["error"]

        other = shown[plain]
        assert other["host"] == "crm.example.invalid:8443"  # the host only: no path or query
        assert (other["state"], other["reason"]) == ("enabled", "")
        assert (other["lag_ms"], other["lag"]) == (0, "caught up")
        assert other["error"] == "—" and other["delivered"] == "—"

        ARTIFACTS.mkdir(exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "dashboard-webhooks.png"))

        # The panel refreshes by itself: re-enabled through the API, it says so.
        answer = httpx.patch(f"{hub.url}/v1/webhooks/{hostile}", headers={"X-API-Key": OPS_KEY},
                             json={"enabled": True}, timeout=10)
        assert answer.status_code == 200, answer.text
        wait_until(lambda: rows_by_id(browser)[hostile]["state"] == "enabled", timeout=15,
                   what="the panel to show the subscription enabled again")
        assert rows_by_id(browser)[hostile]["name"] == HOSTILE_NAME
        assert script_errors(browser) == []
    finally:
        hub.stop()


def test_the_webhooks_panel_hides_for_a_key_that_may_not_manage_webhooks(
    browser: WebDriver, redis_url: str, tmp_path: Path,
) -> None:
    hub = start_hub(redis_url, env=hub_env(tmp_path))
    try:
        id_ = create(hub.url, "crm", HOOK)
        browser.get(f"{hub.url}/")
        use_key(browser, READER_KEY)
        wait_until(lambda: panel(browser)["state"] == "forbidden", what="the 403")
        view = panel(browser)
        assert view["hidden"] and not view["visible"] and view["rows"] == []
        wait_until(lambda: browser.execute_script(
            "return document.getElementById('connection-state').dataset.state") == "live",
            what="the calls stream, which the key may read")

        # A key that may manage them: the same page shows them.
        use_key(browser, OPS_KEY)
        wait_until(lambda: [r["id"] for r in panel(browser)["rows"]] == [id_],
                   what="the subscription in the panel")
        assert panel(browser)["visible"]
        assert script_errors(browser) == []
    finally:
        hub.stop()


def commit_calls(redis_url: str) -> None:
    """A few calls committed to the log, as a worker commits them."""
    async def commit() -> None:
        client = aioredis.Redis.from_url(redis_url)
        try:
            await CallPublisher(client, Settings(redis_url=redis_url)).commit_many(
                [call_started(f"c-{n}") for n in range(3)])
        finally:
            await client.aclose()

    asyncio.run(commit())
