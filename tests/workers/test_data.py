"""The data worker's tools, in memory."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError

from shared.protocol import decode_tool_error
from shared.settings import WorkerSettings
from workers import data

SCHEMA = {
    "type": "object",
    "required": ["id", "age"],
    "properties": {"id": {"type": "integer"}, "age": {"type": "integer", "minimum": 0}},
}


@pytest.fixture
async def client() -> Any:
    async with Client(data.build(WorkerSettings(redis_url=None)).server) as c:
        yield c


def big(n: int = 100_000) -> list[dict[str, Any]]:
    rng = random.Random(7)
    return [
        {
            "id": i,
            "age": rng.randint(0, 99) if i % 10 else None,
            "city": rng.choice(["Oslo", "Lima", "Pune"]),
            "score": str(rng.random()),
        }
        for i in range(n)
    ]


async def call(client: Any, tool: str, args: dict[str, Any]) -> Any:
    return (await client.call_tool(tool, args)).structured_content


async def error(client: Any, tool: str, args: dict[str, Any]) -> Any:
    with pytest.raises(ToolError) as caught:
        await client.call_tool(tool, args)
    return decode_tool_error(str(caught.value))


async def test_validate_records_reports_each_problem_with_its_path(client: Any) -> None:
    records = [{"id": 1, "age": 3}, {"id": "x", "age": -1}, {"age": 5}]
    out = await call(client, "validate_records", {"records": records, "schema": SCHEMA})
    assert (out["total"], out["valid"], out["invalid"]) == (3, 1, 2)
    paths = sorted(e["path"] for e in out["errors"])
    assert paths == ["records[1].age", "records[1].id", "records[2]"]
    assert out["truncated"] is False
    out = await call(
        client, "validate_records", {"records": records, "schema": SCHEMA, "max_errors": 1}
    )
    assert len(out["errors"]) == 1 and out["truncated"] is True


async def test_validate_records_refuses_an_invalid_schema(client: Any) -> None:
    err = await error(client, "validate_records", {"records": [{}], "schema": {"type": 5}})
    assert err.code == "INVALID_INPUT" and err.field.startswith("schema")


async def test_transform_rules_rename_cast_filter_derive_drop_select(client: Any) -> None:
    records = [
        {"n": "Ada", "age": "36", "qty": 2, "price": 1.5, "tmp": 1},
        {"n": "Bob", "age": "x", "qty": 1, "price": 4.0},
        {"n": "Cy", "age": "12", "qty": 3, "price": 2.0},
    ]
    rules = [
        {"op": "rename", "field": "n", "to": "name"},
        {"op": "cast", "field": "age", "to": "int", "on_error": "null"},
        {"op": "filter", "field": "age", "cmp": "exists"},
        {"op": "derive", "field": "total", "fn": "mul",
         "args": [{"field": "qty"}, {"field": "price"}]},
        {"op": "derive", "field": "tag", "fn": "concat",
         "args": [{"field": "name"}, {"value": "!"}]},
        {"op": "filter", "field": "age", "cmp": "ge", "value": 18},
        {"op": "drop", "fields": ["tmp"]},
        {"op": "select", "fields": ["name", "age", "total", "tag"]},
    ]  # fmt: skip
    out = await call(client, "transform_records", {"records": records, "rules": rules})
    assert out["records"] == [{"name": "Ada", "age": 36, "total": 3.0, "tag": "Ada!"}]
    assert (out["total_in"], out["total_out"], out["dropped"]) == (3, 1, 2)
    assert records[0]["n"] == "Ada"  # inputs untouched


async def test_transform_errors_name_the_rule_or_record_field(client: Any) -> None:
    recs = [{"age": "1"}, {"age": "old"}]
    err = await error(client, "transform_records", {"records": recs, "rules": [{"op": "nope"}]})
    assert (err.code, err.field) == ("INVALID_INPUT", "rules[0].op")
    bad_to = [{"op": "cast", "field": "age", "to": "date"}]
    err = await error(client, "transform_records", {"records": recs, "rules": bad_to})
    assert (err.code, err.field) == ("INVALID_INPUT", "rules[0].to")
    cast = [{"op": "cast", "field": "age", "to": "int"}]
    err = await error(client, "transform_records", {"records": recs, "rules": cast})
    assert (err.code, err.field) == ("TRANSFORM_FAILED", "records[1].age")
    err = await error(client, "transform_records", {"records": recs, "rules": []})
    assert (err.code, err.field) == ("INVALID_INPUT", "rules")
    blank = [{"op": "rename", "field": "age", "to": " "}]
    err = await error(client, "transform_records", {"records": recs, "rules": blank})
    assert (err.code, err.field) == ("INVALID_INPUT", "rules[0].to")


async def test_profile_dataset_statistics(client: Any) -> None:
    records = [{"a": 1, "b": "x"}, {"a": 3, "b": "x"}, {"a": None, "b": "y"}, {"b": True}]
    out = await call(client, "profile_dataset", {"records": records, "top_n": 2})
    a, b = out["fields"]["a"], out["fields"]["b"]
    assert out["total_records"] == 4
    assert (a["count"], a["nulls"], a["min"], a["max"], a["mean"]) == (2, 2, 1, 3, 2)
    assert a["stddev"] == pytest.approx(2**0.5)
    assert b["types"] == {"string": 3, "boolean": 1}
    assert b["top_values"][0] == {"value": "x", "count": 2}
    assert b["min"] is None and b["distinct"] == 3


async def test_100k_records_profile_and_transform_with_progress(client: Any) -> None:
    records = big()
    events: list[float] = []

    async def on_progress(p: float, t: float | None, m: str | None) -> None:
        events.append(p)

    result = await client.call_tool(
        "profile_dataset", {"records": records}, progress_handler=on_progress
    )
    fields = result.structured_content["fields"]
    assert fields["id"]["count"] == 100_000 and fields["age"]["nulls"] == 10_000
    assert events == sorted(events) and events[-1] == 100_000 and len(events) == 20

    rules = [
        {"op": "cast", "field": "score", "to": "float"},
        {"op": "filter", "field": "city", "cmp": "eq", "value": "Oslo"},
    ]
    result = await client.call_tool("transform_records", {"records": records, "rules": rules})
    out = result.structured_content
    assert out["total_in"] == 100_000
    assert 30_000 < out["total_out"] < 37_000
    assert all(isinstance(r["score"], float) for r in out["records"][:100])


async def test_too_many_records_is_too_large(client: Any) -> None:
    err = await error(client, "profile_dataset", {"records": [{}] * 200_001})
    assert (err.code, err.field) == ("TOO_LARGE", "records")


async def test_a_long_profile_can_be_cancelled(client: Any) -> None:
    records = big(100_000)
    started = asyncio.Event()

    async def on_progress(*_: Any) -> None:
        started.set()

    call = asyncio.create_task(
        client.call_tool("validate_records", {"records": records, "schema": SCHEMA},
                         progress_handler=on_progress)
    )  # fmt: skip
    await asyncio.wait_for(started.wait(), 10)
    call.cancel()
    results = await asyncio.gather(call, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError)
