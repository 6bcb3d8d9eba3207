"""What every route depends on: the services, the correlation header, the job id in the path,
and the one way a job is answered. (Who is calling: :mod:`supervisor.api.scopes`.)"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Path, Request, Response

from shared import HEADER_CORRELATION_ID, Job
from supervisor.api.auth import principal_of
from supervisor.api.limits import CORRELATION_ID_PATTERN, MIN_JOB_ID_PREFIX, is_job_id
from supervisor.api.submission import Submitted, resolve_job_id, seen_by
from supervisor.services import Services

__all__ = ["JobId", "Svc", "correlation_header", "job_response", "visible"]

MAX_ECHO = 64
"""Longest piece of a client's value repeated in an error message."""


async def correlation_header(
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


async def services(request: Request) -> Services:  # async: a sync one costs a thread hop
    svc: Services = request.app.state.services
    return svc


Svc = Annotated[Services, Depends(services)]


def _echo(value: str) -> str:
    return value if len(value) <= MAX_ECHO else value[:MAX_ECHO] + "…"


async def _job_id(
    job_id: Annotated[
        str,
        Path(
            description="A job id (32 lowercase hex digits) or a unique prefix of it of at "
            f"least {MIN_JOB_ID_PREFIX} (409 AMBIGUOUS_JOB_ID lists the candidates)."
        ),
    ],
    request: Request,
) -> str:
    """The whole id the path names: itself, or the one visible job a short id starts; 404 at
    once for a shape we never mint (no store access)."""
    if is_job_id(job_id):
        return job_id
    return await resolve_job_id(request.app.state.services, principal_of(request), job_id)


JobId = Annotated[str, Depends(_job_id)]


def visible(request: Request, job: Job) -> Job:
    """``job``, if the caller may see it; else the very 404 of a job that does not exist
    (another tenant's job is not there, not forbidden: its id tells nothing)."""
    return seen_by(principal_of(request), job)


def job_response(job: Job, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    # Serialised by pydantic in one step: FastAPI's generic encoder costs more than the job.
    return Response(job.model_dump_json(), status, headers, media_type="application/json")


def submitted_response(submitted: Submitted, location: str, *, wait: float) -> Response:
    """The answer to a submission (a job, a workflow): 202 with its ``Location``; 200 for an
    idempotent replay (``Idempotent-Replayed: true``) or a job that ended within ``?wait``."""
    saved = submitted.job
    headers = {"Location": location}
    if not submitted.created:
        headers["Idempotent-Replayed"] = "true"
    ended = bool(wait) and saved.status.terminal
    return job_response(saved, 200 if ended or not submitted.created else 202, headers)
