"""The load generator for Celery and arq, run in their venv: one JSON command per stdin line,
one JSON answer per stdout line.

    python driver.py --kind celery --task noop      (PYTHONPATH holds this folder)
    {"op": "ready", "timeout": 60}                  -> {"ok": true} once a job round-trips
    {"op": "latency", "n": 500}                     -> {"ms": [...]}, one job at a time
    {"op": "inflight", "n": 2000, "concurrency": 64} -> {"seconds": s}
    {"op": "burst", "n": 2000}                      -> {"seconds": s}, all enqueued, then awaited

Sequential Celery jobs use ``delay().get()``, what users write. Concurrent ones wait on the
result backend's own notification (the Redis backend publishes every result on its key's
channel, which is what ``get()`` listens to), one subscription for all jobs in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from typing import Any

TIMEOUT_S = 120.0
META = "celery-task-meta-"


class CeleryRunner:
    def __init__(self, task: str) -> None:
        from celery_app import app

        self.task = app.tasks[task]
        self.pending: dict[str, asyncio.Future[Any]] = {}

    async def start(self) -> None:
        import redis.asyncio as aioredis

        self.redis = aioredis.from_url(os.environ["BENCH_REDIS_URL"])
        self.pubsub = self.redis.pubsub()
        await self.pubsub.psubscribe(META + "*")
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.pubsub.listen():
            if msg["type"] != "pmessage":
                continue
            future = self.pending.pop(msg["channel"].decode()[len(META) :], None)
            if future is None or future.done():
                continue
            meta = json.loads(msg["data"])
            if meta.get("status") == "SUCCESS":
                future.set_result(meta.get("result"))
            else:
                future.set_exception(RuntimeError(f"task ended {meta.get('status')}: {meta}"))

    async def sequential(self) -> None:
        self.task.delay().get(timeout=TIMEOUT_S)

    async def submit(self) -> asyncio.Future[Any]:
        task_id = uuid.uuid4().hex
        future = self.pending[task_id] = asyncio.get_running_loop().create_future()
        self.task.apply_async(task_id=task_id)
        return future

    async def collect(self, handle: asyncio.Future[Any]) -> None:
        await asyncio.wait_for(handle, TIMEOUT_S)


class ArqRunner:
    def __init__(self, task: str) -> None:
        self.task = task

    async def start(self) -> None:
        from arq import create_pool
        from arq.connections import RedisSettings

        self.pool = await create_pool(RedisSettings.from_dsn(os.environ["BENCH_REDIS_URL"]))

    async def sequential(self) -> None:
        await self.collect(await self.submit())

    async def submit(self) -> Any:
        return await self.pool.enqueue_job(self.task)

    async def collect(self, handle: Any) -> None:
        await handle.result(timeout=TIMEOUT_S, poll_delay=0.01)


async def one(runner: Any) -> None:
    await runner.collect(await runner.submit())


async def ready(runner: Any, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            await asyncio.wait_for(one(runner), max(0.1, min(5.0, deadline - time.monotonic())))
            return {"ok": True}
        except Exception as exc:
            if time.monotonic() >= deadline:
                return {"error": f"no job round-tripped in {timeout:g}s: {exc!r}"}


async def command(runner: Any, cmd: dict[str, Any]) -> dict[str, Any]:
    op, n = cmd["op"], int(cmd.get("n", 0))
    if op == "ready":
        return await ready(runner, float(cmd["timeout"]))
    if op == "latency":
        out = []
        for _ in range(n):
            t = time.perf_counter()
            await runner.sequential()
            out.append((time.perf_counter() - t) * 1000)
        return {"ms": out}
    t = time.perf_counter()
    if op == "inflight":
        left = n

        async def lane() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                await one(runner)

        await asyncio.gather(*(lane() for _ in range(int(cmd["concurrency"]))))
    elif op == "burst":
        handles = [await runner.submit() for _ in range(n)]
        await asyncio.gather(*(runner.collect(h) for h in handles))
    else:
        return {"error": f"unknown op {op!r}"}
    return {"seconds": time.perf_counter() - t}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kind", choices=["celery", "arq"], required=True)
    parser.add_argument("--task", required=True)
    args = parser.parse_args()
    runner = CeleryRunner(args.task) if args.kind == "celery" else ArqRunner(args.task)
    await runner.start()
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line or json.loads(line).get("op") == "quit":
            return
        try:
            answer = await command(runner, json.loads(line))
        except Exception as exc:
            answer = {"error": repr(exc)}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
