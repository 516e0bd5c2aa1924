"""``POST /v1/webhooks/{id}/test``: one signed ``webhook_test`` delivery, from the replica.

It is signed and sent as the forwarder sends an event (the same headers, the
current signing keys), so a receiver that verifies a ping verifies deliveries.
The replica is the one reaching out here, so it guards itself as the forwarder
does: the URL is checked again (a host name may resolve elsewhere than when
the subscription was made), it is POSTed with ``callhub.destination_guard``'s
client, which checks the address it connects to as well (the name may resolve
elsewhere again by then), redirects are not followed, the answer is read no
further than ``MAX_ANSWER`` bytes, and the whole is bounded by the webhook
timeout. Whatever the receiver does is a result, never an API error.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Final

import httpx
import msgspec

from callhub.destination_guard import DestinationRefused, guarded_client
from callhub.settings import Settings
from callhub.webhooks import (
    TEST_EVENT_TYPE,
    InvalidDestination,
    Subscription,
    check_destination,
    delivery_headers,
    message_id,
)
from hub.api.webhook_schemas import PingEvent, PingResult
from hub.store.call_store import iso_ms

MAX_ANSWER: Final = 64 * 1024
_encoder = msgspec.json.Encoder()


async def ping(subscription: Subscription, settings: Settings) -> PingResult:
    timeout_s = settings.webhook_timeout_ms / 1000
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout_s):
            await check_destination(subscription.url, allow_http=settings.webhook_allow_http,
                                    allow_private=settings.webhook_allow_private)
            status = await _post(subscription, timeout_s, settings.webhook_allow_private)
    except InvalidDestination as error:
        return PingResult(status_code=0, latency_ms=0.0, error=str(error))
    except (TimeoutError, httpx.TimeoutException):
        return PingResult(status_code=0, latency_ms=_since(started),
                          error=f"no answer within {settings.webhook_timeout_ms} ms")
    except httpx.ConnectError as error:
        refused = isinstance(error.__cause__, DestinationRefused)
        return PingResult(status_code=0, latency_ms=_since(started),
                          error=str(error.__cause__) if refused
                          else "could not connect to the receiver")
    except httpx.HTTPError as error:  # never str(error): it may repeat the URL
        return PingResult(status_code=0, latency_ms=_since(started),
                          error=f"the request failed ({type(error).__name__})")
    latency = _since(started)
    if 200 <= status < 300:
        return PingResult(status_code=status, latency_ms=latency)
    if 300 <= status < 400:
        return PingResult(status_code=status, latency_ms=latency,
                          error=f"the receiver answered {status}; redirects are not followed")
    return PingResult(status_code=status, latency_ms=latency,
                      error=f"the receiver answered {status}")


async def _post(subscription: Subscription, timeout_s: float, allow_private: bool) -> int:
    now_ms = int(time.time() * 1000)
    body = _encoder.encode(PingEvent(type=TEST_EVENT_TYPE, subscription_id=subscription.id,
                                     timestamp=iso_ms(now_ms)))
    headers = delivery_headers(
        subscription, message=message_id(subscription.id, "test-" + secrets.token_hex(8)),
        body=body, event_type=TEST_EVENT_TYPE, session_id="", seq="", cursor="",
        now_s=now_ms // 1000, keys=subscription.signing_keys(now_ms))
    async with guarded_client(timeout_s=timeout_s, allow_private=allow_private) as client, \
            client.stream("POST", subscription.url, content=body, headers=headers) as answer:
        read = 0
        async for chunk in answer.aiter_raw():
            read += len(chunk)
            if read >= MAX_ANSWER:
                break
        return answer.status_code


def _since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
