"""The text worker's tools, in memory."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError

from shared.protocol import decode_tool_error
from shared.settings import WorkerSettings
from workers import text
from workers.text.chunking import chunk_spans

TEXT = (
    "Redis is an in-memory data store. Redis is used as a cache and a message broker. "
    "It supports streams.\n\n"
    "Workers register in Redis with a heartbeat. The supervisor reads worker registrations "
    "and routes jobs to the least loaded worker.\n\n"
    "Chunking splits long text into pieces! Does each piece fit a context window? Yes."
)


@pytest.fixture
async def client() -> Any:
    async with Client(text.build(WorkerSettings(redis_url=None)).server) as c:
        yield c


async def call(client: Any, tool: str, args: dict[str, Any]) -> Any:
    return (await client.call_tool(tool, args)).structured_content


async def test_text_stats(client: Any) -> None:
    out = await call(client, "text_stats", {"text": TEXT})
    assert out["sentences"] == 8 and out["paragraphs"] == 3
    assert out["words"] == len(TEXT.split()) == 53
    assert 0 < out["lexical_diversity"] <= 1
    assert out["flesch_reading_ease"] is not None


async def test_extract_keywords_is_deterministic(client: Any) -> None:
    first = await call(client, "extract_keywords", {"text": TEXT, "top_n": 3})
    again = await call(client, "extract_keywords", {"text": TEXT, "top_n": 3})
    assert first == again
    terms = [k["term"] for k in first["keywords"]]
    assert terms[0] == "redis" and first["keywords"][0]["score"] == 1.0
    assert "worker" in terms or "loaded worker" in terms or "workers" in terms


async def test_summarize_keeps_text_order(client: Any) -> None:
    out = await call(client, "summarize", {"text": TEXT, "max_sentences": 2})
    indexes = [s["index"] for s in out["sentences"]]
    assert len(indexes) == 2 and indexes == sorted(indexes)
    assert out["total_sentences"] == 8
    assert all(s["text"] in TEXT for s in out["sentences"])
    assert 0 < out["compression"] < 1


async def test_chunk_text_offsets_limits_overlap_and_progress(client: Any) -> None:
    steps: list[str | None] = []

    async def on_progress(p: float, t: float | None, m: str | None) -> None:
        steps.append(m)

    result = await client.call_tool(
        "chunk_text", {"text": TEXT, "max_chars": 100, "overlap": 20}, progress_handler=on_progress
    )
    out = result.structured_content
    chunks = out["chunks"]
    assert out["count"] == len(chunks) > 2
    for chunk in chunks:
        assert len(chunk["text"]) <= 100
        assert TEXT[chunk["start"] : chunk["end"]] == chunk["text"]
    for prev, nxt in itertools.pairwise(chunks):
        assert nxt["start"] < prev["end"]  # overlap
    assert steps == [f"chunk {i}/{len(chunks)}" for i in range(1, len(chunks) + 1)]


def test_chunking_covers_the_text_and_cuts_giant_words() -> None:
    body = "word " * 50 + "x" * 250 + " end."
    spans = list(chunk_spans(body, max_chars=60, overlap=0, respect="paragraph"))
    assert all(e - s <= 60 for s, e in spans)
    joined = "".join(body[s:e] for s, e in spans).replace(" ", "")
    assert joined == body.replace(" ", "")


@pytest.mark.parametrize(
    ("args", "code", "field"),
    [
        ({"text": "   "}, "INVALID_INPUT", "text"),
        ({"text": "a\x00b"}, "INVALID_INPUT", "text"),
        ({"text": "abc", "max_chars": 10}, "INVALID_INPUT", "max_chars"),
        ({"text": "abc", "max_chars": 100, "overlap": 60}, "INVALID_INPUT", "overlap"),
        ({"text": "x" * 2_000_001}, "TOO_LARGE", "text"),
    ],
)
async def test_text_validation_errors(
    client: Any, args: dict[str, Any], code: str, field: str
) -> None:
    with pytest.raises(ToolError) as caught:
        await client.call_tool("chunk_text", args)
    err = decode_tool_error(str(caught.value))
    assert (err.code, err.field) == (code, field)
