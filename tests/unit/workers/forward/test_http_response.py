"""ResponseReader: status, Retry-After, framing and reuse, from bytes split anywhere."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workers.forward.http_response import HEAD_LIMIT, MalformedResponse, ResponseReader

LIMIT = 1024


def read(data: bytes, cuts: list[int] | None = None, *, eof: bool = False,
         limit: int = LIMIT) -> ResponseReader:
    """Feed ``data`` in pieces cut at ``cuts`` (until the reader is done), as reads would."""
    reader = ResponseReader(limit)
    bounds = [*sorted({c for c in cuts or [] if 0 < c < len(data)}), len(data)]
    start = 0
    for end in bounds:
        if reader.done:
            break
        reader.feed(data[start:end])
        start = end
    if eof:
        reader.feed_eof()
    return reader


def chunked(body: bytes, sizes: list[int], trailers: bytes = b"") -> bytes:
    out, start = [], 0
    for size in sizes:
        piece = body[start:start + size]
        if not piece:
            break
        out.append(b"%x\r\n%s\r\n" % (len(piece), piece))
        start += len(piece)
    if start < len(body):
        out.append(b"%x\r\n%s\r\n" % (len(body) - start, body[start:]))
    return b"".join(out) + b"0\r\n" + trailers + b"\r\n"


cuts = st.lists(st.integers(min_value=1, max_value=400), max_size=8)


@given(body=st.binary(max_size=600), sizes=st.lists(st.integers(1, 64), max_size=12),
       cuts=cuts, extension=st.sampled_from([b"", b";name=value"]),
       trailers=st.sampled_from([b"", b"x-trailer: 1\r\n"]))
def test_a_chunked_answer_is_complete_and_reusable_however_it_is_split_or_chunked(
    body: bytes, sizes: list[int], cuts: list[int], extension: bytes, trailers: bytes,
) -> None:
    framed = chunked(body, sizes, trailers)
    if extension:
        framed = framed.replace(b"\r\n", extension + b"\r\n", 1)
    data = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + framed
    reader = read(data, cuts)
    assert (reader.status, reader.complete, reader.reusable) == (200, True, True)


@given(body=st.binary(min_size=LIMIT + 1, max_size=3 * LIMIT), cuts=cuts,
       chunk=st.booleans())
def test_a_body_past_the_limit_stops_the_reading_and_the_connection(
    body: bytes, cuts: list[int], chunk: bool,
) -> None:
    framing = b"Transfer-Encoding: chunked\r\n\r\n" + chunked(body, [100] * 40) if chunk \
        else b"Content-Length: %d\r\n\r\n" % len(body) + body
    reader = read(b"HTTP/1.1 200 OK\r\n" + framing, cuts)
    assert reader.done and reader.overflowed and not reader.reusable
    assert reader.status == 200


@given(value=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7e), min_size=1,
                     max_size=40),
       name=st.sampled_from([b"Retry-After", b"retry-after", b"RETRY-AFTER"]),
       padding=st.sampled_from([b"", b" ", b"  ", b"\t"]), cuts=cuts)
def test_retry_after_is_read_whatever_its_case_padding_or_split(
    value: str, name: bytes, padding: bytes, cuts: list[int],
) -> None:
    data = (b"HTTP/1.1 429 Too Many Requests\r\nx-other: a\r\n" + name + b":" + padding +
            value.encode() + padding + b"\r\nContent-Length: 0\r\n\r\n")
    reader = read(data, cuts)
    assert (reader.status, reader.retry_after, reader.complete) == (429, value, True)


@given(status=st.integers(200, 599), cuts=cuts)
def test_the_status_is_the_answers(status: int, cuts: list[int]) -> None:
    reader = read(b"HTTP/1.1 %d Whatever\r\nContent-Length: 2\r\n\r\nok" % status, cuts)
    assert (reader.status, reader.complete) == (status, True)


@pytest.mark.parametrize("connection", [b"Connection: close\r\n", b"connection: Close\r\n",
                                        b"Connection: keep-alive, close\r\n"])
def test_connection_close_is_honoured(connection: bytes) -> None:
    reader = read(b"HTTP/1.1 200 OK\r\n" + connection + b"Content-Length: 0\r\n\r\n")
    assert reader.complete and not reader.reusable


def test_http_1_0_is_kept_alive_only_when_it_says_so() -> None:
    assert not read(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").reusable
    assert read(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n"
                ).reusable


def test_an_answer_without_length_ends_with_the_connection() -> None:
    reader = read(b"HTTP/1.1 200 OK\r\n\r\nsome body")
    assert reader.status == 200 and not reader.done
    reader.feed_eof()
    assert reader.complete and not reader.reusable


def test_204_and_304_have_no_body() -> None:
    for status in (204, 304):
        reader = read(b"HTTP/1.1 %d X\r\n\r\n" % status)
        assert reader.complete and reader.reusable


def test_interim_answers_are_skipped_with_their_headers() -> None:
    reader = read(b"HTTP/1.1 100 Continue\r\nRetry-After: 9\r\n\r\n"
                  b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
                  b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n")
    assert (reader.status, reader.retry_after, reader.complete) == (503, None, True)


def test_bytes_after_the_answer_make_the_connection_unfit() -> None:
    second = read(b"HTTP/1.1 204 A\r\n\r\nHTTP/1.1 204 B\r\n\r\n")
    garbage = read(b"HTTP/1.1 204 A\r\n\r\n\x00\x01garbage")
    for reader in (second, garbage):
        assert reader.complete and reader.status == 204 and not reader.reusable


@pytest.mark.parametrize("data", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
    b"HTTP/1.1 200 OK\r\nContent-Le",
    b"",
])
def test_a_close_before_the_answer_is_complete_is_malformed(data: bytes) -> None:
    with pytest.raises(MalformedResponse, match="before the answer was complete"):
        read(data, eof=True)


@pytest.mark.parametrize("data", [
    b"SMTP ready\r\n\r\n",
    b"HTTP/1.1 2x0 OK\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
])
def test_what_is_not_http_is_malformed(data: bytes) -> None:
    with pytest.raises(MalformedResponse, match=r"not HTTP/1\.1"):
        read(data)


def test_a_head_without_end_is_cut_off() -> None:
    reader = ResponseReader(LIMIT)
    reader.feed(b"HTTP/1.1 200 OK\r\n")
    with pytest.raises(MalformedResponse, match="head is over"):
        for _ in range(HEAD_LIMIT // 1000 + 2):
            reader.feed(b"x-filler: " + b"a" * 988 + b"\r\n")


@given(cuts=cuts)
def test_one_reader_parses_answer_after_answer(cuts: list[int]) -> None:
    reader = ResponseReader(LIMIT)
    for status, body in ((200, b"a"), (500, b""), (201, b"ccc")):
        reader.begin()
        data = b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n%s" % (status, len(body), body)
        start = 0
        for end in [*sorted({c for c in cuts if c < len(data)}), len(data)]:
            reader.feed(data[start:end])
            start = end
        assert (reader.status, reader.complete, reader.reusable) == (status, True, True)
