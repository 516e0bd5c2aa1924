"""Log output: readable lines by default, one JSON object per line with
``CALLHUB_LOG_FORMAT=json`` (for log shippers), each carrying the request id
of the HTTP request it was logged under.

The request id comes from the client's ``X-Request-ID`` when it is a sane
token, else a new one; it is echoed in the response so a client report can be
matched with the replica's log. API keys never reach a log: the access-log
filter masks them, and nothing logs event payloads (caller numbers) at info.
"""

from __future__ import annotations

import contextvars
import itertools
import logging
import re
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
from starlette.types import Scope

from hub.api.access_log import RedactApiKeys

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")

_SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_encoder = msgspec.json.Encoder()

LOG_FORMATS = ("text", "json")


# Fresh ids: a random per-process prefix and a counter, unique without the
# cost of a uuid4 per request.
_PREFIX = uuid.uuid4().hex[:16]
_numbers = itertools.count(1)


def request_id_from(header: bytes | None) -> str:
    """The client's id if it is a sane token, else a fresh one."""
    if header:
        text = header.decode("latin-1")
        if _SANE_ID.fullmatch(text):
            return text
    return f"{_PREFIX}{next(_numbers):016x}"


def header_of(scope: Scope, name: bytes) -> bytes | None:
    return next((value for key, value in scope["headers"] if key == name), None)


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, request id, error."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", "")
        if rid:
            entry["request_id"] = rid
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return _encoder.encode(entry).decode()


def configure_logging(log_format: str, level: int = logging.INFO) -> None:
    """Set up the root logger once per process (uvicorn's loggers propagate to it)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.addFilter(RedactApiKeys())
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # uvicorn's loggers reach this handler by propagation. The access logger's
    # ``propagate`` is left alone: uvicorn turns it off for --no-access-log,
    # and its protocol logs a line per request whenever that logger can reach
    # a handler.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        if name != "uvicorn.access":
            logger.propagate = True
