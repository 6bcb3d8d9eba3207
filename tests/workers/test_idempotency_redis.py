"""Idempotency on the real Redis, shared by two replicas of a worker."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from typing import Any

import pytest
import redis.asyncio as aioredis
from fastmcp import Client
from fastmcp.exceptions import ToolError

from shared.keys import Keys
from shared.protocol import META_IDEMPOTENCY_KEY, decode_tool_error
from shared.settings import WorkerSettings
from tests.helpers import wait_until
from workers.kit import Toolset, Worker, tool_error

pytestmark = pytest.mark.redis


class Counter:
    def __init__(self) -> None:
        self.runs = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.tools = Toolset()

        @self.tools.tool(idempotent=False, max_concurrency=10)
        async def charge(amount: int) -> dict[str, int]:
            """Not idempotent by nature: the key is what makes a retry safe."""
            self.runs += 1
            run = self.runs
            await self.gate.wait()
            if amount < 0:
                raise tool_error("DECLINED", "negative amount")
            return {"amount": amount, "run": run}


def replicas(counter: Counter, redis_url: str, key_prefix: str, n: int = 2) -> list[Worker]:
    settings = WorkerSettings(
        name="billing", redis_url=redis_url, key_prefix=key_prefix, idempotency_ttl_s=600
    )
    return [Worker("billing", tools=counter.tools, settings=settings) for _ in range(n)]


async def test_replay_across_replicas_with_ttl(redis_url: str, key_prefix: str) -> None:
    counter = Counter()
    a, b = replicas(counter, redis_url, key_prefix)
    meta = {META_IDEMPOTENCY_KEY: "pay-1"}
    async with Client(a.server) as ca, Client(b.server) as cb:
        first = await ca.call_tool("charge", {"amount": 5}, meta=meta)
        again = await cb.call_tool("charge", {"amount": 5}, meta=meta)
    assert first.data == again.data == {"amount": 5, "run": 1}
    assert counter.runs == 1
    redis = aioredis.Redis.from_url(redis_url)
    try:
        keys = Keys(key_prefix)
        done = keys.worker_done("billing", "pay-1")
        assert 0 < await redis.ttl(done) <= 600
        assert await redis.exists(keys.worker_lock("billing", "pay-1")) == 0
    finally:
        await redis.aclose()


async def test_concurrent_duplicates_across_replicas_run_once(
    redis_url: str, key_prefix: str
) -> None:
    counter = Counter()
    counter.gate.clear()
    workers = replicas(counter, redis_url, key_prefix, n=3)
    meta = {META_IDEMPOTENCY_KEY: "pay-2"}
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(Client(w.server)) for w in workers]
        calls = [
            asyncio.create_task(c.call_tool("charge", {"amount": 7}, meta=meta))
            for c in clients * 2
        ]
        await wait_until(lambda: counter.runs == 1, 5, message="first call running")
        lock = Keys(key_prefix).worker_lock("billing", "pay-2")
        redis = aioredis.Redis.from_url(redis_url)
        try:
            ttl = await redis.pttl(lock)
            assert 0 < ttl <= 60_000  # the in-progress marker always has a TTL
        finally:
            await redis.aclose()
        assert not any(c.done() for c in calls)
        counter.gate.set()
        results: list[Any] = await asyncio.gather(*calls)
    assert counter.runs == 1
    assert {r.data["run"] for r in results} == {1}


async def test_failures_are_not_stored_so_a_retry_runs(redis_url: str, key_prefix: str) -> None:
    counter = Counter()
    (worker,) = replicas(counter, redis_url, key_prefix, n=1)
    meta = {META_IDEMPOTENCY_KEY: "pay-3"}
    async with Client(worker.server) as client:
        for _ in range(2):
            with pytest.raises(ToolError) as caught:
                await client.call_tool("charge", {"amount": -1}, meta=meta)
            assert decode_tool_error(str(caught.value)).code == "DECLINED"
    assert counter.runs == 2
    redis = aioredis.Redis.from_url(redis_url)
    try:
        assert await redis.exists(Keys(key_prefix).worker_done("billing", "pay-3")) == 0
    finally:
        await redis.aclose()


async def test_a_cancelled_first_call_releases_the_key(redis_url: str, key_prefix: str) -> None:
    counter = Counter()
    counter.gate.clear()
    (worker,) = replicas(counter, redis_url, key_prefix, n=1)
    meta = {META_IDEMPOTENCY_KEY: "pay-4"}
    async with Client(worker.server) as client:
        first = asyncio.create_task(client.call_tool("charge", {"amount": 1}, meta=meta))
        await wait_until(lambda: counter.runs == 1, 5, message="first running")
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
        lock = Keys(key_prefix).worker_lock("billing", "pay-4")
        redis = aioredis.Redis.from_url(redis_url)
        try:
            await wait_until(lambda: _gone(redis, lock), 5, message="lock released")
        finally:
            await redis.aclose()
        counter.gate.set()
        retry = await client.call_tool("charge", {"amount": 1}, meta=meta)
    assert retry.data == {"amount": 1, "run": 2}


async def _gone(redis: aioredis.Redis, key: str) -> bool:
    return await redis.exists(key) == 0
