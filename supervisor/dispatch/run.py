"""One job's run, from acquiring it to its outcome, with retries on other workers.

Retry policy (tenacity, exponential backoff with full jitter, another worker preferred):
a failure that was *never delivered* (``UNREACHABLE``, ``BUSY``, ``REFUSED``) is retried
when its kind allows; a *possibly delivered* one (``TIMEOUT``, ``DROPPED``, ``BAD_RESPONSE``,
``HTTP_ERROR``, ``RPC_ERROR``) only when the capability is idempotent; a tool's own error only
when the worker marks it retryable. (A worker that de-duplicates on the idempotency key keeps
only finished results, so it does not make a cut-off call of a non-idempotent tool safe to
send again: the chaos suite measured such re-runs.)
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from shared import (
    Job,
    JobError,
    JobNotFound,
    JobStatus,
    StoreUnavailable,
    SupervisorSettings,
    ToolFailed,
    UnknownCapability,
    WorkerCallError,
    bind,
    get_logger,
    labels,
    tracer,
)
from supervisor.dispatch.call import Calls, Ended
from supervisor.dispatch.held import ACTIVE, Held, lose
from supervisor.dispatch.outcome import Outcomes, cancelled, job_error
from supervisor.dispatch.placement import Placement, tool_of
from supervisor.metrics import Metrics
from supervisor.store import Fenced, Store

if TYPE_CHECKING:  # the registry imports the breaker from this package
    from supervisor.registry import Registry, WorkerState

__all__ = ["Runner"]

log = get_logger("fleet.dispatcher")
_tracer = tracer("mcp-fleet.supervisor")


class Runner:
    """Runs held jobs, one :meth:`handle` per job."""

    def __init__(
        self,
        store: Store,
        registry: Registry,
        settings: SupervisorSettings,
        metrics: Metrics,
        placement: Placement,
        calls: Calls,
        outcomes: Outcomes,
    ) -> None:
        self.store = store
        self.registry = registry
        self.settings = settings
        self.metrics = metrics
        self.placement = placement
        self.calls = calls
        self.outcomes = outcomes

    async def handle(self, job_id: str, held: Held) -> None:
        """Every way this can end has an outcome: the job ends, goes back to the queue, or
        (shutdown, store outage, a lost lease) is left pending for a reclaim."""
        done = False
        job: Job | None = None
        try:
            held.fence, job, flags = await self.store.acquire(job_id)
            with bind(job_id=job.id, correlation_id=job.correlation_id, capability=job.capability):
                if job.status.terminal:
                    done = True
                elif flags.get("cancel"):
                    await self.outcomes.finish(job, held, JobStatus.CANCELLED, error=cancelled())
                    done = True
                elif held.reclaimed and await self._refuse_rerun(job, held):
                    done = True
                else:
                    done = await self._execute(job, held)
        except JobNotFound:
            done = True  # expired or removed: nothing left to do
        except Fenced:
            lose(job_id, held, None, self.metrics)
        except asyncio.CancelledError:
            if held.lost or not held.cancel_requested:
                raise  # shutdown, or the lease is another's: leave the delivery alone
            with contextlib.suppress(Exception):
                job = await self.store.get(job_id)
                await self.outcomes.finish(job, held, JobStatus.CANCELLED, error=cancelled())
            done = True
        except StoreUnavailable as exc:
            log.error("dispatcher.store_unavailable", job_id=job_id, error=exc.message)
        except Exception as exc:
            log.exception("dispatcher.unexpected", job_id=job_id)
            done = await self._unexpected(job_id, job, held, exc)
        finally:
            if done and not held.lost:
                with contextlib.suppress(StoreUnavailable):
                    await self.store.ack(held.entry_id)

    async def _unexpected(self, job_id: str, job: Job | None, held: Held, exc: Exception) -> bool:
        """An error in handling ends the attempt as ``INTERNAL``; the job goes back to the
        queue while attempts remain, else it fails and is dead-lettered. True when acked."""
        error = JobError(
            code="INTERNAL",
            message=f"the supervisor failed handling the job: {type(exc).__name__}",
            details={"exception": type(exc).__name__, "delivery": "possibly"},
        )
        try:
            job = job or await self.store.get(job_id)
            if job.status.terminal:
                return True
            if not held.counted:
                job.attempts += 1
            if job.attempts >= job.max_attempts:
                await self.outcomes.finish(job, held, JobStatus.FAILED, error=error)
                return True
            await self.store.requeue(
                job_id,
                allowed=ACTIVE,
                fence=held.fence,
                entry_id=held.entry_id,
                data={"status": "queued", "error": error.model_dump(), "attempt": job.attempts},
                attempts=job.attempts,
            )
            return False  # requeue acknowledged the old delivery itself
        except Fenced:
            lose(job_id, held, None, self.metrics)
        except Exception:  # the store is out too: the lease lapses and a reclaim counts it
            log.exception("dispatcher.unexpected_outcome_failed", job_id=job_id)
        return False

    async def _refuse_rerun(self, job: Job, held: Held) -> bool:
        """A reclaimed job is one more attempt. Refuse to run it again when attempts are
        used up, or when the lost attempt may have reached a tool that is not idempotent
        (whatever the worker de-duplicates: it keeps only finished results, and the lost call
        may have been cut off mid-run). True when the job was ended here."""
        if job.attempts >= job.max_attempts:
            error = JobError(
                code="LEASE_LOST",
                message=f"the supervisor running attempt {job.attempts} stopped (crash or "
                f"pause) and no attempts remain",
                details={"attempts": job.attempts, "delivery": "possibly"},
            )
            await self.outcomes.finish(job, held, JobStatus.FAILED, error=error)
            return True
        if job.status is not JobStatus.RUNNING:
            return False  # it never reached a worker
        worker = next((w for w in self.registry.workers.values() if w.name == job.worker), None)
        spec = worker.capabilities.get(tool_of(job)) if worker is not None else None
        if spec is None:
            target = self._target_spec(job)
            idempotent = bool(target and target.idempotent)
        else:
            idempotent = spec.idempotent
        if idempotent:
            return False
        error = JobError(
            code="DROPPED",
            message="the supervisor running this job stopped mid-call; the tool may have run "
            "and is not idempotent, so it is not run again",
            details={"worker": job.worker, "delivery": "possibly"},
        )
        await self.outcomes.finish(job, held, JobStatus.FAILED, error=error)
        return True

    def _target_spec(self, job: Job) -> Any:
        try:
            return self.registry.resolve(job.capability).spec
        except UnknownCapability:
            return None

    async def _execute(self, job: Job, held: Held) -> bool:
        worker = await self._wait_for_worker(job, held)
        if worker is None:
            return True
        budget = job.max_attempts - job.attempts
        first = [worker]
        spec_idempotent = worker.capabilities[tool_of(job)].idempotent

        def retryable(exc: BaseException) -> bool:
            if not isinstance(exc, WorkerCallError):
                return False
            if not exc.delivered or isinstance(exc, ToolFailed):
                return exc.retryable
            # Possibly delivered: only an idempotent tool may run again. A worker's
            # de-duplication is no licence: it keeps only finished results, so a call cut
            # off mid-run (a crash, our timeout closing the stream) would simply run again.
            return spec_idempotent

        async def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            wait = state.next_action.sleep if state.next_action else 0
            code = getattr(exc, "code", "ERROR")
            await self.store.append(
                job.id,
                "log",
                {
                    "level": "warning",
                    "message": f"attempt failed ({code}); retrying in {wait:.2f}s",
                },
                fence=held.fence,
            )

        retrying = AsyncRetrying(
            stop=stop_after_attempt(max(1, budget)),
            wait=wait_exponential_jitter(
                multiplier=self.settings.backoff_initial_s,
                max=self.settings.backoff_max_s,
                jitter=self.settings.backoff_initial_s,
            ),
            retry=retry_if_exception(retryable),
            before_sleep=before_sleep,
            reraise=True,
        )
        with _tracer.start_as_current_span(
            f"job {job.capability}",
            attributes=labels(
                job_id=job.id, capability=job.capability, correlation_id=job.correlation_id
            ),
        ):
            try:
                async for attempt in retrying:
                    with attempt:
                        target = first.pop() if first else await self.placement.choose(job, held)
                        async with self.placement.slot(target, tool_of(job)):
                            result = await self.calls.call(job, target, held)
            except Ended:
                return True
            except WorkerCallError as exc:
                await self.outcomes.finish(job, held, JobStatus.FAILED, error=job_error(exc))
                return True
        await self.outcomes.finish(
            job, held, JobStatus.SUCCEEDED, result=result.value, content=result.content
        )
        return True

    async def _wait_for_worker(self, job: Job, held: Held) -> WorkerState | None:
        """Hold a queued job until a worker can take it (the job stays ``queued``)."""
        while True:
            worker = self.placement.route(job)
            if worker is not None:
                return worker
            await self.placement.wait_tool(job, held, 1.0)
            if await self.store.flag(job.id, "cancel"):
                await self.outcomes.finish(job, held, JobStatus.CANCELLED, error=cancelled())
                return None
