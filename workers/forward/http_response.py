"""ResponseReader: a receiver's HTTP/1.1 answer to one delivery, parsed with httptools.

A delivery needs three things of an answer: its status, ``Retry-After``
(429, 503) and whether the connection may carry the next request. The body
is counted, never kept: past ``body_limit`` bytes reading stops and the
connection is dropped (the status already arrived; the rest of the body is
the receiver's business, not the forwarder's memory). The head is bounded
too (``HEAD_LIMIT``): a receiver that streams headers forever is a failed
attempt, not a growing buffer.

Framing is llhttp's (through httptools): Content-Length, chunked (with
trailers), no body for 204 and 304, and interim 1xx answers skipped. An
answer with neither length nor chunking ends when the receiver closes
(``feed_eof``). Bytes after a complete answer (an answer to a request never
sent) make the connection unfit for another request.

One reader belongs to one connection and parses its answers one after the
other (``begin`` before each request).
"""

from __future__ import annotations

from typing import Final

import httptools

HEAD_LIMIT: Final = 64 * 1024


class MalformedResponse(Exception):
    """The receiver's bytes are not an HTTP/1.1 answer (or one too big a head)."""


class ResponseReader:
    __slots__ = (
        "_body_bytes",
        "_body_limit",
        "_extra",
        "_framed",
        "_head_bytes",
        "_head_done",
        "_keep_alive",
        "_parser",
        "complete",
        "overflowed",
        "retry_after",
        "reusable",
        "status",
    )

    def __init__(self, body_limit: int) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._body_limit = body_limit
        self.begin()

    def begin(self) -> None:
        """Ready for the answer to the next request on this connection."""
        self.status = 0
        self.retry_after: str | None = None
        self.complete = False  # the whole answer arrived
        self.overflowed = False  # the body went past body_limit: reading stopped
        self.reusable = False  # the connection may carry the next request
        self._head_done = False
        self._head_bytes = 0
        self._body_bytes = 0
        self._framed = False  # Content-Length or chunked: the end is known without a close
        self._extra = False
        self._keep_alive = False

    @property
    def done(self) -> bool:
        """Nothing more to read for this answer (complete, or the body is cut short)."""
        return self.complete or self.overflowed

    def feed(self, data: bytes) -> None:
        if not self._head_done:
            self._head_bytes += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as error:
            if self.complete:  # the answer arrived whole, then bytes that are none
                self.reusable = False
                return
            raise MalformedResponse(f"the answer is not HTTP/1.1 ({error})") from None
        if not self._head_done and self._head_bytes > HEAD_LIMIT:
            raise MalformedResponse(f"the answer's head is over {HEAD_LIMIT} bytes")

    def feed_eof(self) -> None:
        """The receiver closed: the end of an answer that has neither a length
        nor chunks; an incomplete one otherwise."""
        if self.done:
            return
        if self._head_done and not self._framed:
            self.complete = True
            return
        raise MalformedResponse("the receiver closed the connection before the answer was "
                                "complete")

    # -- httptools callbacks ---------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.complete:
            self._extra = True
            self.reusable = False

    def on_header(self, name: bytes, value: bytes) -> None:
        lowered = name.lower()
        if lowered == b"retry-after":
            self.retry_after = value.decode("latin-1").strip(" \t")
        elif lowered == b"content-length" or (
                lowered == b"transfer-encoding" and b"chunked" in value.lower()):
            self._framed = True

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200:
            return  # an interim answer (100 Continue, 103 Early Hints): the real one follows
        self.status = status
        self._head_done = True
        self._keep_alive = self._parser.should_keep_alive()
        if status in (204, 304):
            self._framed = True

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > self._body_limit:
            self.overflowed = True

    def on_message_complete(self) -> None:
        if not self._head_done:  # an interim answer's headers are not the answer's
            self.retry_after = None
            self._framed = False
            return
        if self.complete:
            return
        self.complete = True
        self.reusable = self._keep_alive and not self._extra and not self.overflowed
