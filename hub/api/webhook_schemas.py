"""The webhook endpoints' request and response bodies, as msgspec Structs.

The request Structs are the validation: they forbid unknown fields and carry
the limits (lengths, patterns) that the OpenAPI document then shows, generated
from these same types. Checks a schema cannot say (a URL's address, a cursor,
a scope) are made by the handlers.

No response body but the create and rotate answers carries a secret: the view
of a subscription shows only when its rotated secrets stop signing.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from callhub.events import DIALOG_NAME_PATTERN, EVENT_TYPES, SESSION_ID_PATTERN
from callhub.tokens import MAX_TOKEN
from callhub.webhooks import NAME_MAX, URL_MAX, DeadLetter, DeliveryAttempt, Subscription
from hub.store.subscriptions import WebhookStatus

# Empty means "no filter", as in the event stream's query.
DialogFilter = Annotated[str, Meta(pattern=f"^({DIALOG_NAME_PATTERN.pattern})?$")]
SessionFilter = Annotated[str, Meta(pattern=f"^({SESSION_ID_PATTERN.pattern})?$")]
EventTypeName = Annotated[str, Meta(pattern=f"^({'|'.join(EVENT_TYPES)})$")]
EventTypes = Annotated[list[EventTypeName], Meta(min_length=1, max_length=4 * len(EVENT_TYPES))]
Name = Annotated[str, Meta(min_length=1, max_length=NAME_MAX)]
Url = Annotated[str, Meta(min_length=1, max_length=URL_MAX)]
Start = Annotated[str, Meta(max_length=MAX_TOKEN, description=(
    '"now" (the default): events committed after the subscription is created; or a '
    "stream cursor (an event stream's id, a call's cursor): events after it"))]

START_NOW: Final = "now"


class CreateWebhook(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /v1/webhooks``: where to deliver, and which events (None: every type)."""

    name: Name
    url: Url
    event_types: EventTypes | None = None
    dialog_name: DialogFilter = ""
    session_id: SessionFilter = ""
    cloudevents: bool = False
    start: Start = START_NOW


class UpdateWebhook(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``PATCH /v1/webhooks/{id}``: only the fields given change; ``event_types``
    null means every type again, an empty filter string no filter."""

    name: Name | UnsetType = UNSET
    url: Url | UnsetType = UNSET
    event_types: EventTypes | UnsetType | None = UNSET
    dialog_name: DialogFilter | UnsetType = UNSET
    session_id: SessionFilter | UnsetType = UNSET
    enabled: bool | UnsetType = UNSET
    cloudevents: bool | UnsetType = UNSET


class Webhook(msgspec.Struct, frozen=True, kw_only=True):
    """A subscription as the API shows it: everything but its secrets.

    ``scope`` is the dialogs of the key that created it (null: every dialog);
    ``rotated_secrets_expire_ms`` says until when each rotated secret still signs;
    ``status`` is how delivery is going (lag, last delivery, last error), read
    when the answer is made.
    """

    id: str
    name: str
    url: str
    event_types: list[str] | None
    dialog_name: str
    session_id: str
    scope: list[str] | None
    enabled: bool
    disabled_reason: str
    cloudevents: bool
    created_ms: int
    rotated_secrets_expire_ms: list[int]
    status: WebhookStatus

    @classmethod
    def of(cls, subscription: Subscription, now_ms: int, status: WebhookStatus) -> Webhook:
        return cls(
            id=subscription.id, name=subscription.name, url=subscription.url,
            event_types=subscription.event_types, dialog_name=subscription.dialog_name,
            session_id=subscription.session_id, scope=subscription.scope,
            enabled=subscription.enabled, disabled_reason=subscription.disabled_reason,
            cloudevents=subscription.cloudevents, created_ms=subscription.created_ms,
            rotated_secrets_expire_ms=[s.expires_ms for s in subscription.secrets
                                       if s.expires_ms > now_ms],
            status=status)


class WebhookWithSecret(Webhook, frozen=True, kw_only=True):
    """The answer to create and rotate-secret: the only ones that show a secret."""

    secret: str

    def __repr__(self) -> str:
        return f"WebhookWithSecret(id={self.id!r})"


class WebhookList(msgspec.Struct, frozen=True):
    webhooks: list[Webhook]
    next_page_token: str = ""


class DeliveryList(msgspec.Struct, frozen=True):
    """The last delivery attempts, newest first."""

    deliveries: list[DeliveryAttempt]


class DeadLetterRecord(DeadLetter, frozen=True, kw_only=True):
    """A dead letter and its ``id``, which ``/redeliver`` takes."""

    id: str


class DeadLetterList(msgspec.Struct, frozen=True):
    """The events given up on, newest first."""

    dead_letters: list[DeadLetterRecord]


LetterId = Annotated[str, Meta(min_length=1, max_length=64)]


class Redeliver(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /v1/webhooks/{id}/redeliver``: exactly one of the two.

    ``dead_letters``: "all", or the ids of dead letters (``/dead-letters``) to
    send again; ``from``: a stream cursor: every event after it is delivered
    again (in each shard it names; never forward of where delivery is).
    """

    dead_letters: Literal["all"] | Annotated[list[LetterId], Meta(
        min_length=1, max_length=1000)] | UnsetType = UNSET
    from_: Start | UnsetType = msgspec.field(default=UNSET, name="from")


class RedeliverResult(msgspec.Struct, frozen=True, kw_only=True):
    """What ``/redeliver`` set going: dead letters queued (and the ids it could
    not: unknown, or a retention gap whose events are gone), or the rewind."""

    queued: int = 0
    not_redeliverable: list[str] = msgspec.field(default_factory=list)
    rewind_generation: int = 0


class PingEvent(msgspec.Struct, frozen=True, kw_only=True):
    """What ``/test`` POSTs to a subscription's URL, signed as a delivery is."""

    type: str
    subscription_id: str
    timestamp: str


class PingResult(msgspec.Struct, frozen=True, kw_only=True):
    """How the receiver answered ``/test``: its status (0: no answer) and, if
    the delivery would not count as delivered, why."""

    status_code: int
    latency_ms: float
    error: str = ""
