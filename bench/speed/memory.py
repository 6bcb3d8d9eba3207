"""Memory: the supervisor's RSS holding many queued jobs and many open SSE watchers.

A supervisor of its own (per store) is pointed at the ticks worker, whose ``hold`` tool runs
one at a time and never finishes while measured, so all but one ``hold`` job stay queued.
Its RSS is read when it is ready (idle) and again with ``queued`` jobs submitted and
``watchers`` event streams open on them (each has received its first event). It holds as
many of the queued jobs as a user's would (the default ``FLEET_WAITING_LIMIT``); on
``memory://`` every job's record is in the process anyway.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from bench.chaos.procs import free_port
from bench.chaos.waiting import wait_until
from bench.speed.procstat import rss_mb
from bench.speed.stack import Stack, supervisor_proc, wait_capabilities
from bench.speed.systems import TIMEOUT_S, sse_events

__all__ = ["measure_memory"]


async def _watch(http: aiohttp.ClientSession, job_id: str, seen: set[str]) -> None:
    async for _ in sse_events(http, f"/v1/jobs/{job_id}/events"):
        seen.add(job_id)


async def measure_memory(
    stack: Stack, store: str, queued: int, watchers: int, workdir: Path
) -> dict[str, Any]:
    port = free_port()
    url = "memory://" if store == "memory" else stack.redis_db(3)
    log = workdir / f"supervisor-{store}-memory.log"
    name = f"supervisor-{store}-memory"
    proc = supervisor_proc(name, port, url, [stack.ticks_url], log, held_limits=True)
    base = f"http://127.0.0.1:{port}"
    go = workdir / f"hold-{uuid.uuid4().hex}"
    proc.start()
    try:
        await wait_capabilities(proc, base, {"hold"})
        assert proc.p is not None
        idle = rss_mb(proc.p.pid)
        connector = aiohttp.TCPConnector(limit=watchers + 64)
        timeout = aiohttp.ClientTimeout(total=TIMEOUT_S * 5)
        async with aiohttp.ClientSession(base, connector=connector, timeout=timeout) as http:
            ids = await _submit(http, queued, str(go))
            seen: set[str] = set()
            tasks = [asyncio.create_task(_watch(http, i, seen)) for i in ids[:watchers]]
            try:
                await wait_until(
                    lambda: len(seen) >= watchers, timeout=120, what=f"{watchers} watchers"
                )
                loaded = rss_mb(proc.p.pid)
                async with http.get("/v1/queues") as r:
                    queues = await r.json()
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        go.touch()  # lets the running hold finish, so the supervisor stops at once
        return {
            "queued": queued,
            "watchers": watchers,
            "rss_idle_mb": idle,
            "rss_mb": loaded,
            "queues": queues,
        }
    finally:
        proc.stop()
        go.unlink(missing_ok=True)


async def _submit(http: aiohttp.ClientSession, total: int, go: str) -> list[str]:
    ids: list[str] = []
    body = {"capability": "hold", "input": {"go": go}, "timeout_s": 3600}

    async def lane() -> None:
        while len(ids) < total:
            ids.append("")  # claims a slot before the await, so no lane overshoots
            slot = len(ids) - 1
            async with http.post("/v1/jobs", json=body) as r:
                answer = await r.json()
            if r.status != 202:
                raise RuntimeError(f"submit answered {r.status}: {str(answer)[:200]}")
            ids[slot] = str(answer["id"])

    await asyncio.gather(*(lane() for _ in range(64)))
    return ids
