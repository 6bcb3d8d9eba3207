"""One run of a workflow: its steps scheduled as their dependencies end, each step's work
done by child jobs, every transition written to the workflow's event log.

The engine is written against two small seams, so its scheduling is tested on its own:
:class:`Children` submits and waits for child jobs (in the supervisor: the very submit of
``POST /v1/jobs``, :mod:`supervisor.workflows.runner`), and a ``write`` function appends
events to the workflow's log (through the run's :class:`~supervisor.workflows.journal.Journal`).

Durability comes from the children's idempotency keys: each is derived from the workflow's
id, the step and the item's index (``wf:<id>:<step>[:<index>]``), so a run that resumes
after its supervisor died submits the same children again and is handed the existing jobs,
finished ones with their results: no finished step runs twice. ``recorded`` (the log as it
was when the run began, :func:`~supervisor.workflows.state.fold`) keeps a resumed run from
writing a transition twice.

    flow = Flow(wf_id, spec, plan(spec), children, write, recorded={})
    outcome = await flow.run()          # Outcome(status, result, error)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import ValidationError

from shared import FleetError, Job, JobError, JobStatus, JobSubmit
from shared.models import MAX_IDEMPOTENCY_KEY
from supervisor.workflows.journal import Journal, Write
from supervisor.workflows.refs import RefError, Scope, lookup, parse, resolve
from supervisor.workflows.spec import (
    DEFAULT_CONCURRENCY,
    MAX_MAP_ITEMS,
    Plan,
    StepSpec,
    WorkflowSpec,
)
from supervisor.workflows.state import StepState

__all__ = [
    "Children",
    "Flow",
    "Outcome",
    "Rerun",
    "StepFailed",
    "WorkflowCancelled",
    "child_key",
]

WAIT_S = 30.0
"""One wait for a child's end; the wait is renewed until it ends."""


class Children(Protocol):
    """Child jobs of one workflow."""

    async def submit(self, body: JobSubmit) -> Job:
        """Store the child (the existing job, for a key already used); refusals raise
        ``FleetError``, a full queue or a rate limit is waited out."""
        ...

    async def wait(self, job_id: str, timeout: float) -> Job:
        """The job once it ended, or as it is after ``timeout``."""
        ...

    async def cancel(self, job_ids: Iterable[str]) -> None:
        """Cancel these jobs, those that have not ended (no wait for them to stop)."""
        ...

    async def stopping(self) -> bool:
        """Whether the workflow itself was asked to stop (its cancel cancels its children
        too: one of them ending cancelled is then no failure of its step)."""
        ...

    @property
    def max_children(self) -> int | None:
        """How many children one workflow may have (None: no limit)."""
        ...


@dataclass(frozen=True)
class Rerun:
    """This run is not the workflow's first (a redrive of a failed workflow): a child that
    ended failed or cancelled before it began (``at``) runs again, under a key of this run
    (``seq``: the run's first event); children that succeeded are kept."""

    seq: int
    at: float


@dataclass
class Outcome:
    status: JobStatus
    result: Any = None
    error: JobError | None = None


class WorkflowCancelled(Exception):
    """The workflow's own cancel reached its children before its run: it ends cancelled."""


class StepFailed(Exception):
    def __init__(self, error: JobError) -> None:
        super().__init__(error.message)
        self.error = error


def child_key(workflow_id: str, step: str, index: int | None) -> str:
    """The default idempotency key of a step's child (of its item ``index`` in a map)."""
    return f"wf:{workflow_id}:{step}" + ("" if index is None else f":{index}")


class Flow:
    """The scheduler of one workflow run (see the module docstring)."""

    def __init__(
        self,
        workflow_id: str,
        spec: WorkflowSpec,
        plan: Plan,
        children: Children,
        write: Write,
        *,
        recorded: Mapping[str, StepState] | None = None,
        rerun: Rerun | None = None,
    ) -> None:
        self.id = workflow_id
        self.spec = spec
        self.plan = plan
        self.children = children
        self.states = {
            name: StepState(total=None if s.map else 1) for name, s in spec.steps.items()
        }
        self.journal = Journal(self.states, write, recorded=recorded)
        self.rerun = rerun
        self.results: dict[str, Any] = {}
        self.running: dict[str, str] = {}
        """Children submitted and not seen ending: job id → step."""
        self._ended = {name: asyncio.Event() for name in spec.steps}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.first_failure: str | None = None

    # -- the run ---------------------------------------------------------------------------------

    async def run(self) -> Outcome:
        """Run every step as its dependencies end; the outcome once all have ended (under
        ``fail_fast``, once the first failure has stopped the rest)."""
        flusher = asyncio.create_task(self.journal.run(), name=f"workflow-{self.id}-journal")
        try:
            for name in self.plan.order:
                self._tasks[name] = asyncio.create_task(self._step(name), name=f"step-{name}")
            await _all(self._tasks.values())
        finally:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
        if self.first_failure is not None:
            await self.stop("skipped")
            return Outcome(JobStatus.FAILED, error=self._failure())
        await self.journal.flush()
        try:
            return Outcome(JobStatus.SUCCEEDED, result=self._output())
        except RefError as exc:
            error = JobError(
                code="INVALID_REFERENCE",
                message=f"output: {exc.ref}: {exc.reason}",
                details={"field": "output", "reference": exc.ref, "reason": exc.reason},
            )
            return Outcome(JobStatus.FAILED, error=error)

    async def stop(self, pending: str) -> None:
        """End what is left: running steps ``cancelled``, steps not started ``pending``
        (``skipped`` or ``cancelled``), and their children cancelled."""
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        await self.children.cancel(list(self.running))
        ends: list[str] = []
        for name in self.plan.order:
            state = self.states[name]
            if state.ended:
                continue
            state.status = "cancelled" if state.status == "running" else pending
            ends.append(name)
        await self.journal.transition(ends)

    async def _step(self, name: str) -> None:
        step = self.spec.steps[name]
        for dep in self.plan.needs[name]:
            await self._ended[dep].wait()
        state = self.states[name]
        blocked = [d for d in sorted(self.plan.needs[name]) if self.states[d].status != "succeeded"]
        try:
            if blocked:
                state.status = "skipped"
                state.error = {
                    "code": "SKIPPED",
                    "message": f"needs {blocked[0]!r}, which {self.states[blocked[0]].status}",
                }
            elif step.map is not None:
                self.results[name] = await self._map(name, step)
                state.status = "succeeded"
            else:
                self.results[name] = await self._plain(name, step)
                state.status = "succeeded"
        except StepFailed as exc:
            state.status = "failed"
            state.error = exc.error.model_dump()
            if self.first_failure is None:
                self.first_failure = name
        await self.journal.transition([name])
        self._ended[name].set()
        if state.status == "failed" and self.spec.on_failure == "fail_fast":
            for other, task in self._tasks.items():
                if other != name:
                    task.cancel()

    async def _plain(self, name: str, step: StepSpec) -> Any:
        scope = Scope(input=self.spec.input, results=self.results)
        arguments, key = self._arguments(name, step, scope, None)
        job = await self._submit(name, step, arguments, key)
        state = self.states[name]
        state.job_ids = [job.id]
        self.states[name].status = "running"
        await self.journal.transition([name])
        job = await self._until_ended(job)
        if job.status is not JobStatus.SUCCEEDED:
            state.failed = 1
            raise StepFailed(_child_failed(name, job))
        state.done = 1
        return job.result

    async def _map(self, name: str, step: StepSpec) -> list[Any]:
        assert step.map is not None
        scope = Scope(input=self.spec.input, results=self.results)
        try:
            items = lookup(parse(step.map), scope)
        except RefError as exc:
            raise StepFailed(_bad_ref(name, "map", exc)) from None
        if not isinstance(items, list):
            raise StepFailed(
                JobError(
                    code="INVALID_REFERENCE",
                    message=f"step {name!r}: map: {step.map} is not a list",
                    details={"step": name, "field": "map", "reference": step.map},
                )
            )
        if len(items) > MAX_MAP_ITEMS:
            raise StepFailed(
                JobError(
                    code="TOO_MANY_ITEMS",
                    message=f"step {name!r}: map over {len(items)} items; at most "
                    f"{MAX_MAP_ITEMS} per step",
                    details={"step": name, "items": len(items), "max": MAX_MAP_ITEMS},
                )
            )
        limit = self.children.max_children
        if limit is not None and len(items) > limit:
            raise StepFailed(
                JobError(
                    code="DELEGATION_LIMIT",
                    message=f"step {name!r}: map over {len(items)} items; a workflow has at "
                    f"most {limit} children (FLEET_MAX_CHILDREN)",
                    details={"step": name, "items": len(items), "limit": "children", "max": limit},
                )
            )
        state = self.states[name]
        state.total = len(items)
        state.job_ids = [""] * len(items)
        results: list[Any] = [None] * len(items)
        self.states[name].status = "running"
        await self.journal.transition([name])
        pending = iter(range(len(items)))
        failures: list[JobError] = []

        async def lane() -> None:
            for index in pending:
                if failures:
                    return
                item_scope = Scope(self.spec.input, self.results, items[index], index)
                try:
                    arguments, key = self._arguments(name, step, item_scope, index)
                    job = await self._submit(name, step, arguments, key)
                    state.job_ids[index] = job.id
                    self.journal.touch(name)  # its id goes in the next event
                    job = await self._until_ended(job)
                except StepFailed as exc:
                    failures.append(exc.error)
                    state.failed += 1
                else:
                    if job.status is JobStatus.SUCCEEDED:
                        results[index] = job.result
                        state.done += 1
                    else:
                        failures.append(_child_failed(name, job, index))
                        state.failed += 1
                self.journal.touch(name)
                if failures and self.spec.on_failure == "fail_fast":
                    raise StepFailed(failures[0])

        lanes = min(step.concurrency or DEFAULT_CONCURRENCY, len(items))
        await _all(asyncio.create_task(lane()) for _ in range(lanes))
        if failures:
            raise StepFailed(failures[0])
        return results

    def _arguments(
        self, name: str, step: StepSpec, scope: Scope, index: int | None
    ) -> tuple[dict[str, Any], str]:
        try:
            arguments = resolve(step.input, scope)
        except RefError as exc:
            raise StepFailed(_bad_ref(name, "input", exc, index)) from None
        if step.idempotency_key is None:
            return arguments, child_key(self.id, name, index)
        try:
            key = resolve(step.idempotency_key, scope)
        except RefError as exc:
            raise StepFailed(_bad_ref(name, "idempotency_key", exc, index)) from None
        if isinstance(key, bool) or not isinstance(key, str | int):
            raise StepFailed(
                JobError(
                    code="INVALID_REFERENCE",
                    message=f"step {name!r}: idempotency_key {step.idempotency_key} is not "
                    "a string or an integer",
                    details={"step": name, "field": "idempotency_key", "index": index},
                )
            )
        return arguments, str(key)

    async def _submit(self, name: str, step: StepSpec, arguments: dict[str, Any], key: str) -> Job:
        try:
            body = JobSubmit(
                capability=step.capability,
                input=arguments,
                parent_id=self.id,
                idempotency_key=key,
                max_attempts=step.max_attempts,
                timeout_s=step.timeout_s,
                labels=step.labels,
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            raise StepFailed(
                JobError(
                    code="VALIDATION_ERROR",
                    message=f"step {name!r}: {field}: {first['msg']}",
                    details={"step": name, "field": field},
                )
            ) from None
        job = await self._send(name, body)
        rerun = self.rerun
        if (
            rerun is not None
            and job.status in (JobStatus.FAILED, JobStatus.CANCELLED)
            and (job.finished_at or 0) < rerun.at
        ):  # it failed in an earlier run: this run tries it again, under a key of its own
            again = f"{key[: MAX_IDEMPOTENCY_KEY - 24]}@run{rerun.seq}"
            job = await self._send(name, body.model_copy(update={"idempotency_key": again}))
        if not job.status.terminal:
            self.running[job.id] = name
        return job

    async def _send(self, name: str, body: JobSubmit) -> Job:
        try:
            return await self.children.submit(body)
        except FleetError as exc:
            if await self.children.stopping():
                raise WorkflowCancelled(self.id) from None
            raise StepFailed(
                JobError(
                    code=exc.code,
                    message=f"step {name!r}: {exc.message}",
                    details={"step": name, **exc.details},
                )
            ) from None

    async def _until_ended(self, job: Job) -> Job:
        while not job.status.terminal:
            job = await self.children.wait(job.id, WAIT_S)
        self.running.pop(job.id, None)
        if job.status is JobStatus.CANCELLED and await self.children.stopping():
            raise WorkflowCancelled(self.id)
        return job

    # -- the outcome -----------------------------------------------------------------------------

    def _output(self) -> Any:
        scope = Scope(input=self.spec.input, results=self.results)
        if self.spec.output is not None:
            return resolve(self.spec.output, scope)
        sinks = self.plan.sinks
        if len(sinks) == 1:
            return self.results.get(sinks[0])
        return {name: self.results.get(name) for name in sinks}

    def _failure(self) -> JobError:
        assert self.first_failure is not None
        name = self.first_failure
        first = self.states[name].error or {}
        failed = [n for n, s in self.states.items() if s.status == "failed"]
        others = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        return JobError(
            code="STEP_FAILED",
            message=f"step {name!r} failed{others}: {first.get('message', '')}",
            details={
                "step": name,
                "error": first,
                "on_failure": self.spec.on_failure,
                "steps": {
                    n: {"status": s.status, **({"error": s.error} if s.error else {})}
                    for n, s in self.states.items()
                },
            },
        )


async def _all(aws: Iterable[Coroutine[Any, Any, None] | asyncio.Task[None]]) -> None:
    """Wait for every task; the first to raise cancels the rest and its error is raised (a
    task cancelled on purpose is not an error)."""
    tasks = [a if isinstance(a, asyncio.Task) else asyncio.ensure_future(a) for a in aws]
    try:
        pending: set[asyncio.Task[None]] = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _child_failed(name: str, job: Job, index: int | None = None) -> JobError:
    error = job.error
    item = "" if index is None else f" (item {index})"
    return JobError(
        code=error.code if error else job.status.value.upper(),
        message=f"step {name!r}{item}: job {job.id} {job.status.value}"
        + (f": {error.message}" if error else ""),
        details={"step": name, "job_id": job.id, "index": index,
                 **({"child_error": error.model_dump()} if error else {})},
    )  # fmt: skip


def _bad_ref(name: str, field: str, exc: RefError, index: int | None = None) -> JobError:
    item = "" if index is None else f" (item {index})"
    return JobError(
        code="INVALID_REFERENCE",
        message=f"step {name!r}{item}: {field}: {exc.reason}",
        details={"step": name, "field": field, "reference": exc.ref, "index": index},
    )
