"""What the supervisor costs, side by side with calling the worker directly.

    ./run bench                      # memory store, 300 sequential calls, 2000 at 64 in flight
    ./run bench --redis redis://127.0.0.1:6379/0 --calls 500 --json

Starts, on this machine, a no-op MCP worker (its own process) and a supervisor (its own
process), then measures:

1. latency, sequential: direct ``call_tool`` through one reused FastMCP client, against a
   job through the supervisor (``POST /v1/jobs?wait=`` — submit to result in one round trip);
2. throughput with 64 in flight, the same two ways;
3. progress latency: from the worker's ``report_progress`` to an SSE watcher of the job
   (wall clocks of one machine), and how many progress events arrived.

Targets: the supervisor adds at most 3 ms at p50; throughput at least 0.8x direct; progress
reaches the watcher within 5 ms p50 with no event lost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from fastmcp import Client, Context, FastMCP

from shared.serving import free_port

ROOT = Path(__file__).resolve().parent.parent


# -- the worker under test (runs in its own process: `overhead.py --serve-worker PORT`) ------


def serve_worker(port: int) -> None:
    mcp = FastMCP("bench")

    @mcp.tool(annotations={"idempotentHint": True})
    async def noop() -> dict[str, bool]:
        """Do nothing."""
        return {"ok": True}

    @mcp.tool(annotations={"idempotentHint": True})
    async def ticks(n: int, interval_ms: float, ctx: Context) -> dict[str, int]:
        """Report n progress events, each carrying the wall time it was sent at."""
        for i in range(n):
            await asyncio.sleep(interval_ms / 1000)
            await ctx.report_progress(i + 1, n, repr(time.time()))
        return {"n": n}

    mcp.run(transport="http", host="127.0.0.1", port=port, path="/mcp", log_level="warning")


# -- helpers ----------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"{url} did not come up in {timeout}s")


def spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    quiet = subprocess.DEVNULL
    return subprocess.Popen(args, cwd=ROOT, env={**os.environ, **env}, stdout=quiet, stderr=quiet)


# -- measurements -----------------------------------------------------------------------------


async def direct(url: str, calls: int, concurrency: int) -> dict[str, float]:
    async with Client(url) as client:
        for _ in range(20):
            await client.call_tool("noop", {})
        lat = []
        for _ in range(calls):
            t = time.perf_counter()
            await client.call_tool("noop", {})
            lat.append((time.perf_counter() - t) * 1000)
        rate = await _throughput(lambda: client.call_tool("noop", {}), calls * 4, concurrency)
    return {"p50_ms": pct(lat, 0.5), "p99_ms": pct(lat, 0.99), "throughput": rate}


async def via_supervisor(base: str, calls: int, concurrency: int) -> dict[str, float]:
    # aiohttp as the submitting client: httpx's pool spends O(connections) CPU per request,
    # which at 64 in flight would measure the load generator rather than the supervisor.
    connector = aiohttp.TCPConnector(limit=concurrency + 8)
    async with aiohttp.ClientSession(base, connector=connector) as api:

        async def one() -> None:
            async with api.post("/v1/jobs?wait=30", json={"capability": "noop"}) as r:
                body = await r.json()
            if body.get("status") != "succeeded":
                raise RuntimeError(f"job did not succeed: {body}")

        for _ in range(20):
            await one()
        lat = []
        for _ in range(calls):
            t = time.perf_counter()
            await one()
            lat.append((time.perf_counter() - t) * 1000)
        rate = await _throughput(one, calls * 4, concurrency)
    return {"p50_ms": pct(lat, 0.5), "p99_ms": pct(lat, 0.99), "throughput": rate}


async def _throughput(fn: Any, total: int, concurrency: int) -> float:
    remaining = total

    async def lane() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await fn()

    t = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return total / (time.perf_counter() - t)


async def progress_latency(base: str, n: int) -> dict[str, float]:
    async with httpx.AsyncClient(base_url=base, timeout=60) as api:
        job = (
            await api.post(
                "/v1/jobs", json={"capability": "ticks", "input": {"n": n, "interval_ms": 5}}
            )
        ).json()
        lat: list[float] = []
        async with api.stream("GET", f"/v1/jobs/{job['id']}/events") as r:
            async for line in r.aiter_lines():
                if not line.startswith("data:"):
                    continue
                now = time.time()
                event = json.loads(line[5:])
                if event["type"] == "progress":
                    lat.append((now - float(event["data"]["message"])) * 1000)
                elif event["type"] == "done":
                    break
    return {"p50_ms": pct(lat, 0.5), "p99_ms": pct(lat, 0.99), "received": len(lat), "sent": n}


# -- main -------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=300, help="sequential calls per side")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--progress-events", type=int, default=200)
    parser.add_argument("--redis", default=None, help="use this Redis URL instead of memory://")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    parser.add_argument("--serve-worker", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_worker is not None:
        serve_worker(args.serve_worker)
        return

    env = {"FASTMCP_CHECK_FOR_UPDATES": "off", "FASTMCP_SHOW_SERVER_BANNER": "false"}
    wport, sport = free_port(), free_port()
    worker_url = f"http://127.0.0.1:{wport}/mcp"
    prefix = f"fleet-bench-{os.getpid()}"
    procs = [spawn([sys.executable, __file__, "--serve-worker", str(wport)], env)]
    try:
        wait_http(f"http://127.0.0.1:{wport}/mcp")
        sup_env = {
            **env,
            "FLEET_HOST": "127.0.0.1",
            "FLEET_PORT": str(sport),
            "FLEET_WORKERS": worker_url,
            "FLEET_REDIS_URL": args.redis or "memory://",
            "FLEET_KEY_PREFIX": prefix,
            "FLEET_LOG_LEVEL": "WARNING",
            "FLEET_QUEUE_LIMIT": "100000",
        }
        procs.append(spawn([sys.executable, "-m", "supervisor.server"], sup_env))
        base = f"http://127.0.0.1:{sport}"
        wait_http(base + "/healthz")
        deadline = time.monotonic() + 30
        while not httpx.get(base + "/v1/capabilities").json()["capabilities"].get("noop"):
            if time.monotonic() > deadline:
                raise SystemExit("supervisor never saw the worker")
            time.sleep(0.05)
        d = asyncio.run(direct(worker_url, args.calls, args.concurrency))
        s = asyncio.run(via_supervisor(base, args.calls, args.concurrency))
        p = asyncio.run(progress_latency(base, args.progress_events))
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        if args.redis:
            import redis

            client = redis.Redis.from_url(args.redis)
            keys = list(client.scan_iter(match=f"{prefix}:*"))
            if keys:
                client.delete(*keys)
            client.close()

    added = s["p50_ms"] - d["p50_ms"]
    ratio = s["throughput"] / d["throughput"]
    verdicts = {
        "added_p50_ms": (added, added <= 3.0, "<= 3 ms"),
        "throughput_ratio": (ratio, ratio >= 0.8, ">= 0.8x"),
        "progress_p50_ms": (p["p50_ms"], p["p50_ms"] <= 5.0, "<= 5 ms"),
        "progress_lost": (p["sent"] - p["received"], p["sent"] == p["received"], "0"),
    }
    if args.json:
        print(
            json.dumps(
                {
                    "direct": d,
                    "supervisor": s,
                    "progress": p,
                    "verdicts": {
                        k: {"value": v, "ok": ok, "target": t} for k, (v, ok, t) in verdicts.items()
                    },
                },
                indent=2,
            )
        )
        return
    print(
        f"store: {args.redis or 'memory://'}   cores: {os.cpu_count()}   calls: {args.calls} "
        f"sequential, {args.calls * 4} at {args.concurrency} in flight\n"
    )
    print(f"{'':28}{'direct (1 client)':>20}{'via supervisor':>18}")
    print(f"{'latency p50 (ms)':28}{d['p50_ms']:>20.2f}{s['p50_ms']:>18.2f}")
    print(f"{'latency p99 (ms)':28}{d['p99_ms']:>20.2f}{s['p99_ms']:>18.2f}")
    print(f"{'throughput (calls/s)':28}{d['throughput']:>20.0f}{s['throughput']:>18.0f}")
    print(
        f"\nprogress → SSE watcher: p50 {p['p50_ms']:.2f} ms, p99 {p['p99_ms']:.2f} ms, "
        f"{p['received']}/{p['sent']} events\n"
    )
    for name, (value, ok, target) in verdicts.items():
        print(f"  {'PASS' if ok else 'MISS'}  {name:18} {value:8.2f}   target {target}")


if __name__ == "__main__":
    main()
