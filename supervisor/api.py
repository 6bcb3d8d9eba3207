"""The HTTP API (FastAPI). Routes only translate HTTP to store/registry calls and back.

Every error leaves as ``{"error": {"code", "message", "details"}}``; see ``shared.errors``
for the code → status table.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

import jsonschema
from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sse_starlette import EventSourceResponse, ServerSentEvent

from shared import (
    HEADER_IDEMPOTENCY_KEY,
    AdmissionRefused,
    BadRequest,
    Forbidden,
    InvalidInput,
    Job,
    JobFinished,
    JobNotFound,
    JobStatus,
    JobSubmit,
    Unauthorized,
    UnknownCapability,
    ValidationFailed,
    now,
)
from supervisor.metrics import BREAKER_VALUES
from supervisor.middleware import correlation_id
from supervisor.services import Services
from supervisor.store import AdmissionFull

__all__ = ["router"]

MAX_WAIT_S = 60.0
router = APIRouter()


async def services(request: Request) -> Services:  # async: a sync one costs a thread hop
    svc: Services = request.app.state.services
    return svc


Svc = Annotated[Services, Depends(services)]


async def require_token(request: Request, svc: Svc) -> None:
    tokens = svc.settings.tokens
    if not tokens:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("missing bearer token: send 'Authorization: Bearer <token>'")
    if token.strip() not in tokens:
        raise Forbidden("this token is not allowed")


v1 = APIRouter(prefix="/v1", dependencies=[Depends(require_token)])


def _job_body(job: Job) -> dict[str, Any]:
    return job.model_dump(mode="json")


def _job_response(job: Job, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    # Serialised by pydantic in one step: FastAPI's generic encoder costs more than the job.
    return Response(job.model_dump_json(), status, headers, media_type="application/json")


def _validation_details(exc: ValidationError, root: str = "") -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"])
        out.append({"field": f"{root}{path}" if path else root.rstrip("."), "message": err["msg"]})
    return out


def _schema_path(error: jsonschema.ValidationError) -> str:
    field = "input"
    for part in error.absolute_path:
        field += f"[{part}]" if isinstance(part, int) else f".{part}"
    if error.validator == "required" and isinstance(error.message, str):
        missing = error.message.split("'")[1] if "'" in error.message else ""
        field += f".{missing}" if missing else ""
    return field


async def _parse_submit(request: Request, idem_header: str | None) -> JobSubmit:
    raw = await request.body()
    try:
        data = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValidationFailed("request body must be a JSON object", details={"field": "body"})
    try:
        body = JobSubmit.model_validate(data)
    except ValidationError as exc:
        errors = _validation_details(exc)
        raise ValidationFailed(
            f"invalid job: {errors[0]['field']}: {errors[0]['message']}",
            details={"field": errors[0]["field"], "errors": errors},
        ) from exc
    if idem_header:
        if len(idem_header) > 200:
            raise ValidationFailed(
                "Idempotency-Key longer than 200 characters", details={"field": "Idempotency-Key"}
            )
        if body.idempotency_key and body.idempotency_key != idem_header:
            raise ValidationFailed(
                "Idempotency-Key header and body idempotency_key differ",
                details={"field": "idempotency_key"},
            )
        body.idempotency_key = idem_header
    return body


@functools.lru_cache(maxsize=512)
def _validator(schema: str) -> jsonschema.protocols.Validator:
    """Validators are costly to build and schemas change rarely: one per distinct schema."""
    loaded = json.loads(schema)
    cls = jsonschema.validators.validator_for(loaded, default=jsonschema.Draft202012Validator)
    return cls(loaded)


async def _check_capability(svc: Services, body: JobSubmit) -> None:
    registry = svc.registry
    if not registry.probed.is_set():  # first probe round still running: wait for it, briefly
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(registry.probed.wait(), 5.0)
    spec = registry.spec(body.capability)
    if spec is None:
        raise UnknownCapability(
            f"no worker offers capability {body.capability!r}",
            details={"field": "capability", "known": sorted(registry.catalog())},
        )
    if body.worker and not any(
        w.answers_to(body.worker) and body.capability in w.capabilities
        for w in registry.workers.values()
    ):
        raise ValidationFailed(
            f"no known worker {body.worker!r} serves {body.capability!r}",
            details={"field": "worker"},
        )
    if spec.input_schema:
        validator = _validator(json.dumps(spec.input_schema, sort_keys=True))
        error = jsonschema.exceptions.best_match(validator.iter_errors(body.input))
        if error is not None:
            field = _schema_path(error)
            raise InvalidInput(
                f"{field}: {error.message}",
                details={"field": field, "reason": error.message, "schema": spec.input_schema},
            )


@v1.post(
    "/jobs",
    status_code=202,
    response_model=Job,
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
    idempotency_key: Annotated[str | None, Header(alias=HEADER_IDEMPOTENCY_KEY)] = None,
    wait: Annotated[float, Query(ge=0, le=MAX_WAIT_S)] = 0,
) -> Response:
    """Submit a job. 202 with the job; 200 with the first job on an idempotent replay.

    With ``?wait=S`` the answer waits until the job ends or S seconds pass (200 once ended):
    submit-and-get-the-result in one round trip.
    """
    body = await _parse_submit(request, idempotency_key)
    await _check_capability(svc, body)
    settings = svc.settings
    job = Job(
        id=uuid.uuid4().hex,
        status=JobStatus.QUEUED,
        capability=body.capability,
        input=body.input,
        max_attempts=body.max_attempts or settings.default_max_attempts,
        timeout_s=body.timeout_s or settings.default_timeout_s,
        pinned_worker=body.worker,
        correlation_id=correlation_id(),
        idempotency_key=body.idempotency_key,
        labels=body.labels,
        created_at=now(),
    )
    canonical = body.model_dump(mode="json", exclude={"idempotency_key"})
    fingerprint = hashlib.sha256(
        json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    try:
        saved, created = await svc.store.submit(
            job, fingerprint=fingerprint, queue_limit=settings.queue_limit
        )
    except AdmissionFull as exc:
        raise AdmissionRefused(
            f"queue for {body.capability!r} is full ({exc.depth} waiting); retry later",
            retry_after=max(1, min(30, exc.depth // 100 or 1)),
            details={"capability": body.capability, "depth": exc.depth},
        ) from exc
    status = 202
    headers = {"Location": f"/v1/jobs/{saved.id}"}
    if not created:
        status = 200
        headers["Idempotent-Replayed"] = "true"
    if wait:
        saved = await _wait_terminal(svc, saved.id, wait, known=saved if created else None)
        if saved.status.terminal:
            status = 200
    return _job_response(saved, status, headers)


@v1.get("/jobs")
async def list_jobs(
    svc: Svc,
    status: JobStatus | None = None,
    capability: str | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    """Jobs, newest first. Pass ``next_cursor`` back as ``cursor`` for the next page."""
    before = None
    if cursor:
        try:
            before = float(cursor)
        except ValueError as exc:
            raise ValidationFailed(
                "cursor is not one we gave out", details={"field": "cursor"}
            ) from exc
    jobs, next_cursor = await svc.store.list_jobs(
        status=status, capability=capability, before=before, limit=limit
    )
    more = next_cursor is not None and len(jobs) == limit
    return {
        "jobs": [_job_body(j) for j in jobs],
        "next_cursor": repr(next_cursor) if more else None,
    }


async def _wait_terminal(
    svc: Services, job_id: str, seconds: float, known: Job | None = None
) -> Job:
    """The job once it ends (its ``done`` event carries it), or as it is when time is up."""
    deadline = time.monotonic() + seconds
    job = known or await svc.store.get(job_id)
    after = 0
    while not job.status.terminal:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return await svc.store.get(job_id)
        events = await svc.store.events(job_id, after=after, block_ms=max(1, int(remaining * 1000)))
        for event in events:
            after = event.seq
            if event.type == "done":
                return Job.model_validate(event.data)
    return job


@v1.get("/jobs/{job_id}", response_model=Job)
async def get_job(
    job_id: str, svc: Svc, wait: Annotated[float, Query(ge=0, le=MAX_WAIT_S)] = 0
) -> Response:
    """The job; with ``?wait=S``, long-poll until it ends or S seconds pass."""
    job = await _wait_terminal(svc, job_id, wait) if wait else await svc.store.get(job_id)
    return _job_response(job)


@v1.get("/jobs/{job_id}/events", response_model=None)
async def job_events(
    job_id: str,
    request: Request,
    svc: Svc,
    after: Annotated[int | None, Query(ge=0)] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> EventSourceResponse:
    """Server-Sent Events: ``status``, ``progress``, ``log``, then ``done`` with the job.

    Resume with ``Last-Event-ID`` (or ``?after=N``): exactly the events after N, then live.
    """
    await svc.store.get(job_id)  # 404 before the stream starts
    start = after or 0
    if last_event_id and last_event_id.strip().isdigit():
        start = max(start, int(last_event_id))

    async def stream() -> AsyncIterator[ServerSentEvent]:
        cursor = start
        while True:
            events = await svc.store.events(job_id, after=cursor, block_ms=1000)
            for event in events:
                cursor = event.seq
                yield ServerSentEvent(
                    data=event.model_dump_json(), event=event.type, id=str(event.seq)
                )
                if event.type == "done":
                    return
            if not events and await request.is_disconnected():
                return

    return EventSourceResponse(
        stream(),
        ping=svc.settings.sse_keepalive_s,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@v1.post("/jobs/{job_id}/cancel")
async def cancel_job(job_id: str, svc: Svc, response: Response) -> dict[str, Any]:
    """Cancel a queued or running job. 200 once it ended cancelled, 202 if still stopping."""
    store = svc.store
    job = await store.get(job_id)
    if job.status.terminal:
        raise JobFinished(
            f"job {job_id} already {job.status.value}",
            details={"job_id": job_id, "status": job.status.value},
        )
    await store.publish_cancel(job_id)
    if job.status is JobStatus.QUEUED:
        job.status = JobStatus.CANCELLED
        job.finished_at = now()
        job.error = None
        await store.transition(
            job_id,
            allowed=[JobStatus.QUEUED],
            event="status",
            data={"status": "cancelled"},
            finish=True,
            done=job,
            status=JobStatus.CANCELLED,
            finished_at=job.finished_at,
        )
    final = await _wait_terminal(svc, job_id, 10.0)
    if not final.status.terminal:
        response.status_code = 202
    return _job_body(final)


@v1.get("/workers")
async def list_workers(svc: Svc) -> dict[str, Any]:
    return {"workers": [w.view(svc.pool.in_flight(w.url)) for w in svc.registry.workers.values()]}


@v1.get("/queues")
async def queues(svc: Svc) -> dict[str, Any]:
    """Queued jobs per capability, and how many jobs this supervisor holds right now."""
    return {
        "queues": await svc.store.queue_depths(),
        "held_by_this_supervisor": len(svc.dispatcher.held),
    }


@v1.get("/capabilities")
async def capabilities(svc: Svc) -> dict[str, Any]:
    return {"capabilities": svc.registry.catalog()}


@v1.get("/dead-letters")
async def dead_letters(
    svc: Svc, limit: Annotated[int, Query(ge=1, le=500)] = 100
) -> dict[str, Any]:
    return {"jobs": [_job_body(j) for j in await svc.store.dead_letters(limit)]}


@v1.post("/dead-letters/{job_id}/redrive", status_code=202)
async def redrive(job_id: str, svc: Svc) -> dict[str, Any]:
    """Put a dead-lettered job back in the queue with a fresh attempt budget."""
    store = svc.store
    if not await store.remove_dead_letter(job_id):
        raise JobNotFound(
            f"job {job_id} is not in the dead-letter list", details={"job_id": job_id}
        )
    seq = await store.transition(
        job_id,
        allowed=[JobStatus.FAILED],
        event="status",
        data={"status": "queued", "redriven": True},
        persist=True,
        status=JobStatus.QUEUED,
        attempts=0,
        error=None,
        result=None,
        finished_at=None,
        started_at=None,
        cancel="",
    )
    if seq is None:
        raise JobFinished(f"job {job_id} is not failed", details={"job_id": job_id})
    await store.enqueue(job_id)
    return _job_body(await store.get(job_id))


router.include_router(v1)


@router.get("/healthz", include_in_schema=True)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(svc: Svc) -> JSONResponse:
    ok = await svc.store.ping()
    return JSONResponse(
        {"status": "ready" if ok else "unavailable", "store": "ok" if ok else "unreachable"},
        status_code=200 if ok else 503,
    )


@router.get("/metrics")
async def metrics(svc: Svc) -> Response:
    m = svc.metrics
    try:
        for capability, depth in (await svc.store.queue_depths()).items():
            m.queue_depth.labels(capability).set(depth)
    except Exception:  # metrics must render even when the store is down
        pass
    for w in svc.registry.workers.values():
        m.worker_healthy.labels(w.name, w.url).set(1 if w.healthy else 0)
        m.breaker_state.labels(w.name, w.url).set(BREAKER_VALUES[w.breaker.state.value])
    return Response(m.render(), media_type="text/plain; version=0.0.4")
