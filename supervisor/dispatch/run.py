"""One job's run, from acquiring it to its outcome, with retries on other workers.

Which failures are retried, and whether a reclaimed job runs again, is the retry policy's
(:mod:`.policy`); this module applies it to the store and the workers.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Protocol

from opentelemetry import propagate
from opentelemetry.context import Context
from tenacity import RetryCallState

from shared import (
    Job,
    JobError,
    JobNotFound,
    JobStatus,
    StoreUnavailable,
    UnknownCapability,
    WorkerCallError,
    bind,
    get_logger,
    labels,
    now,
    tracer,
)
from shared.protocol import WORKFLOW_CAPABILITY
from supervisor.calls import CallResult
from supervisor.dispatch.call import Calls, Ended
from supervisor.dispatch.held import ACTIVE, Held, lose
from supervisor.dispatch.outcome import Outcomes, cancelled, job_error
from supervisor.dispatch.placement import Placement, Route, tool_of
from supervisor.dispatch.policy import RetryPolicy, may_retry, refuse_rerun
from supervisor.metrics import Metrics
from supervisor.store import Fenced
from supervisor.types import DispatchStore, WorkerDirectory, WorkerView

__all__ = ["Runner"]

log = get_logger("fleet.dispatcher")
_tracer = tracer("mcp-fleet.supervisor")


class WorkflowRunner(Protocol):
    """Runs a workflow job (:mod:`supervisor.workflows`): True once it ended."""

    async def run(self, job: Job, held: Held) -> bool: ...


class Runner:
    """Runs held jobs, one :meth:`handle` per job."""

    workflows: WorkflowRunner | None = None
    """Runs jobs of :data:`WORKFLOW_CAPABILITY` (set by the app's wiring; tests without it
    leave such jobs queued)."""

    def __init__(
        self,
        store: DispatchStore,
        registry: WorkerDirectory,
        metrics: Metrics,
        placement: Placement,
        calls: Calls,
        outcomes: Outcomes,
        policy: RetryPolicy,
    ) -> None:
        self.store = store
        self.registry = registry
        self.metrics = metrics
        self.placement = placement
        self.calls = calls
        self.outcomes = outcomes
        self.policy = policy

    async def handle(self, job_id: str, held: Held, route: Route | None = None) -> None:
        """Every way this can end has an outcome: the job ends, goes back to the queue, or
        (shutdown, store outage, a lost lease) is left pending for a reclaim.

        ``route``: where the job goes, known without reading it (this process submitted it):
        a worker is chosen first, and the lease, the read and the ``running`` write are one
        store round trip (:meth:`_take_started`) instead of two."""
        done = False
        job: Job | None = None
        started: _Started | None = None
        try:
            if route is not None and not held.reclaimed:
                job, flags, started = await self._take_started(job_id, held, route)
            else:
                held.fence, job, flags = await self.store.acquire(
                    job_id, entry=held.entry_id, reclaimed=held.reclaimed
                )
            with bind(job_id=job.id, correlation_id=job.correlation_id, capability=job.capability):
                if started is not None:
                    done = await self._execute(job, held, started.worker, started)
                elif job.status.terminal:
                    done = True
                elif flags.get("cancel"):
                    await self.outcomes.finish(job, held, JobStatus.CANCELLED, error=cancelled())
                    done = True
                elif job.capability == WORKFLOW_CAPABILITY:
                    done = await self._workflow(job, held)
                elif held.reclaimed and await self._refuse_rerun(job, held):
                    done = True
                else:
                    worker = self.placement.route(job)
                    if worker is None:  # it waits holding its id and route, not its record
                        route, job = Route.of(job), None
                        worker = await self._wait_for_worker(route, held)
                        job = await self.store.get(job_id)  # as it is now: one read
                    done = await self._execute(job, held, worker)
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
            if started is not None:
                await started.give_back()  # if the first attempt never took it over
            if done and not held.lost and not held.acked:  # the outcome's write acks it
                with contextlib.suppress(StoreUnavailable):
                    await self.store.ack(held.entry_id)

    async def _take_started(
        self, job_id: str, held: Held, route: Route
    ) -> tuple[Job, dict[str, str], _Started | None]:
        """The lease and the read, and the start on a worker chosen from ``route`` when one
        is free and the job is still queued with no cancel asked (else just the lease and
        the read: the job goes on as any other). The worker's slot is taken before the
        store is asked, as :meth:`_attempt` takes it, so routing meanwhile sees it."""
        worker = self.placement.route_to(route)
        if worker is None:
            held.fence, job, flags = await self.store.acquire(job_id, entry=held.entry_id)
            return job, flags, None
        started = _Started(self.placement, worker, route.tool)
        try:
            held.fence, job, flags, ran = await self.store.acquire_and_start(
                job_id, entry=held.entry_id, worker=worker.name, ts=started.ts
            )
        except BaseException:
            await started.give_back(verdict=False)
            raise
        if not ran:
            await started.give_back(verdict=False)
            return job, flags, None
        held.counted = True  # the store counted the attempt as it started it
        return job, flags, started

    async def _workflow(self, job: Job, held: Held) -> bool:
        """A workflow runs here, reclaimed or not (it resumes from its record and its
        children's), holding no slot: it only waits on its children."""
        if self.workflows is None:
            log.warning("dispatcher.no_workflow_runner", job_id=job.id)
            return False  # left pending: a supervisor that runs workflows reclaims it
        held.waiting = True
        with _tracer.start_as_current_span(
            f"workflow {job.id}",
            context=_trace_context(job),
            attributes=labels(job_id=job.id, correlation_id=job.correlation_id),
        ):
            return await self.workflows.run(job, held)

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
        """A reclaimed job is one more attempt, if the policy allows it. True when the job
        was ended here."""
        error = refuse_rerun(job, idempotent=self._idempotent(job))
        if error is None:
            return False
        await self.outcomes.finish(job, held, JobStatus.FAILED, error=error)
        return True

    def _idempotent(self, job: Job) -> bool:
        """Is the tool the job's last attempt called idempotent (as its worker declared it,
        else as the capability is declared now)?"""
        worker = next((w for w in self.registry.workers.values() if w.name == job.worker), None)
        spec = worker.capabilities.get(tool_of(job)) if worker is not None else None
        if spec is None:
            target = self._target_spec(job)
            return bool(target and target.idempotent)
        return spec.idempotent

    def _target_spec(self, job: Job) -> Any:
        try:
            return self.registry.resolve(job.capability).spec
        except UnknownCapability:
            return None

    async def _execute(
        self, job: Job, held: Held, worker: WorkerView, started: _Started | None = None
    ) -> bool:
        """The job's attempts, the first on ``worker``. ``started``: the job is already
        ``running`` there (its first attempt's slot taken and its status written by
        :meth:`_take_started`)."""

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

        idempotent = worker.capabilities[tool_of(job)].idempotent
        # The attempts left, counting the first: a started job's record counts it already.
        budget = job.max_attempts - job.attempts + (started is not None)
        with _tracer.start_as_current_span(
            f"job {job.capability}",
            context=_trace_context(job),
            attributes=labels(
                job_id=job.id, capability=job.capability, correlation_id=job.correlation_id
            ),
        ):
            try:
                try:  # the first attempt without tenacity: most jobs need no other
                    if started is not None:
                        result = await self._first_started(job, held, started)
                    else:
                        result = await self._attempt(job, held, worker)
                except Exception as exc:
                    if not may_retry(exc, idempotent=idempotent):
                        raise
                    # tenacity takes over from the first failure, replayed to it as its own
                    # first attempt: its stop, backoff and before_sleep see every failure.
                    failed: list[Exception] = [exc]
                    retrying = self.policy.retrying(
                        budget=budget, idempotent=idempotent, before_sleep=before_sleep
                    )
                    async for attempt in retrying:
                        with attempt:
                            if failed:
                                raise failed.pop() from None
                            target = await self.placement.choose(job, held)
                            result = await self._attempt(job, held, target)
            except Ended:
                return True
            except WorkerCallError as exc:
                await self.outcomes.finish(job, held, JobStatus.FAILED, error=job_error(exc))
                return True
        await self.outcomes.finish(
            job, held, JobStatus.SUCCEEDED, result=result.value, content=result.content
        )
        return True

    async def _attempt(self, job: Job, held: Held, target: WorkerView) -> CallResult:
        async with self.placement.slot(target, tool_of(job)):
            return await self.calls.call(job, target, held)

    async def _first_started(self, job: Job, held: Held, started: _Started) -> CallResult:
        """The first attempt of a job :meth:`_take_started` started: its slot is held and
        its ``running`` written; the slot is given back when the call ends."""
        try:
            return await self.calls.call(job, started.worker, held, started=started.ts)
        finally:
            await started.give_back()

    async def _wait_for_worker(self, route: Route, held: Held) -> WorkerView:
        """Hold a queued job until a worker can take it (the job stays ``queued``).

        The wait holds the job's route, not its record (read again once a worker is found):
        a supervisor holds thousands of waiting jobs (``FLEET_WAITING_LIMIT``), and a record
        is ~2 KB of each one's ~9.5 KB.

        A cancel reaches a waiting job as it reaches a running one: its message cancels the
        job's task at once, and a missed message is caught by the lease loop's read of every
        held job's flags (every ``lease_s / 3``). No read of its own each second: with a
        backlog of 2,000 jobs waiting, that was 2,000 store round trips a second."""
        while True:
            await self.placement.wait_tool(route.tool, held, 1.0)
            worker = self.placement.route_to(route)
            if worker is not None:
                return worker


class _Started:
    """A worker's slot taken for a job's first attempt before the job was read; given back
    once (after the call, or at once when the job could not start there)."""

    __slots__ = ("_held", "placement", "tool", "ts", "worker")

    def __init__(self, placement: Placement, worker: WorkerView, tool: str) -> None:
        self.placement = placement
        self.worker = worker
        self.tool = tool
        self.ts = now()
        """The ``started_at`` the store sets when the job has none yet."""
        placement.take(worker, tool)
        self._held = True

    async def give_back(self, *, verdict: bool = True) -> None:
        """The slot back, once; ``verdict=False``: no call was made, so a half-open breaker's
        probe (taken when the worker was chosen) is given back too."""
        if not self._held:
            return
        self._held = False
        if not verdict:
            self.worker.breaker.release()
        await self.placement.give_back(self.worker, self.tool)


def _trace_context(job: Job) -> Context | None:
    """The trace the job continues (its submitter's ``traceparent``: a delegating tool's
    call, a workflow), so that a parent and its children are one trace; None: a new one."""
    if not job.traceparent:
        return None
    return propagate.extract({"traceparent": job.traceparent})
