"""Access-log hygiene: an API key given as a query parameter never reaches a log.

uvicorn logs each request's path with its query string; a browser's EventSource
must put its key there (``api_key=``), so the value is masked before any
handler sees the record.
"""

from __future__ import annotations

import logging
import re

from hub.api.auth import KEY_QUERY_PARAMETER

_KEY_IN_QUERY = re.compile(rf"([?&]{KEY_QUERY_PARAMETER}=)[^&\s]*")


def redact(text: str) -> str:
    if KEY_QUERY_PARAMETER not in text:
        return text
    return _KEY_IN_QUERY.sub(r"\1***", text)


class RedactApiKeys(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        record.msg = redact(str(record.msg))
        return True

