"""JSON request bodies: read up to a cap, decoded into a Struct, errors naming the field.

A body is read no further than ``MAX_BODY`` (a client cannot make a replica
buffer more), decoded by msgspec straight into the endpoint's request Struct,
and every way it can be wrong (none, too large, not JSON, a wrong type, an
unknown or missing field) is a ``BadParameter`` whose ``param`` is the field.
"""

from __future__ import annotations

import re
from typing import TypeVar

import msgspec
from starlette.requests import Request

from hub.errors import BadParameter

T = TypeVar("T")

MAX_BODY = 64 * 1024
PARAM = "body"  # the param of an error about the body as a whole
_MESSAGE_MAX = 300

_AT_FIELD = re.compile(r" - at `\$\.([A-Za-z_][A-Za-z0-9_]*)")
_NAMED_FIELD = re.compile(r"(?:unknown|required) field `([^`]{1,64})`")


async def read_body(request: Request, kind: type[T]) -> T:
    body = await _read_capped(request)
    if not body.strip():
        raise BadParameter("a JSON body is required", param=PARAM)
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as error:
        message = str(error)
        raise BadParameter(f"invalid body: {message[:_MESSAGE_MAX]}",
                           param=field_of(message)) from None
    except msgspec.DecodeError:
        raise BadParameter("the body is not valid JSON", param=PARAM) from None


def field_of(message: str) -> str:
    """The top-level field a msgspec validation message is about, else ``body``."""
    found = _AT_FIELD.search(message) or _NAMED_FIELD.search(message)
    return found.group(1) if found else PARAM


async def _read_capped(request: Request) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise _too_large()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise _too_large()
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large() -> BadParameter:
    return BadParameter(f"the body is larger than {MAX_BODY // 1024} KiB", param=PARAM)
