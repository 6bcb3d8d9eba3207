"""The dispatcher's hook for workflow jobs: a held workflow runs here, fresh or reclaimed.

A run reads the workflow's own log first (what an earlier run wrote), then hands the
:class:`~supervisor.workflows.engine.Flow` its children — submitted through the very
:func:`~supervisor.api.submission.submit` of ``POST /v1/jobs``, as a principal of the
workflow's tenant — and a writer that appends under the workflow's fence. A supervisor
that dies mid-workflow stops renewing the lease; another reclaims the job and runs it here
again: the children's keys give it back the finished ones.

    runner.workflows = WorkflowRunner(services)   # supervisor.app wires it
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from typing import Any

from opentelemetry import propagate
from pydantic import ValidationError

from shared import (
    AdmissionRefused,
    FleetError,
    Job,
    JobError,
    JobStatus,
    JobSubmit,
    Progress,
    get_logger,
    now,
)
from supervisor.api.auth import JOBS_READ, JOBS_WRITE, Principal
from supervisor.api.submission import cancel, cancel_descendants, submit
from supervisor.dispatch.held import ACTIVE, Held
from supervisor.dispatch.outcome import cancelled
from supervisor.services import Services
from supervisor.workflows.engine import Flow, Rerun, WorkflowCancelled
from supervisor.workflows.spec import SUBMITTED_BY, WorkflowSpec, plan
from supervisor.workflows.state import StepState, fold

__all__ = ["JobChildren", "WorkflowRunner", "read_run", "read_steps"]

log = get_logger("fleet.workflows")

MAX_BACKOFF_S = 5.0
"""Longest wait before submitting a child again after a full queue or a rate limit."""
EVENTS_PER_READ = 1000


class WorkflowEnded(Exception):
    """The workflow's record ended while it ran (a cancel got there first): stop."""


class JobChildren:
    """A workflow's children as jobs of the fleet (the engine's ``Children``)."""

    def __init__(self, svc: Services, who: Principal, workflow: Job) -> None:
        self.svc = svc
        self.who = who
        self.workflow_id = workflow.id
        self.correlation_id = workflow.correlation_id

    async def submit(self, body: JobSubmit) -> Job:
        """Submit, waiting out a full queue or a rate limit (429): the step is not failing,
        the fleet is busy."""
        while True:
            carrier: dict[str, str] = {}
            propagate.inject(carrier)  # the workflow's span: its children are in its trace
            try:
                submitted = await submit(
                    self.svc,
                    self.who,
                    body,
                    correlation_id=self.correlation_id,
                    traceparent=carrier.get("traceparent"),
                )
                return submitted.job
            except AdmissionRefused as exc:
                log.info("workflow.child_waits", reason=exc.code, retry_after=exc.retry_after)
                await asyncio.sleep(min(MAX_BACKOFF_S, max(0.05, float(exc.retry_after))))

    async def wait(self, job_id: str, timeout: float) -> Job:
        return await self.svc.store.wait_ended(job_id, timeout)

    async def stopping(self) -> bool:
        return bool(await self.svc.store.flag(self.workflow_id, "cancel"))

    @property
    def max_children(self) -> int | None:
        return self.svc.settings.max_children

    async def cancel(self, job_ids: Iterable[str]) -> None:
        async def one(job_id: str) -> None:
            with contextlib.suppress(FleetError):  # ended meanwhile, or expired
                await cancel(self.svc, self.who, job_id, wait=0)

        await asyncio.gather(*map(one, job_ids))


class WorkflowRunner:
    """Runs held workflow jobs (``Runner.workflows``)."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc

    async def run(self, job: Job, held: Held) -> bool:
        """Run (or resume) ``job`` to its end; True once it ended."""
        outcomes = self.svc.dispatcher.runner.outcomes
        stored = dict(job.input)
        actor = str(stored.pop(SUBMITTED_BY, None) or f"workflow:{job.id}")
        try:
            spec = WorkflowSpec.model_validate(stored)
            steps = plan(spec)
        except (ValidationError, FleetError) as exc:  # stored by an older, laxer supervisor
            error = JobError(code="INVALID_WORKFLOW", message=f"the workflow is invalid: {exc}")
            await outcomes.finish(job, held, JobStatus.FAILED, error=error)
            return True
        if not await self._start(job, held):
            return True
        recorded, rerun = await read_run(self.svc, job.id)
        # Its children count against the limits of its submitter: its tenant, else the actor.
        who = Principal(actor, frozenset({JOBS_READ, JOBS_WRITE}), "none", tenant=job.tenant)
        children = JobChildren(self.svc, who, job)

        async def write(
            events: list[tuple[str, dict[str, Any]]], progress: Progress | None
        ) -> None:
            fields: dict[str, Any] = {}
            if progress is not None:
                job.progress = fields["progress"] = progress  # the end's record carries it
            seq = await self.svc.store.append_many(job.id, events, fence=held.fence, **fields)
            if seq < 0:
                raise WorkflowEnded(job.id)

        flow = Flow(job.id, spec, steps, children, write, recorded=recorded, rerun=rerun)
        try:
            outcome = await flow.run()
        except WorkflowEnded:
            return True
        except WorkflowCancelled:  # its cancel reached a child first: it ends as asked
            await flow.stop("cancelled")
            await cancel_descendants(self.svc, job.id)
            await outcomes.finish(job, held, JobStatus.CANCELLED, error=cancelled())
            return True
        except asyncio.CancelledError:
            if held.cancel_requested and not held.lost:  # a cancel, not a shutdown
                with contextlib.suppress(Exception):
                    await flow.stop("cancelled")
            raise
        if outcome.status is not JobStatus.SUCCEEDED:  # a child submitted as its step was
            await cancel_descendants(self.svc, job.id)  # stopped may not be known to the run
        await outcomes.finish(job, held, outcome.status, result=outcome.result, error=outcome.error)
        return True

    async def _start(self, job: Job, held: Held) -> bool:
        """Mark the workflow running (again, when it resumes: one more attempt); False when
        it ended meanwhile."""
        job.attempts += 1
        job.started_at = job.started_at or now()
        seq = await self.svc.store.transition(
            job.id,
            allowed=ACTIVE,
            event="status",
            data={"status": "running", "attempt": job.attempts, "resumed": held.reclaimed},
            status=JobStatus.RUNNING,
            attempts=job.attempts,
            started_at=job.started_at,
            fence=held.fence,
        )
        job.status = JobStatus.RUNNING
        return seq is not None


async def read_steps(svc: Services, job_id: str) -> dict[str, StepState]:
    """Each step's state as the workflow's log tells it (its latest run's events)."""
    return (await read_run(svc, job_id))[0]


async def read_run(svc: Services, job_id: str) -> tuple[dict[str, StepState], Rerun | None]:
    """The latest run's step states, and (a redrive's run) when that run began."""
    _, flags = await svc.store.get_with_flags(job_id)
    start = int(flags.get("run_start") or 0)
    after = max(0, start - 1)
    events = []
    rerun = None
    while True:
        batch = await svc.store.events(job_id, after=after, count=EVENTS_PER_READ)
        if not batch:
            break
        if rerun is None and start and batch[0].seq == start:
            rerun = Rerun(seq=start, at=batch[0].ts)
        events += [e for e in batch if e.type == "step"]
        after = batch[-1].seq
    return fold(events), rerun
