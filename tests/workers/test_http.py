"""End to end over real HTTP: the worker served in-process on a port-0 socket."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport
from fastmcp.exceptions import ToolError
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from shared.keys import Keys
from shared.models import WorkerRegistration
from shared.protocol import decode_tool_error
from shared.settings import WorkerSettings
from tests.helpers import wait_until
from tests.workers.conftest import LogLines, base_of, get_json, served
from workers import data, echo
from workers.kit.registration import instance_id

pytestmark = pytest.mark.e2e


def settings(**kw: Any) -> WorkerSettings:
    base: dict[str, Any] = {"redis_url": None, "advertise_url": None, "worker_token": None}
    return WorkerSettings(**{**base, **kw})


async def test_progress_streams_over_http_before_the_result(logs: LogLines) -> None:
    worker = echo.build(settings())
    async with served(worker) as url:
        transport = StreamableHttpTransport(url, headers={"X-Correlation-ID": "hdr-corr-1"})
        async with Client(transport) as client:
            seen: list[tuple[float, bool]] = []
            call: asyncio.Task[Any] | None = None

            async def on_progress(p: float, t: float | None, m: str | None) -> None:
                assert call is not None
                seen.append((p, call.done()))

            call = asyncio.create_task(
                client.call_tool(
                    "progress", {"steps": 4, "delay_ms": 30}, progress_handler=on_progress
                )
            )
            result = await call
    assert result.data == {"steps": 4}
    assert [p for p, _ in seen] == [1, 2, 3, 4]
    assert not any(done for _, done in seen), "every event arrived while the call ran"
    (summary,) = [e for e in logs.events("tool.call") if e["tool"] == "progress"]
    assert summary["correlation_id"] == "hdr-corr-1"  # from the HTTP header


async def test_busy_and_cancellation_over_http() -> None:
    worker = echo.build(settings(max_concurrency=1))
    async with served(worker) as url, Client(url) as client:
        started = asyncio.Event()

        async def on_progress(*_: Any) -> None:
            started.set()

        long = asyncio.create_task(
            client.call_tool("sleep", {"seconds": 30, "steps": 300}, progress_handler=on_progress)
        )
        await asyncio.wait_for(started.wait(), 10)
        with pytest.raises(ToolError) as caught:
            await client.call_tool("sleep", {"seconds": 0})
        err = decode_tool_error(str(caught.value))
        assert err.code == "BUSY" and err.retryable
        long.cancel()
        await asyncio.gather(long, return_exceptions=True)
        await wait_until(lambda: worker.runtime.tracker.in_flight == 0, 5, message="cancelled")
        assert (await client.call_tool("sleep", {"seconds": 0})).data == {"slept": 0}


async def test_health_degrades_when_redis_is_unreachable() -> None:
    worker = echo.build(settings(redis_url="redis://127.0.0.1:1/0"))
    async with served(worker) as url:
        status, body = await get_json(base_of(url) + "/health")
        assert status == 503 and body["status"] == "degraded"
        assert body["components"]["redis"]["status"] == "down"
        assert body["components"]["idempotency"]["backend"] == "redis"
        ready, _ = await get_json(base_of(url) + "/ready")
        assert ready == 200
        async with Client(url) as client:  # calls without an idempotency key still work
            assert (await client.call_tool("noop", {})).data == {"ok": True}
            caps = (await client.call_tool("get_capabilities", {})).structured_content
            assert caps is not None and caps["health_status"] == "degraded"
            with pytest.raises(ToolError) as caught:
                await client.call_tool(
                    "noop", {}, meta={"mcp-fleet/idempotency-key": "needs-redis"}
                )
            err = decode_tool_error(str(caught.value))
            assert err.code == "UNAVAILABLE" and err.retryable


async def test_health_is_healthy_with_redis(redis_url: str, key_prefix: str) -> None:
    worker = echo.build(settings(redis_url=redis_url, key_prefix=key_prefix))
    async with served(worker) as url:
        status, body = await get_json(base_of(url) + "/health")
    assert status == 200 and body["status"] == "healthy"
    assert body["components"]["redis"]["status"] == "ok"


async def test_worker_token_guards_mcp_but_not_probes() -> None:
    worker = echo.build(settings(worker_token="s3cret"))
    async with served(worker) as url:
        async with httpx.AsyncClient(timeout=5) as http:
            response = await http.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
            assert response.status_code == 401
            assert response.json()["error"]["code"] == "UNAUTHORIZED"
            wrong = await http.post(url, json={}, headers={"Authorization": "Bearer wrong"})
            assert wrong.status_code == 401
            assert (await http.get(base_of(url) + "/health")).status_code == 200
            assert (await http.get(base_of(url) + "/ready")).status_code == 200
        with pytest.raises(Exception):  # noqa: B017  # the client only reports a failed connect
            async with Client(url) as client:
                await client.call_tool("noop", {})
        async with Client(url, auth="s3cret") as client:
            assert (await client.call_tool("noop", {})).data == {"ok": True}


async def test_plain_mcp_sdk_client_lists_and_calls_tools() -> None:
    worker = echo.build(settings())
    async with (
        served(worker) as url,
        streamable_http_client(url) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        listed = await session.list_tools()
        names = {t.name for t in listed.tools}
        assert {"noop", "echo", "sleep", "fail", "progress", "get_capabilities"} <= names
        noop = next(t for t in listed.tools if t.name == "noop")
        assert noop.annotations is not None and noop.annotations.idempotent_hint is True
        progress: list[float] = []

        async def on_progress(p: float, t: float | None, m: str | None) -> None:
            progress.append(p)

        result: Any = await session.call_tool(
            "progress", {"steps": 3}, progress_callback=on_progress
        )
        assert result.is_error is False
        assert result.structured_content == {"steps": 3}
        assert progress == [1, 2, 3]
        failed: Any = await session.call_tool("fail", {"code": "X1"})
        assert failed.is_error is True
        assert json.loads(failed.content[0].text)["code"] == "X1"


async def test_self_registration_heartbeats_and_is_removed(redis_url: str, key_prefix: str) -> None:
    import redis.asyncio as aioredis

    advertise = "http://worker-a.example:8701/mcp"
    worker = echo.build(
        settings(
            redis_url=redis_url, advertise_url=advertise, key_prefix=key_prefix, heartbeat_s=0.3
        )
    )
    key = Keys(key_prefix).worker(instance_id("echo", advertise))
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        async with served(worker):
            raw = await wait_until(lambda: client.get(key), 5, message="registration")
            reg = WorkerRegistration.model_validate_json(raw)
            assert (reg.name, reg.url, reg.version) == ("echo", advertise, echo.VERSION)
            assert 0 < await client.ttl(key) <= 1  # ceil(3 × 0.3 s)
            # The heartbeat rewrites it before the TTL lapses: its remaining TTL climbs back.
            await wait_until(lambda: _pttl_below(client, key, 850), 5, message="ttl running")
            await wait_until(lambda: _pttl_above(client, key, 900), 5, message="heartbeat")
            _, body = await get_json(base_of(worker.url or "") + "/health")
            assert body["components"]["registration"]["status"] == "ok"
        assert await client.exists(key) == 0
    finally:
        await client.aclose()


async def _pttl_below(client: Any, key: str, ms: int) -> bool:
    return 0 < await client.pttl(key) < ms


async def _pttl_above(client: Any, key: str, ms: int) -> bool:
    return await client.pttl(key) > ms


async def test_graceful_shutdown_lets_in_flight_calls_finish() -> None:
    worker = echo.build(settings(grace_s=10))
    finished = False
    async with served(worker) as url:
        # The client's goodbye may find the worker already gone (it stops listening once its
        # last call ends): what counts is that the call finished, checked inside.
        try:
            async with Client(url) as client:
                started = asyncio.Event()

                async def on_progress(*_: Any) -> None:
                    started.set()

                call = asyncio.create_task(
                    client.call_tool(
                        "sleep", {"seconds": 0.6, "steps": 6}, progress_handler=on_progress
                    )
                )
                await asyncio.wait_for(started.wait(), 5)
                worker.request_shutdown()
                await wait_until(lambda: worker.runtime.draining, 5, message="draining")
                ready, _ = await get_json(base_of(url) + "/ready")
                assert ready == 503
                assert (await call).data == {"slept": 0.6}
                finished = True
        except Exception:
            if not finished:  # only the goodbye after the checks may fail
                raise
    assert finished


async def test_calls_still_running_after_the_grace_period_are_cancelled() -> None:
    worker = echo.build(settings(grace_s=0.2))
    async with served(worker) as url, Client(url) as client:
        started = asyncio.Event()

        async def on_progress(*_: Any) -> None:
            started.set()

        call = asyncio.create_task(
            client.call_tool("sleep", {"seconds": 60, "steps": 600}, progress_handler=on_progress)
        )
        await asyncio.wait_for(started.wait(), 5)
        worker.request_shutdown()
        with pytest.raises(ToolError) as caught:
            await asyncio.wait_for(call, 10)
    err = decode_tool_error(str(caught.value))
    assert err.code == "SHUTTING_DOWN" and err.retryable
    assert worker.runtime.tracker.in_flight == 0


async def test_100k_records_over_http() -> None:
    records = [{"id": i, "city": "Oslo-Norway", "age": i % 90} for i in range(100_000)]
    assert len(json.dumps(records)) > 4 * 1024 * 1024  # past the MCP SDK's default cap
    async with served(data.build(settings())) as url, Client(url) as client:
        result = await client.call_tool("profile_dataset", {"records": records, "top_n": 1})
    out = result.structured_content
    assert out is not None and out["total_records"] == 100_000
    assert out["fields"]["age"]["max"] == 89
