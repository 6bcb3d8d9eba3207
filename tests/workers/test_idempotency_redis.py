"""Idempotency on the real Redis, shared by replicas of a worker: in memory, and as real
processes over HTTP for the liveness of the in-progress lock (SIGKILL, SIGSTOP)."""

from __future__ import annotations

import asyncio
import signal
import time
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
from tests.processes import worker
from tests.workers.conftest import LogLines
from workers.kit import Toolset, Worker, tool_error
from workers.kit.idempotency import LOCK_TTL_S

pytestmark = pytest.mark.redis

SHORT_TTL_S = 1.0
"""A lock TTL for in-memory workers (renewed every 0.3 s): quick to watch, and still
tolerant of a loaded test machine."""


class Counter:
    def __init__(self) -> None:
        self.runs = 0
        self.cancelled = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.tools = Toolset()

        @self.tools.tool(idempotent=False, max_concurrency=10)
        async def charge(amount: int) -> dict[str, int]:
            """Not idempotent by nature: the key is what makes a retry safe."""
            self.runs += 1
            run = self.runs
            try:
                await self.gate.wait()
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
            if amount < 0:
                raise tool_error("DECLINED", "negative amount")
            return {"amount": amount, "run": run}

        @self.tools.tool(idempotent=True)
        async def report(size: int) -> dict[str, Any]:
            """A result of about ``size`` bytes."""
            self.runs += 1
            return {"run": self.runs, "data": "x" * size}


def replicas(
    counter: Counter,
    redis_url: str,
    key_prefix: str,
    n: int = 2,
    *,
    lock_ttl_s: float = LOCK_TTL_S,
    **kw: Any,
) -> list[Worker]:
    settings = WorkerSettings(
        name="billing", redis_url=redis_url, key_prefix=key_prefix, idempotency_ttl_s=600, **kw
    )
    return [
        Worker("billing", tools=counter.tools, settings=settings, lock_ttl_s=lock_ttl_s)
        for _ in range(n)
    ]


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
            assert 0 < ttl <= LOCK_TTL_S * 1000  # the in-progress marker always has a TTL
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


class TtlWatch:
    """Counts the times a key's TTL was pushed back, polling it; fails if the key lapses."""

    def __init__(self, redis: aioredis.Redis, key: str) -> None:
        self.redis, self.key = redis, key
        self.last: int | None = None
        self.renewals = 0

    async def renewed(self, times: int) -> bool:
        ttl = await self.redis.pttl(self.key)
        assert ttl > 0, "the lock lapsed while its call was running"
        if self.last is not None and ttl > self.last:
            self.renewals += 1
        self.last = ttl
        return self.renewals >= times


async def test_a_live_call_keeps_its_lock_past_the_ttl_so_duplicates_still_wait(
    redis_url: str, key_prefix: str
) -> None:
    counter = Counter()
    counter.gate.clear()
    workers = replicas(counter, redis_url, key_prefix, n=2, lock_ttl_s=SHORT_TTL_S)
    meta = {META_IDEMPOTENCY_KEY: "pay-5"}
    lock = Keys(key_prefix).worker_lock("billing", "pay-5")
    async with AsyncExitStack() as stack:
        redis = aioredis.Redis.from_url(redis_url)
        stack.push_async_callback(redis.aclose)
        clients = [await stack.enter_async_context(Client(w.server)) for w in workers]
        first = asyncio.create_task(clients[0].call_tool("charge", {"amount": 5}, meta=meta))
        await wait_until(lambda: counter.runs == 1, 5, message="first call running")
        held = await redis.get(lock)
        dupes = [
            asyncio.create_task(c.call_tool("charge", {"amount": 5}, meta=meta))
            for c in clients * 2
        ]
        # Five renewals, every 30 % of the TTL: the call has outlived its TTL by half.
        watch = TtlWatch(redis, lock)
        await wait_until(lambda: watch.renewed(5), 10, message="five renewals")
        assert await redis.get(lock) == held
        assert counter.runs == 1
        assert not any(c.done() for c in [first, *dupes])
        counter.gate.set()
        results: list[Any] = await asyncio.gather(first, *dupes)
    assert counter.runs == 1
    assert {r.data["run"] for r in results} == {1}


async def test_a_call_whose_lock_was_taken_is_stopped_with_a_retryable_error(
    redis_url: str, key_prefix: str, logs: LogLines
) -> None:
    counter = Counter()
    counter.gate.clear()
    (worker_,) = replicas(counter, redis_url, key_prefix, n=1, lock_ttl_s=SHORT_TTL_S)
    meta = {META_IDEMPOTENCY_KEY: "pay-6"}
    lock = Keys(key_prefix).worker_lock("billing", "pay-6")
    redis = aioredis.Redis.from_url(redis_url)
    try:
        async with Client(worker_.server) as client:
            call = asyncio.create_task(client.call_tool("charge", {"amount": 6}, meta=meta))
            await wait_until(lambda: counter.runs == 1, 5, message="call running")
            # What Redis shows after this worker stalled past the TTL and a replica claimed.
            await redis.set(lock, "another-replica", px=10_000)
            with pytest.raises(ToolError) as caught:
                await asyncio.wait_for(call, 5)
        error = decode_tool_error(str(caught.value))
        assert error.code == "UNAVAILABLE" and error.retryable
        assert counter.cancelled == 1
        assert await redis.get(lock) == b"another-replica"  # the loser does not release it
        assert logs.events("idempotency.lock_lost")
    finally:
        await redis.aclose()


async def test_a_lapsed_lock_nobody_took_is_retaken_and_the_call_finishes(
    redis_url: str, key_prefix: str, logs: LogLines
) -> None:
    counter = Counter()
    counter.gate.clear()
    (worker_,) = replicas(counter, redis_url, key_prefix, n=1, lock_ttl_s=SHORT_TTL_S)
    meta = {META_IDEMPOTENCY_KEY: "pay-7"}
    lock = Keys(key_prefix).worker_lock("billing", "pay-7")
    redis = aioredis.Redis.from_url(redis_url)
    try:
        async with Client(worker_.server) as client:
            call = asyncio.create_task(client.call_tool("charge", {"amount": 7}, meta=meta))
            await wait_until(lambda: counter.runs == 1, 5, message="call running")
            held = await redis.get(lock)
            await redis.delete(lock)  # it lapsed during a stall, and no duplicate came
            await wait_until(lambda: _holds(redis, lock, held), 5, message="lock re-taken")
            # The renewal logs once Redis has answered it; the test sees the lock back first
            # and, had it let the call end now, could cancel that renewal before it logged.
            await wait_until(
                lambda: logs.events("idempotency.lock_retaken"), 5, message="re-take logged"
            )
            counter.gate.set()
            result = await call
        assert result.data == {"amount": 7, "run": 1}
        assert counter.cancelled == 0
        assert logs.events("idempotency.lock_retaken")
    finally:
        await redis.aclose()


async def test_a_result_over_the_limit_is_not_stored_so_a_duplicate_runs_again(
    redis_url: str, key_prefix: str, logs: LogLines
) -> None:
    counter = Counter()
    (worker_,) = replicas(counter, redis_url, key_prefix, n=1, idempotency_max_result_bytes=10_000)
    keys = Keys(key_prefix)
    async with Client(worker_.server) as client:

        async def run(key: str, size: int) -> int:
            meta = {META_IDEMPOTENCY_KEY: key}
            return int((await client.call_tool("report", {"size": size}, meta=meta)).data["run"])

        assert [await run("small", 100), await run("small", 100)] == [1, 1]
        assert [await run("big", 20_000), await run("big", 20_000)] == [2, 3]
    redis = aioredis.Redis.from_url(redis_url)
    try:
        assert await redis.exists(keys.worker_done("billing", "small")) == 1
        assert await redis.exists(keys.worker_done("billing", "big")) == 0
    finally:
        await redis.aclose()
    skipped = logs.events("idempotency.result_not_stored")
    assert len(skipped) == 2
    assert all(e["limit_bytes"] == 10_000 < e["bytes"] for e in skipped)


# -- real worker processes sharing Redis, as compose runs them ------------------------------


def _shared(redis_url: str, key_prefix: str) -> dict[str, str]:
    return {"FLEET_REDIS_URL": redis_url, "FLEET_KEY_PREFIX": key_prefix, "FLEET_GRACE_S": "1"}


async def _holds(redis: aioredis.Redis, key: str, value: bytes | None) -> bool:
    return value is not None and await redis.get(key) == value


async def _taken_from(redis: aioredis.Redis, key: str, value: bytes) -> bool:
    now = await redis.get(key)
    return now is not None and now != value


async def _call(url: str, tool: str, args: dict[str, Any], key: str, **kw: Any) -> Any:
    """One call on its own session, so a worker killed under it fails only this task."""
    async with Client(url) as client:
        return await client.call_tool(tool, args, meta={META_IDEMPOTENCY_KEY: key}, **kw)


@pytest.mark.e2e
async def test_a_killed_workers_lock_lapses_within_the_ttl_and_a_replica_runs_the_call(
    redis_url: str, key_prefix: str
) -> None:
    keys = Keys(key_prefix)
    lock, done = keys.worker_lock("echo", "job-1"), keys.worker_done("echo", "job-1")
    args = {"seconds": 3, "steps": 3}
    progress_b: list[float] = []

    async def on_progress_b(done_: float, total: float | None, message: str | None) -> None:
        progress_b.append(done_)

    with (
        worker(**_shared(redis_url, key_prefix)) as a,
        worker(**_shared(redis_url, key_prefix)) as b,
    ):
        async with AsyncExitStack() as stack:
            redis = aioredis.Redis.from_url(redis_url)
            stack.push_async_callback(redis.aclose)
            first = asyncio.create_task(_call(a.url, "sleep", args, "job-1"))
            held = await wait_until(lambda: redis.get(lock), 10, message="A holds the lock")
            a.kill()
            killed = time.monotonic()
            # The retry reaches B while A's lock still stands: B waits for it, then runs.
            second = asyncio.create_task(
                _call(b.url, "sleep", args, "job-1", progress_handler=on_progress_b)
            )
            await wait_until(
                lambda: _taken_from(redis, lock, held), LOCK_TTL_S + 5, message="B takes over"
            )
            lapsed = time.monotonic() - killed
            result = await asyncio.wait_for(second, 30)
            assert await redis.exists(done) == 1
            await asyncio.gather(first, return_exceptions=True)
    print(f"lock of a SIGKILLed worker lapsed after {lapsed:.2f} s (TTL {LOCK_TTL_S} s)")
    assert lapsed <= LOCK_TTL_S + 1
    assert result.data == {"slept": 3.0}
    assert progress_b  # B ran the tool itself


@pytest.mark.e2e
async def test_a_duplicate_on_another_replica_waits_for_a_live_call_longer_than_the_ttl(
    redis_url: str, key_prefix: str
) -> None:
    lock = Keys(key_prefix).worker_lock("echo", "job-2")
    args = {"seconds": LOCK_TTL_S + 2, "steps": 7}
    progress: dict[str, list[float]] = {"a": [], "b": []}

    def recorder(name: str) -> Any:
        async def record(done: float, total: float | None, message: str | None) -> None:
            progress[name].append(done)

        return record

    with (
        worker(**_shared(redis_url, key_prefix)) as a,
        worker(**_shared(redis_url, key_prefix)) as b,
    ):
        async with AsyncExitStack() as stack:
            redis = aioredis.Redis.from_url(redis_url)
            stack.push_async_callback(redis.aclose)
            first = asyncio.create_task(
                _call(a.url, "sleep", args, "job-2", progress_handler=recorder("a"))
            )
            held = await wait_until(lambda: redis.get(lock), 10, message="A holds the lock")
            second = asyncio.create_task(
                _call(b.url, "sleep", args, "job-2", progress_handler=recorder("b"))
            )

            async def first_done_and_lock_never_moved() -> bool:
                assert await redis.get(lock) in (held, None)  # None once A has finished
                return first.done()

            await wait_until(first_done_and_lock_never_moved, 30, message="A finishes")
            results = await asyncio.wait_for(asyncio.gather(first, second), 10)
    assert results[0].data == results[1].data == {"slept": LOCK_TTL_S + 2}
    assert progress["a"] and not progress["b"]  # B replayed A's result; it never ran


@pytest.mark.e2e
async def test_a_paused_worker_that_lost_its_lock_stops_its_call(
    redis_url: str, key_prefix: str
) -> None:
    lock = Keys(key_prefix).worker_lock("echo", "job-3")
    args = {"seconds": 60, "steps": 60}
    with (
        worker(**_shared(redis_url, key_prefix)) as a,
        worker(**_shared(redis_url, key_prefix)) as b,
    ):
        async with AsyncExitStack() as stack:
            redis = aioredis.Redis.from_url(redis_url)
            stack.push_async_callback(redis.aclose)
            first = asyncio.create_task(_call(a.url, "sleep", args, "job-3"))
            held = await wait_until(lambda: redis.get(lock), 10, message="A holds the lock")
            a.p.send_signal(signal.SIGSTOP)  # a GC pause or VM stall longer than the TTL
            try:
                second = asyncio.create_task(_call(b.url, "sleep", args, "job-3"))
                await wait_until(
                    lambda: _taken_from(redis, lock, held), LOCK_TTL_S + 5, message="B takes over"
                )
                taken = await redis.get(lock)
            finally:
                a.p.send_signal(signal.SIGCONT)
            with pytest.raises(ToolError) as caught:
                await asyncio.wait_for(first, 10)
            assert await redis.get(lock) == taken  # still B's: A did not release it
            second.cancel()
            await asyncio.gather(second, return_exceptions=True)
    error = decode_tool_error(str(caught.value))
    assert error.code == "UNAVAILABLE" and error.retryable
