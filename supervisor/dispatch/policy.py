"""The retry policy: which failed attempts may run again, and the backoff between them.

Retries (tenacity, exponential backoff with full jitter, another worker preferred): a failure
that was *never delivered* (``UNREACHABLE``, ``BUSY``, ``REFUSED``, ``NO_WORKER``) is retried
when its kind allows; a *possibly delivered* one (``TIMEOUT``, ``DROPPED``, ``BAD_RESPONSE``,
``HTTP_ERROR``, ``RPC_ERROR``) only when the capability is idempotent; a tool's own error only
when the worker marks it retryable. (A worker that de-duplicates on the idempotency key keeps
only finished results, so it does not make a cut-off call of a non-idempotent tool safe to
send again: the chaos suite measured such re-runs.)

A ``BUSY`` answer (the worker's slots are all taken, e.g. by other supervisors sharing it) is
not an attempt: the call never reached the tool. It is retried with the same backoff for up to
``busy_wait_s`` without spending the job's attempts (:class:`AttemptBudget`).

A job reclaimed from a supervisor that stopped is one more attempt, under the same rule
(:func:`refuse_rerun`). Everything here is pure: no store, no workers.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    wait_exponential_jitter,
)

from shared import (
    Job,
    JobError,
    JobStatus,
    SupervisorSettings,
    ToolFailed,
    WorkerBusy,
    WorkerCallError,
)

__all__ = ["AttemptBudget", "RetryPolicy", "may_retry", "refuse_rerun"]


def may_retry(exc: BaseException, *, idempotent: bool) -> bool:
    """May the attempt that failed with ``exc`` be followed by another?"""
    if not isinstance(exc, WorkerCallError):
        return False
    if not exc.delivered or isinstance(exc, ToolFailed):
        return exc.retryable
    # Possibly delivered: only an idempotent tool may run again. A worker's
    # de-duplication is no licence: it keeps only finished results, so a call cut
    # off mid-run (a crash, our timeout closing the stream) would simply run again.
    return idempotent


def refuse_rerun(job: Job, *, idempotent: bool) -> JobError | None:
    """Why a reclaimed job must not run again (the error to fail it with), or None to run it.

    Refused when attempts are used up, or when the lost attempt may have reached a tool that
    is not idempotent (whatever the worker de-duplicates: it keeps only finished results, and
    the lost call may have been cut off mid-run)."""
    if job.attempts >= job.max_attempts:
        return JobError(
            code="LEASE_LOST",
            message=f"the supervisor running attempt {job.attempts} stopped (crash or "
            f"pause) and no attempts remain",
            details={"attempts": job.attempts, "delivery": "possibly"},
        )
    if job.status is not JobStatus.RUNNING:
        return None  # it never reached a worker
    if idempotent:
        return None
    return JobError(
        code="DROPPED",
        message="the supervisor running this job stopped mid-call; the tool may have run "
        "and is not idempotent, so it is not run again",
        details={"worker": job.worker, "delivery": "possibly"},
    )


@dataclass
class AttemptBudget:
    """tenacity's ``stop`` for one run: stop after ``attempts`` failed attempts, where a
    ``BUSY`` answer is no attempt but counts against ``busy_wait_s`` of retrying."""

    attempts: int
    busy_wait_s: float
    clock: Callable[[], float] = time.monotonic
    spent: int = 0
    busy_since: float | None = field(default=None)

    def __call__(self, state: RetryCallState) -> bool:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, WorkerBusy):
            self.busy_since = self.busy_since if self.busy_since is not None else self.clock()
            return self.clock() - self.busy_since >= self.busy_wait_s
        self.busy_since = None
        self.spent += 1
        return self.spent >= max(1, self.attempts)


@dataclass(frozen=True)
class RetryPolicy:
    backoff_initial_s: float
    backoff_max_s: float
    busy_wait_s: float = 120.0

    @classmethod
    def from_settings(cls, settings: SupervisorSettings) -> RetryPolicy:
        return cls(settings.backoff_initial_s, settings.backoff_max_s, settings.busy_wait_s)

    def retrying(
        self,
        *,
        budget: int,
        idempotent: bool,
        before_sleep: Callable[[RetryCallState], Awaitable[None]] | None = None,
    ) -> AsyncRetrying:
        """The attempts of one run: at most ``budget`` (at least one; ``BUSY`` answers aside,
        see :class:`AttemptBudget`), retried as :func:`may_retry` allows, the last error
        re-raised."""

        def retryable(exc: BaseException) -> bool:
            return may_retry(exc, idempotent=idempotent)

        return AsyncRetrying(
            stop=AttemptBudget(budget, self.busy_wait_s),
            wait=wait_exponential_jitter(
                multiplier=self.backoff_initial_s,
                max=self.backoff_max_s,
                jitter=self.backoff_initial_s,
            ),
            retry=retry_if_exception(retryable),
            before_sleep=before_sleep,
            reraise=True,
        )
