"""Watchers' impact on job durations: one batch of paced jobs run with no watchers, and again
with many SSE watchers open on the jobs' event streams, on the same supervisor.

A batch is ``impact_jobs`` jobs of the ticks worker's ``paced`` tool (``impact_events``
progress reports evenly over ``impact_seconds``), all in flight together. They are submitted
held behind a ``go`` file; the driver waits until every job is running and, in the watched
run, until every watcher has its stream open, then creates ``go``. A job's duration is the
``finished_at`` of its record minus that release: every job started (``started_at``) before
it, so ``finished_at - started_at`` would also count the wait for the watchers to connect,
which only the watched run has. It is how long the supervisor took to see the job end.

The watchers (``impact_watchers``, spread evenly over the jobs) run in a process of their
own, ``python -m bench.speed.watchers BASE WATCHERS JOB_ID...``, so their client work is not
the driver's. They still share the machine's cores with the supervisor, hence the CPU share
of each in the row. The worker's own ``took_s`` tells a job slowed down from one whose end
the supervisor saw late.

Per store and round both runs are made, in alternating order so drift during a round favours
neither; the ratio of their median job durations is what the target checks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from bench.chaos.procs import ROOT, _env
from bench.chaos.waiting import wait_until
from bench.speed.config import Counts
from bench.speed.procstat import cpu_seconds
from bench.speed.stats import spread
from bench.speed.systems import TIMEOUT_S
from shared.sse import SSEParser

__all__ = ["METRICS", "Impact"]

METRICS = (
    "job_p50_s",
    "job_max_s",
    "worker_p50_s",
    "batch_s",
    "supervisor_cpu_pct",
    "client_cpu_pct",
    "lost",
    "jobs",
)
CONNECT_S = 120.0
"""How long the watchers may take to open their streams (1,000 on 2 shared cores)."""
_POLL_S = 60.0  # the API's longest ?wait


class Impact:
    """The measurement's rounds for each store; :meth:`section` is the report's JSON."""

    def __init__(self, counts: Counts, workdir: Path) -> None:
        self.counts = counts
        self.workdir = workdir
        self.runs: dict[tuple[str, str], dict[str, list[float]]] = {}
        """(store, ``without`` or ``with``) -> metric -> one value per round."""
        self.ratios: dict[str, list[float]] = {}
        self.errors: dict[str, str] = {}

    async def round(self, store: str, base: str, supervisor: int, index: int) -> None:
        """Both runs for one store; a failure makes the store's row unavailable, with why."""
        crowd = self.counts.impact_watchers
        order = (0, crowd) if index % 2 == 0 else (crowd, 0)
        numbers: dict[int, dict[str, float]] = {}
        try:
            for watchers in order:
                numbers[watchers] = await _batch(
                    base, supervisor, watchers, self.counts, self.workdir
                )
        except Exception as exc:
            self.errors[store] = f"failed in round {index + 1}: {exc!r}"[:300]
            return
        for watchers, name in ((0, "without"), (crowd, "with")):
            for metric, value in numbers[watchers].items():
                self.runs.setdefault((store, name), {}).setdefault(metric, []).append(value)
        ratio = numbers[crowd]["job_p50_s"] / numbers[0]["job_p50_s"]
        self.ratios.setdefault(store, []).append(ratio)

    def section(self, stores: tuple[str, ...]) -> dict[str, Any]:
        c = self.counts
        rows = []
        for store in stores:
            row: dict[str, Any] = {"store": store, "unavailable": self.errors.get(store)}
            for name in ("without", "with"):
                row[name] = {k: spread(v) for k, v in self.runs.get((store, name), {}).items()}
            row["ratio"] = spread(self.ratios.get(store, []))
            rows.append(row)
        return {
            "jobs": c.impact_jobs,
            "watchers": c.impact_watchers,
            "events": c.impact_events,
            "seconds": c.impact_seconds,
            "rows": rows,
        }


async def _batch(
    base: str, supervisor: int, watchers: int, c: Counts, workdir: Path
) -> dict[str, float]:
    go = workdir / f"impact-go-{uuid.uuid4().hex}"
    body = {
        "capability": "paced",
        "input": {"n": c.impact_events, "seconds": c.impact_seconds, "go": str(go)},
        "timeout_s": TIMEOUT_S * 5,  # it runs from its dispatch, while the watchers connect
    }
    async with aiohttp.ClientSession(base, timeout=aiohttp.ClientTimeout(total=None)) as http:
        try:
            ids = await asyncio.gather(*(_submit(http, body) for _ in range(c.impact_jobs)))
            await wait_until(
                lambda: _running(http, ids), timeout=60, what=f"{len(ids)} paced jobs running"
            )
            crowd = await _Crowd.start(base, watchers, ids, workdir) if watchers else None
            try:
                cpu = cpu_seconds([supervisor]), crowd.cpu() if crowd else 0.0
                released, t = time.time(), time.monotonic()
                go.touch()
                jobs = await asyncio.gather(*(_ended(http, i) for i in ids))
                elapsed = time.monotonic() - t
                supervisor_cpu = cpu_seconds([supervisor]) - cpu[0]
                client_cpu = crowd.cpu() - cpu[1] if crowd else 0.0
                received = await crowd.finish() if crowd else {}
            finally:
                if crowd is not None:
                    await crowd.close()
        finally:
            go.touch()  # a job still held after a failure ends now, not at its deadline
    failed = [j for j in jobs if j.get("status") != "succeeded"]
    if failed:
        raise RuntimeError(f"{len(failed)} paced job(s) did not succeed: {failed[0].get('error')}")
    durations = [float(j["finished_at"]) - max(float(j["started_at"]), released) for j in jobs]
    expected = watchers * (c.impact_events + 1)  # each watcher: every progress event and done
    return {
        "job_p50_s": statistics.median(durations),
        "job_max_s": max(durations),
        "worker_p50_s": statistics.median(float(j["result"]["took_s"]) for j in jobs),
        "batch_s": max(float(j["finished_at"]) for j in jobs) - released,
        "supervisor_cpu_pct": 100 * supervisor_cpu / elapsed,
        "client_cpu_pct": 100 * client_cpu / elapsed,
        "lost": float(expected - received.get("progress", 0) - received.get("done", 0)),
        "jobs": float(len(jobs)),
    }


async def _submit(http: aiohttp.ClientSession, body: dict[str, Any]) -> str:
    async with http.post("/v1/jobs", json=body) as r:
        answer = await r.json()
    if r.status != 202:
        raise RuntimeError(f"submit answered {r.status}: {str(answer)[:200]}")
    return str(answer["id"])


async def _running(http: aiohttp.ClientSession, ids: list[str]) -> bool:
    for job_id in ids:
        async with http.get(f"/v1/jobs/{job_id}") as r:
            if (await r.json()).get("status") != "running":
                return False
    return True


async def _ended(http: aiohttp.ClientSession, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        async with http.get(f"/v1/jobs/{job_id}?wait={_POLL_S:g}") as r:
            job: dict[str, Any] = await r.json()
        if job.get("status") in ("succeeded", "failed", "cancelled"):
            return job
        if time.monotonic() > deadline:
            raise TimeoutError(f"paced job {job_id} still {job.get('status')}")


class _Crowd:
    """The watchers' process, seen from the driver: one JSON line when every stream is open,
    one with what they received when every stream has ended."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, base: str, watchers: int, ids: list[str], workdir: Path) -> _Crowd:
        args = [sys.executable, "-m", "bench.speed.watchers", base, str(watchers), *ids]
        # A local log opened once per batch (microseconds): not worth a thread.
        with open(workdir / "watchers.log", "ab") as log:  # noqa: ASYNC230
            proc = await asyncio.create_subprocess_exec(
                *args, env=_env({}), cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=log
            )
        crowd = cls(proc)
        try:
            await crowd._line(CONNECT_S + 30)  # its own deadline is CONNECT_S; then imports
        except BaseException:
            await crowd.close()
            raise
        return crowd

    async def _line(self, timeout: float) -> dict[str, int]:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not line:
            code = await self.proc.wait()
            raise RuntimeError(f"the watchers' process exited ({code}); see watchers.log")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"watchers: {answer['error']}")
        return {k: int(v) for k, v in answer.items()}

    def cpu(self) -> float:
        return cpu_seconds([self.proc.pid])

    async def finish(self) -> dict[str, int]:
        return await self._line(TIMEOUT_S)

    async def close(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()


# -- the watchers' process ----------------------------------------------------------------


async def _watch_all(base: str, watchers: int, ids: list[str]) -> dict[str, int]:
    seen = {"connected": 0, "progress": 0, "done": 0}
    failures: list[str] = []

    async def watch(http: aiohttp.ClientSession, job_id: str) -> None:
        # Events are told apart by their SSE `event` field, not by decoding each JSON body:
        # the client's CPU is not what is measured.
        parser = SSEParser()
        connected = False
        try:
            async with http.get(f"/v1/jobs/{job_id}/events") as response:
                response.raise_for_status()
                async for chunk in response.content.iter_any():
                    if not connected:  # the job's first events came: its log is followed
                        connected = True
                        seen["connected"] += 1
                    for event in parser.feed(chunk):
                        if event.event == "progress":
                            seen["progress"] += 1
                        elif event.event == "done":
                            seen["done"] += 1
                            return
        except Exception as exc:
            failures.append(f"{job_id}: {exc!r}")

    connector = aiohttp.TCPConnector(limit=watchers)
    async with aiohttp.ClientSession(base, connector=connector) as http:
        tasks = [asyncio.create_task(watch(http, ids[i % len(ids)])) for i in range(watchers)]
        await wait_until(
            lambda: failures or seen["connected"] == watchers,
            timeout=CONNECT_S,
            what=f"{watchers} watchers connected",
        )
        if failures:
            raise RuntimeError(f"{len(failures)} watcher(s) failed; first: {failures[0]}")
        print(json.dumps({"connected": seen["connected"]}), flush=True)
        await asyncio.wait_for(asyncio.gather(*tasks), TIMEOUT_S)
    if failures:
        raise RuntimeError(f"{len(failures)} watcher(s) failed; first: {failures[0]}")
    return {"progress": seen["progress"], "done": seen["done"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.speed.watchers",
        description="Watch jobs' event streams; JSON lines on stdout (the bench drives it).",
    )
    parser.add_argument("base", help="the supervisor, http://HOST:PORT")
    parser.add_argument("watchers", type=int, help="streams to open, spread over the jobs")
    parser.add_argument("jobs", nargs="+", help="job ids")
    args = parser.parse_args(argv)
    try:
        received = asyncio.run(_watch_all(args.base, args.watchers, args.jobs))
    except Exception as exc:
        print(json.dumps({"error": repr(exc)[:300]}), flush=True)
        return 1
    print(json.dumps(received), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
