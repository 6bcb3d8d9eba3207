"""The kit's behaviour through a real FastMCP server, in memory (``fastmcp.Client(server)``)."""

from __future__ import annotations

import asyncio
import gc
import json
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError

from examples import hello_worker
from shared.protocol import (
    META_ATTEMPT,
    META_CORRELATION_ID,
    META_IDEMPOTENCY_KEY,
    META_JOB_ID,
    decode_tool_error,
)
from shared.settings import WorkerSettings
from tests.helpers import wait_until
from tests.workers.conftest import LogLines
from workers import echo
from workers.kit import Context, Toolset, Worker
from workers.kit.idempotency import _ENTRY_OVERHEAD_BYTES, MemoryIdempotency

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = f"00-{TRACE_ID}-b7ad6b7169203331-01"


def settings(**kw: Any) -> WorkerSettings:
    return WorkerSettings(redis_url=None, advertise_url=None, worker_token=None, **kw)


def error_of(exc: BaseException) -> Any:
    return decode_tool_error(str(exc))


async def test_progress_arrives_in_order_while_the_tool_runs() -> None:
    worker = echo.build(settings())
    seen: list[tuple[float, float | None, str | None]] = []
    first = asyncio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))
        first.set()

    async with Client(worker.server) as client:
        call = asyncio.create_task(
            client.call_tool("progress", {"steps": 5, "delay_ms": 20}, progress_handler=on_progress)
        )
        await asyncio.wait_for(first.wait(), 5)
        assert not call.done(), "progress must arrive before the result"
        result = await call
    assert result.data == {"steps": 5}
    assert [p for p, _, _ in seen] == [1, 2, 3, 4, 5]
    assert [m for _, _, m in seen] == [f"step {i}/5" for i in range(1, 6)]
    assert {t for _, t, _ in seen} == {5}


async def test_correlation_id_is_on_tool_lines_and_on_the_summary(logs: LogLines) -> None:
    tools = Toolset()

    @tools.tool()
    async def chatty(ctx: Context) -> dict[str, bool]:
        """Logs a line."""
        import structlog

        structlog.get_logger("test").info("inside.tool", detail=1)
        return {"ok": True}

    worker = Worker("chatty", tools=tools, settings=settings())
    meta = {
        META_CORRELATION_ID: "corr-123",
        META_JOB_ID: "job-9",
        META_ATTEMPT: 2,
        "traceparent": TRACEPARENT,
    }
    async with Client(worker.server) as client:
        await client.call_tool("chatty", {}, meta=meta)
    inside = logs.events("inside.tool")
    summary = logs.events("tool.call")
    assert inside and inside[0]["correlation_id"] == "corr-123"
    assert inside[0]["job_id"] == "job-9" and inside[0]["attempt"] == 2
    assert inside[0]["trace_id"] == TRACE_ID
    assert summary[0]["correlation_id"] == "corr-123"
    assert summary[0]["tool"] == "chatty" and summary[0]["outcome"] == "ok"
    assert isinstance(summary[0]["duration_ms"], float)


async def test_a_call_without_correlation_id_gets_one(logs: LogLines) -> None:
    async with Client(echo.build(settings()).server) as client:
        await client.call_tool("noop", {})
    (line,) = logs.events("tool.call")
    assert len(line["correlation_id"]) == 32


async def test_busy_at_once_when_the_tool_is_saturated() -> None:
    worker = echo.build(settings(max_concurrency=1))
    async with Client(worker.server) as client:
        started = asyncio.Event()

        async def on_progress(*_: Any) -> None:
            started.set()

        first = asyncio.create_task(
            client.call_tool("sleep", {"seconds": 30, "steps": 300}, progress_handler=on_progress)
        )
        await asyncio.wait_for(started.wait(), 5)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(ToolError) as caught:
            await client.call_tool("sleep", {"seconds": 0})
        assert loop.time() - t0 < 1.0, "BUSY must be immediate, not queued"
        err = error_of(caught.value)
        assert err.code == "BUSY" and err.retryable is True
        # Other tools have their own limits.
        assert (await client.call_tool("noop", {})).data == {"ok": True}
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
        await wait_until(lambda: worker.runtime.tracker.in_flight == 0, 5, message="slot freed")
        assert (await client.call_tool("sleep", {"seconds": 0})).data == {"slept": 0}


async def test_cancellation_stops_the_tool_and_frees_its_slot() -> None:
    worker = echo.build(settings(max_concurrency=1))
    progress: list[float] = []
    async with Client(worker.server) as client:
        call = asyncio.create_task(
            client.call_tool(
                "sleep",
                {"seconds": 5, "steps": 100},
                progress_handler=lambda p, t, m: _append(progress, p),
            )
        )
        await wait_until(lambda: len(progress) >= 2, 5, message="tool running")
        call.cancel()
        await asyncio.gather(call, return_exceptions=True)
        await wait_until(lambda: worker.runtime.tracker.in_flight == 0, 2, message="stopped")
        stopped_at = len(progress)
        assert not worker.runtime.tracker.tasks
        # The tool really stopped: no more progress, and the slot is free for the next call.
        assert (await client.call_tool("sleep", {"seconds": 0.01, "steps": 1})).data
        assert len(progress) == stopped_at < 100


async def _append(target: list[float], value: float) -> None:
    target.append(value)


async def test_idempotent_replay_returns_the_stored_result_without_running() -> None:
    runs = 0
    tools = Toolset()

    @tools.tool()
    async def count() -> dict[str, int]:
        """Counts its runs."""
        nonlocal runs
        runs += 1
        return {"run": runs}

    worker = Worker("counter", tools=tools, settings=settings())
    async with Client(worker.server) as client:
        meta = {META_IDEMPOTENCY_KEY: "key-1"}
        first = await client.call_tool("count", {}, meta=meta)
        again = await client.call_tool("count", {}, meta=meta)
        other = await client.call_tool("count", {}, meta={META_IDEMPOTENCY_KEY: "key-2"})
        plain = await client.call_tool("count", {})
    assert first.data == again.data == {"run": 1}
    assert other.data == {"run": 2} and plain.data == {"run": 3}
    assert runs == 3


async def test_concurrent_duplicates_wait_for_the_first_call() -> None:
    runs = 0
    gate = asyncio.Event()
    tools = Toolset()

    @tools.tool(max_concurrency=10)
    async def slow(x: int) -> dict[str, int]:
        """Runs once per key."""
        nonlocal runs
        runs += 1
        await gate.wait()
        return {"x": x, "run": runs}

    worker = Worker("dupes", tools=tools, settings=settings())
    async with Client(worker.server) as client:
        meta = {META_IDEMPOTENCY_KEY: "same"}
        calls = [
            asyncio.create_task(client.call_tool("slow", {"x": 1}, meta=meta)) for _ in range(5)
        ]
        await wait_until(lambda: runs == 1, 5, message="first call running")
        await asyncio.sleep(0)  # let the duplicates reach their wait
        assert not any(c.done() for c in calls)
        gate.set()
        results = await asyncio.gather(*calls)
    assert runs == 1
    assert all(r.data == {"x": 1, "run": 1} for r in results)


async def test_the_result_cache_is_bounded_in_bytes_least_recently_used_first(
    logs: LogLines,
) -> None:
    runs = 0
    tools = Toolset()

    @tools.tool()
    async def blob(size: int) -> dict[str, Any]:
        """A result of about ``size`` bytes (stored twice: as text and as structured)."""
        nonlocal runs
        runs += 1
        return {"run": runs, "data": "x" * size}

    # One 10 kB result costs ~20 kB: two fit in 50 kB, three do not.
    worker = Worker("blobs", tools=tools, settings=settings(idempotency_cache_bytes=50_000))
    store = worker.runtime.idempotency
    assert isinstance(store, MemoryIdempotency)
    async with Client(worker.server) as client:

        async def run(key: str, size: int = 10_000) -> int:
            meta = {META_IDEMPOTENCY_KEY: key}
            result = await client.call_tool("blob", {"size": size}, meta=meta)
            return int(result.data["run"])

        assert [await run("a"), await run("b"), await run("a")] == [1, 2, 1]
        assert await run("c") == 3  # evicts b, the least recently used (a was just replayed)
        assert len(store) == 2 and store.bytes <= 50_000
        assert [await run("a"), await run("b")] == [1, 4]
        assert [await run("huge", 30_000), await run("huge", 30_000)] == [5, 6]
        assert len(store) == 2 and store.bytes <= 50_000  # the oversize one evicted nothing
    skipped = logs.events("idempotency.result_not_stored")
    assert len(skipped) == 2
    assert all(e["limit_bytes"] == 50_000 < e["bytes"] for e in skipped)


async def test_stored_results_expire_and_are_never_walked_by_the_collector() -> None:
    """A busy worker keeps ~100,000 results; held in a container the garbage collector walks
    (tuples in a dict, an OrderedDict), every full collection walked them all and each call
    cost ~20 % more CPU as the store filled (./run bench's kit row, measured). Strings only,
    in a plain dict, are never walked; the store still answers, ages and evicts as before."""
    store = MemoryIdempotency(0.2, max_bytes=10_000, max_result_bytes=5_000)
    for i in range(20):
        await store.put(f"k{i}", f'{{"r":{i}}}|with a bar')
    assert not gc.is_tracked(store._done)
    assert len(store) == 20 and await store.get("k3") == '{"r":3}|with a bar'
    await store.put("big", "x" * 9_000)  # over max_result_bytes: not stored, nothing evicted
    assert len(store) == 20
    before = store.bytes
    await store.put("k3", "shorter")
    assert store.bytes == before - len('{"r":3}|with a bar') + len("shorter")
    expired = asyncio.get_running_loop().time() + 0.25
    await wait_until(lambda: asyncio.get_running_loop().time() > expired, message="the TTL")
    held = store.bytes
    assert await store.get("k5") is None and len(store) == 19  # an expired one is dropped
    assert store.bytes == held - (len("k5") + len('{"r":5}|with a bar') + _ENTRY_OVERHEAD_BYTES)


async def test_failures_are_not_stored_and_key_reuse_with_other_arguments_conflicts() -> None:
    worker = echo.build(settings())
    async with Client(worker.server) as client:
        meta = {META_IDEMPOTENCY_KEY: "k-fail"}
        for _ in range(2):  # both attempts run (and fail): nothing was stored
            with pytest.raises(ToolError) as caught:
                await client.call_tool("fail", {"code": "NOPE"}, meta=meta)
            assert error_of(caught.value).code == "NOPE"
        meta = {META_IDEMPOTENCY_KEY: "k-echo"}
        await client.call_tool("echo", {"value": 1}, meta=meta)
        with pytest.raises(ToolError) as caught:
            await client.call_tool("echo", {"value": 2}, meta=meta)
        assert error_of(caught.value).code == "IDEMPOTENCY_CONFLICT"


@pytest.mark.parametrize(
    ("tool", "args", "field"),
    [
        ("sleep", {"seconds": "soon"}, "seconds"),
        ("sleep", {"seconds": 301}, "seconds"),
        ("sleep", {}, "seconds"),
        ("progress", {"steps": 1, "bogus": 1}, "bogus"),
        ("fail", {"code": "lower case"}, "code"),
    ],
)
async def test_schema_errors_are_structured_and_name_the_field(
    tool: str, args: dict[str, Any], field: str
) -> None:
    async with Client(echo.build(settings()).server) as client:
        with pytest.raises(ToolError) as caught:
            await client.call_tool(tool, args)
    err = error_of(caught.value)
    assert err.code == "INVALID_INPUT"
    assert err.field == field
    assert err.hint and err.retryable is False


async def test_unexpected_exceptions_are_masked_as_internal(logs: LogLines) -> None:
    tools = Toolset()

    @tools.tool()
    async def crash() -> dict[str, int]:
        """Crashes."""
        raise RuntimeError("secret database password in message")

    async with Client(Worker("crashy", tools=tools, settings=settings()).server) as client:
        with pytest.raises(ToolError) as caught:
            await client.call_tool("crash", {}, meta={META_CORRELATION_ID: "c-crash"})
    err = error_of(caught.value)
    assert err.code == "INTERNAL"
    assert "secret" not in str(caught.value)
    crashed = logs.events("tool.crashed")
    assert crashed and crashed[0]["correlation_id"] == "c-crash"
    assert "secret database password" in crashed[0]["exception"]


async def test_fail_tool_carries_code_message_and_retryable() -> None:
    async with Client(echo.build(settings()).server) as client:
        with pytest.raises(ToolError) as caught:
            await client.call_tool("fail", {"code": "FLAKY", "message": "m", "retryable": True})
    err = error_of(caught.value)
    assert (err.code, err.message, err.retryable) == ("FLAKY", "m", True)


async def test_echo_tools_answer() -> None:
    async with Client(echo.build(settings()).server) as client:
        assert (await client.call_tool("noop", {})).data == {"ok": True}
        value = {"a": [1, 2.5, None, "x"], "b": {"c": True}}
        assert (await client.call_tool("echo", {"value": value})).structured_content == {
            "value": value
        }
        assert (await client.call_tool("sleep", {"seconds": 0.01, "steps": 2})).data == {
            "slept": 0.01
        }


async def test_draining_worker_refuses_new_calls_as_retryable() -> None:
    worker = echo.build(settings())
    async with Client(worker.server) as client:
        worker.runtime.draining = True
        with pytest.raises(ToolError) as caught:
            await client.call_tool("noop", {})
    err = error_of(caught.value)
    assert err.code == "SHUTTING_DOWN" and err.retryable


async def test_the_readme_example_works_in_memory() -> None:
    worker = hello_worker.build(settings())
    steps: list[str | None] = []

    async def on_progress(p: float, t: float | None, m: str | None) -> None:
        steps.append(m)

    async with Client(worker.server) as client:
        result = await client.call_tool(
            "greet", {"name": "Ada", "times": 2}, progress_handler=on_progress
        )
        assert result.data == {"greeting": "Hello, Ada! Hello, Ada!"}
        assert steps == ["greeted Ada", "greeted Ada"]
        with pytest.raises(ToolError) as caught:
            await client.call_tool("greet", {"name": "   "})
        assert error_of(caught.value).field == "name"
        caps = (await client.call_tool("get_capabilities", {})).structured_content
    assert caps is not None and caps["service_name"] == "hello"
    assert json.dumps(caps)  # plain JSON


def test_the_readme_example_is_under_30_lines() -> None:
    source = Path(hello_worker.__file__).read_text()
    assert len(source.splitlines()) < 30
