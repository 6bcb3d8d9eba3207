"""The systems compared, each able to run one job, enqueue one, and await an enqueued one.

- ``floor``: the supervisor's own MCP client (:class:`supervisor.calls.WorkerPool`: one reused
  aiohttp session, JSON-RPC POSTs, MCP 2026-07-28 sessionless when the worker speaks it, else
  the ``initialize`` handshake once) calling the worker directly. It is the floor because it
  is exactly what the supervisor does per job, minus everything else the supervisor does.
- ``fastmcp``: one reused ``fastmcp.Client``, what users write.
- ``fleet``: ``POST /v1/jobs?wait=`` (one round trip), or ``POST /v1/jobs`` then the job's
  SSE stream until ``done`` — over one aiohttp session, as a client would.
- ``foreign``: Celery or arq through their driver (:mod:`bench.speed.foreign`).

Every system offers ``latency`` (sequential), ``inflight`` (lanes that keep ``concurrency``
jobs in flight) and ``burst`` (enqueue all, then await all); the last two return seconds.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
from fastmcp import Client

from bench.speed.foreign import Driver
from shared.sse import SSEParser
from supervisor.calls import WorkerPool

__all__ = ["FastMCPClient", "Fleet", "Floor", "Foreign", "Local", "lanes", "sse_events"]

TIMEOUT_S = 120.0


async def lanes(n: int, concurrency: int, one: Callable[[], Awaitable[Any]]) -> None:
    """``n`` calls of ``one``, ``concurrency`` of them in flight until all are made."""
    left = n

    async def lane() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await one()

    await asyncio.gather(*(lane() for _ in range(concurrency)))


class Local:
    """A system driven from this process: subclasses give ``one``, ``submit`` and ``collect``."""

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def one(self) -> None:
        await self.collect(await self.submit())

    async def submit(self) -> Any:
        return asyncio.ensure_future(self.one())

    async def collect(self, handle: Any) -> None:
        await handle

    async def latency(self, n: int) -> list[float]:
        out = []
        for _ in range(n):
            t = time.perf_counter()
            await self.one()
            out.append((time.perf_counter() - t) * 1000)
        return out

    async def inflight(self, n: int, concurrency: int) -> float:
        t = time.perf_counter()
        await lanes(n, concurrency, self.one)
        return time.perf_counter() - t

    async def burst(self, n: int) -> float:
        t = time.perf_counter()
        handles = await asyncio.gather(*(self.submit() for _ in range(n)))
        await asyncio.gather(*(self.collect(h) for h in handles))
        return time.perf_counter() - t


class Floor(Local):
    def __init__(self, url: str) -> None:
        self.url = url
        self.pool = WorkerPool()

    async def one(self) -> None:
        await self.pool.call(self.url, "noop", {}, timeout=TIMEOUT_S)

    async def close(self) -> None:
        await self.pool.close()


class FastMCPClient(Local):
    def __init__(self, url: str) -> None:
        self.client = Client(url)

    async def start(self) -> None:
        await self.client.__aenter__()

    async def one(self) -> None:
        await self.client.call_tool("noop", {})

    async def close(self) -> None:
        await self.client.__aexit__(None, None, None)


async def sse_events(
    http: aiohttp.ClientSession, url: str
) -> AsyncIterator[tuple[float, dict[str, Any]]]:
    """A job's events as (wall time received, event), until and with ``done``."""
    parser = SSEParser()
    async with http.get(url) as response:
        response.raise_for_status()
        async for chunk in response.content.iter_any():
            now = time.time()
            for event in parser.feed(chunk):
                data = json.loads(event.data)
                yield now, data
                if data.get("type") == "done":
                    return


class Fleet(Local):
    """Jobs through a supervisor at ``base``: ``mode`` is ``wait`` or ``sse``."""

    def __init__(self, base: str, mode: str, capability: str = "noop") -> None:
        self.base = base
        self.mode = mode
        self.capability = capability
        self.http: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=512)
        self.http = aiohttp.ClientSession(
            self.base, connector=connector, timeout=aiohttp.ClientTimeout(total=TIMEOUT_S)
        )

    async def close(self) -> None:
        if self.http is not None:
            await self.http.close()

    def _session(self) -> aiohttp.ClientSession:
        assert self.http is not None
        return self.http

    async def one(self) -> None:
        if self.mode == "sse":
            await self.collect(await self.submit())
            return
        path = f"/v1/jobs?wait={TIMEOUT_S / 2:g}"
        async with self._session().post(path, json={"capability": self.capability}) as r:
            _succeeded(await r.json())

    async def submit(self) -> str:
        async with self._session().post("/v1/jobs", json={"capability": self.capability}) as r:
            body = await r.json()
        if r.status != 202:
            raise RuntimeError(f"submit answered {r.status}: {body}")
        return str(body["id"])

    async def collect(self, handle: str) -> None:
        if self.mode == "sse":
            async for _, event in sse_events(self._session(), f"/v1/jobs/{handle}/events"):
                if event["type"] == "done":
                    _succeeded(event["data"])
            return
        async with self._session().get(f"/v1/jobs/{handle}?wait={TIMEOUT_S / 2:g}") as r:
            _succeeded(await r.json())


def _succeeded(job: dict[str, Any]) -> None:
    if job.get("status") != "succeeded":
        raise RuntimeError(f"job did not succeed: {str(job)[:300]}")


class Foreign:
    """Celery or arq: every phase runs in the driver, in the framework's venv."""

    def __init__(self, driver: Driver) -> None:
        self.driver = driver

    async def start(self) -> None:
        await self.driver.start()
        await self.driver.ask({"op": "ready", "timeout": 60})

    async def close(self) -> None:
        await self.driver.close()

    async def latency(self, n: int) -> list[float]:
        return [float(x) for x in (await self.driver.ask({"op": "latency", "n": n}))["ms"]]

    async def inflight(self, n: int, concurrency: int) -> float:
        answer = await self.driver.ask({"op": "inflight", "n": n, "concurrency": concurrency})
        return float(answer["seconds"])

    async def burst(self, n: int) -> float:
        return float((await self.driver.ask({"op": "burst", "n": n}))["seconds"])
