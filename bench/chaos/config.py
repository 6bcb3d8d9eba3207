"""How big and how fast each run is: the full suite and the quick one CI runs."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

__all__ = ["FULL", "QUICK", "Config"]


@dataclass(frozen=True)
class Config:
    mode: str
    lease_s: float
    """``FLEET_LEASE_S`` of every supervisor: a holder silent this long loses its jobs."""
    worker_kills: int
    supervisor_kills: int
    batch: int
    """Jobs in the supervisor-kill scenario's batch."""
    pauses: int
    redis_kills: int
    job_timeout_s: float
    """``timeout_s`` of every job (per attempt)."""
    worker_cuts: int = 1
    """Rounds of the worker-cut scenario (a worker host's link cut mid-job)."""
    supervisor_cuts: int = 1
    """Rounds of the supervisor-cut scenario (a supervisor host's link cut while it holds
    jobs)."""
    pause_factor: float = 2.5
    """A pause lasts this many leases."""
    outage_s: float = 2.0
    """How long Redis stays dead."""
    stream_rate: float = 20.0
    """Submissions per second in the Redis scenario."""
    settle_s: float = 120.0
    """After the last fault, how long accepted jobs have to end before they count as lost."""
    recovery_deadline_s: float = 60.0
    seed: int = 8

    def supervisor_env(self) -> dict[str, str]:
        return {
            "FLEET_LEASE_S": str(self.lease_s),
            "FLEET_PROBE_INTERVAL_S": "1.0",
            "FLEET_BACKOFF_INITIAL_S": "0.05",
            "FLEET_BACKOFF_MAX_S": "0.5",
            "FLEET_LOG_LEVEL": "INFO",
        }

    def with_seed(self, seed: int) -> Config:
        return replace(self, seed=seed)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


FULL = Config(
    mode="full",
    lease_s=2.0,
    worker_kills=20,
    supervisor_kills=10,
    batch=200,
    pauses=6,
    redis_kills=3,
    job_timeout_s=30.0,
    worker_cuts=4,
    supervisor_cuts=4,
    outage_s=3.0,
    settle_s=240.0,
    recovery_deadline_s=90.0,
)

QUICK = Config(
    mode="quick",
    lease_s=1.5,
    worker_kills=2,
    supervisor_kills=2,
    batch=40,
    pauses=2,
    redis_kills=2,
    job_timeout_s=8.0,
    worker_cuts=1,
    supervisor_cuts=1,
    outage_s=2.0,
    settle_s=75.0,
    recovery_deadline_s=45.0,
)
