"""One test per WHATWG event-stream rule that shared.sse implements, under every chunking."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from shared.sse import ServerSentEvent, SSEParser


def _whole(raw: bytes) -> list[bytes]:
    return [raw]


def _bytewise(raw: bytes) -> list[bytes]:
    return [raw[i : i + 1] for i in range(len(raw))]


def _odd(raw: bytes) -> list[bytes]:
    return [raw[i : i + 7] for i in range(0, len(raw), 7)]


Split = Callable[[bytes], list[bytes]]


@pytest.fixture(params=[_whole, _bytewise, _odd], ids=["whole", "bytewise", "chunks-of-7"])
def split(request: pytest.FixtureRequest) -> Split:
    fn: Split = request.param
    return fn


def parse(raw: bytes, split: Split) -> list[ServerSentEvent]:
    parser = SSEParser()
    out: list[ServerSentEvent] = []
    for chunk in split(raw):
        out.extend(parser.feed(chunk))
    return out


def test_simple_event(split: Split) -> None:
    assert parse(b"data: hello\n\n", split) == [ServerSentEvent(data="hello")]


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"], ids=["LF", "CRLF", "CR"])
def test_every_line_ending(split: Split, eol: bytes) -> None:
    raw = b"event: a" + eol + b"data: 1" + eol + b"data: 2" + eol + eol + b"data: 3" + eol + eol
    assert parse(raw, split) == [
        ServerSentEvent(data="1\n2", event="a"),
        ServerSentEvent(data="3"),
    ]


def test_crlf_split_across_chunks_is_one_line_ending() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: x\r") == []
    assert parser.feed(b"\n\r") == [ServerSentEvent(data="x")]
    assert parser.feed(b"\ndata: y\r\n\r\n") == [ServerSentEvent(data="y")]


def test_multi_line_data_joined_with_lf(split: Split) -> None:
    raw = b'data: {"a":\ndata: 1}\n\n'
    assert parse(raw, split) == [ServerSentEvent(data='{"a":\n1}')]


def test_comments_are_ignored(split: Split) -> None:
    raw = b": keep-alive\n:\ndata: x\n: inside\n\n"
    assert parse(raw, split) == [ServerSentEvent(data="x")]


def test_one_leading_space_dropped_and_no_colon_means_empty_value(split: Split) -> None:
    raw = b"data:  two spaces\n\ndata:none\n\ndata\ndata\n\n"
    assert parse(raw, split) == [
        ServerSentEvent(data=" two spaces"),
        ServerSentEvent(data="none"),
        ServerSentEvent(data="\n"),
    ]


def test_value_keeps_later_colons(split: Split) -> None:
    assert parse(b"data: a: b:c\n\n", split) == [ServerSentEvent(data="a: b:c")]


def test_empty_data_buffer_dispatches_nothing_and_resets_type(split: Split) -> None:
    raw = b"event: ping\n\nid: 5\n\ndata: x\n\n"
    assert parse(raw, split) == [ServerSentEvent(data="x", id="5")]


def test_empty_data_field_still_dispatches(split: Split) -> None:
    assert parse(b"id: 1\ndata:\n\n", split) == [ServerSentEvent(data="", id="1")]


def test_id_persists_and_nul_is_ignored(split: Split) -> None:
    raw = b"id: 7\ndata: a\n\ndata: b\n\nid: x\0y\ndata: c\n\nid\ndata: d\n\n"
    assert [(e.data, e.id) for e in parse(raw, split)] == [
        ("a", "7"),
        ("b", "7"),
        ("c", "7"),
        ("d", ""),
    ]


def test_retry_only_when_all_digits(split: Split) -> None:
    raw = b"retry: 10x\ndata: a\n\nretry: 2500\ndata: b\n\n"
    assert [e.retry for e in parse(raw, split)] == [None, 2500]


def test_unknown_fields_ignored(split: Split) -> None:
    assert parse(b"foo: bar\ndata: x\nDATA: y\n\n", split) == [ServerSentEvent(data="x")]


def test_bom_dropped_at_start_only(split: Split) -> None:
    raw = b"\xef\xbb\xbfdata: a\n\n\xef\xbb\xbfdata: b\n\n"
    # the second BOM is part of a field name, so that line is an unknown field
    assert parse(raw, split) == [ServerSentEvent(data="a")]


def test_incomplete_event_at_end_is_not_dispatched(split: Split) -> None:
    assert parse(b"data: a\n\ndata: cut", split) == [ServerSentEvent(data="a")]
    assert parse(b"data: a\n\ndata: b\n", split) == [ServerSentEvent(data="a")]


def test_utf8_is_decoded_with_replacement(split: Split) -> None:
    raw = "data: é→✓\n\n".encode() + b"data: \xff\n\n"
    assert [e.data for e in parse(raw, split)] == ["é→✓", "\ufffd"]


def test_no_length_limit() -> None:
    payload = b"x" * (10 * 1024 * 1024)
    raw = b"data: " + payload + b"\n\n"
    parser = SSEParser()
    events = []
    for i in range(0, len(raw), 65536):
        events.extend(parser.feed(raw[i : i + 65536]))
    assert len(events) == 1
    assert len(events[0].data) == len(payload)
