"""What every scenario is made of: the run in progress, the scenario record, the ledger tail.

A scenario is a coroutine over a :class:`Run` (:mod:`bench.chaos.scenarios` has the process
faults, :mod:`bench.chaos.cuts` the link cuts); :mod:`bench.chaos.suite` runs each in a fleet
of its own.
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

__all__ = ["LedgerTail", "Run", "Scenario", "holds", "idle", "running_both"]


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
    cut_off: dict[int, list[tuple[float, float]]] = field(default_factory=dict)
    """Per worker port, the wall-clock spans (``time.time()``) its link was cut: what it
    completed then, nobody heard of (:func:`bench.chaos.checks.judge`)."""

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
    hosts: bool = False
    """Each process on a host of its own (:mod:`bench.chaos.netns`: needs root), for faults
    of the network between them."""


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


async def running_both(run: Run, tail: LedgerTail, ids: set[str], round_no: int) -> Service:
    """The worker replica running both ledger tools for jobs of ``ids``, the round's own
    replica first (they alternate); after 15 s, the one running the most kinds (noted)."""
    workers = run.fleet.workers
    preferred = workers[round_no % len(workers)]

    def both_kinds() -> Service | None:
        tail.poll()
        for w in sorted(workers, key=lambda w: w is not preferred):
            if tail.tools_on(w.port, ids) == set(LEDGER_TOOLS):
                return w
        return None

    try:
        found: Service = await wait_until(
            both_kinds, timeout=15, what="a worker running both kinds of job"
        )
    except TimedOut:
        found = max(workers, key=lambda w: len(tail.tools_on(w.port, ids)))
        run.notes.append(
            f"round {round_no}: hit {found.name} running {sorted(tail.tools_on(found.port, ids))}"
        )
    return found


async def holds(fleet: Fleet, sup: Service, n: int) -> bool:
    """Does ``sup`` hold at least ``n`` jobs right now?"""
    held = await fleet.held(sup)
    return held is not None and held >= n


async def load_victim(
    run: Run, victim: Service, lengths: list[int], round_no: int, fault: str
) -> list[Submitted]:
    """A round's batch (8 ledger jobs of ``lengths`` ms), until ``victim`` holds two of them
    (or noted when it did not), then ``victim`` out of the load generator's rotation: the
    set-up of every fault that takes a supervisor away mid-job (``fault`` names it)."""
    specs = [(LEDGER_TOOLS[i % 2], {"ms": lengths[i // 2 % 2], "steps": 10}) for i in range(8)]
    jobs = await run.submit_all(specs, "batch", round_no)
    try:
        busy = functools.partial(holds, run.fleet, victim, 2)
        await wait_until(busy, timeout=15, what=f"{victim.name} busy")
    except TimedOut:
        run.notes.append(f"round {round_no}: {victim.name} held < 2 jobs when {fault}")
    run.fleet.rotation.discard(victim.url)
    return jobs


async def idle(fleet: Fleet, sup: Service) -> bool:
    """Does ``sup`` answer, holding no job?"""
    return await fleet.held(sup) == 0
