"""Submitting a workflow, whatever face the request came through (``POST /v1/workflows``, the
MCP face's ``fleet_workflow``): checked whole, then stored as one job of
:data:`~shared.protocol.WORKFLOW_CAPABILITY` whose input is the normalised spec.

    submitted = await submit_workflow(svc, who, body, correlation_id=cid, wait=30)
"""

from __future__ import annotations

from typing import Any

from shared import InvalidInput, JobSubmit, UnknownCapability
from shared.protocol import WORKFLOW_CAPABILITY
from supervisor.api.auth import Principal
from supervisor.api.submission import Submitted, submit
from supervisor.api.validation import check_capability
from supervisor.services import Services
from supervisor.workflows.refs import refs_in
from supervisor.workflows.spec import SUBMITTED_BY, WorkflowSpec, invalid, parse_spec, plan

__all__ = ["check_steps", "submit_workflow"]


async def submit_workflow(
    svc: Services,
    who: Principal,
    data: Any,
    *,
    correlation_id: str,
    wait: float = 0,
    idempotency_key: str | None = None,
    traceparent: str | None = None,
) -> Submitted:
    """Check ``data`` as a workflow (422 ``INVALID_WORKFLOW`` naming the step and field),
    then store it as a job whose input is the normalised spec and :data:`SUBMITTED_BY`;
    ``idempotency_key`` (a header's) stands beside the body's."""
    spec = parse_spec(data)
    if idempotency_key:
        if spec.idempotency_key and spec.idempotency_key != idempotency_key:
            raise invalid(
                None, "idempotency_key", "the Idempotency-Key header and the body's key differ"
            )
        spec.idempotency_key = idempotency_key
    plan(spec)
    await check_steps(svc, spec)
    body = JobSubmit(
        capability=WORKFLOW_CAPABILITY,
        input={
            **spec.model_dump(
                mode="json", exclude={"idempotency_key", "labels"}, exclude_none=True
            ),
            SUBMITTED_BY: who.actor,
        },
        idempotency_key=spec.idempotency_key,
        labels=spec.labels,
    )
    return await submit(
        svc,
        who,
        body,
        correlation_id=correlation_id,
        wait=wait,
        workflow=True,
        traceparent=traceparent,
    )


async def check_steps(svc: Services, spec: WorkflowSpec) -> None:
    """Each step's capability is in the catalog, and an input without references is valid
    against its schema (one with references is checked when its child is submitted)."""
    for name, step in spec.steps.items():
        if step.capability == WORKFLOW_CAPABILITY:
            raise invalid(name, "capability", "a step runs a worker's capability, not a workflow")
        literal = step.map is None and not any(True for _ in refs_in(step.input))
        probe = JobSubmit(capability=step.capability, input=step.input if literal else {})
        try:
            await check_capability(svc, probe)
        except UnknownCapability as exc:
            known = {k: v for k, v in exc.details.items() if k not in ("step", "field", "reason")}
            raise invalid(name, "capability", exc.message, **known) from None
        except InvalidInput as exc:
            if literal:
                field = str(exc.details.get("field", "input"))
                raise invalid(name, field, str(exc.details.get("reason", exc.message))) from None
