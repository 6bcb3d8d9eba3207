"""Progress end to end: a progress-heavy job (the ticks worker) and 0, 1 or 100 SSE watchers.

The job waits until every watcher has its stream open (a file it polls for), then reports
``n`` progress events as fast as the kit sends them, each message the wall time it was sent
at. Per run: events/s (``n`` over the time from the go to the last watcher's ``done``, or to
the job's end with nobody watching); p50/p99 from the worker's emit and from the
supervisor's append (the event's ``ts``) to each watcher's receipt; and events lost — per
watcher, and in the job's stored log read again afterwards. The CPU the supervisor and the
watchers used meanwhile, as a share of one core, tells who was the bottleneck (divided by
events/s and watchers: each one's CPU per event delivered to one watcher).

Every watcher is the same Python client (:func:`bench.speed.systems.sse_events`: aiohttp,
the fleet's :class:`~shared.sse.SSEParser`, ``json.loads`` of each event): about 16 µs of CPU
per event it receives, against the supervisor's ~2 µs to deliver it. With 100 watchers this
process is then the first to run out of CPU (one core: about 60,000 events received a
second, 600 events/s for each of 100 watchers). ``BENCH_WATCHER_PROCESSES=N`` (or ``auto``:
one per core) spreads a crowd of watchers over N processes (:data:`PER_PROCESS` watchers or
more each; their CPU is summed): on a box with idle cores that lifts the row to what the
supervisor delivers. It is off by default, so runs stay comparable: on 2 cores shared with
the supervisor, the worker and other load, two watcher processes measured no faster than
one (they only compete for the same cores).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from bench.chaos.waiting import wait_until
from bench.speed.procstat import cpu_seconds
from bench.speed.stats import pct
from bench.speed.systems import TIMEOUT_S, sse_events

__all__ = ["PER_PROCESS", "measure_progress"]

PER_PROCESS = 50
"""Watchers below this many per process stay together (so 1 watcher: this process)."""
_CONNECT_S = 60.0


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


class _Result:
    """What a group of watchers saw: latencies, the last ``done`` and the CPU they used."""

    def __init__(self) -> None:
        self.emit: list[float] = []
        self.append: list[float] = []
        self.done_at = 0.0
        self.cpu = 0.0

    def add(self, crowd: list[_Watcher]) -> None:
        for w in crowd:
            self.emit += w.emit_ms
            self.append += w.append_ms
            self.done_at = max(self.done_at, w.done_at)


def _session(base: str, watchers: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=watchers + 16)
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
    return aiohttp.ClientSession(base, connector=connector, timeout=timeout)


def processes_for(watchers: int) -> int:
    """How many processes ``watchers`` are spread over (see the module): ``1`` unless
    ``BENCH_WATCHER_PROCESSES`` says more, and never fewer than :data:`PER_PROCESS` each."""
    wanted = os.environ.get("BENCH_WATCHER_PROCESSES", "1")
    most = (os.cpu_count() or 1) if wanted == "auto" else int(wanted)
    return max(1, min(most, watchers // PER_PROCESS))


class _Group:
    """Watchers in a process of their own (``python -m bench.speed.progress``)."""

    def __init__(self, proc: asyncio.subprocess.Process, out: Path) -> None:
        self.proc = proc
        self.out = out
        self.cpu0 = 0.0

    @classmethod
    async def start(cls, base: str, job_id: str, watchers: int, workdir: Path) -> _Group:
        out = workdir / f"watchers-{uuid.uuid4().hex}.json"
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.speed.progress", base, job_id, str(watchers), str(out),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        return cls(proc, out)

    async def _line(self, what: str) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = await self.proc.stdout.readline()
        if not line:
            code = await self.proc.wait()
            raise RuntimeError(f"watchers' process exited with {code} before {what}")
        out: dict[str, Any] = json.loads(line)
        return out

    async def connected(self) -> None:
        self.cpu0 = (await self._line("connecting"))["cpu"]

    async def finish(self, result: _Result) -> None:
        line = await self._line("the job's end")
        data = json.loads(self.out.read_text())
        self.out.unlink(missing_ok=True)
        result.emit += data["emit"]
        result.append += data["append"]
        result.done_at = max(result.done_at, data["done_at"])
        result.cpu += line["cpu"] - self.cpu0
        await self.proc.wait()

    def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()


async def _watch_here(base: str, job_id: str, watchers: int, out: Path) -> None:
    """A process's share of the watchers: says (one JSON line each) when all are connected
    and when all saw ``done``, with its CPU time then; the latencies go to ``out``."""
    async with _session(base, watchers) as http:
        crowd = [_Watcher() for _ in range(watchers)]
        tasks = [asyncio.create_task(w.watch(http, job_id)) for w in crowd]
        await wait_until(lambda: all(w.connected for w in crowd), timeout=_CONNECT_S,
                         what=f"{watchers} watchers connected", interval=0.005)  # fmt: skip
        print(json.dumps({"cpu": time.process_time()}), flush=True)
        await asyncio.gather(*tasks)
        cpu = time.process_time()
    result = _Result()
    result.add(crowd)
    body = {"emit": result.emit, "append": result.append, "done_at": result.done_at}
    out.write_text(json.dumps(body))  # noqa: ASYNC240 (once, after the measurement)
    print(json.dumps({"cpu": cpu}), flush=True)


async def _stored(http: aiohttp.ClientSession, job_id: str) -> int:
    count = 0
    async for _, event in sse_events(http, f"/v1/jobs/{job_id}/events"):
        count += event["type"] == "progress"
    return count


async def measure_progress(
    base: str, supervisor: int, watchers: int, n: int, workdir: Path
) -> dict[str, Any]:
    go = workdir / f"go-{uuid.uuid4().hex}"
    spread = processes_for(watchers)
    here = watchers if spread == 1 else 0
    async with _session(base, here) as http:
        body = {"capability": "ticks", "input": {"n": n, "go": str(go)}}
        async with http.post("/v1/jobs", json=body) as r:
            job_id = (await r.json())["id"]
        crowd = [_Watcher() for _ in range(here)]
        tasks = [asyncio.create_task(w.watch(http, job_id)) for w in crowd]
        groups: list[_Group] = []
        result = _Result()
        try:
            if spread > 1:
                shares = [watchers // spread + (i < watchers % spread) for i in range(spread)]
                groups = [await _Group.start(base, job_id, k, workdir) for k in shares]
                async with asyncio.timeout(_CONNECT_S + 30):
                    await asyncio.gather(*(g.connected() for g in groups))
            await wait_until(
                lambda: all(w.connected for w in crowd),
                timeout=_CONNECT_S,
                what=f"{watchers} watchers connected",
                interval=0.005,
            )
            start, cpu = time.time(), (time.process_time(), cpu_seconds([supervisor]))
            go.touch()
            if watchers:
                await asyncio.gather(*tasks, *(g.finish(result) for g in groups))
                result.add(crowd)
                end = result.done_at
            else:
                async with http.get(f"/v1/jobs/{job_id}?wait={TIMEOUT_S / 2:g}") as r:
                    job = await r.json()
                end = time.time()
                if job.get("status") != "succeeded":
                    raise RuntimeError(f"ticks job ended {job.get('status')}: {job.get('error')}")
            client_cpu = time.process_time() - cpu[0] + result.cpu
            supervisor_cpu = cpu_seconds([supervisor]) - cpu[1]
        finally:
            for task in tasks:
                task.cancel()
            for group in groups:
                group.kill()
            go.unlink(missing_ok=True)
        stored = await _stored(http, job_id)
    elapsed = max(end - start, 1e-9)
    return {
        "events_s": n / elapsed,
        "emit_p50_ms": pct(result.emit, 0.5),
        "emit_p99_ms": pct(result.emit, 0.99),
        "append_p50_ms": pct(result.append, 0.5),
        "append_p99_ms": pct(result.append, 0.99),
        "lost": float(max(n * watchers - len(result.emit), n - stored)),
        "supervisor_cpu_pct": 100 * supervisor_cpu / elapsed,
        "client_cpu_pct": 100 * client_cpu / elapsed,
    }


if __name__ == "__main__":  # one process's share of a crowd (see _Group)
    _base, _job, _count, _out = sys.argv[1:5]
    asyncio.run(_watch_here(_base, _job, int(_count), Path(_out)))
