"""Scaling out on one Redis: jobs/s with 1 or 2 supervisors and 1 or 3 workers, what each part
spends per job, and from that the jobs/s of a larger deployment, on paper; and the same 2 × 3
on a 3-master Redis Cluster, where the fleet's shards spread over the masters.

    python -m bench.scale                 # 3 rounds of 3,000 jobs per configuration
    python -m bench.scale --quick         # 1 round of 300 (CI: tests/test_scale_bench.py)
    python -m bench.scale --json FILE     # also every number, as JSON

One private ``redis-server`` and three echo workers (``python -m workers.echo``) live for the
whole run. Each configuration starts its own supervisors (``python -m supervisor.server``, each
on its own port, all with one key prefix so they share one queue, each given every worker of
the configuration), and Redis is emptied after them, so every configuration starts from the
same state. The load is ``POST /v1/jobs?wait=60`` of the ``noop`` tool, 64 in flight,
round-robin over the supervisors' URLs from one aiohttp session: after a warm-up, jobs/s over
a fixed number of jobs, in rounds that visit the configurations in a rotating order.

The cluster row runs on a Redis Cluster of 3 masters (``bench.cluster``: ``redis-server`` in
cluster mode, started once for the run), its Redis group all three; it also reports the
busiest master's CPU per job, which caps the cluster as one server's caps one Redis.

CPU per job is utime + stime from ``/proc`` over the measured window, per group: supervisors,
workers, Redis, and this process (the driver). Every process shares the same cores, so on a
small machine jobs/s barely moves with more processes; what a job costs each part does not
depend on that, and the capacity on paper scales it: a supervisor is one process (one core),
so a deployment needs ``supervisor ms/job`` supervisor cores per 1,000 jobs/s, likewise for
the workers, and one Redis (single-threaded) stops at ``1000 / redis ms/job`` jobs/s. It
assumes linear scaling and no network cost.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import redis.asyncio as aioredis
from rich.console import Console
from rich.table import Table

from bench.chaos.procs import Proc, _env, free_port, redis_answers, redis_server, stop_all
from bench.chaos.report import revision
from bench.chaos.waiting import wait_until
from bench.cluster import RedisClusterProcs
from bench.harness import bench_main
from bench.speed.procstat import cpu_seconds, own_cpu_seconds
from bench.speed.stack import START_S, supervisor_proc, wait_answers
from bench.speed.stats import spread

__all__ = ["CLUSTER", "CONFIGS", "FULL", "GROUPS", "PAPER_SUPERVISORS", "QUICK", "Counts", "main"]

KEY_PREFIX = "scale"
WAIT_S = 60
CONFIGS = ((1, 1), (2, 1), (1, 3), (2, 3))
"""(supervisors, workers) of each configuration on one Redis."""
CLUSTER = (2, 3)
"""(supervisors, workers) of the configuration also run on the cluster."""
CLUSTER_MASTERS = 3
PAPER = (2, 3)
"""The configuration the capacity on paper scales: supervisors sharing one Redis, their jobs
spread over several workers, as a larger deployment runs."""
PAPER_SUPERVISORS = (1, 2, 4, 8)
GROUPS = ("supervisors", "workers", "redis", "driver")
ASSUMES = (
    "assumes linear scaling and no network cost; each supervisor runs one process (one core), "
    "with enough worker cores; Redis is single-threaded"
)

Log = Callable[[str], None]


@dataclass(frozen=True)
class Counts:
    rounds: int
    jobs: int
    """Jobs measured per configuration and round."""
    warmup: int
    """Jobs run first on freshly started supervisors, not measured."""
    concurrency: int = 64

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


FULL = Counts(rounds=3, jobs=3000, warmup=300)
QUICK = Counts(rounds=1, jobs=300, warmup=100)


@dataclass
class Config:
    supervisors: int
    workers: int
    cluster: bool = False
    rounds: dict[str, list[float]] = field(default_factory=dict)
    unavailable: str | None = None

    @property
    def key(self) -> str:
        return f"{self.supervisors}x{self.workers}" + ("-cluster" if self.cluster else "")

    @property
    def label(self) -> str:
        s, w = self.supervisors, self.workers
        where = f", {CLUSTER_MASTERS}-master cluster" if self.cluster else ""
        return f"{s} supervisor{'s' if s > 1 else ''} × {w} worker{'s' if w > 1 else ''}{where}"


class Rig:
    """Redis and the echo workers for the whole run; supervisors for one configuration at a
    time (:meth:`supervisors`). Leaving it stops every process it started, whatever happened."""

    def __init__(self, workdir: Path, workers: int) -> None:
        binary = redis_server()
        if binary is None:
            raise RuntimeError("redis-server is not installed (the bench runs its own)")
        self.workdir = workdir
        port = free_port()
        self.redis_url = f"redis://127.0.0.1:{port}/0"
        self.redis = Proc(
            "redis",
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(workdir)],
            _env({}), workdir / "redis.log",
        )  # fmt: skip
        self.workers: list[tuple[str, Proc]] = []
        for i in range(workers):
            port = free_port()
            args = [sys.executable, "-m", "workers.echo", "--host", "127.0.0.1",
                    "--port", str(port)]  # fmt: skip
            proc = Proc(f"echo-{i + 1}", args, _env({}), workdir / f"echo-{i + 1}.log")
            self.workers.append((f"http://127.0.0.1:{port}/mcp", proc))
        self.procs = [self.redis, *(proc for _, proc in self.workers)]
        self.cluster = RedisClusterProcs(masters=CLUSTER_MASTERS)

    async def __aenter__(self) -> Rig:
        try:
            for proc in self.procs:
                proc.start()
            await redis_answers(self.redis, self.redis_url, timeout=START_S)
            for url, proc in self.workers:
                await wait_answers(proc, url.replace("/mcp", "/health"), ok_below=300)
            await asyncio.to_thread(self.cluster.start)
        except BaseException:
            self._stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop()

    def _stop(self) -> None:
        stop_all(self.procs)
        self.cluster.stop()

    def redis_pids(self, config: Config) -> list[int]:
        """The Redis processes of ``config``: the one server, or the cluster's masters."""
        if config.cluster:
            return [n.proc.pid for n in self.cluster.nodes if n.proc is not None]
        return [_pid(self.redis)]

    @contextlib.asynccontextmanager
    async def supervisors(self, config: Config) -> AsyncIterator[tuple[list[str], list[int]]]:
        """Start ``config``'s supervisors and wait until each sees all its workers healthy;
        yield their base URLs and pids; then stop them and empty Redis."""
        urls = [url for url, _ in self.workers[: config.workers]]
        started: list[Proc] = []
        bases: list[str] = []
        try:
            for i in range(config.supervisors):
                port = free_port()
                log = self.workdir / f"supervisor-{config.key}-{i + 1}.log"
                store = self.cluster.url if config.cluster else self.redis_url
                proc = supervisor_proc(f"supervisor-{i + 1}", port, store, urls, log,
                                       KEY_PREFIX)  # fmt: skip
                self.procs.append(proc)  # stopped with the rig should anything below fail
                started.append(proc.start())
                bases.append(f"http://127.0.0.1:{port}")
            for proc, base in zip(started, bases, strict=True):
                await _wait_workers(proc, base, set(urls))
            yield bases, [_pid(proc) for proc in started]
        finally:
            stop_all(started)
            for proc in started:
                self.procs.remove(proc)
            await self._empty(config)

    async def _empty(self, config: Config) -> None:
        """Drop what the supervisors left. A Redis that does not answer is not this step's
        failure to report: the next configuration fails on it with its own reason."""
        urls = [self.redis_url]
        if config.cluster:
            urls = [f"redis://{n.addr}/0" for n in self.cluster.nodes]
        for url in urls:
            client = aioredis.Redis.from_url(url, socket_timeout=10)
            try:
                with contextlib.suppress(aioredis.RedisError, OSError):
                    await client.flushall()
            finally:
                await client.aclose()

    def worker_pids(self, config: Config) -> list[int]:
        return [_pid(proc) for _, proc in self.workers[: config.workers]]


def _pid(proc: Proc) -> int:
    assert proc.p is not None
    return proc.p.pid


async def _wait_workers(proc: Proc, base: str, urls: set[str]) -> None:
    """Until the supervisor at ``base`` lists every worker in ``urls`` healthy with ``noop``:
    measured from the first job, the load is spread over all of them."""

    async def sees() -> bool:
        proc.check()
        try:
            async with httpx.AsyncClient(timeout=2) as client:
                body = (await client.get(base + "/v1/workers")).json()
        except (httpx.HTTPError, ValueError):
            return False
        ready = {
            w.get("url")
            for w in body.get("workers", [])
            if w.get("healthy") and "noop" in w.get("capabilities", [])
        }
        return urls <= ready

    await wait_until(sees, timeout=START_S, what=f"{proc.name} seeing {len(urls)} worker(s)")


async def drive(bases: list[str], jobs: int, concurrency: int) -> float:
    """Run ``jobs`` no-op jobs, ``concurrency`` in flight, the n-th to ``bases[n % len]``;
    the seconds it took. Any job that does not succeed fails the run."""
    urls = [f"{base}/v1/jobs?wait={WAIT_S}" for base in bases]
    sent = 0

    async def lane(http: aiohttp.ClientSession) -> None:
        nonlocal sent
        while sent < jobs:
            url = urls[sent % len(urls)]
            sent += 1
            async with http.post(url, json={"capability": "noop"}) as response:
                body = await response.json()
            if response.status != 200 or body.get("status") != "succeeded":
                raise RuntimeError(f"{url} answered {response.status}: {str(body)[:300]}")

    connector = aiohttp.TCPConnector(limit=concurrency * 2)
    timeout = aiohttp.ClientTimeout(total=WAIT_S * 2)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        t = time.perf_counter()
        async with asyncio.TaskGroup() as lanes:  # one failure cancels the other lanes
            for _ in range(concurrency):
                lanes.create_task(lane(http))
        return time.perf_counter() - t


async def measure(rig: Rig, config: Config, counts: Counts) -> dict[str, float]:
    """One configuration, once: jobs/s, CPU ms per job of each group, and the cores busy."""
    async with rig.supervisors(config) as (bases, supervisor_pids):
        await drive(bases, counts.warmup, counts.concurrency)
        redis_pids = rig.redis_pids(config)
        groups = {"supervisors": supervisor_pids, "workers": rig.worker_pids(config),
                  "redis": redis_pids}  # fmt: skip
        me = os.getpid()
        # The driver's own reading last before the window and first after it: the /proc
        # scans of the other groups stay outside what it is charged.
        before = {group: cpu_seconds(pids) for group, pids in groups.items()}
        masters_before = [cpu_seconds([pid]) for pid in redis_pids]
        before["driver"] = own_cpu_seconds(me)
        seconds = await drive(bases, counts.jobs, counts.concurrency)
        after = {"driver": own_cpu_seconds(me)}
        masters = [
            cpu_seconds([pid]) - b for pid, b in zip(redis_pids, masters_before, strict=True)
        ]
        after.update({group: cpu_seconds(pids) for group, pids in groups.items()})
    spent = {group: after[group] - before[group] for group in GROUPS}
    out = {
        "jobs_s": counts.jobs / seconds,
        "cores_busy": sum(spent.values()) / seconds,
        # How near each supervisor is to its one core: the paper assumes it gets all of it.
        "supervisor_core": spent["supervisors"] / seconds / config.supervisors,
    }
    for group in GROUPS:
        out[f"cpu_{group}_ms"] = spent[group] * 1000 / counts.jobs
    out["cpu_redis_busiest_ms"] = max(masters) * 1000 / counts.jobs  # one server: itself
    return out


def capacity(ms: dict[str, float]) -> dict[str, Any]:
    """The jobs/s of ``PAPER_SUPERVISORS`` supervisor cores, and of the fewest that Redis
    caps, at the per-job CPU ``ms`` of each group; a core does 1,000 ms of work per second."""
    per_supervisor, ceiling = _per_core(ms["supervisors"]), _per_core(ms["redis"])
    at_ceiling = ceiling / per_supervisor
    counts = set(PAPER_SUPERVISORS)
    if math.isfinite(at_ceiling):
        counts.add(max(1, math.ceil(at_ceiling)))  # the first whole deployment Redis caps
    rows = []
    for n in sorted(counts):
        jobs_s = min(n * per_supervisor, ceiling)
        rows.append(
            {
                "supervisors": n,
                "jobs_s": jobs_s,
                "worker_cores": jobs_s * ms["workers"] / 1000,
                "redis_core": jobs_s * ms["redis"] / 1000,
                "limited_by": "redis" if n * per_supervisor >= ceiling else "supervisors",
            }
        )
    return {
        "from": "x".join(map(str, PAPER)),
        "ms_per_job": {group: ms[group] for group in ("supervisors", "workers", "redis")},
        "cores_per_1000_jobs_s": {group: ms[group] for group in ("supervisors", "workers")},
        "jobs_s_per_supervisor": per_supervisor,
        "redis_ceiling_jobs_s": ceiling,
        "supervisors_at_ceiling": at_ceiling,
        "rows": rows,
        "assumes": ASSUMES,
    }


def cluster_ceiling(ms: dict[str, float]) -> dict[str, Any]:
    """What caps a cluster: its busiest master (each is single-threaded), at its CPU per job;
    and how evenly the shards shared the work (the busiest master's share of all of it)."""
    return {
        "masters": CLUSTER_MASTERS,
        "redis_ms_per_job": ms["cpu_redis_ms"],
        "busiest_master_ms_per_job": ms["cpu_redis_busiest_ms"],
        "busiest_share": ms["cpu_redis_busiest_ms"] / ms["cpu_redis_ms"]
        if ms["cpu_redis_ms"] > 0 else None,
        "ceiling_jobs_s": _per_core(ms["cpu_redis_busiest_ms"]),
    }  # fmt: skip


def _per_core(ms_per_job: float) -> float:
    """Jobs/s one core carries (a reading of 0 ms, below the clock tick, is no limit)."""
    return 1000 / ms_per_job if ms_per_job > 0 else math.inf


async def run(counts: Counts, mode: str, workdir: Path, log: Log) -> dict[str, Any]:
    load_start = os.getloadavg()
    configs = [Config(s, w) for s, w in CONFIGS] + [Config(*CLUSTER, cluster=True)]
    async with Rig(workdir, max(w for _, w in CONFIGS)) as rig:
        for index in range(counts.rounds):
            shift = index % len(configs)
            for config in configs[shift:] + configs[:shift]:
                if config.unavailable is not None:
                    continue
                t = time.monotonic()
                try:
                    numbers = await measure(rig, config, counts)
                except Exception as exc:
                    config.unavailable = f"failed in round {index + 1}: {exc!r}"[:300]
                    log(f"  {config.label}: {config.unavailable}")
                    continue
                for name, value in numbers.items():
                    config.rounds.setdefault(name, []).append(value)
                log(f"round {index + 1}/{counts.rounds}  {config.label}: "
                    f"{numbers['jobs_s']:,.0f} jobs/s ({time.monotonic() - t:.1f}s)")  # fmt: skip
    paper = next(c for c in configs if (c.supervisors, c.workers) == PAPER and not c.cluster)
    on_cluster = configs[-1]
    result: dict[str, Any] = {
        **revision(),
        "mode": mode,
        "cores": os.cpu_count(),
        "load": {"start": [round(x, 2) for x in load_start],
                 "end": [round(x, 2) for x in os.getloadavg()]},
        "counts": counts.as_dict(),
        "configs": [
            {"key": c.key, "label": c.label, "supervisors": c.supervisors, "workers": c.workers,
             "unavailable": c.unavailable,
             "metrics": {k: spread(v) for k, v in c.rounds.items()}}
            for c in configs
        ],
        "capacity": None if paper.unavailable else capacity(
            {g: float(spread(paper.rounds[f"cpu_{g}_ms"])["median"]) for g in GROUPS}
        ),
        "cluster": None if on_cluster.unavailable else cluster_ceiling(
            {k: float(spread(on_cluster.rounds[k])["median"])
             for k in ("cpu_redis_ms", "cpu_redis_busiest_ms")}
        ),
    }  # fmt: skip
    return result


# -- the report ------------------------------------------------------------------------------

_COLUMNS = (
    ("jobs_s", "jobs/s", 0),
    ("cpu_supervisors_ms", "supervisors ms/job", 2),
    ("cpu_workers_ms", "workers ms/job", 2),
    ("cpu_redis_ms", "Redis ms/job", 2),
    ("cpu_driver_ms", "driver ms/job", 2),
    ("supervisor_core", "core per supervisor", 2),
    ("cores_busy", "cores busy", 2),
)


def _cell(metric: dict[str, Any] | None, digits: int) -> str:
    if not metric or metric.get("median") is None:
        return "—"
    med, lo, hi = metric["median"], metric["min"], metric["max"]
    if len(metric["rounds"]) == 1:
        return f"{med:,.{digits}f}"
    return f"{med:,.{digits}f} ({lo:,.{digits}f}–{hi:,.{digits}f})"


def print_report(result: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console(width=180)
    counts, load = result["counts"], result["load"]
    dirty = " (+ uncommitted changes)" if result["dirty"] else ""
    console.print(
        f"[bold]mcp-fleet scale bench[/] {result['mode']}  {result['date']}  commit "
        f"{result['commit']}{dirty}  cores {result['cores']}  rounds {counts['rounds']}\n"
        f"load average at start {load['start']}, at end {load['end']}\n"
        f"load: POST /v1/jobs?wait={WAIT_S} of noop, {counts['concurrency']} in flight, "
        f"round-robin over the supervisors, one Redis; {counts['jobs']:,} jobs per "
        f"configuration and round after {counts['warmup']:,} of warm-up\n"
        "cells: median (min–max) over rounds; CPU: utime + stime from /proc over the window"
    )
    base = next(c for c in result["configs"] if c["key"] == "1x1")
    base_rate = (base["metrics"].get("jobs_s") or {}).get("median")
    table = Table(
        title="Throughput and CPU per job (no-op job; every process on the same cores)",
        caption="ms/job: CPU per job of each group; core per supervisor: the share of one "
        "core each supervisor used; cores busy: every group together",
    )
    table.add_column("configuration")
    for i, (_, title, _) in enumerate(_COLUMNS):
        table.add_column(title, justify="right")
        if i == 0:
            table.add_column("÷ 1 × 1", justify="right")
    for row in result["configs"]:
        if row["unavailable"]:
            table.add_row(row["label"], f"unavailable: {row['unavailable']}")
            continue
        m = row["metrics"]
        cells = [_cell(m.get(k), d) for k, _, d in _COLUMNS]
        ratio = f"{m['jobs_s']['median'] / base_rate:.2f}×" if base_rate else "—"
        table.add_row(row["label"], cells[0], ratio, *cells[1:])
    console.print(table)
    _print_capacity(result["capacity"], console)
    _print_cluster(result.get("cluster"), result.get("capacity"), console)


def _print_capacity(paper: dict[str, Any] | None, console: Console) -> None:
    if paper is None:
        console.print("Capacity on paper: unavailable (its configuration did not run)")
        return
    ms = paper["ms_per_job"]
    table = Table(title="Capacity on paper")
    for title in ("supervisor cores", "jobs/s", "worker cores", "Redis core", "limited by"):
        table.add_column(title, justify="left" if title == "limited by" else "right")
    for row in paper["rows"]:
        table.add_row(
            str(row["supervisors"]), f"{row['jobs_s']:,.0f}", f"{row['worker_cores']:.1f}",
            f"{row['redis_core']:.0%}", row["limited_by"],
        )  # fmt: skip
    console.print(table)
    console.print(
        f"from the CPU per job of the {paper['from'].replace('x', ' × ')} row: supervisors "
        f"{ms['supervisors']:.3f} ms, workers {ms['workers']:.3f} ms, Redis {ms['redis']:.3f} ms"
        f"\nper 1,000 jobs/s: {ms['supervisors']:.2f} supervisor cores, {ms['workers']:.2f} "
        f"worker cores, {ms['redis']:.2f} of Redis's one core; one supervisor core carries "
        f"{paper['jobs_s_per_supervisor']:,.0f} jobs/s\none Redis caps a deployment at "
        f"{paper['redis_ceiling_jobs_s']:,.0f} jobs/s (1000 / Redis ms per job), reached with "
        f"{paper['supervisors_at_ceiling']:.1f} supervisors\n{ASSUMES}"
    )


def _print_cluster(
    cluster: dict[str, Any] | None, paper: dict[str, Any] | None, console: Console
) -> None:
    if cluster is None:
        console.print("On the cluster: unavailable (its configuration did not run)")
        return
    share, busiest = cluster["busiest_share"], cluster["busiest_master_ms_per_job"]
    one = f"; one Redis: {paper['redis_ceiling_jobs_s']:,.0f} jobs/s" if paper else ""
    console.print(
        f"on the {cluster['masters']}-master cluster: Redis {cluster['redis_ms_per_job']:.3f} "
        f"ms per job over all masters, the busiest master {busiest:.3f} "
        f"ms ({share:.0%} of it; {1 / cluster['masters']:.0%} is an even spread)\n"
        f"the cluster caps a deployment at {cluster['ceiling_jobs_s']:,.0f} jobs/s (1000 / the "
        f"busiest master's ms per job){one}"
    )


def main(argv: list[str] | None = None) -> int:
    return bench_main(
        argv,
        prog="python -m bench.scale",
        description=(__doc__ or "").split("\n\n")[0],
        prefix="fleet-scale-",
        counts=(FULL, QUICK),
        run=run,
        report=print_report,
    )


if __name__ == "__main__":
    sys.exit(main())
