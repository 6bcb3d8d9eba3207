"""The faults, each a coroutine over a running :class:`~bench.chaos.procs.Fleet`: four of
processes here, two of links in :mod:`bench.chaos.cuts`, and the list of them all.

Every loop has a count and every wait a deadline. A scenario only injects faults and keeps
the load coming; :mod:`bench.chaos.suite` then waits for the jobs, replays their logs and
judges. Each fault's recovery time is measured by :meth:`Api.probe`: from the fault until a
job submitted after it succeeds.
"""

from __future__ import annotations

import asyncio
import functools
import time
from typing import Any

from bench.chaos.cuts import supervisor_cut, worker_cut
from bench.chaos.ledger_worker import LEDGER_TOOLS
from bench.chaos.rounds import LedgerTail, Run, Scenario, holds, idle, load_victim, running_both
from bench.chaos.waiting import TimedOut, wait_until

__all__ = ["SCENARIOS"]


# -- 1. a worker killed mid-job ------------------------------------------------------------------


async def worker_kill(run: Run) -> None:
    """Per round: 3 ``ledger_idem`` + 3 ``ledger_once`` jobs of 2 s; once one worker replica
    runs both kinds, ``kill -9`` it; probe; restart it on its port. The round ends when the
    restarted replica has run a job pinned to it and the round's jobs have ended, so every
    kill hits a fleet of two usable replicas."""
    tail = LedgerTail(run.fleet.ledger)
    for r in range(run.cfg.worker_kills):
        specs = [(LEDGER_TOOLS[i % 2], {"ms": 2000, "steps": 10}) for i in range(6)]
        jobs = await run.submit_all(specs, "batch", r)
        victim = await running_both(run, tail, {j.id for j in jobs}, r)
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
                functools.partial(holds, fleet, victim, 2), timeout=15, what=f"{victim.name} busy"
            )
        except TimedOut:
            run.notes.append(f"round {r}: {victim.name} held < 2 jobs when killed")
        victim.proc.kill9()
        await run.probe(time.monotonic(), r)
        await feeding
        await fleet.restart(victim)
        await fleet.wait_sees_workers(victim)
    await stream(cfg.batch - part * cfg.supervisor_kills, cfg.supervisor_kills)


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
        jobs = await load_victim(run, victim, lengths, r, "paused")
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
                functools.partial(idle, fleet, victim),
                timeout=cfg.settle_s,
                what=f"{victim.name} to let go of its stale jobs",
            )
        except TimedOut:
            run.notes.append(f"round {r}: {victim.name} still held jobs after the round")


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
    Scenario(
        "worker-cut",
        "a worker host's link cut mid-job (idempotent and non-idempotent tools), each process "
        "on a host of its own, 1 supervisor",
        1,
        worker_cut,
        lambda cfg: cfg.worker_cuts,
        hosts=True,
    ),
    Scenario(
        "supervisor-cut",
        "the link of one of two supervisor hosts cut while it holds jobs, then mended",
        2,
        supervisor_cut,
        lambda cfg: cfg.supervisor_cuts,
        hosts=True,
    ),
)
