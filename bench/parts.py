"""``./run bench parts`` — what the parts of one job cost in CPU, each measured alone.

A job through the supervisor is, at the least: one HTTP request served (the submit), one MCP
``tools/call`` made to a worker, and Redis round trips to record it (the aim of issue-grade
designs is three: submit, take with its lease, finish). Each part is measured here on its
own, on this machine, with the same libraries the supervisor runs on, 64 in flight:

- ``HTTP in``: a bare ASGI app (no routing, no middleware, a fixed 202 JSON answer) served by
  :func:`shared.serving.run` as the supervisor is (uvicorn, httptools, uvloop), driven by
  aiohttp; the server process's CPU per request from ``/proc``.
- ``MCP call out``: the supervisor's own MCP client (:class:`supervisor.calls.WorkerPool`)
  calling the kit's echo worker's no-op tool; this process's CPU per call.
- ``Redis round trip``: redis-py's asyncio client (hiredis) running a one-line script by
  ``EVALSHA``; this process's CPU per call.

Their sum (HTTP in + MCP out + 3 Redis round trips) is what any single Python process that
serves a durable MCP job queue spends per job before doing anything else: the floor the
supervisor's own CPU per job is measured against. Prints a table; ``--json FILE`` keeps it.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from bench.chaos.procs import Proc, _env, free_port, redis_answers, redis_server, stop_all
from bench.speed.procstat import cpu_seconds
from bench.speed.stack import wait_answers
from bench.speed.stats import spread
from bench.speed.systems import lanes
from bench.startup import _commit
from supervisor.calls import WorkerPool

__all__ = ["app", "main"]

CONCURRENCY = 64
ROUND_TRIPS = 3
HTTP_SCALE = 10
"""The HTTP part runs this many times ``n`` requests: the server's CPU is read from ``/proc``
in clock ticks (10 ms), and a bare endpoint costs ~0.03 ms a request, so ``n`` of them alone
could read as one tick or none."""


async def app(scope: dict[str, Any], receive: Callable[[], Awaitable[Any]], send: Any) -> None:
    """The least an HTTP endpoint can do: read the body, answer 202 with a fixed JSON."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 202,
                "headers": [(b"content-type", b"application/json")]})  # fmt: skip
    await send({"type": "http.response.body", "body": b'{"id":"0","status":"queued"}'})


async def _lanes(n: int, one: Callable[[], Awaitable[Any]]) -> None:
    await lanes(n, CONCURRENCY, one)


async def _http_in(base: str, server_pid: int, n: int) -> float:
    async with aiohttp.ClientSession(base, connector=aiohttp.TCPConnector(limit=512)) as http:

        async def one() -> None:
            async with http.post("/v1/jobs", json={"capability": "noop"}) as r:
                await r.read()

        await _lanes(200, one)
        before = cpu_seconds([server_pid])
        await _lanes(n, one)
        return (cpu_seconds([server_pid]) - before) * 1000 / n


async def _mine(n: int, one: Callable[[], Awaitable[Any]]) -> float:
    """This process's CPU per ``one()``, ms."""
    await _lanes(200, one)
    before = time.process_time()
    await _lanes(n, one)
    return (time.process_time() - before) * 1000 / n


async def _mcp_out(url: str, n: int) -> float:
    pool = WorkerPool()
    try:
        return await _mine(n, lambda: pool.call(url, "noop", {}, timeout=60))
    finally:
        await pool.close()


async def _redis(url: str, n: int) -> float:
    client = aioredis.Redis.from_url(url, max_connections=CONCURRENCY * 2)
    try:
        script = client.register_script("return redis.call('INCR', KEYS[1])")
        sha = await client.script_load(script.script)
        return await _mine(n, lambda: client.evalsha(sha, 1, "parts:counter"))
    finally:
        await client.aclose()


async def measure(rounds: int, n: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="fleet-parts-"))
    procs: list[Proc] = []
    binary = redis_server()
    if binary is None:
        raise RuntimeError("redis-server is not installed (the bench runs its own)")
    redis_port, http_port, echo_port = free_port(), free_port(), free_port()
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    procs.append(Proc("redis", [binary, "--port", str(redis_port), "--bind", "127.0.0.1",
                                "--save", "", "--appendonly", "no"], _env({}),
                      work / "redis.log"))  # fmt: skip
    procs.append(Proc("http", [sys.executable, "-m", "bench.parts", "--serve", str(http_port)],
                      _env({}), work / "http.log"))  # fmt: skip
    procs.append(Proc("echo", [sys.executable, "-m", "workers.echo", "--host", "127.0.0.1",
                               "--port", str(echo_port)], _env({}), work / "echo.log"))  # fmt: skip
    values: dict[str, list[float]] = {"http_in": [], "mcp_out": [], "redis": []}
    try:
        for proc in procs:
            proc.start()
        await redis_answers(procs[0], redis_url, timeout=60)
        base = f"http://127.0.0.1:{http_port}"
        await wait_answers(procs[1], base + "/", ok_below=300)
        echo = f"http://127.0.0.1:{echo_port}/mcp"
        await wait_answers(procs[2], echo.replace("/mcp", "/health"), ok_below=300)
        assert procs[1].p is not None
        for _ in range(rounds):  # rotating, as the speed bench does
            values["http_in"].append(await _http_in(base, procs[1].p.pid, n * HTTP_SCALE))
            values["mcp_out"].append(await _mcp_out(echo, n))
            values["redis"].append(await _redis(redis_url, n))
    finally:
        stop_all(procs)
    parts = {name: spread(v) for name, v in values.items()}
    floor = [h + m + ROUND_TRIPS * r for h, m, r in zip(*values.values(), strict=True)]
    return {"date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "commit": _commit(), "load_average": [round(x, 2) for x in os.getloadavg()],
            "rounds": rounds, "n": n, "parts": parts, "floor_ms": spread(floor)}  # fmt: skip


def _cell(s: dict[str, float]) -> str:
    return f"{s['median']:.3f} ({s['min']:.3f}–{s['max']:.3f})"


def print_report(report: dict[str, Any]) -> None:
    p = report["parts"]
    print(f"parts bench  {report['date']}  commit {report['commit']}  "
          f"load average {report['load_average']}\n")  # fmt: skip
    print(f"| part (CPU ms per operation, {report['rounds']} rounds × {report['n']}; HTTP in "
          f"× {report['n'] * HTTP_SCALE}) | ms |")  # fmt: skip
    print("|---|---|")
    print(f"| HTTP in: a bare ASGI endpoint under uvicorn (server's CPU) | {_cell(p['http_in'])} |")
    print(f"| MCP call out: the supervisor's MCP client, no-op tool | {_cell(p['mcp_out'])} |")
    print(f"| Redis round trip: one EVALSHA through redis-py | {_cell(p['redis'])} |")
    print(f"| **floor: HTTP in + MCP out + {ROUND_TRIPS} round trips** | "
          f"**{_cell(report['floor_ms'])}** |")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="./run bench parts", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("-n", type=int, default=3000, help="operations per part and round")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # the HTTP part's server
    args = parser.parse_args(argv)
    if args.serve:
        from shared.serving import run

        run(app, host="127.0.0.1", port=args.serve, log_level="warning")
        return 0
    report = asyncio.run(measure(args.rounds, args.n))
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
