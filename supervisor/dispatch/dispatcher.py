"""The dispatcher: takes jobs from the queue, calls workers, records every outcome.

Delivery is at-least-once. A job is held as a pending entry of the dispatch stream; the
holder renews its lease every ``lease_s / 3`` and acknowledges the entry only once the job
has ended. Deliveries whose holder stopped renewing (a crashed replica) are reclaimed with
XAUTOCLAIM by any supervisor. Workers de-duplicate re-deliveries on the idempotency key
sent in ``_meta`` (the job's own key, or its id).

Retry policy (tenacity, exponential backoff with full jitter, another worker preferred):
a failure that was *never delivered* (``UNREACHABLE``, ``BUSY``, ``REFUSED``) is retried
when its kind allows; a *possibly delivered* one (``TIMEOUT``, ``DROPPED``, ``BAD_RESPONSE``,
``HTTP_ERROR``, ``RPC_ERROR``) only when the capability is idempotent; a tool's own error only
when the worker marks it retryable. (A worker that de-duplicates on the idempotency key keeps
only finished results, so it does not make a cut-off call of a non-idempotent tool safe to
send again: the chaos suite measured such re-runs.)

A job runs only on workers of the service it was validated against, with the same input
schema (``job.service``, ``job.tool``, ``job.schema_digest``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from opentelemetry import propagate, trace
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from shared import (
    HEADER_CORRELATION_ID,
    HEADER_JOB_ID,
    META_ATTEMPT,
    META_CORRELATION_ID,
    META_IDEMPOTENCY_KEY,
    META_JOB_ID,
    FleetError,
    Job,
    JobError,
    JobNotFound,
    JobStatus,
    Progress,
    StoreUnavailable,
    SupervisorSettings,
    ToolFailed,
    UnknownCapability,
    WorkerBusy,
    WorkerCallError,
    WorkerUnreachable,
    bind,
    get_logger,
    labels,
    now,
    tracer,
)
from supervisor.dispatch.router import Router
from supervisor.metrics import Metrics
from supervisor.pool import CallResult, WorkerCaller, call_headers
from supervisor.store import Fenced, Store

if TYPE_CHECKING:  # the registry imports the breaker from this package
    from supervisor.registry import Registry, WorkerState

__all__ = ["Dispatcher"]

T = TypeVar("T")

log = get_logger("fleet.dispatcher")
_tracer = tracer("mcp-fleet.supervisor")

ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)


class NoWorker(WorkerCallError):
    code = "NO_WORKER"
    retryable = True
    delivered = False


class _Ended(Exception):
    """The job ended elsewhere (cancelled while queued) before this attempt could start."""


@dataclass
class _Held:
    entry_id: str
    reclaimed: bool = False
    fence: int | None = None
    task: asyncio.Task[None] | None = None
    cancel_requested: bool = False
    lost: bool = False  # another supervisor took the lease over: write nothing more
    waiting: bool = False  # waiting for a worker: holds no dispatcher slot
    counted: bool = False  # this holder already counted an attempt
    tried: set[str] = field(default_factory=set)


class Dispatcher:
    """Runs jobs. :meth:`loops` are its background loops; ``run_until_idle()`` serves tests.

    Slots: ``FLEET_CONCURRENCY`` jobs run at once; a job that waits for a worker of its
    capability holds no slot (up to ``FLEET_WAITING_LIMIT`` may wait), so a busy capability
    never blocks jobs for idle ones.
    """

    def __init__(
        self,
        store: Store,
        registry: Registry,
        caller: WorkerCaller,
        settings: SupervisorSettings,
        metrics: Metrics,
    ) -> None:
        self.store = store
        self.registry = registry
        self.caller = caller
        self.settings = settings
        self.metrics = metrics
        self.inflight: collections.Counter[tuple[str, str]] = collections.Counter()
        self.router = Router(registry, lambda url, cap: self.inflight[(url, cap)])
        self.held: dict[str, _Held] = {}
        self._slot_freed = asyncio.Event()
        self._tool_freed: dict[str, asyncio.Condition] = {}
        self._store_since: float | None = time.monotonic()
        """Since when the store has answered without a break (None: it is out). A lease runs
        only while the store can be reached: nothing is reclaimed until it has answered for a
        whole lease, so every live holder has had the time to renew or to record its end."""
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- loops -------------------------------------------------------------------------------

    def loops(self) -> dict[str, Callable[[], Awaitable[None]]]:
        """The background loops, by name, for :class:`supervisor.loops.Loops` to run."""
        return {"intake": self._intake, "leases": self._leases, "cancels": self._cancels}

    async def run(self) -> None:
        """Every loop at once, unsupervised (tests); held jobs are left for reclaim."""
        try:
            await asyncio.gather(*(loop() for loop in self.loops().values()))
        finally:
            await self.stop()

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _intake(self) -> None:
        while True:
            free = self._free_slots()
            if free <= 0:
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            try:
                entries = await self.store.take(free, block_ms=1000)
            except StoreUnavailable as exc:
                self._store_since = None
                log.warning("dispatcher.store_unavailable", error=exc.message)
                await asyncio.sleep(1.0)  # back off while the store is down
                with contextlib.suppress(StoreUnavailable):
                    await self.store.ensure_group()
                continue
            for entry_id, job_id in entries:
                self._spawn(entry_id, job_id)

    def _free_slots(self) -> int:
        waiting = sum(1 for h in self.held.values() if h.waiting)
        running = len(self.held) - waiting
        room = self.settings.concurrency + self.settings.waiting_limit - len(self.held)
        return min(self.settings.concurrency - running, room)

    async def _leases(self) -> None:
        lease_ms = int(self.settings.lease_s * 1000)
        tick = self.settings.lease_s / 3
        while True:
            await asyncio.sleep(tick)
            try:
                await self._check_leases()
                await self.store.renew([h.entry_id for h in self.held.values() if not h.lost])
                if self._store_since is None:
                    self._store_since = time.monotonic()
                settled = time.monotonic() - self._store_since >= self.settings.lease_s
                if settled and self._free_slots() > 0:
                    for entry_id, job_id in await self.store.reclaim(lease_ms, self._free_slots()):
                        if job_id not in self.held:
                            log.info("dispatcher.reclaimed", job_id=job_id)
                            self._spawn(entry_id, job_id, reclaimed=True)
            except StoreUnavailable as exc:
                self._store_since = None
                log.warning("dispatcher.lease_failed", error=exc.message)

    async def _check_leases(self) -> None:
        """One read for every held job. A job whose fence moved on was reclaimed by another
        supervisor (we were paused or cut off past the lease): stop its call and write nothing
        more for it. A job whose cancel was asked (a missed pub/sub message) is cancelled."""
        held = {j: h for j, h in self.held.items() if h.fence is not None and not h.lost}
        for job_id, (fence, cancel) in (await self.store.leases(list(held))).items():
            if fence != held[job_id].fence:
                self._lose(job_id, held[job_id], fence)
            elif cancel and not held[job_id].cancel_requested:
                self._cancel_local(job_id)

    def _lose(self, job_id: str, held: _Held, fence: int | None) -> None:
        held.lost = True
        self.metrics.fenced_writes.inc()
        log.warning("dispatcher.lease_lost", job_id=job_id, ours=held.fence, current=fence)
        if held.task is not None:
            held.task.cancel()

    async def _cancels(self) -> None:
        while True:
            try:
                async for job_id in self.store.cancel_messages():
                    self._cancel_local(job_id)
            except Exception as exc:  # pub/sub raises the client's own errors: re-subscribe
                log.warning("dispatcher.cancel_listener_failed", error=str(exc))
                await asyncio.sleep(1.0)  # re-subscribe after the store recovers

    def _cancel_local(self, job_id: str) -> None:
        held = self.held.get(job_id)
        if held is not None and held.task is not None and not held.cancel_requested:
            held.cancel_requested = True
            held.task.cancel()

    def _spawn(self, entry_id: str, job_id: str, *, reclaimed: bool = False) -> None:
        held = _Held(entry_id, reclaimed=reclaimed)
        self.held[job_id] = held
        self.metrics.in_flight.set(len(self.held))
        task = asyncio.create_task(self._handle(job_id, held), name=f"job-{job_id}")
        held.task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run_until_idle(self, timeout: float = 30.0) -> None:
        """Take everything queued now and wait for it to end (tests, benchmarks)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for entry_id, job_id in await self.store.take(self.settings.concurrency, block_ms=10):
                self._spawn(entry_id, job_id)
            if not self._tasks:
                return
            await asyncio.wait(set(self._tasks), timeout=max(0.0, deadline - time.monotonic()))
        raise TimeoutError("dispatcher did not go idle")

    # -- one job -----------------------------------------------------------------------------

    async def _handle(self, job_id: str, held: _Held) -> None:
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
                    await self._finish(job, held, JobStatus.CANCELLED, error=_cancelled())
                    done = True
                elif held.reclaimed and await self._refuse_rerun(job, held):
                    done = True
                else:
                    done = await self._execute(job, held)
        except JobNotFound:
            done = True  # expired or removed: nothing left to do
        except Fenced:
            self._lose(job_id, held, None)
        except asyncio.CancelledError:
            if held.lost or not held.cancel_requested:
                raise  # shutdown, or the lease is another's: leave the delivery alone
            with contextlib.suppress(Exception):
                job = await self.store.get(job_id)
                await self._finish(job, held, JobStatus.CANCELLED, error=_cancelled())
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
            self.held.pop(job_id, None)
            self.metrics.in_flight.set(len(self.held))
            self._slot_freed.set()

    async def _unexpected(self, job_id: str, job: Job | None, held: _Held, exc: Exception) -> bool:
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
                await self._finish(job, held, JobStatus.FAILED, error=error)
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
            self._lose(job_id, held, None)
        except Exception:  # the store is out too: the lease lapses and a reclaim counts it
            log.exception("dispatcher.unexpected_outcome_failed", job_id=job_id)
        return False

    async def _refuse_rerun(self, job: Job, held: _Held) -> bool:
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
            await self._finish(job, held, JobStatus.FAILED, error=error)
            return True
        if job.status is not JobStatus.RUNNING:
            return False  # it never reached a worker
        worker = next((w for w in self.registry.workers.values() if w.name == job.worker), None)
        spec = worker.capabilities.get(_tool(job)) if worker is not None else None
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
        await self._finish(job, held, JobStatus.FAILED, error=error)
        return True

    def _target_spec(self, job: Job) -> Any:
        try:
            return self.registry.resolve(job.capability).spec
        except UnknownCapability:
            return None

    async def _execute(self, job: Job, held: _Held) -> bool:
        worker = await self._wait_for_worker(job, held)
        if worker is None:
            return True
        budget = job.max_attempts - job.attempts
        first = [worker]
        spec_idempotent = worker.capabilities[_tool(job)].idempotent

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
                        target = first.pop() if first else await self._choose(job, held)
                        result = await self._attempt(job, target, held)
            except _Ended:
                return True
            except WorkerCallError as exc:
                await self._finish(job, held, JobStatus.FAILED, error=_job_error(exc))
                return True
        await self._finish(
            job, held, JobStatus.SUCCEEDED, result=result.value, content=result.content
        )
        return True

    async def _choose(self, job: Job, held: _Held) -> WorkerState:
        """A worker for a retry; waits (holding no slot) up to the job's timeout."""
        deadline = time.monotonic() + min(job.timeout_s, 60.0)
        while True:
            worker = self._route(job, avoid=held.tried)
            if worker is not None:
                return worker
            if time.monotonic() >= deadline:
                raise NoWorker(f"no healthy worker serves {job.capability!r} right now")
            await self._wait_tool(job, held, min(1.0, deadline - time.monotonic()))

    async def _wait_for_worker(self, job: Job, held: _Held) -> WorkerState | None:
        """Hold a queued job until a worker can take it (the job stays ``queued``)."""
        while True:
            worker = self._route(job)
            if worker is not None:
                return worker
            await self._wait_tool(job, held, 1.0)
            if await self.store.flag(job.id, "cancel"):
                await self._finish(job, held, JobStatus.CANCELLED, error=_cancelled())
                return None

    async def _wait_tool(self, job: Job, held: _Held, timeout: float) -> None:
        """Wait for a slot of this job's tool to free (or ``timeout``, which also catches
        registry changes), holding no dispatcher slot meanwhile."""
        cond = self._tool_freed.setdefault(_tool(job), asyncio.Condition())
        held.waiting = True
        self._slot_freed.set()  # intake may take another job in this one's place
        try:
            async with cond:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(cond.wait(), timeout)
        finally:
            held.waiting = False

    async def _tool_slot_freed(self, tool: str) -> None:
        cond = self._tool_freed.get(tool)
        if cond is not None:
            async with cond:
                cond.notify(1)  # one slot: one waiter (the others retry within a second)

    def _route(self, job: Job, avoid: set[str] | None = None) -> WorkerState | None:
        if job.service is None:  # a job recorded before capabilities had identity
            try:
                target = self.registry.resolve(job.capability)
            except UnknownCapability:
                return None
            job.service, job.tool, job.schema_digest = target.service, target.tool, target.digest
        return self.router.choose(
            _tool(job),
            pinned=job.pinned_worker,
            avoid=avoid or (),
            service=job.service,
            digest=job.schema_digest,
        )

    async def _attempt(self, job: Job, worker: WorkerState, held: _Held) -> CallResult:
        tool = _tool(job)
        slot = (worker.url, tool)
        self.inflight[slot] += 1  # taken before any await: the next routing decision sees it
        try:
            return await self._call(job, worker, held)
        finally:
            self.inflight[slot] -= 1
            if not self.inflight[slot]:
                del self.inflight[slot]
            await self._tool_slot_freed(tool)  # a slot freed: a waiting job may go

    async def _record(
        self, job: Job, event: str, data: dict[str, Any], *, fence: int | None, **fields: Any
    ) -> None:
        """Progress and logs are best effort through a store outage: the call goes on."""
        try:
            await self.store.append(job.id, event, data, fence=fence, **fields)
        except StoreUnavailable as exc:
            log.warning("job.event_not_recorded", kind=event, error=exc.message)

    async def _call(self, job: Job, worker: WorkerState, held: _Held) -> CallResult:
        held.tried.add(worker.url)
        job.attempts += 1
        held.counted = True
        first = job.started_at is None
        job.started_at = job.started_at or now()
        job.worker = worker.name
        started = await self.store.transition(
            job.id,
            allowed=ACTIVE,
            event="status",
            data={"status": "running", "attempt": job.attempts, "worker": worker.name},
            status=JobStatus.RUNNING,
            attempts=job.attempts,
            worker=worker.name,
            started_at=job.started_at,
            fence=held.fence,
        )
        if started is None:
            raise _Ended(job.id)
        if first:
            self.metrics.dispatch_latency.labels(job.capability).observe(
                job.started_at - job.created_at
            )
        meta = {
            META_CORRELATION_ID: job.correlation_id,
            META_JOB_ID: job.id,
            META_ATTEMPT: job.attempts,
            META_IDEMPOTENCY_KEY: job.idempotency_key or job.id,
        }
        headers = {HEADER_CORRELATION_ID: job.correlation_id, HEADER_JOB_ID: job.id}
        propagate.inject(headers)

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            p = Progress(progress=progress, total=total, message=message)
            job.progress = p
            await self._record(job, "progress", p.model_dump(), fence=held.fence, progress=p)

        async def on_log(level: str, data: Any) -> None:
            message = data.get("msg", data) if isinstance(data, dict) else data
            extra = data.get("extra") if isinstance(data, dict) else None
            payload = {"level": level, "message": str(message), "extra": extra}
            await self._record(job, "log", payload, fence=held.fence)

        token = call_headers.set(headers)
        span = trace.get_current_span()
        tool = _tool(job)
        spec = worker.capabilities[tool]
        wrapped = bool(spec.output_schema and spec.output_schema.get("x-fastmcp-wrap-result"))
        try:
            result = await self.caller.call(
                worker.url,
                tool,
                job.input,
                timeout=job.timeout_s,
                meta=meta,
                on_progress=on_progress,
                on_log=on_log,
                wrapped=wrapped,
            )
        except WorkerCallError as exc:
            outcome = exc.code
            if isinstance(exc, ToolFailed | WorkerBusy):
                worker.breaker.success()  # it answered: alive (maybe just full)
            else:
                worker.breaker.failure()
                if isinstance(exc, WorkerUnreachable):
                    self.registry.mark_down(worker.url, exc.message)
            self.metrics.attempts.labels(job.capability, outcome).inc()
            span.add_event("attempt_failed", labels(code=exc.code, worker=worker.name))
            log.info("job.attempt_failed", worker=worker.name, attempt=job.attempts, code=exc.code)
            raise
        except BaseException:
            worker.breaker.release()  # cancelled (or worse): no verdict on the worker
            raise
        finally:
            call_headers.reset(token)
        worker.breaker.success()
        self.metrics.attempts.labels(job.capability, "ok").inc()
        return result

    async def _finish(
        self,
        job: Job,
        held: _Held,
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
        seq = await self._until_stored(
            job.id,
            lambda: self._finish_write(job, held, status, result, content, error),
        )
        if seq is None:
            return  # someone else ended it first (a cancel of a queued job)
        self._count_finished(job, status, error)

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
        held: _Held,
        status: JobStatus,
        result: Any,
        content: list[dict[str, Any]] | None,
        error: JobError | None,
    ) -> int | None:
        return await self.store.transition(
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
            fence=held.fence,
            dead_letter=status is JobStatus.FAILED,
        )

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


def _tool(job: Job) -> str:
    return job.tool or job.capability


def _cancelled() -> JobError:
    return JobError(code="CANCELLED", message="cancelled on request")


def _job_error(exc: FleetError) -> JobError:
    return JobError(code=exc.code, message=exc.message, details=exc.details)
