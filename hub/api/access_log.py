"""Access-log hygiene: a credential given as a query parameter never reaches a log.

uvicorn logs each request's path with its query string; a browser's EventSource
must put its credential there (``api_key=``, or a stream ``token=``), so the
value is masked before any handler sees the record. A parameter is recognised
the way the server reads it — by its percent-decoded name (``api%5Fkey``
authenticates too) — and, to be safe, in any letter case (``API_KEY``), which the
server would not take but a careless client may still send.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote_plus

from hub.api.auth import KEY_QUERY_PARAMETER

SECRET_PARAMETERS = frozenset({KEY_QUERY_PARAMETER, "token"})
MASK = "***"
# A query parameter inside a logged line: after ? or &, a name, =, a value up to
# the next & or whitespace (the end of the request target in a log line).
_PARAMETER = re.compile(r"([?&])([^=&\s?#]*)=([^&\s#]*)")


def redact(text: str) -> str:
    if "=" not in text:
        return text
    return _PARAMETER.sub(_mask, text)


def _mask(match: re.Match[str]) -> str:
    name = match.group(2)
    if unquote_plus(name).strip().lower() in SECRET_PARAMETERS:
        return f"{match.group(1)}{name}={MASK}"
    return match.group(0)


class RedactApiKeys(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        record.msg = redact(str(record.msg))
        return True
