"""The SSE parser against the WHATWG rules and against the hub's own frames."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from callhub.client.sse_parser import SseComment, SseEvent, SseItem, SseParser
from hub.stream import frames as sse


def parse(*chunks: bytes, last_event_id: str = "") -> tuple[list[SseItem], SseParser]:
    parser = SseParser(last_event_id)
    items: list[SseItem] = []
    for chunk in chunks:
        items += parser.feed(chunk)
    return items, parser


def events(*chunks: bytes) -> list[SseEvent]:
    return [item for item in parse(*chunks)[0] if isinstance(item, SseEvent)]


def test_the_hubs_frames_parse_back_to_what_was_sent() -> None:
    data = b'{"type":"dtmf_received","digit":"5"}'
    stream = (sse.RETRY + sse.event_frame("c1", b"dtmf_received", data)
              + sse.history_frame(b"speech_final", b"{}") + sse.ping("c2"))
    items, parser = parse(stream)
    assert items == [
        SseEvent("dtmf_received", data, "c1"),
        SseEvent("speech_final", b"{}", "c1"),  # history frames carry no id: the last stays
        SseComment(b"ping"),
    ]
    assert parser.retry_ms == sse.RETRY_MS
    assert parser.last_event_id == "c2"  # the ping's id-only block moved the cursor


def test_multi_line_data_joins_with_lf_and_one_leading_space_is_dropped() -> None:
    assert events(b"data:first\ndata:  second\ndata\n\n") == [
        SseEvent("message", b"first\n second\n", "")
    ]


def test_line_ends_lf_crlf_and_cr_mean_the_same() -> None:
    for end in (b"\n", b"\r\n", b"\r"):
        frame = end.join([b"id: 7", b"event: x", b"data: a", b"data: b", b"", b""])
        assert events(frame) == [SseEvent("x", b"a\nb", "7")], end


def test_a_crlf_split_across_two_reads_ends_one_line() -> None:
    # Were the LF taken for a second line end, it would dispatch the block early
    # and the second data line would become another event.
    assert events(b"data: a\r", b"\ndata: b\r", b"\n\r\n") == [SseEvent("message", b"a\nb", "")]


def test_a_leading_bom_is_dropped_even_split_but_only_at_the_start() -> None:
    assert events(b"\xef\xbb", b"\xbfdata: x\n\n") == [SseEvent("message", b"x", "")]
    # Later, the same bytes are just a (unknown) field name: the line is ignored.
    assert events(b"data: x\n\n\xef\xbb\xbfdata: y\n\n") == [SseEvent("message", b"x", "")]


def test_comments_are_returned_and_dispatch_nothing() -> None:
    items, _ = parse(b": ping\n:no space\n\n")
    assert items == [SseComment(b"ping"), SseComment(b"no space")]


def test_an_id_only_block_moves_the_last_event_id_without_an_event() -> None:
    items, parser = parse(b"id: c9\n\n")
    assert items == []
    assert parser.last_event_id == "c9"


def test_an_id_with_nul_is_ignored_and_an_empty_id_clears_it() -> None:
    _, parser = parse(b"id: a\0b\ndata: x\n\n")
    assert parser.last_event_id == ""
    _, parser = parse(b"id:\ndata: x\n\n", last_event_id="old")
    assert parser.last_event_id == ""


def test_the_id_persists_across_events_until_changed() -> None:
    assert events(b"id: 1\ndata: a\n\ndata: b\n\n") == [
        SseEvent("message", b"a", "1"), SseEvent("message", b"b", "1")
    ]


def test_the_event_type_resets_after_each_dispatch() -> None:
    assert [e.type for e in events(b"event: x\ndata: 1\n\ndata: 2\n\n")] == ["x", "message"]


def test_retry_is_honoured_only_when_all_digits() -> None:
    for value, expected in ((b"2500", 2500), (b"0", 0), (b"-1", None), (b"1.5", None),
                            (b"", None), (b"\xd9\xa3", None)):
        _, parser = parse(b"retry: " + value + b"\n\n")
        assert parser.retry_ms == expected, value


def test_an_incomplete_block_at_the_end_is_not_dispatched_nor_its_id_used() -> None:
    items, parser = parse(b"id: 1\ndata: a\n\nid: 2\ndata: b\n")
    assert items == [SseEvent("message", b"a", "1")]
    assert parser.last_event_id == "1"


def test_a_block_without_data_is_not_an_event_but_empty_data_is() -> None:
    assert events(b"event: x\n\n") == []
    assert events(b"event: x\ndata\n\n") == [SseEvent("x", b"", "")]


def test_unknown_fields_and_lines_without_a_colon_are_ignored() -> None:
    assert events(b"foo: bar\nevent\ndata: x\n\n") == [SseEvent("message", b"x", "")]


def test_a_reconnection_carries_the_last_event_id() -> None:
    _, first = parse(b"id: c5\ndata: x\n\nid: c6\n")  # cut off mid-block
    second = SseParser(first.last_event_id)
    assert second.last_event_id == "c5"
    assert second.feed(b"data: y\n\n") == [SseEvent("message", b"y", "c5")]


lines = st.lists(
    st.sampled_from([b"data: x", b"data:", b"data", b"id: 1", b"id:", b"event: e", b": c",
                     b"retry: 10", b"retry: z", b"", b"data: \xc3\xa9", b"junk"]),
    max_size=20,
)
ends = st.sampled_from([b"\n", b"\r\n", b"\r"])


@given(lines, ends, st.data())
def test_any_split_of_a_stream_parses_like_the_whole(
    body: list[bytes], end: bytes, data: st.DataObject
) -> None:
    stream = b"".join(line + end for line in body)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    whole_items, whole = parse(stream)
    split_items, split = parse(*chunks)
    assert split_items == whole_items
    assert (split.last_event_id, split.retry_ms) == (whole.last_event_id, whole.retry_ms)


@given(lines, ends, ends)
def test_the_line_ending_does_not_change_the_meaning(
    body: list[bytes], first: bytes, second: bytes
) -> None:
    def run(end: bytes) -> tuple[list[SseItem], str, int | None]:
        # A lone CR followed by an empty line would read as CRLF: end the stream
        # with a non-empty line so every ending parses the same lines.
        items, parser = parse(b"".join(line + end for line in [*body, b"junk"]))
        return items, parser.last_event_id, parser.retry_ms

    assert run(first) == run(second)
