"""The workflow routes: submit a DAG of steps, read it with each step's state.

A workflow is a job (capability ``fleet:workflow``): its status, events, cancel and short
ids are the ``/v1/jobs`` routes'; these two add the spec's checks and the steps' view.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response

from shared import (
    HEADER_IDEMPOTENCY_KEY,
    AdmissionRefused,
    BadRequest,
    IdempotencyConflict,
    Job,
    JobNotFound,
    StoreUnavailable,
    ValidationFailed,
)
from shared.errors import AmbiguousJobId, InvalidWorkflow, NoHealthyWorker, RateLimited
from shared.protocol import WORKFLOW_CAPABILITY
from supervisor.api.auth import JOBS_READ, JOBS_WRITE, principal_of
from supervisor.api.deps import JobId, Svc, submitted_response, visible
from supervisor.api.limits import IDEMPOTENCY_KEY_PATTERN, parse_json_body
from supervisor.api.middleware import correlation_id, traceparent_of
from supervisor.api.openapi import errors
from supervisor.api.scopes import needs
from supervisor.workflows.runner import read_steps
from supervisor.workflows.spec import WorkflowSpec
from supervisor.workflows.state import WorkflowView, steps_view
from supervisor.workflows.submission import submit_workflow

__all__ = ["router"]

MAX_WAIT_S = 60.0

router = APIRouter()


@router.post(
    "/workflows",
    status_code=202,
    response_model=Job,
    dependencies=[needs(JOBS_WRITE)],
    responses={
        200: {
            "model": Job,
            "description": "An idempotent replay, or the workflow ended within ?wait.",
        },
        202: {
            "description": "Accepted: the workflow's job.",
            "headers": {"Location": {"schema": {}}},
        },
        **errors(
            BadRequest,
            IdempotencyConflict,
            ValidationFailed,
            InvalidWorkflow,
            AdmissionRefused,
            RateLimited,
            StoreUnavailable,
            NoHealthyWorker,
        ),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": WorkflowSpec.model_json_schema()}},
        }
    },
)
async def submit_workflow_route(
    request: Request,
    svc: Svc,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias=HEADER_IDEMPOTENCY_KEY,
            pattern=IDEMPOTENCY_KEY_PATTERN,
            description="Same as the body's idempotency_key: the same key answers the same "
            "workflow.",
        ),
    ] = None,
    wait: Annotated[float, Query(ge=0, le=MAX_WAIT_S)] = 0,
) -> Response:
    """Submit a workflow: steps that run capabilities as child jobs, in the order their
    dependencies and references give. 422 ``INVALID_WORKFLOW`` names the step and field of
    a problem (a cycle, an unknown step, a bad reference, an unknown capability).

    The answer is the workflow's job (as ``POST /v1/jobs`` answers it): 202, or 200 for an
    idempotent replay or once it ended within ``?wait=S``.
    """
    raw = await request.body()
    data = parse_json_body(raw) if raw else None
    submitted = await submit_workflow(
        svc,
        principal_of(request),
        data,
        correlation_id=correlation_id(),
        wait=wait,
        idempotency_key=idempotency_key,
        traceparent=traceparent_of(request),
    )
    return submitted_response(submitted, f"/v1/workflows/{submitted.job.id}", wait=wait)


@router.get(
    "/workflows/{job_id}",
    response_model=WorkflowView,
    responses=errors(JobNotFound, AmbiguousJobId, StoreUnavailable),
    dependencies=[needs(JOBS_READ)],
)
async def get_workflow(
    job_id: JobId,
    svc: Svc,
    request: Request,
    wait: Annotated[float, Query(ge=0, le=MAX_WAIT_S)] = 0,
) -> Response:
    """The workflow's job and each step's state (status, children done and failed, their
    job ids, the error); with ``?wait=S``, long-poll until it ends or S seconds pass."""
    job = visible(request, await svc.store.get_with_children(job_id))
    if job.capability != WORKFLOW_CAPABILITY:
        raise JobNotFound(
            f"job {job_id} is not a workflow: read it at /v1/jobs/{job_id}",
            details={"job_id": job_id},
        )
    if wait and not job.status.terminal:
        job = await svc.store.wait_ended(job_id, wait)
        job.children = await svc.store.children(job_id) or None
    states = await read_steps(svc, job_id)
    view = WorkflowView.model_validate({"job": job, "steps": steps_view(job.input, states)})
    return Response(view.model_dump_json(), media_type="application/json")
