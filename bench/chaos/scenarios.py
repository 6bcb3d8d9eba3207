"""The four faults, each a coroutine over a running :class:`~bench.chaos.procs.Fleet`.

Every loop has a count and every wait a deadline. A scenario only injects faults and keeps
the load coming; :mod:`bench.chaos.suite` then waits for the jobs, replays their logs and
judges. Each fault's recovery time is measured by :meth:`Api.probe`: from the fault until a
job submitted after it succeeds.
"""

from __future__ import annotations

import asyncio
import functools
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.chaos.api import TERMINAL, Api, Submitted
from bench.chaos.config import Config
from bench.chaos.ledger_worker import LEDGER_TOOLS
from bench.chaos.procs import Fleet, Service
from bench.chaos.waiting import TimedOut, wait_until

__all__ = ["SCENARIOS", "Run", "Scenario"]

IDEM, ONCE = LEDGER_TOOLS


@dataclass
class Run:
    """One scenario in progress: its fleet, its client, and what each fault measured."""

    cfg: Config
    fleet: Fleet
    api: Api
    rnd: random.Random
    recoveries: list[float | None] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    measured: dict[str, list[float | None]] = field(default_factory=dict)
    """Other per-fault durations, reported as information."""

    async def submit_all(
        self, specs: list[tuple[str, dict[str, Any]]], label: str, round_no: int
    ) -> list[Submitted]:
        deadline = time.monotonic() + 30.0
        results = await asyncio.gather(
            *(
                self.api.submit(
                    tool,
                    job_input,
                    timeout_s=self.cfg.job_timeout_s,
                    label=label,
                    round_no=round_no,
                    deadline=deadline,
                )
                for tool, job_input in specs
            )
        )
        return [accepted for accepted, _ in results if accepted is not None]

    async def probe(self, since: float, round_no: int) -> None:
        took = await self.api.probe(since, since + self.cfg.recovery_deadline_s, round_no)
        self.recoveries.append(took)
        if took is None:
            self.notes.append(f"round {round_no}: no new job succeeded after the fault")

    async def restored(self, worker: Service, since: float, round_no: int) -> None:
        """Seconds from ``since`` until a job pinned to ``worker`` succeeds there."""
        deadline = since + self.cfg.recovery_deadline_s
        took = await self.api.probe(since, deadline, round_no, worker=f"{worker.url}/mcp")
        self.measured.setdefault("replica_serves_again_s", []).append(
            None if took is None else round(took, 2)
        )
        if took is None:
            self.notes.append(f"round {round_no}: {worker.name} served no pinned job again")

    async def all_terminal(self, jobs: list[Submitted], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        finals = await asyncio.gather(*(self.api.wait_job(j.id, deadline) for j in jobs))
        stuck = sum(1 for f in finals if not f or f.get("status") not in TERMINAL | {"gone"})
        if stuck:
            self.notes.append(f"{stuck} job(s) still running {timeout:g}s after a fault")


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    supervisors: int
    body: Callable[[Run], Awaitable[None]]
    rounds: Callable[[Config], int]


class LedgerTail:
    """Reads the ledger as it grows: which jobs run on which worker right now."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.running: dict[str, tuple[int, str]] = {}  # job → (worker port, tool)

    def poll(self) -> None:
        if not self.path.exists():
            return
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        self.offset += end
        for line in data[:end].splitlines():
            record = json.loads(line)
            if record["e"] == "start":
                self.running[record["job"]] = (record["port"], record["tool"])
            elif record["e"] == "complete":
                self.running.pop(record["job"], None)

    def tools_on(self, port: int, jobs: set[str]) -> set[str]:
        return {tool for job, (p, tool) in self.running.items() if p == port and job in jobs}


# -- 1. a worker killed mid-job ------------------------------------------------------------------


async def worker_kill(run: Run) -> None:
    """Per round: 3 ``ledger_idem`` + 3 ``ledger_once`` jobs of 2 s; once one worker replica
    runs both kinds, ``kill -9`` it; probe; restart it on its port. The round ends when the
    restarted replica has run a job pinned to it and the round's jobs have ended, so every
    kill hits a fleet of two usable replicas."""
    tail = LedgerTail(run.fleet.ledger)
    workers = run.fleet.workers
    for r in range(run.cfg.worker_kills):
        specs = [(LEDGER_TOOLS[i % 2], {"ms": 2000, "steps": 10}) for i in range(6)]
        jobs = await run.submit_all(specs, "batch", r)
        ids = {j.id for j in jobs}
        preferred = workers[r % 2]

        def both_kinds(ids: set[str] = ids, preferred: Service = preferred) -> Service | None:
            tail.poll()
            for w in sorted(workers, key=lambda w: w is not preferred):
                if tail.tools_on(w.port, ids) == {IDEM, ONCE}:
                    return w
            return None

        try:
            victim: Service = await wait_until(
                both_kinds, timeout=15, what="a worker running both kinds of job"
            )
        except TimedOut:
            victim = max(workers, key=lambda w: len(tail.tools_on(w.port, ids)))
            run.notes.append(
                f"round {r}: killed {victim.name} running {sorted(tail.tools_on(victim.port, ids))}"
            )
        victim.proc.kill9()
        since = time.monotonic()
        await run.probe(since, r)
        await run.fleet.restart(victim)
        for sup in run.fleet.supervisors:
            await run.fleet.wait_sees_workers(sup)
        await run.restored(victim, since, r)
        await run.all_terminal(jobs, timeout=run.cfg.settle_s)


# -- 2. one of two supervisors killed during a batch --------------------------------------------


async def supervisor_kill(run: Run) -> None:
    """A batch of ``batch`` mixed jobs (0.3-1.2 s) streamed to both supervisors in
    ``kills + 1`` parts; during each part, once the victim holds ≥ 2 jobs, ``kill -9`` it
    (A, B, A, …); probe; restart it on its port."""
    cfg, fleet = run.cfg, run.fleet
    part = cfg.batch // (cfg.supervisor_kills + 1)

    def make(i: int) -> tuple[str, dict[str, Any]]:
        return LEDGER_TOOLS[i % 2], {"ms": run.rnd.randint(300, 1200), "steps": 4}

    async def stream(count: int, r: int) -> None:
        await run.api.stream(
            make,
            rate=count / 1.5,
            stop=asyncio.Event(),
            max_jobs=count,
            label="batch",
            round_no=r,
            submit_deadline_s=30.0,
            timeout_s=cfg.job_timeout_s,
        )

    for r in range(cfg.supervisor_kills):
        victim = fleet.supervisors[r % 2]
        feeding = asyncio.create_task(stream(part, r))
        try:
            await wait_until(
                functools.partial(_holds, fleet, victim, 2), timeout=15, what=f"{victim.name} busy"
            )
        except TimedOut:
            run.notes.append(f"round {r}: {victim.name} held < 2 jobs when killed")
        victim.proc.kill9()
        await run.probe(time.monotonic(), r)
        await feeding
        await fleet.restart(victim)
        await fleet.wait_sees_workers(victim)
    await stream(cfg.batch - part * cfg.supervisor_kills, cfg.supervisor_kills)


async def _holds(fleet: Fleet, sup: Service, n: int) -> bool:
    held = await fleet.held(sup)
    return held is not None and held >= n


# -- 3. a supervisor paused past its lease ------------------------------------------------------


async def supervisor_pause(run: Run) -> None:
    """Per round: 8 mixed jobs, half shorter than the pause and half longer; once the victim
    holds ≥ 2, ``SIGSTOP`` it (out of the load generator's rotation) for ``pause_factor``
    leases while the other reclaims; ``SIGCONT``; wait until the victim holds nothing and the
    round's jobs ended."""
    cfg, fleet = run.cfg, run.fleet
    pause_s = cfg.pause_factor * cfg.lease_s
    lengths = [int(cfg.lease_s * 500), int(pause_s * 1500)]
    for r in range(cfg.pauses):
        victim = fleet.supervisors[r % 2]
        specs = [(LEDGER_TOOLS[i % 2], {"ms": lengths[i // 2 % 2], "steps": 10}) for i in range(8)]
        jobs = await run.submit_all(specs, "batch", r)
        try:
            await wait_until(
                functools.partial(_holds, fleet, victim, 2), timeout=15, what=f"{victim.name} busy"
            )
        except TimedOut:
            run.notes.append(f"round {r}: {victim.name} held < 2 jobs when paused")
        fleet.rotation.discard(victim.url)
        victim.proc.pause()
        since = time.monotonic()
        probing = asyncio.create_task(run.probe(since, r))
        await asyncio.sleep(pause_s)  # the fault itself: a measured stall, not a wait
        victim.proc.resume()
        fleet.rotation.add(victim.url)
        await probing
        await run.all_terminal(jobs, timeout=cfg.settle_s)
        try:
            await wait_until(
                functools.partial(_idle, fleet, victim),
                timeout=cfg.settle_s,
                what=f"{victim.name} to let go of its stale jobs",
            )
        except TimedOut:
            run.notes.append(f"round {r}: {victim.name} still held jobs after the round")


async def _idle(fleet: Fleet, sup: Service) -> bool:
    return await fleet.held(sup) == 0


# -- 4. Redis killed during a stream of submissions -------------------------------------------


async def redis_kill(run: Run) -> None:
    """Per round: a stream of mixed 0.1-0.6 s jobs at ``stream_rate``/s to both supervisors;
    after 10 are accepted, ``kill -9`` Redis, keep it down ``outage_s``, restart it on its
    port and directory (the AOF replays); the stream goes on until 10 more are accepted."""
    cfg, fleet, api = run.cfg, run.fleet, run.api

    def make(i: int) -> tuple[str, dict[str, Any]]:
        return LEDGER_TOOLS[i % 2], {"ms": run.rnd.randint(100, 600), "steps": 3}

    def accepted(r: int) -> int:
        return sum(1 for j in api.jobs.values() if j.round == r and j.label == "stream")

    def at_least(r: int, n: int) -> bool:
        return accepted(r) >= n

    for r in range(cfg.redis_kills):
        stop = asyncio.Event()
        feeding = asyncio.create_task(
            api.stream(
                make,
                rate=cfg.stream_rate,
                stop=stop,
                max_jobs=int(cfg.stream_rate * 120),
                label="stream",
                round_no=r,
                submit_deadline_s=cfg.outage_s + 60.0,
                timeout_s=cfg.job_timeout_s,
            )
        )
        try:
            await wait_until(functools.partial(at_least, r, 10), timeout=30, what="10 accepted")
            fleet.redis.kill9()
            since = time.monotonic()
            api.tally.open_outage([s.url for s in fleet.supervisors], since)
            probing = asyncio.create_task(run.probe(since, r))
            await asyncio.sleep(cfg.outage_s)  # the fault itself: a measured outage
            await fleet.start_redis()
            for sup in fleet.supervisors:
                await wait_until(
                    functools.partial(fleet.ready, sup), timeout=60, what=f"{sup.name} ready"
                )
                api.tally.close_outage(sup.url, time.monotonic())
            await probing
            before = accepted(r)
            await wait_until(
                functools.partial(at_least, r, before + 10), timeout=60, what="10 more accepted"
            )
        finally:
            stop.set()
            await feeding


SCENARIOS = (
    Scenario(
        "worker-kill",
        "kill -9 of a worker mid-job (idempotent and non-idempotent tools), 2 replicas "
        "de-duplicating through Redis, 1 supervisor",
        1,
        worker_kill,
        lambda cfg: cfg.worker_kills,
    ),
    Scenario(
        "supervisor-kill",
        "kill -9 of one of two supervisors during a batch",
        2,
        supervisor_kill,
        lambda cfg: cfg.supervisor_kills,
    ),
    Scenario(
        "supervisor-pause",
        "SIGSTOP of one of two supervisors for longer than the lease, then SIGCONT",
        2,
        supervisor_pause,
        lambda cfg: cfg.pauses,
    ),
    Scenario(
        "redis-kill",
        "kill -9 of Redis (AOF, appendfsync always) during a stream of submissions, restart",
        2,
        redis_kill,
        lambda cfg: cfg.redis_kills,
    ),
)
