"""The supervisor's MCP face at ``/mcp``, driven over real HTTP by FastMCP clients of both
protocol eras (2026-07-28, sessionless; 2025-11-25, session-based): the catalog as tools, a
call as a job with live progress, cancel, failover, fleet tools, resources, auth."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import mcp_types
import pytest
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport
from fastmcp.exceptions import ToolError

from shared import WorkerRegistration
from supervisor.mcp.face import IDEMPOTENCY_META
from supervisor.mcp.results import META_KEY
from tests.helpers import wait_until
from tests.servers import serve_asgi
from tests.supervisor.conftest import Fleet, start_fleet
from tests.supervisor.toolservers import Seen, contract_server

MODES = ["modern", "legacy"]


@pytest.fixture
async def fleet() -> AsyncIterator[Fleet]:
    async with AsyncExitStack() as stack:
        yield await start_fleet(stack, foreign=True)


def connect(fleet: Fleet, mode: str, token: str | None = None) -> Client[Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    transport = StreamableHttpTransport(fleet.url + "/mcp", headers=headers)
    if mode == "legacy":
        return Client(transport, mode="legacy")
    return Client(transport)


@pytest.mark.parametrize("mode", MODES)
async def test_the_catalog_is_the_tool_list(fleet: Fleet, mode: str) -> None:
    async with connect(fleet, mode) as client:
        tools = {t.name: t for t in await client.list_tools()}
    catalog = (await fleet.api.get("/v1/capabilities")).json()["capabilities"]
    assert set(catalog) <= set(tools)
    assert {"fleet_submit", "fleet_job", "fleet_cancel", "fleet_workers"} <= set(tools)
    steps = tools["steps"]
    assert steps.input_schema == catalog["steps"]["input_schema"]
    assert steps.description == catalog["steps"]["description"]
    assert steps.annotations is not None and steps.annotations.idempotent_hint is True
    assert tools["hold"].annotations is not None
    assert tools["hold"].annotations.idempotent_hint is False
    assert "shout" in tools  # the foreign worker's tool, by its own schema


@pytest.mark.parametrize("mode", MODES)
async def test_a_call_is_a_job_with_live_progress_in_order(fleet: Fleet, mode: str) -> None:
    seen: list[tuple[float, float | None, str | None]] = []

    async def progress(p: float, total: float | None, message: str | None) -> None:
        seen.append((p, total, message))

    async with connect(fleet, mode) as client:
        result = await client.call_tool("steps", {"n": 5}, progress_handler=progress)
    assert result.data["steps"] == 5 if isinstance(result.data, dict) else result.data.steps == 5
    assert seen == [(float(i), 5.0, f"step {i}/5") for i in range(1, 6)]
    job_meta = (result.meta or {})[META_KEY]
    job = (await fleet.api.get(f"/v1/jobs/{job_meta['id']}")).json()
    assert job["status"] == "succeeded"
    assert job["capability"] == "steps"
    assert job_meta["correlation_id"] == job["correlation_id"]
    worker_calls = [c for s in fleet.seen.values() for c in s.calls if c["tool"] == "steps"]
    assert worker_calls and worker_calls[-1]["args"] == {"n": 5}


@pytest.mark.parametrize("mode", MODES)
async def test_bad_input_and_tool_errors_are_tool_errors(fleet: Fleet, mode: str) -> None:
    async with connect(fleet, mode) as client:
        with pytest.raises(ToolError, match="INVALID_INPUT"):
            await client.call_tool("steps", {"n": "many"})
        failed = await client.call_tool("fail", {"code": "NOPE"}, raise_on_error=False)
    assert failed.is_error
    assert "failed on purpose with NOPE" in failed.content[0].text  # type: ignore[union-attr]
    assert (failed.meta or {})[META_KEY]["status"] == "failed"


@pytest.mark.parametrize("mode", MODES)
async def test_cancelling_the_call_cancels_the_job_on_the_worker(fleet: Fleet, mode: str) -> None:
    import anyio

    async with connect(fleet, mode) as client, anyio.create_task_group() as tg:

        async def call() -> None:
            await client.call_tool("hold", {})

        tg.start_soon(call)
        await wait_until(
            lambda: any(s.started.is_set() for s in fleet.seen.values()),
            timeout=10,
            message="hold started on a worker",
        )
        tg.cancel_scope.cancel()
    await wait_until(
        lambda: any(s.cancelled for s in fleet.seen.values()),
        timeout=10,
        message="the worker's tool saw the cancellation",
    )
    jobs = (await fleet.api.get("/v1/jobs", params={"capability": "hold"})).json()["jobs"]
    assert jobs[0]["status"] == "cancelled"


@pytest.mark.parametrize("mode", MODES)
async def test_fleet_tools_submit_read_and_cancel(fleet: Fleet, mode: str) -> None:
    async with connect(fleet, mode) as client:
        started = (await client.call_tool("fleet_submit", {"capability": "hold"})).data
        job_id = started["id"]
        assert started["status"] == "queued"
        got = (await client.call_tool("fleet_job", {"job_id": job_id})).data
        assert got["id"] == job_id
        cancelled = (await client.call_tool("fleet_cancel", {"job_id": job_id})).data
        assert cancelled["status"] == "cancelled"
        done = (
            await client.call_tool(
                "fleet_submit", {"capability": "noop", "idempotency_key": "k-" + mode}
            )
        ).data
        waited = (await client.call_tool("fleet_job", {"job_id": done["id"], "wait_s": 10})).data
        assert waited["status"] == "succeeded"
        again = (
            await client.call_tool(
                "fleet_submit", {"capability": "noop", "idempotency_key": "k-" + mode}
            )
        ).data
        assert again["id"] == done["id"] and again["replayed"] is True
        workers = (await client.call_tool("fleet_workers", {})).data["workers"]
        assert {w["url"] for w in workers} == set(fleet.worker_urls.values())
        with pytest.raises(ToolError, match="NOT_FOUND"):
            await client.call_tool("fleet_job", {"job_id": "0" * 32})
        with pytest.raises(ToolError, match="UNKNOWN_CAPABILITY"):
            await client.call_tool("fleet_submit", {"capability": "nothing-like-it"})


@pytest.mark.parametrize("mode", MODES)
async def test_a_repeated_call_with_the_same_key_follows_the_first_job(
    fleet: Fleet, mode: str
) -> None:
    meta = {IDEMPOTENCY_META: f"again-{mode}"}
    async with connect(fleet, mode) as client:
        first = await client.call_tool("noop", {}, meta=meta)
        second = await client.call_tool("noop", {}, meta=meta)
    assert (first.meta or {})[META_KEY]["id"] == (second.meta or {})[META_KEY]["id"]


@pytest.mark.parametrize("mode", MODES)
async def test_jobs_and_the_catalog_are_resources(fleet: Fleet, mode: str) -> None:
    async with connect(fleet, mode) as client:
        result = await client.call_tool("steps", {"n": 3})
        job_id = (result.meta or {})[META_KEY]["id"]
        templates = {t.uri_template for t in await client.list_resource_templates()}
        assert {"fleet://jobs/{job_id}", "fleet://jobs/{job_id}/events"} <= templates
        record = json.loads((await client.read_resource(f"fleet://jobs/{job_id}"))[0].text)  # type: ignore[union-attr]
        events = json.loads(
            (await client.read_resource(f"fleet://jobs/{job_id}/events"))[0].text  # type: ignore[union-attr]
        )
        catalog = json.loads((await client.read_resource("fleet://catalog"))[0].text)  # type: ignore[union-attr]
    assert record["id"] == job_id and record["status"] == "succeeded"
    assert [e["type"] for e in events].count("progress") == 3
    assert events[-1]["type"] == "done"
    assert "steps" in catalog


# -- auth: the REST API's tokens, scopes and tenants on /mcp -----------------------------------

TOKENS = ",".join(
    [
        "ops=ops-t:admin",
        "reader=read-t:jobs:read",
        "writer=write-t:jobs:write",
        "a=a-t:jobs:read+jobs:write",
        "b=b-t:jobs:read+jobs:write",
    ]
)
TENANTS = {"a": "acme", "b": "bolt"}


@pytest.fixture
async def guarded() -> AsyncIterator[Fleet]:
    async with AsyncExitStack() as stack:
        yield await start_fleet(stack, api_tokens=TOKENS, token_tenants=TENANTS)


async def test_mcp_needs_a_token_with_jobs_read(guarded: Fleet) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {"Accept": "application/json, text/event-stream"}
    async with httpx.AsyncClient(base_url=guarded.url, timeout=10) as raw:
        missing = await raw.post("/mcp", json=body, headers=headers)
        wrong = await raw.post("/mcp", json=body, headers={**headers, **bearer("nope")})
        write_only = await raw.post("/mcp", json=body, headers={**headers, **bearer("write-t")})
    assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "INVALID_TOKEN"
    assert write_only.status_code == 403
    assert write_only.json()["error"]["code"] == "INSUFFICIENT_SCOPE"


@pytest.mark.parametrize("mode", MODES)
async def test_a_read_only_token_reads_but_starts_and_cancels_nothing(
    guarded: Fleet, mode: str
) -> None:
    job = await guarded.submit("hold")
    async with connect(guarded, mode, "read-t") as client:
        assert "steps" in {t.name for t in await client.list_tools()}
        got = (await client.call_tool("fleet_job", {"job_id": job["id"]})).data
        assert got["id"] == job["id"]
        for name, args in [
            ("steps", {"n": 1}),
            ("fleet_submit", {"capability": "noop"}),
            ("fleet_cancel", {"job_id": job["id"]}),
        ]:
            with pytest.raises(ToolError, match="INSUFFICIENT_SCOPE"):
                await client.call_tool(name, args)
    assert (await guarded.api.get(f"/v1/jobs/{job['id']}")).json()["status"] != "cancelled"
    await guarded.api.post(f"/v1/jobs/{job['id']}/cancel")


@pytest.mark.parametrize("mode", MODES)
async def test_tenants_are_isolated_on_mcp(guarded: Fleet, mode: str) -> None:
    async with connect(guarded, mode, "a-t") as acme, connect(guarded, mode, "b-t") as bolt:
        result = await acme.call_tool("noop", {})
        job_id = (result.meta or {})[META_KEY]["id"]
        assert (await acme.call_tool("fleet_job", {"job_id": job_id})).data["tenant"] == "acme"
        for name in ("fleet_job", "fleet_cancel"):
            with pytest.raises(ToolError, match="NOT_FOUND"):
                await bolt.call_tool(name, {"job_id": job_id})
        with pytest.raises(Exception, match="NOT_FOUND"):
            await bolt.read_resource(f"fleet://jobs/{job_id}")
    job = (await guarded.api.get(f"/v1/jobs/{job_id}")).json()
    assert job["tenant"] == "acme"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_session_hosts_are_told_when_the_catalog_changes() -> None:
    """A worker of another service registers: the names change (``noop`` is now offered twice,
    so it is qualified) and a session-based host gets ``notifications/tools/list_changed``."""
    changed = asyncio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, mcp_types.ToolListChangedNotification):
            changed.set()

    async with AsyncExitStack() as stack:
        fleet = await start_fleet(stack, workers=1)
        other = contract_server("o1", Seen(), service="other").http_app(path="/mcp")
        url = await stack.enter_async_context(serve_asgi(other)) + "/mcp"
        transport = StreamableHttpTransport(fleet.url + "/mcp")
        async with Client(transport, mode="legacy", message_handler=on_message) as client:
            assert "noop" in {t.name for t in await client.list_tools()}
            store = fleet.services.store
            key = store.keys.worker("other@o1")
            await store.client.set(key, WorkerRegistration(name="other", url=url).model_dump_json())
            await asyncio.wait_for(changed.wait(), 20)
            names = {t.name for t in await client.list_tools()}
            await store.client.delete(key)
    assert {"toolbox.noop", "other.noop"} <= names and "noop" not in names
