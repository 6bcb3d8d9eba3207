"""The bodies the API answers with, as ``/openapi.json`` declares them.

Every route declares its success body and each error status it can return, all with the one
real error body (``{"error": {"code", "message", "details"}}``), never FastAPI's default
validation schema. ``tests/supervisor/test_schemathesis.py`` holds the API to this document.

    @v1.get("/jobs/{job_id}", response_model=Job, responses=errors(404, 503))
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from shared import HEADER_CORRELATION_ID, Job

__all__ = [
    "COMMON_ERRORS",
    "SSE_RESPONSE",
    "V1_ERRORS",
    "Catalog",
    "DeadLetters",
    "ErrorBody",
    "ErrorInfo",
    "Health",
    "JobPage",
    "Queues",
    "Readiness",
    "WorkerList",
    "errors",
]


class ErrorInfo(BaseModel):
    code: str = Field(
        pattern=r"^[A-Z][A-Z0-9_]*$",
        description="Stable UPPER_SNAKE code; one code, one status (see shared/errors.py).",
        examples=["JOB_NOT_FOUND"],
    )
    message: str = Field(description="What is wrong, for a person; names the field if one.")
    details: dict[str, Any] = Field(
        description="Machine-readable context: usually `field`, sometimes `limit`, `reason`."
    )


class ErrorBody(BaseModel):
    """Every 4xx/5xx answer of the API."""

    error: ErrorInfo


class JobPage(BaseModel):
    jobs: list[Job]
    next_cursor: str | None = Field(
        description="Pass back as `cursor` for the next page; null on the last page."
    )


class DeadLetters(BaseModel):
    jobs: list[Job]


class WorkerList(BaseModel):
    workers: list[dict[str, Any]] = Field(
        description="Per worker: name, url, version, health, capabilities, in_flight, breaker…"
    )


class Catalog(BaseModel):
    capabilities: dict[str, dict[str, Any]] = Field(
        description="Capability name → its spec (schemas, idempotent…) and the workers serving it."
    )


class Queues(BaseModel):
    queues: dict[str, int] = Field(description="Queued jobs per capability.")
    held_by_this_supervisor: int


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "degraded", "unavailable"]
    store: Literal["ok", "unreachable"]
    loops: dict[str, str] = Field(
        default_factory=dict,
        description="Background loops that died and wait to restart, with the reason.",
    )


_CORRELATION_HEADER = {
    HEADER_CORRELATION_ID: {
        "description": "The request's correlation id: the one sent, or a generated one.",
        "schema": {"type": "string"},
    }
}

_ERRORS: dict[int, str] = {
    400: "The body is not UTF-8 JSON, or uses NaN/Infinity (`BAD_REQUEST`).",
    401: "No bearer token (`UNAUTHORIZED`); only when the supervisor has API tokens.",
    403: "A token this supervisor does not accept (`FORBIDDEN`).",
    404: "No such job (`JOB_NOT_FOUND`); any id not shaped like one we mint is unknown too.",
    409: "Idempotency-Key reused with another body, or the job already ended (`*_CONFLICT`, "
    "`JOB_FINISHED`).",
    413: "The request body is over the size limit (`PAYLOAD_TOO_LARGE`).",
    422: "A field, parameter or header breaks its rule (`VALIDATION_ERROR`, "
    "`UNKNOWN_CAPABILITY`, `INVALID_INPUT`); `details.field` names it.",
    429: "The capability's queue is full (`QUEUE_FULL`); `Retry-After` says when to retry.",
    503: "The store is unreachable (`STORE_UNAVAILABLE`).",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` entries for these error statuses, each with the real error body."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        headers: dict[str, Any] = dict(_CORRELATION_HEADER)
        if status == 429:
            headers["Retry-After"] = {
                "description": "Seconds to wait before submitting again.",
                "schema": {"type": "integer", "minimum": 1},
            }
        if status == 401:
            headers["WWW-Authenticate"] = {"schema": {"type": "string"}}
        out[status] = {"model": ErrorBody, "description": _ERRORS[status], "headers": headers}
    return out


COMMON_ERRORS = errors(413, 422)
"""What any route can answer: the body limit and a malformed ``X-Correlation-ID``."""
V1_ERRORS = errors(401, 403, 413, 422)
"""What any ``/v1`` route can answer: the common ones and authentication."""

SSE_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Server-Sent Events: `status`, `progress`, `log`, then `done` whose data "
        "is the job. Each event's `id:` is its sequence number, its `data:` one JSON object "
        "`{seq, type, job_id, correlation_id, ts, data}`.",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
        "headers": _CORRELATION_HEADER,
    }
}
