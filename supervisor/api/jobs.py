"""The job routes: submit, list, get (long-polled), stream events, cancel."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response

from shared import (
    HEADER_IDEMPOTENCY_KEY,
    AdmissionRefused,
    BadRequest,
    Event,
    IdempotencyConflict,
    InvalidInput,
    Job,
    JobFinished,
    JobNotFound,
    JobStatus,
    JobSubmit,
    StoreUnavailable,
    UnknownCapability,
    ValidationFailed,
)
from shared.errors import AmbiguousJobId, NoHealthyWorker, RateLimited
from supervisor.api.auth import JOBS_READ, JOBS_WRITE, audited, principal_of
from supervisor.api.deps import JobId, Svc, job_response, submitted_response, visible
from supervisor.api.limits import (
    CURSOR_PATTERN,
    IDEMPOTENCY_KEY_PATTERN,
    LAST_EVENT_ID_PATTERN,
    MAX_EVENT_SEQ,
)
from supervisor.api.middleware import correlation_id, traceparent_of
from supervisor.api.openapi import SSE_RESPONSE, JobPage, errors
from supervisor.api.scopes import needs
from supervisor.api.sse import PING, EventStream, Keepalive
from supervisor.api.submission import cancel, submit
from supervisor.api.validation import parse_submit
from supervisor.services import Services

__all__ = ["router"]

MAX_WAIT_S = 60.0

router = APIRouter()


@router.post(
    "/jobs",
    status_code=202,
    response_model=Job,
    dependencies=[needs(JOBS_WRITE)],
    responses={
        200: {"model": Job, "description": "An idempotent replay, or the job ended within ?wait."},
        202: {"description": "Accepted and queued.", "headers": {"Location": {"schema": {}}}},
        **errors(
            BadRequest,
            IdempotencyConflict,
            ValidationFailed,
            UnknownCapability,
            InvalidInput,
            AdmissionRefused,
            RateLimited,
            StoreUnavailable,
            NoHealthyWorker,
        ),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": JobSubmit.model_json_schema()}},
        }
    },
)
async def submit_job(
    request: Request,
    svc: Svc,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias=HEADER_IDEMPOTENCY_KEY,
            pattern=IDEMPOTENCY_KEY_PATTERN,
            description="Same as the body's idempotency_key: printable ASCII, at most 200.",
        ),
    ] = None,
    wait: Annotated[float, Query(ge=0, le=MAX_WAIT_S)] = 0,
) -> Response:
    """Submit a job. 202 with the job; 200 with the first job on an idempotent replay.

    With ``?wait=S`` the answer waits until the job ends or S seconds pass (200 once ended):
    submit-and-get-the-result in one round trip.
    """
    body = await parse_submit(request, idempotency_key)
    submitted = await submit(
        svc,
        principal_of(request),
        body,
        correlation_id=correlation_id(),
        wait=wait,
        traceparent=traceparent_of(request),
    )
    return submitted_response(submitted, f"/v1/jobs/{submitted.job.id}", wait=wait)


@router.get(
    "/jobs",
    response_model=JobPage,
    responses=errors(StoreUnavailable),
    dependencies=[needs(JOBS_READ)],
)
async def list_jobs(
    svc: Svc,
    request: Request,
    status: JobStatus | None = None,
    capability: Annotated[str | None, Query(max_length=200)] = None,
    cursor: Annotated[
        str | None,
        Query(pattern=CURSOR_PATTERN, description="The `next_cursor` of the previous page."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Response:
    """Jobs, newest first (a tenant's caller: its tenant's). Pass ``next_cursor`` back as
    ``cursor`` for the next page."""
    before = float(cursor) if cursor else None  # the pattern admits plain decimals only
    jobs, next_cursor = await svc.store.list_jobs(
        status=status,
        capability=capability,
        before=before,
        limit=limit,
        tenant=principal_of(request).scoped_to,
    )
    more = next_cursor is not None and len(jobs) == limit
    # Positional, never exponent notation, and exact: float(cursor) gives the score back.
    page = JobPage(jobs=jobs, next_cursor=format(Decimal(repr(next_cursor)), "f") if more else None)
    return Response(page.model_dump_json(), media_type="application/json")


@router.get(
    "/jobs/{job_id}",
    response_model=Job,
    responses=errors(JobNotFound, AmbiguousJobId, StoreUnavailable),
    dependencies=[needs(JOBS_READ)],
)
async def get_job(
    job_id: JobId,
    svc: Svc,
    request: Request,
    wait: Annotated[float, Query(ge=0, le=MAX_WAIT_S)] = 0,
) -> Response:
    """The job; with ``?wait=S``, long-poll until it ends or S seconds pass."""
    job = visible(request, await svc.store.get_with_children(job_id))
    if wait and not job.status.terminal:  # children may come while it runs: read them again
        job = await svc.store.wait_ended(job_id, wait)
        job.children = await svc.store.children(job_id) or None
    return job_response(job)


@router.get(
    "/jobs/{job_id}/events",
    response_model=None,
    response_class=EventStream,
    responses={**SSE_RESPONSE, **errors(JobNotFound, AmbiguousJobId, StoreUnavailable)},
    dependencies=[needs(JOBS_READ)],
)
async def job_events(
    job_id: JobId,
    request: Request,
    svc: Svc,
    after: Annotated[
        int | None,
        Query(ge=0, le=MAX_EVENT_SEQ, description="Resume after this event number."),
    ] = None,
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            pattern=LAST_EVENT_ID_PATTERN,
            description="Resume after this event number (what EventSource sends on reconnect).",
        ),
    ] = None,
) -> EventStream:
    """Server-Sent Events: ``status``, ``progress``, ``log``, then ``done`` with the job.

    Without a cursor the stream shows the job's latest run (a redriven job starts again at
    its ``queued`` event). Resume with ``Last-Event-ID`` (or ``?after=N``): exactly the events
    after N, then live. The stream ends at the ``done`` of the latest run; one resumed after
    it closes at once.
    """
    store = svc.store
    job, flags = await store.get_with_flags(job_id)  # 404 before the stream starts
    visible(request, job)
    if after is None and not last_event_id:
        start = max(0, int(flags.get("run_start") or 0) - 1)
    else:  # both checked: decimal, ≤ MAX_EVENT_SEQ
        start = max(after or 0, int(last_event_id or 0))

    ended_already = job.status.terminal
    del job, flags  # not kept for the stream's life: a watcher holds only what it sends

    async def stream() -> AsyncGenerator[bytes, None]:
        """Each batch of events in one write (a watcher that fell behind catches up in a few
        sends, not one per event); the batch ends early at the run's ``done``. A batch
        without a ``done`` is written as the bytes every watcher of the job shares
        (:meth:`~supervisor.store.tails.Batch.encoded`): a watcher's cost per batch is one
        write, not one encoding per event. Its end gives back the tenant's watcher place
        (one never started gives it back when collected)."""
        ended = ended_already
        client = Keepalive(request, svc.settings.sse_keepalive_s)
        try:
            async with contextlib.aclosing(store.follow(job_id, after=start)) as batches:
                async for events in batches:
                    if not events:
                        # An ended job's `done` is in its log with the status: nothing after
                        # the cursor means the reader resumed past it, and nothing more will come.
                        if ended or await client.gone(idle=True):
                            return
                        if client.ping_due():
                            yield PING
                        continue
                    if events.has("done"):
                        frames: list[bytes] = []
                        for event in events:
                            frames.append(_frame(event))
                            if event.type == "done":
                                if int(await store.flag(job_id, "run_start") or 0) > event.seq:
                                    ended = False  # an earlier run's done: a redrive follows
                                    continue
                                yield b"".join(frames)
                                return
                        chunk = b"".join(frames)
                    else:
                        chunk = events.encoded(_frame)
                    client.sent()
                    yield chunk
                    if await client.gone(idle=False):
                        return
        finally:
            release()

    body = stream()
    release = request.app.state.watchers.take(principal_of(request), body)
    return EventStream(body, headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def _frame(event: Event) -> bytes:
    """One event as its SSE frame (id, event, data; the JSON has no line breaks), made once
    per event for all its watchers (see :meth:`~supervisor.store.tails.Batch.encoded`), so
    its JSON is made here rather than kept by ``Event.wire()``: reading that cache back
    (a pydantic private attribute) costs more than the JSON itself."""
    data = event.model_dump_json()
    return f"id: {event.seq}\r\nevent: {event.type}\r\ndata: {data}\r\n\r\n".encode()


@router.post(
    "/jobs/{job_id}/cancel",
    response_model=Job,
    responses={
        200: {"description": "The job, ended `cancelled`."},
        202: {"model": Job, "description": "Cancellation requested; the call is still stopping."},
        **errors(JobNotFound, AmbiguousJobId, JobFinished, StoreUnavailable),
    },
    dependencies=[needs(JOBS_WRITE)],
)
async def cancel_job(job_id: JobId, svc: Svc, request: Request) -> Response:
    """Cancel a queued or running job. 200 once it ended cancelled, 202 if still stopping."""
    with audited(request, "job.cancel", job_id):
        return await _cancel(svc, job_id, request)


async def _cancel(svc: Services, job_id: str, request: Request) -> Response:
    final = await cancel(svc, principal_of(request), job_id)
    return job_response(final, 200 if final.status.terminal else 202)
