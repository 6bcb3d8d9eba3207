"""Delegation from inside a tool (``workers.kit.Fleet``), against a real supervisor app.

The supervisor (memory store) and kit workers run in this process, over real HTTP: the
delegating tools reach the supervisor through the URL it sends in each call's ``_meta``,
exactly as in production, and their children are dispatched to the workers like any job.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any

import httpx
import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError
from pydantic import Field

from shared import SupervisorSettings
from shared.protocol import META_JOB_ID, decode_tool_error
from shared.serving import serving
from shared.settings import WorkerSettings
from supervisor.app import create_app
from tests.helpers import wait_until
from tests.servers import free_socket
from tests.workers.conftest import served
from workers import text
from workers.kit import (
    ChildFailed,
    Context,
    DelegationError,
    DelegationLimit,
    Fleet,
    Toolset,
    Worker,
    tool_error,
)
from workers.kit.context import read_call_info

ARTICLE = (
    "Redis is an in-memory data store. Redis is used as a cache and a message broker. "
    "It supports streams and consumer groups.\n\n"
    "Workers register in Redis with a heartbeat. The supervisor reads worker registrations "
    "and routes jobs to the least loaded worker. A worker that stops sending heartbeats is "
    "taken out of rotation.\n\n"
    "Chunking splits long text into pieces. Each piece fits a context window. Keywords of "
    "each piece are merged into keywords of the whole text."
)


@dataclass
class Seen:
    """What the test worker's tools saw, keyed by the job id of their call."""

    started: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)


SEEN = Seen()
tools = Toolset()


@tools.tool(idempotent=True, max_concurrency=64)
async def nap(seconds: float, ctx: Context) -> dict[str, float]:
    """Sleep; records its start and its cancellation by job id."""
    job_id = read_call_info(ctx).job_id or "?"
    SEEN.started.append(job_id)
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        SEEN.cancelled.append(job_id)
        raise
    return {"slept": seconds}


@tools.tool(idempotent=True, max_concurrency=64)
async def flaky(index: int, fail_at: int, ctx: Context) -> dict[str, int]:
    """Fail at once when ``index == fail_at``; otherwise sleep until cancelled."""
    if index == fail_at:
        raise tool_error("BOOM", f"item {index} fails")
    await nap(30, ctx)
    return {"index": index}


@tools.tool(max_concurrency=64)
async def fan(
    capability: str,
    inputs: list[dict[str, Any]],
    ctx: Context,
    concurrency: Annotated[int, Field(ge=1)] = 4,
    progress: bool = False,
    return_exceptions: bool = False,
) -> dict[str, Any]:
    """``fleet.map`` over ``capability``; failures (with return_exceptions) as their code."""
    async with Fleet.of(ctx) as fleet:
        results = await fleet.map(
            capability,
            inputs,
            concurrency=concurrency,
            progress=progress,
            return_exceptions=return_exceptions,
        )
        children = list(fleet.submitted)
    shown = [
        {"failed": r.code, "index": r.index} if isinstance(r, ChildFailed) else r for r in results
    ]
    return {"results": shown, "children": children}


@tools.tool(max_concurrency=64)
async def nested(levels: int, ctx: Context) -> dict[str, Any]:
    """Delegate to itself ``levels`` deep: each level runs one child of the next."""
    if levels <= 0:
        return {"levels": 0}
    async with Fleet.of(ctx) as fleet:
        below = await fleet.run("nested", {"levels": levels - 1})
    return {"levels": levels, "below": below}


@tools.tool(max_concurrency=64)
async def pair(words: str, ctx: Context) -> dict[str, Any]:
    """``run`` one child and ``submit`` another, awaited afterwards."""
    async with Fleet.of(ctx) as fleet:
        later = await fleet.submit("text_stats", {"text": words})
        keywords = await fleet.run("extract_keywords", {"text": words, "top_n": 2})
        stats = await later
        return {"keywords": keywords, "words": stats["words"], "later": later.id}


@tools.tool(max_concurrency=64)
async def limited(ctx: Context) -> dict[str, Any]:
    """Submit children until the supervisor refuses one; report the refusal."""
    async with Fleet.of(ctx) as fleet:
        try:
            for _ in range(10):
                await fleet.submit("nap", {"seconds": 30})
        except DelegationLimit as exc:
            return {"limit": exc.limit, "max": exc.max, "parent_id": exc.parent_id}
    return {"limit": None}


@pytest.fixture(autouse=True)
def clean_seen() -> Iterator[None]:
    SEEN.started.clear()
    SEEN.cancelled.clear()
    yield


@dataclass
class Stack:
    api: httpx.AsyncClient
    url: str
    workers: dict[str, Worker]

    async def submit(
        self, capability: str, input: dict[str, Any], **headers: str
    ) -> dict[str, Any]:
        r = await self.api.post(
            "/v1/jobs", json={"capability": capability, "input": input}, headers=headers
        )
        assert r.status_code in (200, 202), r.text
        return dict(r.json())

    async def get(self, job_id: str, wait: float = 0) -> dict[str, Any]:
        r = await self.api.get(f"/v1/jobs/{job_id}", params={"wait": wait} if wait else None)
        assert r.status_code == 200, r.text
        return dict(r.json())

    async def events(self, job_id: str) -> list[dict[str, Any]]:
        import json

        from tests.helpers import aiter_sse

        async with self.api.stream("GET", f"/v1/jobs/{job_id}/events") as r:
            return [json.loads(e.data) async for e in aiter_sse(r)]


@asynccontextmanager
async def fleet_of(supervisor_token: str | None = None, **overrides: Any) -> AsyncIterator[Stack]:
    """The test worker and the text worker, and a supervisor (memory store) calling both."""
    async with AsyncExitStack() as stack:
        mine = WorkerSettings(redis_url=None, supervisor_token=supervisor_token)
        workers = {
            "deleg": Worker("deleg", tools=tools, settings=mine),
            "text": text.build(mine),
        }
        urls = [await stack.enter_async_context(served(w)) for w in workers.values()]
        sock = free_socket()  # bound first: the supervisor names its URL in every call
        settings = SupervisorSettings(
            redis_url="memory://",
            public_url=f"http://127.0.0.1:{sock.getsockname()[1]}",
            workers=",".join(urls),
            probe_interval_s=0.5,
            backoff_initial_s=0.01,
            backoff_max_s=0.1,
            **overrides,
        )
        running = await stack.enter_async_context(serving(create_app(settings), sockets=[sock]))
        base = running.url
        tokens = settings.tokens
        headers = {"Authorization": f"Bearer {tokens[0]}"} if tokens else {}
        api = await stack.enter_async_context(
            httpx.AsyncClient(base_url=base, timeout=30, headers=headers)
        )

        async def healthy() -> bool:
            found = (await api.get("/v1/workers")).json()["workers"]
            return len(found) == 2 and all(w["healthy"] for w in found)

        await wait_until(healthy, timeout=20, message="workers healthy")
        yield Stack(api, base, workers)


@pytest.fixture
async def fleet() -> AsyncIterator[Stack]:
    async with fleet_of() as stack:
        yield stack


async def test_keywords_by_chunk_fans_out_as_children(fleet: Stack) -> None:
    parent = await fleet.submit(
        "keywords_by_chunk", {"text": ARTICLE, "max_chars": 120, "concurrency": 3}
    )
    done = await fleet.get(parent["id"], wait=30)
    assert done["status"] == "succeeded", done
    result = done["result"]
    assert result["chunks"] >= 3
    assert result["keywords"][0]["term"] == "redis"
    # The children: one extract_keywords job per chunk, listed on the parent.
    assert sorted(done["children"]) == sorted(result["child_jobs"])
    assert len(done["children"]) == result["chunks"]
    for child_id in done["children"]:
        child = await fleet.get(child_id)
        assert child["capability"] == "extract_keywords"
        assert child["status"] == "succeeded"
        assert child["parent_id"] == parent["id"]
        assert child["depth"] == 1
        assert child["correlation_id"] == parent["correlation_id"]
    # The parent's progress bar counted its children as they ended.
    progress = [e["data"] for e in await fleet.events(parent["id"]) if e["type"] == "progress"]
    assert progress[-1]["progress"] == progress[-1]["total"] == result["chunks"]
    assert [p["progress"] for p in progress] == sorted(p["progress"] for p in progress)


async def test_map_progress_counts_children_on_the_parent(fleet: Stack) -> None:
    inputs = [{"seconds": 0}] * 3
    parent = await fleet.submit("fan", {"capability": "nap", "inputs": inputs, "progress": True})
    done = await fleet.get(parent["id"], wait=30)
    assert done["status"] == "succeeded", done
    progress = [e["data"] for e in await fleet.events(parent["id"]) if e["type"] == "progress"]
    assert [(p["progress"], p["total"]) for p in progress] == [(1, 3), (2, 3), (3, 3)]
    assert progress[-1]["message"] == "nap 3/3"


async def test_run_and_submit_return_the_results(fleet: Stack) -> None:
    parent = await fleet.submit("pair", {"words": ARTICLE})
    done = await fleet.get(parent["id"], wait=30)
    assert done["status"] == "succeeded", done
    assert done["result"]["keywords"]["keywords"][0]["term"] == "redis"
    assert done["result"]["words"] > 50
    assert done["result"]["later"] in done["children"] and len(done["children"]) == 2


async def test_trace_context_and_correlation_id_reach_the_children(fleet: Stack) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    parent = await fleet.submit(
        "fan",
        {"capability": "nap", "inputs": [{"seconds": 0}, {"seconds": 0}]},
        traceparent=f"00-{trace_id}-00f067aa0ba902b7-01",
        **{"X-Correlation-ID": "corr-deleg-1"},
    )
    done = await fleet.get(parent["id"], wait=30)
    assert done["status"] == "succeeded", done
    assert done["correlation_id"] == "corr-deleg-1"
    for child_id in done["children"]:
        child = await fleet.get(child_id)
        assert child["correlation_id"] == "corr-deleg-1"
        assert child["traceparent"].split("-")[1] == trace_id


async def test_a_failing_child_fails_the_map_and_cancels_its_siblings(fleet: Stack) -> None:
    inputs = [{"index": i, "fail_at": 2} for i in range(4)]
    parent = await fleet.submit("fan", {"capability": "flaky", "inputs": inputs, "concurrency": 4})
    done = await fleet.get(parent["id"], wait=30)
    assert done["status"] == "failed", done
    error = done["error"]
    assert error["code"] == "CHILD_FAILED", error
    assert "item 2" in error["message"] and "BOOM" in error["message"]
    children = [await fleet.get(c) for c in done["children"]]
    assert sorted(c["status"] for c in children) == [
        "cancelled",
        "cancelled",
        "cancelled",
        "failed",
    ]
    # The siblings' calls were cancelled on the worker, not just marked.
    siblings = {c["id"] for c in children if c["status"] == "cancelled"}
    await wait_until(lambda: siblings <= set(SEEN.cancelled), message="siblings cancelled")


async def test_return_exceptions_keeps_the_others_going(fleet: Stack) -> None:
    inputs = [{"index": i, "fail_at": 1} for i in range(2)]
    inputs[0]["fail_at"] = 0
    parent = await fleet.submit(
        "fan", {"capability": "flaky", "inputs": inputs, "return_exceptions": True}
    )
    done = await fleet.get(parent["id"], wait=30)
    assert done["status"] == "succeeded", done
    assert done["result"]["results"] == [
        {"failed": "CHILD_FAILED", "index": 0},
        {"failed": "CHILD_FAILED", "index": 1},
    ]


async def test_cancelling_the_parent_cancels_every_running_child(fleet: Stack) -> None:
    parent = await fleet.submit(
        "fan", {"capability": "nap", "inputs": [{"seconds": 60}] * 3, "concurrency": 3}
    )

    async def all_running() -> list[dict[str, Any]] | None:
        job = await fleet.get(parent["id"])
        kids = [await fleet.get(c) for c in job.get("children") or []]
        return kids if len(kids) == 3 and all(k["status"] == "running" for k in kids) else None

    kids = await wait_until(all_running, timeout=20, message="3 children running")
    await wait_until(lambda: len(SEEN.started) == 3, message="3 naps started on the worker")
    r = await fleet.api.post(f"/v1/jobs/{parent['id']}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    ids = {k["id"] for k in kids}
    await wait_until(lambda: ids <= set(SEEN.cancelled), message="the naps saw cancellation")
    for kid in ids:
        assert (await fleet.get(kid, wait=10))["status"] == "cancelled"


async def test_a_child_of_a_child_is_a_grandchild(fleet: Stack) -> None:
    parent = await fleet.submit("nested", {"levels": 2})
    done = await fleet.get(parent["id"], wait=30)
    assert done["status"] == "succeeded", done
    assert done["result"] == {"levels": 2, "below": {"levels": 1, "below": {"levels": 0}}}
    (child_id,) = done["children"]
    child = await fleet.get(child_id)
    (grandchild_id,) = child["children"]
    grandchild = await fleet.get(grandchild_id)
    assert (child["depth"], grandchild["depth"]) == (1, 2)
    assert grandchild["parent_id"] == child_id and child["parent_id"] == parent["id"]
    assert grandchild["correlation_id"] == parent["correlation_id"]


async def test_depth_limit_is_a_delegation_limit_error() -> None:
    async with fleet_of(max_depth=1) as fleet:
        parent = await fleet.submit("nested", {"levels": 3})
        done = await fleet.get(parent["id"], wait=30)
        assert done["status"] == "failed", done
        assert done["error"]["code"] == "CHILD_FAILED"
        (child_id,) = done["children"]
        child = await fleet.get(child_id)
        assert child["depth"] == 1 and not child.get("children")
        assert child["error"]["code"] == "DELEGATION_LIMIT", child["error"]
        assert "depth" in child["error"]["message"]


async def test_children_limit_is_a_delegation_limit_error() -> None:
    async with fleet_of(max_children=3) as fleet:
        parent = await fleet.submit("limited", {})
        done = await fleet.get(parent["id"], wait=30)
        assert done["status"] == "succeeded", done
        assert done["result"] == {"limit": "children", "max": 3, "parent_id": parent["id"]}
        assert len(done["children"]) == 3
        # Leaving the block cancelled the children it left running.
        for child_id in done["children"]:
            assert (await fleet.get(child_id, wait=10))["status"] == "cancelled"


async def test_uncaught_limit_fails_the_call_with_its_code() -> None:
    async with fleet_of(max_children=2) as fleet:
        parent = await fleet.submit(
            "fan", {"capability": "nap", "inputs": [{"seconds": 0}] * 3, "concurrency": 3}
        )
        done = await fleet.get(parent["id"], wait=30)
        assert done["status"] == "failed", done
        assert done["error"]["code"] == "DELEGATION_LIMIT", done["error"]


async def test_the_handle_presents_the_supervisor_token() -> None:
    async with fleet_of(supervisor_token="deleg-token-1", api_tokens="deleg-token-1") as fleet:
        parent = await fleet.submit("fan", {"capability": "nap", "inputs": [{"seconds": 0}]})
        done = await fleet.get(parent["id"], wait=30)
        assert done["status"] == "succeeded", done
    async with fleet_of(api_tokens="deleg-token-1") as fleet:  # the worker has no token
        parent = await fleet.submit("fan", {"capability": "nap", "inputs": [{"seconds": 0}]})
        done = await fleet.get(parent["id"], wait=30)
        assert done["status"] == "failed", done
        assert done["error"]["code"] == "UNAUTHORIZED", done["error"]
        assert "submitting a child job of nap" in done["error"]["message"]


async def test_the_worker_setting_names_the_supervisor(fleet: Stack) -> None:
    """Called straight over MCP (no supervisor, no job): FLEET_SUPERVISOR_URL is where the
    handle goes, and the children are top-level jobs there."""
    worker = Worker(
        "direct", tools=tools, settings=WorkerSettings(redis_url=None, supervisor_url=fleet.url)
    )
    async with Client(worker.server) as client:
        out = await client.call_tool("fan", {"capability": "nap", "inputs": [{"seconds": 0}]})
    (child_id,) = out.structured_content["children"]
    child = await fleet.get(child_id, wait=10)
    assert child["status"] == "succeeded" and child.get("parent_id") is None


async def test_no_supervisor_is_a_clear_error() -> None:
    worker = Worker("direct", tools=tools, settings=WorkerSettings(redis_url=None))
    async with Client(worker.server) as client:
        with pytest.raises(ToolError) as caught:
            await client.call_tool("nested", {"levels": 1}, meta={META_JOB_ID: "0" * 32})
    error = decode_tool_error(str(caught.value))
    assert error.code == "NO_SUPERVISOR" and "FLEET_SUPERVISOR_URL" in error.message


async def test_parent_and_children_are_one_trace(spans: Any) -> None:
    """With tracing on, the child continues the span of the worker's call that submitted it:
    the supervisor's span for the child and the worker's span for the child's call hang
    under the parent's worker span, all in the parent job's trace."""
    async with fleet_of() as fleet:
        spans.clear()
        parent = await fleet.submit("fan", {"capability": "nap", "inputs": [{"seconds": 0}] * 2})
        done = await fleet.get(parent["id"], wait=30)
        assert done["status"] == "succeeded", done
        children = [await fleet.get(c) for c in done["children"]]

    def worker_span(job_id: str) -> Any:
        found = [
            s
            for s in spans.get_finished_spans()
            if (s.attributes or {}).get("fleet.job_id") == job_id
            and s.name.startswith("tools/call")
        ]
        assert len(found) == 1, found
        return found[0]

    parent_call = worker_span(parent["id"])
    trace_id = format(parent_call.context.trace_id, "032x")
    by_id = {s.context.span_id: s for s in spans.get_finished_spans()}
    for child in children:
        _, child_trace, parent_span, _ = child["traceparent"].split("-")
        assert child_trace == trace_id
        assert int(parent_span, 16) == parent_call.context.span_id
        child_call = worker_span(child["id"])
        assert child_call.context.trace_id == parent_call.context.trace_id
        # Walk up from the child's call on the worker: it reaches the parent's call.
        span, seen = child_call, []
        while span.parent is not None and span.parent.span_id in by_id:
            span = by_id[span.parent.span_id]
            seen.append(span.name)
        assert parent_call.name in seen and "job nap" in seen, seen


async def test_an_unreachable_supervisor_is_retryable_unavailable() -> None:
    sock = free_socket()  # bound, never served: connections are refused
    port = sock.getsockname()[1]
    sock.close()
    async with Fleet(f"http://127.0.0.1:{port}") as fleet:
        with pytest.raises(DelegationError) as caught:
            await fleet.run("nap", {"seconds": 0})
    assert caught.value.code == "UNAVAILABLE" and caught.value.retryable
    assert decode_tool_error(str(caught.value)).retryable  # as a tool error, too


async def test_a_handle_outside_a_call(fleet: Stack) -> None:
    """The constructor, for programs that know it all: wait with a timeout, cancel."""
    async with Fleet(fleet.url) as handle:
        child = await handle.submit("nap", {"seconds": 60})
        assert not child.ended and handle.open_children == [child]
        seen = await child.wait(timeout=0.2)  # not ended yet: as it is now
        assert seen.status in ("queued", "running") and seen.parent_id is None
        await child.cancel()
        assert child.ended and child.job.status == "cancelled" and not handle.open_children
        await child.cancel()  # ended: nothing to do
        with pytest.raises(ChildFailed) as caught:
            await child
        assert caught.value.child.id == child.id and "cancelled" in caught.value.message
        left = await handle.submit("nap", {"seconds": 60})
    # Leaving the block cancelled the child it left running.
    assert (await fleet.get(left.id, wait=10))["status"] == "cancelled"
