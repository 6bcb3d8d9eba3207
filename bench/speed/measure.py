"""The side-by-side measurement: every system in every round, in a rotating order.

Per system and round: p50 and p99 of ``sequential`` jobs one at a time; jobs/s with
``concurrency`` in flight and for a ``burst``; and CPU per job of each process group
(``runner``: the supervisor, the Celery or arq worker; ``worker``: the MCP worker; ``redis``)
from ``/proc`` over the in-flight phase, as issue 10 defines it ("over 5,000 jobs at 64 in
flight"). The burst's CPU per job is kept apart (``cpu_*_burst_ms``): a fleet burst job is two
requests (its submit, then a ``GET ?wait``), so mixing it in would price a different job. Then
the curve: throughput and p50 of ``POST /v1/jobs?wait=`` at several numbers of concurrent
submitters, for each store.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from bench.speed.config import Counts
from bench.speed.procstat import cpu_seconds
from bench.speed.stats import pct
from bench.speed.systems import Fleet

__all__ = ["METRICS", "Entry", "System", "run_curve", "run_round"]

METRICS = (
    "p50_ms",
    "p99_ms",
    "jobs_s_inflight",
    "jobs_s_burst",
    "cpu_runner_ms",
    "cpu_worker_ms",
    "cpu_redis_ms",
    "cpu_runner_burst_ms",
    "cpu_worker_burst_ms",
    "cpu_redis_burst_ms",
)


class System(Protocol):
    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def latency(self, n: int) -> list[float]: ...
    async def inflight(self, n: int, concurrency: int) -> float: ...
    async def burst(self, n: int) -> float: ...


@dataclass
class Entry:
    """One row of the systems table."""

    key: str
    label: str
    system: System | None
    cpu: dict[str, list[int]] = field(default_factory=dict)
    """Process group (``runner``, ``worker``, ``redis``) -> root pids."""
    unavailable: str | None = None
    rounds: dict[str, list[float]] = field(default_factory=dict)


async def _measure(entry: Entry, counts: Counts) -> dict[str, float]:
    system = entry.system
    assert system is not None
    await system.latency(counts.warmup)
    lat = await system.latency(counts.sequential)
    before = {group: cpu_seconds(pids) for group, pids in entry.cpu.items()}
    inflight_s = await system.inflight(counts.inflight, counts.concurrency)
    between = {group: cpu_seconds(pids) for group, pids in entry.cpu.items()}
    burst_s = await system.burst(counts.burst)
    out = {
        "p50_ms": pct(lat, 0.5),
        "p99_ms": pct(lat, 0.99),
        "jobs_s_inflight": counts.inflight / inflight_s,
        "jobs_s_burst": counts.burst / burst_s,
    }
    for group, pids in entry.cpu.items():
        out[f"cpu_{group}_ms"] = (between[group] - before[group]) * 1000 / counts.inflight
        out[f"cpu_{group}_burst_ms"] = (cpu_seconds(pids) - between[group]) * 1000 / counts.burst
    return out


async def run_round(entries: list[Entry], counts: Counts, index: int, log: Any) -> None:
    """One round over every available entry, starting at a different one each round."""
    live = [e for e in entries if e.unavailable is None]
    if not live:
        return
    shift = index % len(live)
    for entry in live[shift:] + live[:shift]:
        if entry.unavailable is not None:
            continue
        t = time.monotonic()
        try:
            numbers = await _measure(entry, counts)
        except Exception as exc:
            entry.unavailable = f"failed in round {index + 1}: {exc!r}"[:300]
            log(f"  {entry.label}: {entry.unavailable}")
            continue
        for name, value in numbers.items():
            entry.rounds.setdefault(name, []).append(value)
        log(f"  {entry.label}: {time.monotonic() - t:.1f}s")


async def run_curve(
    bases: dict[str, str], counts: Counts, into: dict[str, dict[int, dict[str, list[float]]]]
) -> None:
    """One round of the curve for each store, appended to ``into[store][submitters]``."""
    for store, base in bases.items():
        fleet = Fleet(base, "wait")
        await fleet.start()
        try:
            await fleet.latency(counts.warmup)
            for submitters in counts.curve:
                total = max(counts.curve_jobs, 4 * submitters)
                rate, p50 = await _curve_point(fleet, total, submitters)
                point = into.setdefault(store, {}).setdefault(submitters, {})
                point.setdefault("jobs_s", []).append(rate)
                point.setdefault("p50_ms", []).append(p50)
        finally:
            await fleet.close()


async def _curve_point(fleet: Fleet, total: int, submitters: int) -> tuple[float, float]:
    left = total
    lat: list[float] = []

    async def lane() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            t = time.perf_counter()
            await fleet.one()
            lat.append((time.perf_counter() - t) * 1000)

    t = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(submitters)))
    return total / (time.perf_counter() - t), pct(lat, 0.5)
