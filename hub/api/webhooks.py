"""Managing webhook subscriptions: ``/v1/webhooks`` and ``/v1/webhooks/{id}/...``.

Who may: a key with ``webhooks`` (``hub.api.auth``), else 403. A dialog-scoped
key's subscriptions get its dialogs as their scope, and it finds only
subscriptions scoped within its dialogs (any other is a 404, as a call outside
them is), so a key can never route out of the hub events it could not read.

Everything a request gives is checked before anything is written, and the
store writes a subscription as one field, so a refused request stores nothing.
The signing secret is shown once, in the create and rotate answers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

import msgspec
from msgspec import UNSET
from starlette.endpoints import HTTPEndpoint
from starlette.requests import Request
from starlette.responses import Response

from callhub.cursor import Cursor, InvalidCursor
from callhub.events import EVENT_TYPES, check_dialog_name, check_session_id
from callhub.signing import new_secret
from callhub.tokens import InvalidToken, seal, unseal
from callhub.webhooks import (
    InvalidDestination,
    SigningSecret,
    Subscription,
    check_destination,
    is_subscription_id,
    new_subscription_id,
)
from hub.api.auth import Principal
from hub.api.query import Query
from hub.api.replica import Replica, replica_of
from hub.api.request_body import read_body
from hub.api.responses import json_response
from hub.api.webhook_ping import ping
from hub.api.webhook_schemas import (
    START_NOW,
    CreateWebhook,
    DeadLetterList,
    DeadLetterRecord,
    DeliveryList,
    Redeliver,
    RedeliverResult,
    UpdateWebhook,
    Webhook,
    WebhookList,
    WebhookWithSecret,
)
from hub.errors import BadParameter, Forbidden

PAGE_SIZE_DEFAULT = 100
PAGE_SIZE_MAX = 1000
RECORDS_DEFAULT = 100
RECORDS_MAX = 1000
DISABLED_BY_API = "disabled through the API"

_PAGE_KIND = b"callhub-webhooks-page"
_PAGE_VERSION = 1


class _PagePosition(msgspec.Struct, frozen=True, array_like=True):
    created_ms: int
    id: str


async def create_webhook(request: Request) -> Response:
    replica, principal, _ = _authorised(request)
    body = await read_body(request, CreateWebhook)
    scope = sorted(principal.scope) if principal.scope is not None else None
    dialog_name = _dialog_filter(body.dialog_name, scope)
    session_id = _session_filter(body.session_id)
    start = _start(body.start, replica.settings.shards)
    url = await _destination(body.url, replica)
    now_ms = _now_ms()
    secret = new_secret()
    subscription = Subscription(
        id=new_subscription_id(), name=body.name, url=url, secrets=[SigningSecret(secret)],
        event_types=_event_types(body.event_types), dialog_name=dialog_name,
        session_id=session_id, scope=scope, cloudevents=body.cloudevents, created_ms=now_ms)
    await replica.subscriptions.create(subscription, start)
    return json_response(await _with_secret(replica, subscription, secret), status_code=201)


async def list_webhooks(request: Request) -> Response:
    replica, principal, query = _authorised(request, ("page_size", "page_token"))
    page_size = query.integer("page_size", PAGE_SIZE_DEFAULT, 1, PAGE_SIZE_MAX)
    token = query.text("page_token")
    after = _page_position(token) if token else None
    found = [s for s in await replica.subscriptions.visible_to(principal.scope)
             if after is None or (s.created_ms, s.id) > (after.created_ms, after.id)]
    page, rest = found[:page_size], found[page_size:]
    next_token = (seal(_PAGE_KIND, _PAGE_VERSION, _PagePosition(page[-1].created_ms, page[-1].id))
                  if rest else "")
    return json_response(WebhookList(await _views(replica, page), next_token))


async def get_webhook(request: Request) -> Response:
    replica, principal, _ = _authorised(request)
    subscription = await replica.subscriptions.get(_id(request), principal.scope)
    return json_response((await _views(replica, [subscription]))[0])


async def update_webhook(request: Request) -> Response:
    replica, principal, _ = _authorised(request)
    id_ = _id(request)
    body = await read_body(request, UpdateWebhook)
    current = await replica.subscriptions.get(id_, principal.scope)
    changes: dict[str, object] = {}
    if body.name is not UNSET:
        changes["name"] = body.name
    if body.url is not UNSET:
        changes["url"] = await _destination(body.url, replica)
    if body.event_types is not UNSET:
        changes["event_types"] = _event_types(body.event_types)
    if body.dialog_name is not UNSET:
        changes["dialog_name"] = _dialog_filter(body.dialog_name, current.scope)
    if body.session_id is not UNSET:
        changes["session_id"] = _session_filter(body.session_id)
    if body.cloudevents is not UNSET:
        changes["cloudevents"] = body.cloudevents
    enabled = body.enabled

    def change(stored: Subscription) -> Subscription:
        changed = msgspec.structs.replace(stored, **changes)
        if enabled is True:
            changed = msgspec.structs.replace(changed, enabled=True, disabled_reason="")
        elif enabled is False and stored.enabled:
            changed = msgspec.structs.replace(changed, enabled=False,
                                              disabled_reason=DISABLED_BY_API)
        return changed

    updated = await replica.subscriptions.update(id_, principal.scope, change)
    return json_response((await _views(replica, [updated]))[0])


async def delete_webhook(request: Request) -> Response:
    replica, principal, _ = _authorised(request)
    await replica.subscriptions.delete(_id(request), principal.scope)
    return Response(status_code=204)


async def rotate_secret(request: Request) -> Response:
    replica, principal, _ = _authorised(request)
    subscription, secret = await replica.subscriptions.rotate_secret(
        _id(request), principal.scope, _now_ms(), replica.settings.webhook_rotation_grace_ms)
    return json_response(await _with_secret(replica, subscription, secret))


async def ping_webhook(request: Request) -> Response:
    replica, principal, _ = _authorised(request)
    subscription = await replica.subscriptions.get(_id(request), principal.scope)
    return json_response(await ping(subscription, replica.settings))


async def list_deliveries(request: Request) -> Response:
    replica, principal, query = _authorised(request, ("limit",))
    limit = query.integer("limit", RECORDS_DEFAULT, 1, RECORDS_MAX)
    return json_response(DeliveryList(
        await replica.subscriptions.deliveries(_id(request), principal.scope, limit)))


async def list_dead_letters(request: Request) -> Response:
    replica, principal, query = _authorised(request, ("limit",))
    limit = query.integer("limit", RECORDS_DEFAULT, 1, RECORDS_MAX)
    letters = await replica.subscriptions.dead_letters(_id(request), principal.scope, limit)
    return json_response(DeadLetterList([
        DeadLetterRecord(id=id_, **msgspec.structs.asdict(letter)) for id_, letter in letters]))


async def redeliver(request: Request) -> Response:
    """Dead letters queued again, or delivery rewound to a cursor; the forwarder
    holding each shard acts on it within about a second (202: it is under way)."""
    replica, principal, _ = _authorised(request)
    id_ = _id(request)
    body = await read_body(request, Redeliver)
    if (body.dead_letters is UNSET) == (body.from_ is UNSET):
        raise BadParameter('give exactly one of "dead_letters" and "from"', param="body")
    if body.from_ is not UNSET:
        cursor = _start(body.from_, replica.settings.shards, param="from")
        if cursor is None:
            raise BadParameter('"from" is a stream cursor', param="from")
        rewind = await replica.subscriptions.rewind(id_, principal.scope, cursor, _now_ms())
        return json_response(RedeliverResult(rewind_generation=rewind.generation),
                             status_code=202)
    ids = None if body.dead_letters == "all" else list(body.dead_letters)  # type: ignore[arg-type]
    queued, refused = await replica.subscriptions.redeliver_dead_letters(
        id_, principal.scope, ids, _now_ms())
    return json_response(RedeliverResult(queued=queued, not_redeliverable=refused),
                         status_code=202)


class WebhookCollection(HTTPEndpoint):
    """``/v1/webhooks``: one route for its methods, so a 405's ``Allow`` lists them all."""

    get = staticmethod(list_webhooks)
    post = staticmethod(create_webhook)


class WebhookResource(HTTPEndpoint):
    """``/v1/webhooks/{id}``."""

    get = staticmethod(get_webhook)
    patch = staticmethod(update_webhook)
    delete = staticmethod(delete_webhook)


def _authorised(request: Request,
                parameters: Iterable[str] = ()) -> tuple[Replica, Principal, Query]:
    """The replica, the caller (if its key may manage webhooks) and the query
    (which takes only ``parameters``)."""
    replica = replica_of(request)
    principal = replica.keys.authenticate(request)
    if not principal.webhooks:
        raise Forbidden("this API key may not manage webhooks")
    return replica, principal, Query(request.query_params, parameters)


def _id(request: Request) -> str:
    id_: str = request.path_params["id"]
    if not is_subscription_id(id_):
        raise BadParameter("not a webhook subscription id (wh_...)", param="id")
    return id_


def _event_types(types: list[str] | None) -> list[str] | None:
    if types is None:
        return None
    for one in types:
        if one not in EVENT_TYPES:
            raise BadParameter(f"unknown event type; one of {', '.join(EVENT_TYPES)}",
                               param="event_types")
    return list(dict.fromkeys(types))


def _dialog_filter(dialog_name: str, scope: list[str] | None) -> str:
    if not dialog_name:
        return ""
    try:
        check_dialog_name(dialog_name)
    except ValueError as error:
        raise BadParameter(str(error), param="dialog_name") from None
    if scope is not None and dialog_name not in scope:
        raise BadParameter("dialog_name is outside the dialogs this subscription may see",
                           param="dialog_name")
    return dialog_name


def _session_filter(session_id: str) -> str:
    if not session_id:
        return ""
    try:
        return check_session_id(session_id)
    except ValueError as error:
        raise BadParameter(str(error), param="session_id") from None


def _start(text: str, shards: int, param: str = "start") -> Cursor | None:
    if text in ("", START_NOW):
        return None
    try:
        return Cursor.decode(text, shards)
    except InvalidCursor as error:
        raise BadParameter(f'{param} is "now" or a stream cursor: {error}', param=param) from None


async def _destination(url: str, replica: Replica) -> str:
    settings = replica.settings
    try:
        async with asyncio.timeout(settings.webhook_timeout_ms / 1000):
            return await check_destination(url, allow_http=settings.webhook_allow_http,
                                           allow_private=settings.webhook_allow_private)
    except InvalidDestination as error:
        raise BadParameter(str(error), param="url") from None
    except TimeoutError:
        raise BadParameter("the URL's host name did not resolve in time", param="url") from None


def _page_position(token: str) -> _PagePosition:
    try:
        return unseal(_PAGE_KIND, _PAGE_VERSION, token, _PagePosition)
    except InvalidToken as error:
        raise BadParameter(f"page_token is not valid ({error})", param="page_token") from None


async def _views(replica: Replica, subscriptions: list[Subscription]) -> list[Webhook]:
    """The API's view of each subscription, with its delivery status read now
    (a bounded read per subscription and shard: callers pass at most a page)."""
    now_ms = _now_ms()
    statuses = await replica.subscriptions.statuses(subscriptions, now_ms)
    return [Webhook.of(subscription, now_ms, status)
            for subscription, status in zip(subscriptions, statuses, strict=True)]


async def _with_secret(replica: Replica, subscription: Subscription,
                       secret: str) -> WebhookWithSecret:
    (view,) = await _views(replica, [subscription])
    return WebhookWithSecret(**msgspec.structs.asdict(view), secret=secret)


def _now_ms() -> int:
    return int(time.time() * 1000)
