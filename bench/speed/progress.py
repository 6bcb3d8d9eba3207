"""Progress end to end: a progress-heavy job (the ticks worker) and 0, 1 or 100 SSE watchers.

The job waits until every watcher has its stream open (a file it polls for), then reports ``n``
progress events as fast as the kit sends them (or paced, ``rate`` a second), each message the
wall time it was sent at. Per run: events/s (``n`` over the time from the go to the last
watcher's ``done``, or to the job's end with nobody watching); p50/p99 from the worker's emit
and from the supervisor's append (the event's ``ts``) to each watcher's receipt; and events lost
— per watcher, and in the job's stored log read again afterwards. The CPU the supervisor and the
watchers used meanwhile, as a share of one core, tells who was the bottleneck (divided by
events/s and watchers: each one's CPU per event delivered to one watcher).

Every watcher is the same lean client (:class:`_Watcher`: its own HTTP/1.1 connection,
``httptools`` for the response, one regular expression per chunk for the events' times): about
2 µs of CPU per event it receives. The fleet's full Python client (aiohttp, the fleet's
:class:`~shared.sse.SSEParser`, ``json.loads`` of each event) costs about 20 µs an event, so
with it 100 watchers on this box measured the client (one core: some 500 events/s for each of
100 watchers) rather than the fleet, which delivers an event to a watcher for ~2 µs: the
watcher's job is to measure what the fleet delivers, as ``wrk`` rather than a browser
measures a web server. ``BENCH_WATCHER_PROCESSES=N`` (or ``auto``: one per core) spreads a
crowd of watchers over N processes (:data:`PER_PROCESS` watchers or more each; their CPU is
summed), for a box with idle cores; off by default, so runs stay comparable.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import httptools

from bench.chaos.waiting import wait_until
from bench.speed.procstat import cpu_seconds
from bench.speed.stats import pct
from bench.speed.systems import TIMEOUT_S, sse_events

__all__ = ["PER_PROCESS", "measure_progress"]

PER_PROCESS = 50
"""Watchers below this many per process stay together (so 1 watcher: this process)."""
_CONNECT_S = 60.0


_PROGRESS = re.compile(
    rb'"ts":([0-9.e+-]+),"data":\{"progress":[^,]*,"total":[^,]*,"message":"([^"]*)"'
)
"""A progress event's append time and message, as the supervisor writes an event's JSON (a
change of that shape matches nothing: the row then shows every event lost, never a pass)."""
_DONE = b"event: done\r\n"
_END = b"\r\n\r\n"


class _Watcher(asyncio.Protocol):
    """One watcher: a lean client of the job's event stream, so that with 100 of them the
    rows measure the fleet's fan-out rather than the client.

    Its own HTTP/1.1 connection, the response parsed by ``httptools`` (the parser uvicorn
    uses; chunked bodies in C), and each body chunk's complete events scanned by one regular
    expression for the append time ``ts`` and the emit time in ``message`` of every progress
    event, and for ``done``. No coroutine per chunk: about 2 µs of CPU per event received,
    against ~20 µs for an aiohttp stream read by the fleet's full Python client
    (:class:`~shared.sse.SSEParser` and ``json.loads`` of each event), which was the first to
    run out of CPU with 100 watchers on this box."""

    def __init__(self) -> None:
        self.connected = False
        self.done_at = 0.0
        self._seen: list[tuple[float, list[tuple[bytes, bytes]]]] = []
        """(receipt time, the chunk's (ts, message) pairs): latencies are worked out after the
        run, so the watcher spends its time receiving."""
        self._carry = b""
        self._parser = httptools.HttpResponseParser(self)
        self._ended: asyncio.Future[None] | None = None
        self._transport: asyncio.Transport | None = None

    async def watch(self, base: str, job_id: str) -> None:
        url = urlsplit(base)
        loop = asyncio.get_running_loop()
        self._ended = loop.create_future()
        transport, _ = await loop.create_connection(lambda: self, url.hostname, url.port)
        request = (
            f"GET /v1/jobs/{job_id}/events HTTP/1.1\r\nHost: {url.netloc}\r\n"
            "Accept: text/event-stream\r\n\r\n"
        )
        transport.write(request.encode())
        try:
            async with asyncio.timeout(TIMEOUT_S):
                await self._ended
        finally:
            transport.close()

    # -- asyncio.Protocol and httptools callbacks ------------------------------------------

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._end(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(exc or ConnectionError("the event stream closed before done"))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status != 200:
            self._end(RuntimeError(f"the event stream answered {status}"))

    def on_body(self, chunk: bytes) -> None:
        now = time.time()
        self.connected = True
        buffer = self._carry + chunk if self._carry else chunk
        end = buffer.rfind(_END)
        if end < 0:
            self._carry = buffer
            return
        self._carry, events = buffer[end + 4 :], buffer[: end + 4]
        self._seen.append((now, _PROGRESS.findall(events)))
        if _DONE in events:
            self.done_at = now
            self._end(None)

    @property
    def emit_ms(self) -> list[float]:
        return [(now - float(m)) * 1000 for now, pairs in self._seen for _, m in pairs]

    @property
    def append_ms(self) -> list[float]:
        return [(now - float(ts)) * 1000 for now, pairs in self._seen for ts, _ in pairs]

    def _end(self, exc: BaseException | None) -> None:
        if self._ended is not None and not self._ended.done():
            if exc is None:
                self._ended.set_result(None)
            else:
                self._ended.set_exception(exc)


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


def _session(base: str) -> aiohttp.ClientSession:
    """The driver's own requests (the job, its stored log): the watchers connect themselves."""
    return aiohttp.ClientSession(base, timeout=aiohttp.ClientTimeout(total=TIMEOUT_S))


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
    crowd = [_Watcher() for _ in range(watchers)]
    tasks = [asyncio.create_task(w.watch(base, job_id)) for w in crowd]
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
    base: str, supervisor: int, watchers: int, n: int, workdir: Path, rate: float = 0
) -> dict[str, Any]:
    """One run; ``rate``: the worker's events/s (0: as fast as it can)."""
    go = workdir / f"go-{uuid.uuid4().hex}"
    spread = processes_for(watchers)
    here = watchers if spread == 1 else 0
    async with _session(base) as http:
        body = {"capability": "ticks", "input": {"n": n, "go": str(go), "rate": rate}}
        async with http.post("/v1/jobs", json=body) as r:
            job_id = (await r.json())["id"]
        crowd = [_Watcher() for _ in range(here)]
        tasks = [asyncio.create_task(w.watch(base, job_id)) for w in crowd]
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
                mine = time.process_time()  # the latencies below are worked out after it
                result.add(crowd)
                end = result.done_at
            else:
                async with http.get(f"/v1/jobs/{job_id}?wait={TIMEOUT_S / 2:g}") as r:
                    job = await r.json()
                end, mine = time.time(), time.process_time()
                if job.get("status") != "succeeded":
                    raise RuntimeError(f"ticks job ended {job.get('status')}: {job.get('error')}")
            client_cpu = mine - cpu[0] + result.cpu
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
