"""What every route depends on: the services, the bearer token, the correlation header, the job
id in the path, and the one way a job is answered."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Header, Path, Request, Response

from shared import HEADER_CORRELATION_ID, Forbidden, Job, JobNotFound, Unauthorized
from supervisor.api.limits import CORRELATION_ID_PATTERN, is_job_id
from supervisor.services import Services

__all__ = ["JobId", "Svc", "correlation_header", "job_response", "require_token"]

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


async def require_token(request: Request, svc: Svc) -> None:
    tokens = svc.settings.tokens
    if not tokens:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("missing bearer token: send 'Authorization: Bearer <token>'")
    if not token_matches(token.strip(), tokens):
        raise Forbidden("this token is not allowed")


def token_matches(given: str, tokens: list[str]) -> bool:
    """Whether ``given`` is one of ``tokens``, in time that does not depend on where the first
    differing character is (``hmac.compare_digest``, every token compared)."""
    raw = given.encode()
    matched = False
    for token in tokens:
        matched |= hmac.compare_digest(raw, token.encode())
    return matched


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


def job_response(job: Job, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    # Serialised by pydantic in one step: FastAPI's generic encoder costs more than the job.
    return Response(job.model_dump_json(), status, headers, media_type="application/json")
