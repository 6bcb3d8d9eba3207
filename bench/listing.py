"""Listing at scale: ``GET /v1/jobs?status=running`` with many retained jobs.

    python -m bench.listing                 # 100,000 retained jobs, 50 running
    python -m bench.listing --jobs 2000     # the short version (CI)
    python -m bench.listing --cluster       # on a 3-master Redis Cluster (64 shards)

Fills a private ``redis-server`` (or a cluster of them: its jobs over 64 shards) through the
store's own scripts (submit, then run and end most jobs), then times the status listing
through the real API (the app over an in-process ASGI transport: no network, no server)
against the first page of every job. Prints p50/p99.
The target: a status listing answers in under 20 ms with 100,000 retained jobs.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench.chaos.waiting import wait_until
from shared import Job, JobStatus, Keys, SupervisorSettings, configure_logging, now
from shared.serving import free_port
from supervisor.app import create_app
from supervisor.store import Store, open_store

TARGET_MS = 20.0
RUNNING = 50


def make_job(created_at: float) -> Job:
    job_id = uuid.uuid4().hex
    return Job(
        id=job_id, status=JobStatus.QUEUED, capability="noop", correlation_id=job_id,
        created_at=created_at,
    )  # fmt: skip


async def fill(store: Store, total: int, running: int) -> None:
    """``total`` jobs through SUBMIT, all but ``running`` of them run and ended."""
    jobs = [make_job(now() + i * 1e-3) for i in range(total)]
    for start in range(0, total, 500):
        batch = jobs[start : start + 500]
        await asyncio.gather(
            *(store.submit(j, fingerprint="x", queue_limit=total + 1) for j in batch)
        )

    async def run_and_end(job: Job, ends: bool) -> None:
        await store.transition(
            job.id, allowed=[JobStatus.QUEUED], event="status", data={},
            status=JobStatus.RUNNING,
        )  # fmt: skip
        if ends:
            await store.transition(
                job.id, allowed=[JobStatus.RUNNING], event="status", data={},
                status=JobStatus.SUCCEEDED, finish=True,
            )  # fmt: skip

    for start in range(0, total, 500):
        batch = list(enumerate(jobs))[start : start + 500]
        await asyncio.gather(*(run_and_end(job, i >= running) for i, job in batch))


async def timed(http: httpx.AsyncClient, path: str, n: int) -> tuple[float, float, int]:
    samples, found = [], 0
    for _ in range(n):
        t = time.perf_counter()
        r = await http.get(path)
        samples.append((time.perf_counter() - t) * 1000)
        r.raise_for_status()
        found = len(r.json()["jobs"])
    samples.sort()
    return samples[len(samples) // 2], samples[int(len(samples) * 0.99) - 1], found


async def main(url: str, total: int, samples: int) -> dict[str, Any]:
    """Fill the store at ``url`` and time the listings (shards: the store's default)."""
    async with open_store(url, Keys("bench")) as store:
        await wait_until(store.ping, timeout=20, what="redis-server up")
        t = time.perf_counter()
        await fill(store, total, min(RUNNING, total))
        fill_s = time.perf_counter() - t
    settings = SupervisorSettings(redis_url=url, key_prefix="bench", workers="")
    app = create_app(settings, run_loops=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            running = await timed(http, "/v1/jobs?status=running&limit=50", samples)
            first = await timed(http, "/v1/jobs?limit=50", samples)
    return {"jobs": total, "fill_s": fill_s, "running": running, "first_page": first}


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.listing", description=__doc__)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--cluster", action="store_true", help="a 3-master Redis Cluster")
    args = parser.parse_args(argv)
    configure_logging("console", "WARNING")
    if args.cluster:
        from bench.cluster import RedisClusterProcs

        with RedisClusterProcs(masters=3) as cluster:
            out = asyncio.run(main(cluster.url, args.jobs, args.samples))
        where = "on a 3-master cluster, 64 shards"
        return _report(out, where)
    workdir = Path(tempfile.mkdtemp(prefix="fleet-listing-"))
    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        out = asyncio.run(main(f"redis://127.0.0.1:{port}/0", args.jobs, args.samples))
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)
    return _report(out, "on one Redis")


def _report(out: dict[str, Any], where: str) -> int:
    p50, p99, found = out["running"]
    print(f"{out['jobs']:,} retained jobs {where} "
          f"(filled through the scripts in {out['fill_s']:.0f} s)")  # fmt: skip
    print(f"GET /v1/jobs?status=running  p50 {p50:.2f} ms  p99 {p99:.2f} ms  ({found} jobs)"
          f"  target < {TARGET_MS:g} ms: {'PASS' if p50 < TARGET_MS else 'MISS'}")  # fmt: skip
    p50, p99, found = out["first_page"]
    print(f"GET /v1/jobs (first page)    p50 {p50:.2f} ms  p99 {p99:.2f} ms  ({found} jobs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(run())
