"""One attempt: marking the job running, calling the worker's tool, and the verdict on it.

The call carries the job's correlation, attempt and idempotency key in ``_meta`` (workers
de-duplicate re-deliveries on the key: the job's own, or its id) and in headers with the
trace context. Progress and logs the worker sends are recorded as the job's events. The
attempt's outcome feeds the worker's breaker and the attempt counter.
"""

from __future__ import annotations

import json
import time
from typing import Any

from opentelemetry import propagate, trace

from shared import (
    HEADER_CORRELATION_ID,
    HEADER_JOB_ID,
    META_ATTEMPT,
    META_CORRELATION_ID,
    META_IDEMPOTENCY_KEY,
    META_JOB_ID,
    Job,
    JobStatus,
    Progress,
    ToolFailed,
    WorkerBusy,
    WorkerCallError,
    WorkerUnreachable,
    get_logger,
    labels,
    now,
)
from shared.protocol import META_SUPERVISOR_URL
from supervisor.calls import CallResult, call_headers
from supervisor.dispatch.held import ACTIVE, Held
from supervisor.dispatch.placement import tool_of
from supervisor.dispatch.writer import EventWriter
from supervisor.metrics import Metrics
from supervisor.types import DispatchStore, WorkerCaller, WorkerDirectory, WorkerView

__all__ = ["Calls", "Ended"]

log = get_logger("fleet.dispatcher")


class Ended(Exception):
    """The job ended elsewhere (cancelled while queued) before this attempt could start."""


class Calls:
    def __init__(
        self,
        store: DispatchStore,
        registry: WorkerDirectory,
        caller: WorkerCaller,
        metrics: Metrics,
    ) -> None:
        self.store = store
        self.registry = registry
        self.caller = caller
        self.metrics = metrics
        self.supervisor_url: str | None = None
        """Sent in every call's ``_meta``: where a tool delegating work submits it."""

    async def call(
        self, job: Job, worker: WorkerView, held: Held, *, started: float | None = None
    ) -> CallResult:
        """One attempt. ``started``: the job was marked ``running`` on ``worker`` as it was
        acquired (``acquire_and_start``, with this ``started_at`` if it had none), and ``job``
        is its record after that: no write of its own before the call."""
        held.tried.add(worker.url)
        held.counted = True
        if started is not None:
            first = job.started_at == started  # set now: it had none
        else:
            job.attempts += 1
            first = job.started_at is None
            job.started_at = job.started_at or now()
            job.worker = worker.name
            written = await self.store.transition(
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
            if written is None:
                raise Ended(job.id)
        if first and job.started_at is not None:
            self.metrics.dispatch_latency.labels(job.capability).observe(
                job.started_at - job.created_at
            )
        meta = {
            META_CORRELATION_ID: job.correlation_id,
            META_JOB_ID: job.id,
            META_ATTEMPT: job.attempts,
            META_IDEMPOTENCY_KEY: job.idempotency_key or job.id,
        }
        if self.supervisor_url:
            meta[META_SUPERVISOR_URL] = self.supervisor_url
        headers = {HEADER_CORRELATION_ID: job.correlation_id, HEADER_JOB_ID: job.id}
        propagate.inject(headers)

        writer = EventWriter(self.store, job.id, held.fence)

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            p = Progress(progress=progress, total=total, message=message)
            job.progress = p
            await writer.add("progress", p.model_dump(), progress=p)

        async def on_log(level: str, data: Any) -> None:
            message = data.get("msg", data) if isinstance(data, dict) else data
            extra = data.get("extra") if isinstance(data, dict) else None
            payload = {"level": level, "message": str(message), "extra": extra}
            await writer.add("log", payload)

        token = call_headers.set(headers)
        span = trace.get_current_span()
        tool = tool_of(job)
        spec = worker.capabilities[tool]
        wrapped = bool(spec.output_schema and spec.output_schema.get("x-fastmcp-wrap-result"))
        held.calls += 1
        called = time.perf_counter()
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
            await writer.flush()  # the attempt's events before whatever follows it
            outcome = exc.code
            if isinstance(exc, WorkerBusy):  # refused before the tool: not an attempt
                job.attempts -= 1
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
            writer.abandon()
            worker.breaker.release()  # cancelled (or worse): no verdict on the worker
            raise
        finally:
            call_headers.reset(token)
            held.worker_s += time.perf_counter() - called
        held.bytes_out += len(
            json.dumps([result.value, result.content], separators=(",", ":"), default=str)
        )
        await writer.flush()  # its events before its outcome
        worker.breaker.success()
        self.metrics.attempts.labels(job.capability, "ok").inc()
        return result
