"""The bodies the API answers with, as ``/openapi.json`` declares them.

Every route declares its success body and each error it can raise (by its :mod:`shared.errors`
class), all with the one real error body (``{"error": {"code", "message", "details"}}``), never
FastAPI's default validation schema. ``tests/supervisor/test_schemathesis.py`` holds the API to
this document.

    @router.get("/jobs/{job_id}", response_model=Job, responses=errors(JobNotFound))
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from shared import (
    HEADER_CORRELATION_ID,
    FleetError,
    Forbidden,
    Job,
    PayloadTooLarge,
    Unauthorized,
    ValidationFailed,
)
from shared.errors import (
    HostNotAllowed,
    InsufficientScope,
    InvalidToken,
    KeysUnavailable,
    OriginNotAllowed,
    UnsupportedMediaType,
)
from shared.models import QueueDepths as Queues
from shared.models import Slots
from supervisor.api.errors import rule_for

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
    "Slots",
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
        description="Per worker: name, url, version, health, capabilities, in_flight, breaker, "
        "and when it is not healthy, down_reason (the probe's or the call's error) and "
        "down_since (epoch seconds)…"
    )
    refused: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Workers not probed nor called (url, name, source, reason, since); reason "
        "is unsigned, bad_signature, expired, not_yet_valid or not_allowed. First 100.",
    )


class Catalog(BaseModel):
    capabilities: dict[str, dict[str, Any]] = Field(
        description="Capability name → its spec (schemas, idempotent…) and the workers serving it."
    )


class Health(BaseModel):
    status: Literal["ok"]
    version: str = Field(description="The supervisor's version (the mcp-fleet package's).")


class StoreOutage(BaseModel):
    since: str = Field(description="When the store stopped answering (UTC, ISO 8601).")
    reason: str = Field(description="The latest failure, e.g. a refused connection.")
    retries: int = Field(description="Failed tries since, by every part of the process.")


class Readiness(BaseModel):
    status: Literal["ready", "degraded", "unavailable"]
    store: Literal["ok", "unreachable"]
    store_outage: StoreOutage | None = Field(
        default=None,
        description="Only while the store is unreachable: since when, why, and the tries so "
        "far (the supervisor retries with backoff, and is ready again once it answers).",
    )
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


def errors(*raised: type[FleetError]) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` entries for the errors a route raises, each status with the real
    error body, and its codes, meanings and headers as :data:`~supervisor.api.errors.RULES`
    has them."""
    out: dict[int | str, dict[str, Any]] = {}
    for error in raised:
        rule = rule_for(error)
        entry = out.setdefault(error.status, {"model": ErrorBody, "description": "", "headers": {}})
        entry["description"] = f"{entry['description']} `{error.code}`: {rule.meaning}".strip()
        entry["headers"] = {
            **_CORRELATION_HEADER,
            **entry["headers"],
            **{header.name: header.doc for header in rule.headers},
        }
    return out


_GUARDS = (OriginNotAllowed, PayloadTooLarge, UnsupportedMediaType, HostNotAllowed)
COMMON_ERRORS = errors(*_GUARDS, ValidationFailed)
"""What any route can answer: the ``Host``/``Origin`` allowlists, the body limit and type
(:mod:`supervisor.api.guards`), and a malformed ``X-Correlation-ID``."""
V1_ERRORS = errors(
    Unauthorized,
    InvalidToken,
    InsufficientScope,
    Forbidden,
    *_GUARDS,
    ValidationFailed,
    KeysUnavailable,
)
"""What any ``/v1`` route can answer: the common ones, authentication and scopes."""

SSE_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Server-Sent Events: `status`, `progress`, `log`, then `done` whose data "
        "is the job. Each event's `id:` is its sequence number, its `data:` one JSON object "
        "`{seq, type, job_id, correlation_id, ts, data}`.",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
        "headers": _CORRELATION_HEADER,
    }
}
