"""Running scenarios end to end: fleet up, faults, settle, replay, judge, everything reaped.

After a scenario's faults, in this order (each step a barrier for the next):

1. wait until every accepted job is terminal or ``settle_s`` has passed (``GET ?wait=``);
2. replay each terminal job's event log over SSE;
3. stop the supervisors, so nothing can write any more, then read the durable logs in Redis;
4. stop the workers, so the ledger is complete, then read it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.chaos.api import TERMINAL, Api, Replay, Tally
from bench.chaos.checks import COUNTS, Evidence, durable_logs, judge, read_ledger
from bench.chaos.config import Config
from bench.chaos.netns import Network
from bench.chaos.procs import KEY_PREFIX, Fleet
from bench.chaos.rounds import Run, Scenario
from bench.chaos.scenarios import SCENARIOS
from shared.keys import Keys

__all__ = ["ScenarioResult", "run_scenario", "run_suite"]

_WORKERS = 2


@dataclass
class ScenarioResult:
    name: str
    title: str
    rounds: int
    accepted: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    recovery_s: list[float | None] = field(default_factory=list)
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    duration_s: float = 0.0
    error: str | None = None
    workdir: str | None = None

    @property
    def clean(self) -> bool:
        return self.error is None and not any(self.counts.get(name) for name in COUNTS)


async def run_scenario(
    scenario: Scenario, cfg: Config, *, keep: bool = False, log: Any = None
) -> ScenarioResult:
    result = ScenarioResult(scenario.name, scenario.title, scenario.rounds(cfg))
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix=f"fleet-chaos-{scenario.name}-"))
    try:
        await _run(scenario, cfg, workdir, result, log)
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        result.notes.append(traceback.format_exc(limit=6))
    finally:
        result.duration_s = round(time.monotonic() - started, 1)
        if keep:
            result.workdir = str(workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return result


async def _run(
    scenario: Scenario, cfg: Config, workdir: Path, result: ScenarioResult, log: Any
) -> None:
    def say(message: str) -> None:
        if log is not None:
            log(f"[{scenario.name}] {message}")

    tally = Tally()
    where = ", each on a host of its own" if scenario.hosts else ""
    say(f"starting Redis, {_WORKERS} workers, {scenario.supervisors} supervisor(s){where}")
    async with contextlib.AsyncExitStack() as stack:
        # Entered first, left last: the processes stop before their hosts go.
        network = stack.enter_context(Network()) if scenario.hosts else None
        fleet = await stack.enter_async_context(
            Fleet(
                workdir,
                workers=_WORKERS,
                supervisors=scenario.supervisors,
                supervisor_env=cfg.supervisor_env(),
                network=network,
            )
        )
        api = Api(fleet, tally)
        try:
            run = Run(cfg, fleet, api, random.Random(f"{cfg.seed}-{scenario.name}"))
            say(f"{result.rounds} fault(s)")
            try:
                await scenario.body(run)
            finally:
                result.recovery_s = [None if r is None else round(r, 2) for r in run.recoveries]
                result.notes.extend(run.notes)
                measured = dict(run.measured)
                cut_off = dict(run.cut_off)
            say(f"waiting up to {cfg.settle_s:g}s for {len(api.jobs)} accepted jobs to end")
            deadline = time.monotonic() + cfg.settle_s
            finals = await _gather_limited(
                {job_id: api.wait_job(job_id, deadline) for job_id in api.jobs}, 64
            )
            say("replaying event logs")
            replay_deadline = time.monotonic() + 60.0
            terminal = [j for j, f in finals.items() if f and f.get("status") in TERMINAL]
            replays: dict[str, Replay] = await _gather_limited(
                {job_id: api.replay(job_id, replay_deadline) for job_id in terminal}, 32
            )
        finally:
            await api.aclose()
        fleet.stop_supervisors()
        logs = await durable_logs(fleet.redis_url, Keys(KEY_PREFIX), list(api.jobs))
    ledger = read_ledger(fleet.ledger)
    findings = judge(
        Evidence(
            api.jobs,
            finals,
            replays,
            logs,
            ledger,
            tally,
            api.refused,
            api.unanswered,
            cut_off=cut_off,
        )
    )
    result.accepted = len(api.jobs)
    result.counts = findings.counts
    result.examples = findings.examples
    result.info = {**findings.info, **measured}
    say(f"done: {findings.counts}")


async def _gather_limited(calls: dict[str, Any], limit: int) -> dict[str, Any]:
    gate = asyncio.Semaphore(limit)

    async def one(call: Any) -> Any:
        async with gate:
            return await call

    keys = list(calls)
    values = await asyncio.gather(*(one(calls[k]) for k in keys))
    return dict(zip(keys, values, strict=True))


async def run_suite(
    cfg: Config, *, only: list[str] | None = None, keep: bool = False, log: Any = None
) -> list[ScenarioResult]:
    """Run the scenarios one after another (they would disturb each other's timing)."""
    chosen = [s for s in SCENARIOS if not only or s.name in only]
    return [await run_scenario(s, cfg, keep=keep, log=log) for s in chosen]
