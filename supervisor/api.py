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
from collections.abc import AsyncIterator, Iterable
from decimal import Decimal
from typing import Annotated, Any

import jsonschema
from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.routing import BaseRoute, Match, Route
from starlette.types import Scope

from shared import (
    HEADER_CORRELATION_ID,
    HEADER_IDEMPOTENCY_KEY,
    AdmissionRefused,
    Forbidden,
    InvalidInput,
    Job,
    JobFinished,
    JobNotFound,
    JobStatus,
    JobSubmit,
    StoreUnavailable,
    Unauthorized,
    UnknownCapability,
    ValidationFailed,
    get_logger,
    now,
)
from supervisor.limits import (
    CORRELATION_ID_PATTERN,
    CURSOR_PATTERN,
    IDEMPOTENCY_KEY_PATTERN,
    LAST_EVENT_ID_PATTERN,
    MAX_EVENT_SEQ,
    is_job_id,
    new_job_id,
    parse_json_body,
)
from supervisor.metrics import BREAKER_VALUES
from supervisor.middleware import correlation_id
from supervisor.openapi import (
    COMMON_ERRORS,
    SSE_RESPONSE,
    V1_ERRORS,
    Catalog,
    DeadLetters,
    Health,
    JobPage,
    Queues,
    Readiness,
    WorkerList,
    errors,
)
from supervisor.registry import Target
from supervisor.services import Services
from supervisor.store import AdmissionFull

__all__ = ["allowed_methods", "router"]

log = get_logger("fleet.api")

MAX_WAIT_S = 60.0
MAX_ECHO = 64
"""Longest piece of a client's value repeated in an error message."""


async def _correlation_header(
    x_correlation_id: Annotated[
        str | None,
        Header(
            alias=HEADER_CORRELATION_ID,
            pattern=CORRELATION_ID_PATTERN,
            description="Honoured and echoed; generated when absent. Refused (422) when not "
            "1-128 visible ASCII characters.",
        ),
    ] = None,
) -> None:
    """Declares the header for /openapi.json; the middleware has already checked it."""


router = APIRouter(dependencies=[Depends(_correlation_header)], responses=COMMON_ERRORS)


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


v1 = APIRouter(prefix="/v1", dependencies=[Depends(require_token)], responses=V1_ERRORS)


def _echo(value: str) -> str:
    return value if len(value) <= MAX_ECHO else value[:MAX_ECHO] + "…"


async def _job_id(
    job_id: Annotated[str, Path(description="A job id: 32 lowercase hex digits.")],
) -> str:
    """The path's job id, or 404 at once for a shape we never mint (no store access)."""
    if not is_job_id(job_id):
        raise JobNotFound(f"no job with id {_echo(job_id)!r}", details={"job_id": _echo(job_id)})
    return job_id


JobId = Annotated[str, Depends(_job_id)]


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
    data = parse_json_body(raw) if raw else None  # strict: see supervisor.limits
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


async def _check_capability(svc: Services, body: JobSubmit) -> Target:
    """The (service, tool, schema) the job is for; its input is valid against that schema."""
    registry = svc.registry
    if not registry.probed.is_set():  # first probe round still running: wait for it, briefly
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(registry.probed.wait(), 5.0)
    try:
        target = registry.resolve(body.capability)  # UnknownCapability names the choices
    except UnknownCapability:
        if registry.registrations_error is not None:  # maybe registered, but Redis is down
            raise StoreUnavailable(
                "the store is unreachable, so self-registered workers cannot be listed: "
                f"{registry.registrations_error}",
                details={"capability": body.capability},
            ) from None
        raise
    spec = target.spec
    if body.worker and not any(
        w.answers_to(body.worker) and w.serves(target.service, target.tool, None)
        for w in registry.workers.values()
    ):
        raise ValidationFailed(
            f"no known worker {body.worker!r} serves {body.capability!r}",
            details={"field": "worker"},
        )
    if spec.input_schema:
        try:
            validator = _validator(json.dumps(spec.input_schema, sort_keys=True))
            error = jsonschema.exceptions.best_match(validator.iter_errors(body.input))
        except Exception as exc:  # the worker's schema is broken ({"type": 5}, a dangling
            # $ref): not the client's fault, and the worker checks its own input anyway
            log.warning("api.input_schema_unusable", capability=body.capability, error=repr(exc))
            error = None
        if error is not None:
            field = _schema_path(error)
            reason = error.message if len(error.message) <= 500 else error.message[:500] + "…"
            raise InvalidInput(
                f"{field}: {reason}",
                details={"field": field, "reason": reason, "schema": spec.input_schema},
            )
    return target


@v1.post(
    "/jobs",
    status_code=202,
    response_model=Job,
    responses={
        200: {"model": Job, "description": "An idempotent replay, or the job ended within ?wait."},
        202: {"description": "Accepted and queued.", "headers": {"Location": {"schema": {}}}},
        **errors(400, 409, 429, 503),
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
    body = await _parse_submit(request, idempotency_key)
    target = await _check_capability(svc, body)
    settings = svc.settings
    job = Job(
        id=new_job_id(),
        status=JobStatus.QUEUED,
        capability=body.capability,
        input=body.input,
        max_attempts=body.max_attempts or settings.default_max_attempts,
        timeout_s=body.timeout_s or settings.default_timeout_s,
        pinned_worker=body.worker,
        service=target.service,
        tool=target.tool,
        schema_digest=target.digest,
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


@v1.get("/jobs", response_model=JobPage, responses=errors(503))
async def list_jobs(
    svc: Svc,
    status: JobStatus | None = None,
    capability: Annotated[str | None, Query(max_length=200)] = None,
    cursor: Annotated[
        str | None,
        Query(pattern=CURSOR_PATTERN, description="The `next_cursor` of the previous page."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Response:
    """Jobs, newest first. Pass ``next_cursor`` back as ``cursor`` for the next page."""
    before = float(cursor) if cursor else None  # the pattern admits plain decimals only
    jobs, next_cursor = await svc.store.list_jobs(
        status=status, capability=capability, before=before, limit=limit
    )
    more = next_cursor is not None and len(jobs) == limit
    # Positional, never exponent notation, and exact: float(cursor) gives the score back.
    page = JobPage(jobs=jobs, next_cursor=format(Decimal(repr(next_cursor)), "f") if more else None)
    return Response(page.model_dump_json(), media_type="application/json")


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


@v1.get("/jobs/{job_id}", response_model=Job, responses=errors(404, 503))
async def get_job(
    job_id: JobId, svc: Svc, wait: Annotated[float, Query(ge=0, le=MAX_WAIT_S)] = 0
) -> Response:
    """The job; with ``?wait=S``, long-poll until it ends or S seconds pass."""
    job = await _wait_terminal(svc, job_id, wait) if wait else await svc.store.get(job_id)
    return _job_response(job)


@v1.get(
    "/jobs/{job_id}/events",
    response_model=None,
    response_class=EventSourceResponse,
    responses={**SSE_RESPONSE, **errors(404, 503)},
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
) -> EventSourceResponse:
    """Server-Sent Events: ``status``, ``progress``, ``log``, then ``done`` with the job.

    Without a cursor the stream shows the job's latest run (a redriven job starts again at
    its ``queued`` event). Resume with ``Last-Event-ID`` (or ``?after=N``): exactly the events
    after N, then live. The stream ends at the ``done`` of the latest run; one resumed after
    it closes at once.
    """
    store = svc.store
    job = await store.get(job_id)  # 404 before the stream starts
    if after is None and not last_event_id:
        start = max(0, int(await store.flag(job_id, "run_start") or 0) - 1)
    else:  # both checked: decimal, ≤ MAX_EVENT_SEQ
        start = max(after or 0, int(last_event_id or 0))

    async def stream() -> AsyncIterator[ServerSentEvent]:
        cursor, ended = start, job.status.terminal
        while True:
            events = await store.events(job_id, after=cursor, block_ms=None if ended else 1000)
            for event in events:
                cursor = event.seq
                yield ServerSentEvent(
                    data=event.model_dump_json(), event=event.type, id=str(event.seq)
                )
                if event.type == "done":
                    if int(await store.flag(job_id, "run_start") or 0) > event.seq:
                        ended = False  # the done of an earlier run: a redrive follows it
                        continue
                    return
            if not events:
                # An ended job's `done` is in its log with the status: nothing after the
                # cursor means the reader resumed past it, and nothing more will come.
                if ended or await request.is_disconnected():
                    return
                ended = (await svc.store.get(job_id)).status.terminal

    return EventSourceResponse(
        stream(),
        ping=svc.settings.sse_keepalive_s,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@v1.post(
    "/jobs/{job_id}/cancel",
    response_model=Job,
    responses={
        200: {"description": "The job, ended `cancelled`."},
        202: {"model": Job, "description": "Cancellation requested; the call is still stopping."},
        **errors(404, 409, 503),
    },
)
async def cancel_job(job_id: JobId, svc: Svc) -> Response:
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
    return _job_response(final, 200 if final.status.terminal else 202)


@v1.get("/workers", response_model=WorkerList)
async def list_workers(svc: Svc) -> dict[str, Any]:
    return {"workers": [w.view(svc.pool.in_flight(w.url)) for w in svc.registry.workers.values()]}


@v1.get("/queues", response_model=Queues, responses=errors(503))
async def queues(svc: Svc) -> dict[str, Any]:
    """Queued jobs per capability, and how many jobs this supervisor holds right now."""
    return {
        "queues": await svc.store.queue_depths(),
        "held_by_this_supervisor": len(svc.dispatcher.held),
    }


@v1.get("/capabilities", response_model=Catalog)
async def capabilities(svc: Svc) -> dict[str, Any]:
    return {"capabilities": svc.registry.catalog()}


@v1.get("/dead-letters", response_model=DeadLetters, responses=errors(503))
async def dead_letters(svc: Svc, limit: Annotated[int, Query(ge=1, le=500)] = 100) -> Response:
    page = DeadLetters(jobs=await svc.store.dead_letters(limit))
    return Response(page.model_dump_json(), media_type="application/json")


@v1.post(
    "/dead-letters/{job_id}/redrive",
    status_code=202,
    response_model=Job,
    responses=errors(404, 409, 503),
)
async def redrive(job_id: JobId, svc: Svc) -> Response:
    """Put a dead-lettered job back in the queue with a fresh attempt budget."""
    store = svc.store
    if not await store.is_dead_letter(job_id):
        raise JobNotFound(
            f"job {job_id} is not in the dead-letter list", details={"job_id": job_id}
        )
    # One atomic script: status, its event (the start of the job's latest run), a new
    # dispatch entry and leaving the dead letters happen together or not at all.
    seq = await store.requeue(
        job_id,
        allowed=[JobStatus.FAILED],
        data={"status": "queued", "redriven": True},
        attempts=0,
        error=None,
        result=None,
        content=None,
        finished_at=None,
        started_at=None,
        cancel="",
    )
    if seq is None:
        raise JobFinished(f"job {job_id} is not failed", details={"job_id": job_id})
    return _job_response(await store.get(job_id), 202)


router.include_router(v1)


def allowed_methods(routes: Iterable[BaseRoute], scope: Scope) -> str:
    """The ``Allow`` header of a 405: the methods of every route at the request's path
    (Starlette names only the first route's, so ``GET /v1/jobs`` would hide ``POST``)."""
    methods: set[str] = set()
    for route in routes:
        if isinstance(route, Route) and route.methods:  # APIRoute is a Route
            match, _ = route.matches({**scope, "method": ""})
            if match is not Match.NONE:
                methods |= route.methods
    return ", ".join(sorted(methods))


@router.get("/healthz", response_model=Health)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={
        503: {
            "model": Readiness,
            "description": "The store is unreachable, or a background loop is down (degraded).",
        }
    },
)
async def readyz(svc: Svc) -> JSONResponse:
    ok = await svc.store.ping()
    down = dict(svc.loops.down)
    status = "unavailable" if not ok else "degraded" if down else "ready"
    return JSONResponse(
        {"status": status, "store": "ok" if ok else "unreachable", "loops": down},
        status_code=200 if status == "ready" else 503,
    )


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def metrics(svc: Svc) -> Response:
    m = svc.metrics
    try:
        for capability, depth in (await svc.store.queue_depths()).items():
            m.queue_depth.labels(capability).set(depth)
    except Exception:  # metrics must render even when the store is down
        pass
    m.worker_healthy.clear()  # departed workers leave no series behind
    m.breaker_state.clear()
    for w in svc.registry.workers.values():
        m.worker_healthy.labels(w.name, w.url).set(1 if w.healthy else 0)
        m.breaker_state.labels(w.name, w.url).set(BREAKER_VALUES[w.breaker.state.value])
    return Response(m.render(), media_type="text/plain; version=0.0.4")
