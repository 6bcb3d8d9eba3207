"""The operator's routes: queue depths, the dead-letter list, redriving a dead letter, usage."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel

from shared import (
    Job,
    JobFinished,
    JobNotFound,
    JobStatus,
    StoreUnavailable,
    ValidationFailed,
    now,
)
from shared.errors import AmbiguousJobId
from supervisor.api.auth import ADMIN, JOBS_READ, audited, principal_of, tenant_budget
from supervisor.api.deps import JobId, Svc, job_response
from supervisor.api.openapi import DeadLetters, Queues, errors
from supervisor.api.scopes import needs
from supervisor.services import Services

__all__ = ["router"]

USAGE_DEFAULT_DAYS = 30

router = APIRouter()


@router.get(
    "/queues",
    response_model=Queues,
    responses=errors(StoreUnavailable),
    dependencies=[needs(JOBS_READ)],
)
async def queues(svc: Svc) -> dict[str, Any]:
    """Queued jobs per capability, how many jobs this supervisor holds right now, each
    capability's slots (queued, in flight, limit, running), the retained jobs per status and
    each capability's backlog (queued + running, fleet-wide: what KEDA scales workers on)."""
    depths = await svc.store.queue_depths()
    running = await svc.store.running_by_capability()
    slots = _slots(svc, depths)
    for name, n in running.items():
        if name in slots:
            slots[name]["running"] = n
    return {
        "queues": depths,
        "held_by_this_supervisor": len(svc.dispatcher.held),
        "slots": slots,
        "by_status": await svc.store.status_counts(),
        "backlog": {
            name: depths.get(name, 0) + running.get(name, 0)
            for name in sorted({*depths, *running, *slots})
        },
    }


def _slots(svc: Services, depths: dict[str, int]) -> dict[str, dict[str, int]]:
    """Per public capability name: its queue, this supervisor's calls in flight (the
    dispatcher's per-(worker, tool) slots) and the limit its healthy workers declare."""
    registry = svc.registry
    slots: dict[str, dict[str, int]] = {}

    def row(name: str) -> dict[str, int]:
        empty = {"queued": 0, "in_flight": 0, "limit": 0, "workers": 0, "healthy_workers": 0}
        empty["running"] = 0
        return slots.setdefault(name, empty)

    for worker in registry.workers.values():
        for tool, spec in worker.capabilities.items():
            entry = row(registry.public_name(worker.service, tool))
            entry["workers"] += 1
            if worker.healthy:
                entry["healthy_workers"] += 1
                entry["limit"] += max(1, spec.max_concurrency)
    for (url, tool), calls in svc.dispatcher.placement.inflight.items():
        serving = registry.workers.get(url)
        name = registry.public_name(serving.service, tool) if serving is not None else tool
        row(name)["in_flight"] += calls
    for name, depth in depths.items():
        row(name)["queued"] += depth
    return dict(sorted(slots.items()))


@router.get(
    "/dead-letters",
    response_model=DeadLetters,
    responses=errors(StoreUnavailable),
    dependencies=[needs(ADMIN)],
)
async def dead_letters(
    svc: Svc, request: Request, limit: Annotated[int, Query(ge=1, le=500)] = 100
) -> Response:
    with audited(request, "dead_letters.list", "*"):
        who = principal_of(request)
        jobs = [job for job in await svc.store.dead_letters(limit) if who.sees(job.tenant)]
        page = DeadLetters(jobs=jobs)
    return Response(page.model_dump_json(), media_type="application/json")


@router.post(
    "/dead-letters/{job_id}/redrive",
    status_code=202,
    response_model=Job,
    responses=errors(JobNotFound, AmbiguousJobId, JobFinished, StoreUnavailable),
    dependencies=[needs(ADMIN)],
)
async def redrive(job_id: JobId, svc: Svc, request: Request) -> Response:
    """Put a dead-lettered job back in the queue with a fresh attempt budget."""
    with audited(request, "dead_letter.redrive", job_id):
        return await _redrive(svc, job_id, request)


async def _redrive(svc: Services, job_id: str, request: Request) -> Response:
    store = svc.store
    if not await store.is_dead_letter(job_id) or not principal_of(request).sees(
        (await store.get(job_id)).tenant
    ):
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
    job = await store.get(job_id)
    if job.tenant is not None and svc.settings.tenant_max_inflight:
        # In flight again: its tenant's budget counts it (the set forgot it when it failed).
        # A job without a tenant was limited as its caller, whom the record does not name.
        await store.count(tenant_budget(job.tenant), job_id)
    return job_response(job, 202)


class UsageRow(BaseModel):
    tenant: str | None
    """None: callers without a tenant."""
    capability: str
    jobs: int
    attempts: int
    worker_s: float
    bytes_in: int
    bytes_out: int


class UsageReport(BaseModel):
    since: str
    """The first UTC day counted (``since`` rounded down to its day)."""
    until: str
    usage: list[UsageRow]


@router.get(
    "/usage",
    response_model=UsageReport,
    responses=errors(ValidationFailed, StoreUnavailable),
    dependencies=[needs(JOBS_READ)],
)
async def usage(
    svc: Svc,
    request: Request,
    tenant: Annotated[
        str | None,
        Query(
            max_length=64,
            description="This tenant's usage only ('-': callers without a tenant). A caller "
            "with a tenant (and not admin) always gets its own.",
        ),
    ] = None,
    since: Annotated[
        float | None,
        Query(ge=0, description="Unix time to count from (its UTC day); default: 30 days ago."),
    ] = None,
) -> Response:
    """What ended jobs cost, per tenant and capability: jobs, attempts, worker seconds, bytes
    sent to workers and received, summed by UTC day since ``since``."""
    until = now()
    start = until - USAGE_DEFAULT_DAYS * 86_400 if since is None else since
    if start > until:
        raise ValidationFailed("since is in the future", details={"field": "since"})
    scoped = principal_of(request).scoped_to
    wanted = scoped if scoped is not None else ("" if tenant == "-" else tenant)
    rows = await svc.store.usage_since(start, until, tenant=wanted)
    report = UsageReport(
        since=_day(start), until=_day(until), usage=[UsageRow(**row) for row in rows]
    )
    return Response(report.model_dump_json(), media_type="application/json")


def _day(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d")
