"""Recording how a job ended: the final write, kept up across store outages, and its count."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from shared import (
    FleetError,
    Job,
    JobError,
    JobStatus,
    StoreUnavailable,
    SupervisorSettings,
    get_logger,
    now,
)
from supervisor.dispatch.held import ACTIVE, Held
from supervisor.metrics import Metrics
from supervisor.types import DispatchStore

__all__ = ["Outcomes", "cancelled", "job_error"]

T = TypeVar("T")

log = get_logger("fleet.dispatcher")


class Outcomes:
    """Ends jobs: writes the final status under the job's fence, then counts and logs it."""

    def __init__(
        self, store: DispatchStore, settings: SupervisorSettings, metrics: Metrics
    ) -> None:
        self.store = store
        self.settings = settings
        self.metrics = metrics

    async def finish(
        self,
        job: Job,
        held: Held,
        status: JobStatus,
        *,
        result: Any = None,
        content: list[dict[str, Any]] | None = None,
        error: JobError | None = None,
    ) -> None:
        job.status = status
        job.result = result
        job.content = content
        job.error = error
        job.finished_at = now()
        job.usage = None  # it never reached a worker
        if held.counted:  # the same input went with every call: measured once, at the end
            size = len(json.dumps(job.input, separators=(",", ":")))
            job.usage = held.usage(bytes_in=held.calls * size)
        seq = await self._until_stored(
            job.id,
            lambda: self._finish_write(job, held, status, result, content, error),
        )
        if seq is None:
            return  # someone else ended it first (a cancel of a queued job)
        self._count_finished(job, status, error)
        if job.usage is not None:  # the ledger took it with the outcome, in the same step
            self.metrics.count_usage(job)

    async def _until_stored(self, job_id: str, write: Callable[[], Awaitable[T]]) -> T:
        """An outcome is written even across a store outage: the result is in hand, and
        giving up would let a reclaim run the job again. Tries until the store answers (or
        a fence says the job is another's), for at most ten leases."""
        deadline = time.monotonic() + max(60.0, 10 * self.settings.lease_s)
        delay = 0.05
        while True:
            try:
                return await write()
            except StoreUnavailable as exc:
                if time.monotonic() >= deadline:
                    raise
                log.warning("job.outcome_waits_for_store", job_id=job_id, error=exc.message)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)

    async def _finish_write(
        self,
        job: Job,
        held: Held,
        status: JobStatus,
        result: Any,
        content: list[dict[str, Any]] | None,
        error: JobError | None,
    ) -> int | None:
        seq = await self.store.transition(
            job.id,
            allowed=ACTIVE,
            event="status",
            data={"status": status.value, **({"error": error.model_dump()} if error else {})},
            finish=True,
            done=job,
            status=status,
            result=result,
            content=content,
            error=error.model_dump() if error else None,
            finished_at=job.finished_at,
            attempts=job.attempts,
            usage=job.usage,
            fence=held.fence,
            dead_letter=status is JobStatus.FAILED,
            ack=None if held.lost else held.entry_id,
            ledger=job,
        )
        held.acked = seq is not None
        return seq

    def _count_finished(self, job: Job, status: JobStatus, error: JobError | None) -> None:
        assert job.finished_at is not None
        self.metrics.jobs.labels(status.value, job.capability).inc()
        self.metrics.job_duration.labels(job.capability, status.value).observe(
            job.finished_at - job.created_at
        )
        log.info(
            "job.finished",
            status=status.value,
            attempts=job.attempts,
            worker=job.worker,
            duration_ms=round((job.finished_at - job.created_at) * 1000, 1),
            error=error.code if error else None,
        )


def cancelled() -> JobError:
    return JobError(code="CANCELLED", message="cancelled on request")


def job_error(exc: FleetError) -> JobError:
    return JobError(code=exc.code, message=exc.message, details=exc.details)
