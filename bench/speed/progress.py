"""Progress end to end: a progress-heavy job (the ticks worker) and 0, 1 or 100 SSE watchers.

The job waits until every watcher has its stream open (a file it polls for), then reports
``n`` progress events as fast as the kit sends them, each message the wall time it was sent
at. Per run: events/s (``n`` over the time from the go to the last watcher's ``done``, or to
the job's end with nobody watching); p50/p99 from the worker's emit and from the
supervisor's append (the event's ``ts``) to each watcher's receipt; and events lost — per
watcher, and in the job's stored log read again afterwards. The CPU the supervisor and this
process (the watchers) used meanwhile, as a share of one core, tells who was the bottleneck.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from bench.chaos.waiting import wait_until
from bench.speed.procstat import cpu_seconds
from bench.speed.stats import pct
from bench.speed.systems import TIMEOUT_S, sse_events

__all__ = ["measure_progress"]


class _Watcher:
    def __init__(self) -> None:
        self.connected = False
        self.emit_ms: list[float] = []
        self.append_ms: list[float] = []
        self.done_at = 0.0

    async def watch(self, http: aiohttp.ClientSession, job_id: str) -> None:
        async for now, event in sse_events(http, f"/v1/jobs/{job_id}/events"):
            self.connected = True
            if event["type"] == "progress":
                self.emit_ms.append((now - float(event["data"]["message"])) * 1000)
                self.append_ms.append((now - float(event["ts"])) * 1000)
            elif event["type"] == "done":
                self.done_at = now


async def _stored(http: aiohttp.ClientSession, job_id: str) -> int:
    count = 0
    async for _, event in sse_events(http, f"/v1/jobs/{job_id}/events"):
        count += event["type"] == "progress"
    return count


async def measure_progress(
    base: str, supervisor: int, watchers: int, n: int, workdir: Path
) -> dict[str, Any]:
    go = workdir / f"go-{uuid.uuid4().hex}"
    connector = aiohttp.TCPConnector(limit=watchers + 16)
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
    async with aiohttp.ClientSession(base, connector=connector, timeout=timeout) as http:
        body = {"capability": "ticks", "input": {"n": n, "go": str(go)}}
        async with http.post("/v1/jobs", json=body) as r:
            job_id = (await r.json())["id"]
        crowd = [_Watcher() for _ in range(watchers)]
        tasks = [asyncio.create_task(w.watch(http, job_id)) for w in crowd]
        try:
            await wait_until(
                lambda: all(w.connected for w in crowd),
                timeout=60,
                what=f"{watchers} watchers connected",
                interval=0.005,
            )
            start, cpu = time.time(), (time.process_time(), cpu_seconds([supervisor]))
            go.touch()
            if crowd:
                await asyncio.gather(*tasks)
                end = max(w.done_at for w in crowd)
            else:
                async with http.get(f"/v1/jobs/{job_id}?wait={TIMEOUT_S / 2:g}") as r:
                    job = await r.json()
                end = time.time()
                if job.get("status") != "succeeded":
                    raise RuntimeError(f"ticks job ended {job.get('status')}: {job.get('error')}")
            client_cpu = time.process_time() - cpu[0]
            supervisor_cpu = cpu_seconds([supervisor]) - cpu[1]
        finally:
            for task in tasks:
                task.cancel()
            go.unlink(missing_ok=True)
        stored = await _stored(http, job_id)
    emit = [x for w in crowd for x in w.emit_ms]
    append = [x for w in crowd for x in w.append_ms]
    elapsed = max(end - start, 1e-9)
    return {
        "events_s": n / elapsed,
        "emit_p50_ms": pct(emit, 0.5),
        "emit_p99_ms": pct(emit, 0.99),
        "append_p50_ms": pct(append, 0.5),
        "append_p99_ms": pct(append, 0.99),
        "lost": float(max(n * watchers - len(emit), n - stored)),
        "supervisor_cpu_pct": 100 * supervisor_cpu / elapsed,
        "client_cpu_pct": 100 * client_cpu / elapsed,
    }
