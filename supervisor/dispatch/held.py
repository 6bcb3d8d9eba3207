"""The lease this supervisor holds on one job, and its loss.

A held job is a pending entry of the dispatch stream (``entry_id``) plus the fencing token
taken when the job was acquired (``fence``). Every write for the job carries the token; once
another supervisor has taken the job over the token no longer matches, the job is *lost*, and
nothing more is written for it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from shared import JobStatus, Usage, get_logger
from supervisor.metrics import Metrics

__all__ = ["ACTIVE", "Held", "lose"]

log = get_logger("fleet.dispatcher")

ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)
"""The statuses a held job may still be written from."""


@dataclass(slots=True)  # one per job held (thousands wait for a worker): no __dict__ each
class Held:
    entry_id: str
    reclaimed: bool = False
    fence: int | None = None
    task: asyncio.Task[None] | None = None
    cancel_requested: bool = False
    lost: bool = False  # another supervisor took the lease over: write nothing more
    waiting: bool = False  # waiting for a worker: holds no dispatcher slot
    counted: bool = False  # this holder already counted an attempt
    acked: bool = False  # the finishing write acknowledged the delivery with it
    tried: set[str] = field(default_factory=set)
    calls: int = 0  # calls this holder made (its share of the job's attempts)
    worker_s: float = 0.0  # what they cost: time in calls
    bytes_out: int = 0  # and their answers' size (bytes in: at the end, from the input)

    def usage(self, bytes_in: int) -> Usage:
        return Usage(worker_s=self.worker_s, bytes_in=bytes_in, bytes_out=self.bytes_out)


def lose(job_id: str, held: Held, fence: int | None, metrics: Metrics) -> None:
    """The lease is another's (``fence``: the current token, if known): stop the job's run."""
    held.lost = True
    metrics.fenced_writes.inc()
    log.warning("dispatcher.lease_lost", job_id=job_id, ours=held.fence, current=fence)
    if held.task is not None:
        held.task.cancel()
