"""How much each measurement does: the full run, and the short one for CI (``--quick``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["FULL", "QUICK", "Counts"]


@dataclass(frozen=True)
class Counts:
    rounds: int
    sequential: int
    """Jobs one after another, for p50 and p99."""
    inflight: int
    """Jobs run with ``concurrency`` in flight, for jobs/s (and CPU per job)."""
    burst: int
    """Jobs enqueued at once, then awaited."""
    progress_events: int
    """Progress events of the progress-heavy job."""
    progress_rate: float
    """The events/s of the paced progress rows, whose latency the target is set for: at full
    speed an event's latency is its wait behind the burst's backlog, which grows with the
    burst's length, not the fleet's (the full-speed rows give the events/s)."""
    watchers: tuple[int, ...]
    queued: int
    """Jobs left queued for the memory measurement."""
    queued_watchers: int
    curve: tuple[int, ...]
    """Concurrent submitters for the throughput/latency curve."""
    curve_jobs: int
    """Jobs per curve point (at least 4 per submitter)."""
    impact_jobs: int
    """Paced jobs in flight together for the watchers' impact on job durations."""
    impact_watchers: int
    """SSE watchers spread over those jobs' event streams (the target is set for 1,000)."""
    impact_events: int
    """Progress events each paced job reports, evenly over ``impact_seconds``."""
    impact_seconds: float
    warmup: int = 50
    concurrency: int = 64

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


FULL = Counts(
    rounds=3,
    sequential=500,
    inflight=2000,
    burst=2000,
    progress_events=2000,
    progress_rate=2000.0,
    watchers=(0, 1, 100),
    queued=10_000,
    queued_watchers=1000,
    curve=(1, 8, 64, 256),
    curve_jobs=1500,
    impact_jobs=20,
    impact_watchers=1000,
    impact_events=20,
    impact_seconds=2.0,
)

QUICK = Counts(
    rounds=1,
    sequential=50,
    inflight=200,
    burst=200,
    progress_events=200,
    progress_rate=2000.0,
    watchers=(0, 1, 100),
    queued=1000,
    queued_watchers=100,
    curve=(1, 8, 64, 256),
    curve_jobs=256,
    impact_jobs=8,
    impact_watchers=200,
    impact_events=10,
    impact_seconds=1.0,
    warmup=10,
)
