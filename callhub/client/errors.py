"""What can go wrong talking to a hub, as exceptions a caller can catch by kind.

An answer no retry can change is raised at once, with the hub's own message
(``BadRequest`` for 400, ``Unauthorized`` 401, ``Forbidden`` 403, ``NotFound``
404, ``HubError`` for any other status); what a later attempt may fix (a
dropped connection, a 502/503/504, a replica restarting) is retried with the
shared ``Backoff`` first, and raised only once the attempts run out
(``HubUnavailable``, ``RetriesExhausted``). Every one is a ``CallhubError``.
"""

from __future__ import annotations


class CallhubError(Exception):
    """Base of every error this client raises; ``message`` says what happened."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ClientConfigError(CallhubError, ValueError):
    """The client was given something it cannot work with (URL, TLS files, option)."""


class HubError(CallhubError):
    """The hub answered with an error status: its status, code, message and parameter."""

    def __init__(self, status: int, message: str, *, code: str = "", param: str | None = None,
                 url: str = "", reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.param = param
        self.url = url
        self.reason = reason  # the HTTP reason phrase (``Bad Request``)

    def __str__(self) -> str:
        return f"{self.status} {self.reason}: {self.message}".replace("  ", " ")


class BadRequest(HubError):
    """400: a parameter, cursor or token the hub cannot use (``param`` names it)."""


class Unauthorized(HubError):
    """401: no API key, or one the hub does not know."""


class Forbidden(HubError):
    """403: the key may not do this."""


class NotFound(HubError):
    """404: no such call (or one outside the key's dialogs), or not a hub's URL."""


class HubUnavailable(HubError):
    """A retryable status (502, 503, 504, …) that lasted through every retry."""


class HubUnreachable(CallhubError):
    """No answer at all (refused, reset, timed out) through every retry."""


class NotAHub(CallhubError):
    """Something answered that is not a callhub (wrong content type, redirect loop)."""


class UntrustedCertificate(CallhubError):
    """The hub's TLS certificate failed verification: no retry fixes that."""


class RetriesExhausted(CallhubError):
    """The event stream failed ``retries`` times in a row; ``reason`` is the last failure."""

    def __init__(self, reason: str, retries: int) -> None:
        super().__init__(f"giving up after {retries} "
                         f"{'retry' if retries == 1 else 'retries'}: {reason}")
        self.reason = reason
        self.retries = retries


_BY_STATUS: dict[int, type[HubError]] = {400: BadRequest, 401: Unauthorized, 403: Forbidden,
                                         404: NotFound}


def error_for_status(status: int, message: str, **details: str | None) -> HubError:
    """The exception for an error answer (``details``: code, param, url, reason)."""
    kind = _BY_STATUS.get(status, HubError)
    return kind(status, message, code=details.get("code") or "", param=details.get("param"),
                url=details.get("url") or "", reason=details.get("reason") or "")
