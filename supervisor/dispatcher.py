"""The dispatcher: takes jobs from the queue, calls workers, records every outcome.

Delivery is at-least-once. A job is held as a pending entry of the dispatch stream; the
holder renews its lease every ``lease_s / 3`` and acknowledges the entry only once the job
has ended. Deliveries whose holder stopped renewing (a crashed replica) are reclaimed with
XAUTOCLAIM by any supervisor. Workers de-duplicate re-deliveries on the idempotency key
sent in ``_meta`` (the job's own key, or its id).

Retry policy (tenacity, exponential backoff with full jitter, another worker preferred):
``UNREACHABLE`` (never delivered) and ``BUSY`` always; ``TIMEOUT``/``DROPPED`` only when the
capability is idempotent or the worker de-duplicates (feature ``idempotency``); a worker
error only when the worker marks it retryable.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

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
    WorkerBusy,
    WorkerCallError,
    WorkerDropped,
    WorkerTimeout,
    WorkerUnreachable,
    bind,
    get_logger,
    labels,
    now,
    tracer,
)
from supervisor.metrics import Metrics
from supervisor.pool import WorkerCaller, call_headers
from supervisor.registry import Registry, WorkerState
from supervisor.router import Router
from supervisor.store import Store

__all__ = ["Dispatcher"]

log = get_logger("fleet.dispatcher")
_tracer = tracer("mcp-fleet.supervisor")

ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)
DEDUP_FEATURE = "idempotency"


class NoWorker(WorkerCallError):
    code = "NO_WORKER"
    retryable = True


class _Ended(Exception):
    """The job ended elsewhere (cancelled while queued) before this attempt could start."""


@dataclass
class _Held:
    entry_id: str
    task: asyncio.Task[None] | None = None
    cancel_requested: bool = False
    tried: set[str] = field(default_factory=set)


class Dispatcher:
    """Runs jobs. ``run()`` is the loop; ``run_until_idle()`` serves tests and benchmarks."""

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
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- loops -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Take, lease and cancel until cancelled; held jobs are left for reclaim."""
        loops = [self._intake(), self._leases(), self._cancels()]
        try:
            await asyncio.gather(*loops)
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
                log.warning("dispatcher.store_unavailable", error=exc.message)
                await asyncio.sleep(1.0)  # back off while the store is down
                with contextlib.suppress(StoreUnavailable):
                    await self.store.ensure_group()
                continue
            for entry_id, job_id in entries:
                self._spawn(entry_id, job_id)

    def _free_slots(self) -> int:
        return self.settings.concurrency - len(self.held)

    async def _leases(self) -> None:
        lease_ms = int(self.settings.lease_s * 1000)
        tick = self.settings.lease_s / 3
        while True:
            await asyncio.sleep(tick)
            try:
                await self.store.renew([h.entry_id for h in self.held.values()])
                for job_id, held in list(self.held.items()):
                    if not held.cancel_requested and await self.store.flag(job_id, "cancel"):
                        self._cancel_local(job_id)
                if self._free_slots() > 0:
                    for entry_id, job_id in await self.store.reclaim(lease_ms, self._free_slots()):
                        if job_id not in self.held:
                            log.info("dispatcher.reclaimed", job_id=job_id)
                            self._spawn(entry_id, job_id)
            except StoreUnavailable as exc:
                log.warning("dispatcher.lease_failed", error=exc.message)

    async def _cancels(self) -> None:
        while True:
            try:
                async for job_id in self.store.cancel_messages():
                    self._cancel_local(job_id)
            except Exception as exc:
                log.warning("dispatcher.cancel_listener_failed", error=str(exc))
                await asyncio.sleep(1.0)  # re-subscribe after the store recovers

    def _cancel_local(self, job_id: str) -> None:
        held = self.held.get(job_id)
        if held is not None and held.task is not None and not held.cancel_requested:
            held.cancel_requested = True
            held.task.cancel()

    def _spawn(self, entry_id: str, job_id: str) -> None:
        held = _Held(entry_id)
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
        done = False
        try:
            job, flags = await self.store.get_with_flags(job_id)
            with bind(job_id=job.id, correlation_id=job.correlation_id, capability=job.capability):
                if job.status.terminal:
                    done = True
                elif flags.get("cancel"):
                    await self._finish(job, JobStatus.CANCELLED, error=_cancelled())
                    done = True
                else:
                    done = await self._execute(job, held)
        except JobNotFound:
            done = True  # expired or removed: nothing left to do
        except asyncio.CancelledError:
            if not held.cancel_requested:
                raise  # shutdown: leave the delivery pending for reclaim
            with contextlib.suppress(Exception):
                job = await self.store.get(job_id)
                await self._finish(job, JobStatus.CANCELLED, error=_cancelled())
            done = True
        except StoreUnavailable as exc:
            log.error("dispatcher.store_unavailable", job_id=job_id, error=exc.message)
        except Exception:
            log.exception("dispatcher.unexpected", job_id=job_id)
        finally:
            if done:
                with contextlib.suppress(StoreUnavailable):
                    await self.store.ack(held.entry_id)
            self.held.pop(job_id, None)
            self.metrics.in_flight.set(len(self.held))
            self._slot_freed.set()

    async def _execute(self, job: Job, held: _Held) -> bool:
        worker = await self._wait_for_worker(job, held)
        if worker is None:
            return False
        budget = max(1, job.max_attempts - job.attempts)  # a reclaimed job gets one more try
        first = [worker]
        spec_idempotent = worker.capabilities[job.capability].idempotent

        def retryable(exc: BaseException) -> bool:
            if not isinstance(exc, WorkerCallError):
                return False
            if isinstance(exc, WorkerTimeout | WorkerDropped):
                dedups = DEDUP_FEATURE in self._features(exc)
                return spec_idempotent or dedups
            return exc.retryable

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
            )

        retrying = AsyncRetrying(
            stop=stop_after_attempt(budget),
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
                await self._finish(job, JobStatus.FAILED, error=_job_error(exc))
                await self.store.dead_letter(job.id)
                return True
        await self._finish(job, JobStatus.SUCCEEDED, result=result)
        return True

    def _features(self, exc: WorkerCallError) -> list[str]:
        worker = self.registry.workers.get(str(exc.details.get("worker", "")))
        return worker.features if worker else []

    async def _choose(self, job: Job, held: _Held) -> WorkerState:
        """A worker for a retry; waits for a free slot up to the job's timeout."""
        deadline = time.monotonic() + min(job.timeout_s, 60.0)
        while True:
            worker = self.router.choose(job.capability, pinned=job.pinned_worker, avoid=held.tried)
            if worker is not None:
                return worker
            if time.monotonic() >= deadline:
                raise NoWorker(f"no healthy worker serves {job.capability!r} right now")
            await self.registry.wait_change(timeout=min(1.0, deadline - time.monotonic()))

    async def _wait_for_worker(self, job: Job, held: _Held) -> WorkerState | None:
        """Hold a queued job until a worker can take it (the job stays ``queued``)."""
        while True:
            worker = self.router.choose(job.capability, pinned=job.pinned_worker)
            if worker is not None:
                return worker
            await self.registry.wait_change(timeout=1.0)
            if await self.store.flag(job.id, "cancel"):
                await self._finish(job, JobStatus.CANCELLED, error=_cancelled())
                return None

    async def _attempt(self, job: Job, worker: WorkerState, held: _Held) -> Any:
        held.tried.add(worker.url)
        job.attempts += 1
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
            await self.store.append(job.id, "progress", p.model_dump(), progress=p)

        async def on_log(level: str, data: Any) -> None:
            message = data.get("msg", data) if isinstance(data, dict) else data
            extra = data.get("extra") if isinstance(data, dict) else None
            await self.store.append(
                job.id, "log", {"level": level, "message": str(message), "extra": extra}
            )

        token = call_headers.set(headers)
        span = trace.get_current_span()
        spec = worker.capabilities[job.capability]
        wrapped = bool(spec.output_schema and spec.output_schema.get("x-fastmcp-wrap-result"))
        slot = (worker.url, job.capability)
        self.inflight[slot] += 1
        try:
            result = await self.caller.call(
                worker.url,
                job.capability,
                job.input,
                timeout=job.timeout_s,
                meta=meta,
                on_progress=on_progress,
                on_log=on_log,
                wrapped=wrapped,
            )
        except WorkerCallError as exc:
            outcome = exc.code
            if isinstance(exc, WorkerUnreachable | WorkerDropped | WorkerTimeout):
                worker.breaker.failure()
                if isinstance(exc, WorkerUnreachable):
                    self.registry.mark_down(worker.url, exc.message)
            elif isinstance(exc, WorkerBusy):
                worker.breaker.success()  # it answered: alive, just full
            else:
                worker.breaker.success()
            self.metrics.attempts.labels(job.capability, outcome).inc()
            span.add_event("attempt_failed", labels(code=exc.code, worker=worker.name))
            log.info("job.attempt_failed", worker=worker.name, attempt=job.attempts, code=exc.code)
            raise
        finally:
            call_headers.reset(token)
            self.inflight[slot] -= 1
            if not self.inflight[slot]:
                del self.inflight[slot]
            await self.registry.notify()  # a slot freed: waiting jobs may go
        worker.breaker.success()
        self.metrics.attempts.labels(job.capability, "ok").inc()
        return result

    async def _finish(
        self,
        job: Job,
        status: JobStatus,
        *,
        result: Any = None,
        error: JobError | None = None,
    ) -> None:
        job.status = status
        job.result = result
        job.error = error
        job.finished_at = now()
        seq = await self.store.transition(
            job.id,
            allowed=ACTIVE,
            event="status",
            data={"status": status.value, **({"error": error.model_dump()} if error else {})},
            finish=True,
            done=job,
            status=status,
            result=result,
            error=error.model_dump() if error else None,
            finished_at=job.finished_at,
            attempts=job.attempts,
        )
        if seq is None:
            return  # someone else ended it first (a cancel of a queued job)
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


def _cancelled() -> JobError:
    return JobError(code="CANCELLED", message="cancelled on request")


def _job_error(exc: FleetError) -> JobError:
    return JobError(code=exc.code, message=exc.message, details=exc.details)
