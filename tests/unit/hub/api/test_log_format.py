"""JSON log lines: one object per line, request ids, no API keys."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.api.log_format import (
    JsonFormatter,
    RequestIdFilter,
    configure_logging,
    request_id,
    request_id_from,
)


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    access = logging.getLogger("uvicorn.access")
    saved = root.handlers[:], root.level, access.level, access.propagate
    configure_logging("json")
    # Another test's in-process uvicorn may have left it at WARNING, or not
    # propagating (uvicorn's switch for no access log).
    access.setLevel(logging.INFO)
    access.propagate = True
    root.handlers[0].setStream(stream)  # type: ignore[attr-defined]
    yield stream
    root.handlers[:], level, access_level, access.propagate = saved
    root.setLevel(level)
    access.setLevel(access_level)


def test_a_record_is_one_json_object_with_its_request_id(captured: io.StringIO) -> None:
    token = request_id.set("req-42")
    try:
        logging.getLogger("callhub.test").info("hello %s", "world")
    finally:
        request_id.reset(token)
    logging.getLogger("callhub.test").warning("outside a request")
    first, second = (json.loads(line) for line in captured.getvalue().splitlines())
    assert first["message"] == "hello world"
    assert first["request_id"] == "req-42"
    assert first["level"] == "info" and first["logger"] == "callhub.test"
    assert "request_id" not in second


def test_api_keys_in_access_lines_are_masked(captured: io.StringIO) -> None:
    logging.getLogger("uvicorn.access").info(
        '%s - "%s %s HTTP/%s" %d', "127.0.0.1", "GET",
        "/v1/calls/events?api_key=sekrit-value&session_id=a", "1.1", 200)
    (line,) = captured.getvalue().splitlines()
    assert "sekrit" not in line
    assert "api_key=***" in json.loads(line)["message"]


def test_an_exception_is_kept_inside_the_object(captured: io.StringIO) -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("callhub.test").exception("failed")
    (line,) = captured.getvalue().splitlines()
    assert "ValueError: boom" in json.loads(line)["error"]


@given(st.binary(max_size=200))
def test_request_ids_are_sane_tokens_whatever_the_client_sends(header: bytes) -> None:
    rid = request_id_from(header)
    assert 1 <= len(rid) <= 128
    assert all(c.isalnum() or c in "._:-" for c in rid)
    assert rid.isascii()


def test_a_sane_client_request_id_is_kept() -> None:
    assert request_id_from(b"abc-123") == "abc-123"
    assert request_id_from(None) != request_id_from(None)


def test_formatter_without_filter_still_formats() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "plain", None, None)
    RequestIdFilter().filter(record)
    assert json.loads(JsonFormatter().format(record))["message"] == "plain"
