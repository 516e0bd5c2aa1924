"""Dialog hooks: real HTTP calls from a dialog to the business around it.

A hook POSTs the call's context as JSON::

    {"hook": "lookup_account", "session_id": "...", "dialog_name": "helpdesk",
     "state": "lookup_account", "caller_id": "+1555...", "called_number": "+1800...",
     "variables": {"intent": "password_reset"}}

and a 2xx answer ``{"variables": {"customer_name": "Jane"}}`` (``variables``
optional; values are scalars) is a success whose variables patch the call's.
Anything else is a failure of one of the kinds ``hook_error`` reports:
``timeout``, ``connection`` (refused, reset, DNS), ``http_status`` (not 2xx)
or ``invalid_response`` (not JSON, wrong shape, a bad variable name).
"""

from __future__ import annotations

import time
from typing import Annotated, TypeAlias

import httpx
import msgspec

from callhub.events import NAME_MAX, TEXT_MAX, HookErrorKind, Scalar, Variables
from workers.dialog.spec import HookSpec


class HookRequest(msgspec.Struct, frozen=True):
    """The JSON body a hook receives."""

    hook: str
    session_id: str
    dialog_name: str
    state: str
    caller_id: str
    called_number: str
    variables: dict[str, Scalar]


HookVariableName = Annotated[str, msgspec.Meta(min_length=1, max_length=NAME_MAX)]
HookVariableValue = (
    Annotated[str, msgspec.Meta(max_length=TEXT_MAX)] | int | float | bool | None
)


class HookAnswer(msgspec.Struct, frozen=True):
    """The JSON body a hook answers with (other fields are ignored)."""

    variables: dict[HookVariableName, HookVariableValue] = {}


class HookSucceeded(msgspec.Struct, frozen=True):
    status_code: int
    duration_ms: int
    variables: Variables


class HookFailed(msgspec.Struct, frozen=True):
    kind: HookErrorKind
    message: str
    duration_ms: int
    status_code: int | None = None


HookOutcome: TypeAlias = HookSucceeded | HookFailed

_answer = msgspec.json.Decoder(HookAnswer)
_request = msgspec.json.Encoder()
MAX_ANSWER_BYTES = 64 * 1024


class HookClient:
    """Calls hooks over one shared HTTP connection pool.

    ``base_url`` resolves hooks whose ``url`` is a ``/path``: the same dialog
    file then works against a simulated back office and a real one.
    """

    def __init__(self, http: httpx.AsyncClient, base_url: str | None = None) -> None:
        self._http = http
        self._base_url = base_url.rstrip("/") if base_url else None

    def url_of(self, hook: HookSpec) -> str | None:
        if hook.url.startswith("/"):
            return None if self._base_url is None else self._base_url + hook.url
        return hook.url

    async def call(self, hook: HookSpec, request: HookRequest, *, timeout_s: float) -> HookOutcome:
        """Call ``hook``; every failure becomes a ``HookFailed``, never an exception."""
        started = time.monotonic()

        def elapsed_ms() -> int:
            return int((time.monotonic() - started) * 1000)

        url = self.url_of(hook)
        if url is None:
            return HookFailed("connection", f"{hook.url} is a path and no hook base URL is set", 0)
        try:
            response = await self._http.post(
                url,
                content=_request.encode(request),
                headers={"content-type": "application/json", **hook.headers},
                timeout=httpx.Timeout(timeout_s),
            )
        except httpx.TimeoutException:
            return HookFailed("timeout", f"no answer from {url} within {timeout_s:g}s",
                              elapsed_ms())
        except httpx.HTTPError as error:
            return HookFailed("connection", f"{url}: {error or type(error).__name__}",
                              elapsed_ms())
        duration_ms = elapsed_ms()
        status = response.status_code
        if not 200 <= status < 300:
            code = status if 100 <= status <= 599 else None
            return HookFailed("http_status", f"{url} answered HTTP {status}", duration_ms, code)
        if len(response.content) > MAX_ANSWER_BYTES:
            return HookFailed("invalid_response", f"{url} answered more than {MAX_ANSWER_BYTES}"
                              " bytes", duration_ms, status)
        try:
            answer = _answer.decode(response.content or b"{}")
        except (msgspec.ValidationError, msgspec.DecodeError) as error:
            return HookFailed("invalid_response", f"{url} answered {error}", duration_ms, status)
        return HookSucceeded(status, duration_ms, dict(answer.variables))
