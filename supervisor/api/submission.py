"""Submitting and cancelling a job, whatever face the request came through: the REST routes
(:mod:`supervisor.api.jobs`) and the MCP face (:mod:`supervisor.mcp`) both call these, so a
job is validated, admitted, stored and cancelled the same way on both.

    submitted = await submit(svc, who, JobSubmit(capability="noop"), correlation_id=cid)
    job = await cancel(svc, who, job_id)
    job_id = await resolve_job_id(svc, who, "504145ff60e7")   # a short id, as the CLI prints
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from dataclasses import dataclass

from shared import (
    AdmissionRefused,
    Job,
    JobFinished,
    JobNotFound,
    JobStatus,
    JobSubmit,
    UnknownCapability,
    now,
)
from shared.errors import AmbiguousJobId, DelegationLimit
from shared.protocol import WORKFLOW_CAPABILITY
from supervisor.api.auth import Principal
from supervisor.api.limits import MIN_JOB_ID_PREFIX, is_job_id, is_job_id_prefix, new_job_id
from supervisor.api.quotas import admitted
from supervisor.api.validation import check_capability
from supervisor.services import Services
from supervisor.store import AdmissionFull

__all__ = ["Submitted", "cancel", "cancel_descendants", "resolve_job_id", "seen_by", "submit"]

MAX_CANDIDATES = 10
"""How many jobs an ambiguous short id lists."""
MAX_ECHO = 64
"""Longest piece of a client's value repeated in an error message."""


@dataclass
class Submitted:
    job: Job
    """The stored job (the first one, on an idempotent replay); ended if ``wait`` saw it end."""
    created: bool
    """False for a replay of an idempotency key already used."""


async def submit(
    svc: Services,
    who: Principal,
    body: JobSubmit,
    *,
    correlation_id: str,
    wait: float = 0,
    workflow: bool = False,
    traceparent: str | None = None,
) -> Submitted:
    """Validate ``body`` against the catalog, count it against ``who``'s limits and store it;
    with ``wait``, return once it ended or ``wait`` seconds passed.

    ``workflow``: a workflow job (capability :data:`WORKFLOW_CAPABILITY`, checked by
    :mod:`supervisor.workflows`, run by the supervisor itself); no other submission may name
    that capability. A child (``body.parent_id``) takes its parent's tenant and correlation
    id, one level deeper. ``traceparent``: the trace the job continues."""
    settings = svc.settings
    if workflow != (body.capability == WORKFLOW_CAPABILITY):
        if workflow:
            raise ValueError(f"a workflow job's capability is {WORKFLOW_CAPABILITY!r}")
        raise UnknownCapability(
            f"{WORKFLOW_CAPABILITY!r} is not a worker's capability: submit a workflow to "
            "POST /v1/workflows",
            details={"field": "capability", "capability": body.capability},
        )
    target = None if workflow else await check_capability(svc, body)
    tenant, depth = who.tenant, 0
    if body.parent_id is not None:
        parent = await _parent(svc, who, body.parent_id)
        tenant, depth, correlation_id = parent.tenant, parent.depth + 1, parent.correlation_id
    job_id = svc.store.place(
        new_job_id(), parent_id=body.parent_id, idempotency_key=body.idempotency_key, tenant=tenant
    )
    job = Job(
        id=job_id,
        status=JobStatus.QUEUED,
        capability=body.capability,
        input=body.input,
        max_attempts=body.max_attempts or settings.default_max_attempts,
        timeout_s=body.timeout_s or settings.default_timeout_s,
        pinned_worker=body.worker,
        service=target.service if target else None,
        tool=target.tool if target else None,
        schema_digest=target.digest if target else None,
        correlation_id=correlation_id,
        idempotency_key=body.idempotency_key,
        tenant=tenant,
        labels=body.labels,
        parent_id=body.parent_id,
        depth=depth,
        traceparent=traceparent,
        created_at=now(),
    )
    # The parent is not part of the request: a key reused under another parent (a workflow
    # step's own key, shared by two workflows) hands back the first job, its result.
    canonical = body.model_dump(mode="json", exclude={"idempotency_key", "parent_id"})
    fingerprint = hashlib.sha256(
        json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    # With a wait, the wait for the end is registered before the submit: no first read after.
    with svc.store.ending(job.id) if wait else contextlib.nullcontext() as ending:
        try:
            if settings.rate_submit_per_s or settings.tenant_max_inflight:
                async with admitted(svc, who, job) as ticket:
                    saved, created = await _store(svc, job, fingerprint)
                    ticket.created = created
            else:  # no limit to count it against (admitted() would only yield)
                saved, created = await _store(svc, job, fingerprint)
        except AdmissionFull as exc:
            if exc.tenant is not None:
                raise AdmissionRefused(
                    f"tenant {exc.tenant!r} holds its share of the queue for "
                    f"{body.capability!r} ({exc.depth} waiting; FLEET_TENANT_QUEUE_SHARE); "
                    "retry later",
                    retry_after=max(1, min(30, exc.depth // 100 or 1)),
                    details={
                        "capability": body.capability,
                        "tenant": exc.tenant,
                        "tenant_depth": exc.depth,
                    },
                ) from exc
            raise AdmissionRefused(
                f"queue for {body.capability!r} is full ({exc.depth} waiting); retry later",
                retry_after=max(1, min(30, exc.depth // 100 or 1)),
                details={"capability": body.capability, "depth": exc.depth},
            ) from exc
        if wait and not saved.status.terminal:
            if created and ending is not None:
                saved = await ending.wait(wait, known=saved)
            else:  # a replay: the first job, registered for only now
                saved = await svc.store.wait_ended(saved.id, wait)
    return Submitted(saved, created)


async def _store(svc: Services, job: Job, fingerprint: str) -> tuple[Job, bool]:
    settings = svc.settings
    svc.dispatcher.expect(job)  # before: its delivery may come before the submit's answer
    created = False
    try:
        saved, created = await svc.store.submit(
            job,
            fingerprint=fingerprint,
            queue_limit=settings.queue_limit,
            tenant_share=settings.tenant_queue_share,
            max_children=settings.max_children,
        )
    finally:
        if not created:
            svc.dispatcher.forget(job.id)
    return saved, created


async def _parent(svc: Services, who: Principal, parent_id: str) -> Job:
    """The parent a child names: one ``who`` may see, still running, not at the depth limit."""
    try:
        parent, flags = await svc.store.get_with_flags(parent_id)
        seen_by(who, parent)
    except JobNotFound:
        raise JobNotFound(
            f"no parent job with id {parent_id!r}",
            details={"job_id": parent_id, "field": "parent_id"},
        ) from None
    if parent.status.terminal or flags.get("cancel"):
        status = parent.status.value if parent.status.terminal else "cancelling"
        raise JobFinished(
            f"parent job {parent_id} already {status}: a child cannot start after its parent ended",
            details={"parent_id": parent_id, "status": status},
        )
    limit = svc.settings.max_depth
    if parent.depth + 1 > limit:
        raise DelegationLimit(
            f"job {parent_id} is at depth {parent.depth}: a child would be deeper than "
            f"FLEET_MAX_DEPTH={limit}",
            details={"limit": "depth", "max": limit, "parent_id": parent_id},
        )
    return parent


def seen_by(who: Principal, job: Job) -> Job:
    """``job``, if ``who`` may see it; else the very 404 of a job that does not exist
    (another tenant's job is not there, not forbidden: its id tells nothing)."""
    if who.sees(job.tenant):
        return job
    raise JobNotFound(f"no job with id {job.id!r}", details={"job_id": job.id})


def _echo(value: str) -> str:
    return value if len(value) <= MAX_ECHO else value[:MAX_ECHO] + "…"


async def resolve_job_id(svc: Services, who: Principal, value: str) -> str:
    """The job id ``value`` names: a whole id as it is, or the one job ``who`` may see whose
    id starts with it (at least :data:`MIN_JOB_ID_PREFIX` hex digits, any case). None:
    :class:`JobNotFound` (no store access for a shape we never mint); several:
    :class:`AmbiguousJobId` listing them. Another tenant's jobs are not candidates: a short id
    tells nothing about jobs the caller cannot see."""
    if is_job_id(value):
        return value
    if not is_job_id_prefix(value):
        short = bool(value) and len(value) < MIN_JOB_ID_PREFIX
        hint = f" (a short id needs at least {MIN_JOB_ID_PREFIX} hex digits)" if short else ""
        echo = _echo(value)
        raise JobNotFound(f"no job with id {echo!r}{hint}", details={"job_id": echo})
    prefix = value.lower()
    ids = await svc.store.ids_with_prefix(prefix, limit=MAX_CANDIDATES * 4)

    async def read(job_id: str) -> Job | None:
        with contextlib.suppress(JobNotFound):  # expired since the index was read
            return await svc.store.get(job_id)
        return None

    jobs = await asyncio.gather(*map(read, ids))
    mine = [j for j in jobs if j is not None and who.sees(j.tenant)]
    if not mine:
        raise JobNotFound(
            f"no job with id {prefix!r} or starting with it", details={"job_id": prefix}
        )
    if len(mine) > 1:
        raise AmbiguousJobId(
            f"{len(mine)}{'+' if len(mine) > MAX_CANDIDATES else ''} jobs start with {prefix!r}: "
            "give more of the id",
            details={
                "job_id": prefix,
                "candidates": [
                    {"id": j.id, "capability": j.capability, "status": j.status.value,
                     "created_at": j.created_at}
                    for j in mine[:MAX_CANDIDATES]
                ],
            },
        )  # fmt: skip
    return mine[0].id


async def cancel(svc: Services, who: Principal, job_id: str, *, wait: float = 10.0) -> Job:
    """Cancel a queued or running job ``who`` may see, and every descendant of it that has
    not ended; the job once it ended (or, after ``wait`` seconds, as it is: still stopping)."""
    store = svc.store
    job = seen_by(who, await store.get(job_id))
    if job.status.terminal:
        raise JobFinished(
            f"job {job_id} already {job.status.value}",
            details={"job_id": job_id, "status": job.status.value},
        )
    await _stop(svc, job)
    await cancel_descendants(svc, job_id)
    return await store.wait_ended(job_id, wait)


MAX_TREE = 100_000
"""Most jobs one cancel walks (the limits make a deeper or wider tree impossible)."""


async def cancel_descendants(svc: Services, job_id: str) -> int:
    """Cancel every job under ``job_id`` that has not ended (breadth first; a child that
    ended may still have running children of its own). Returns how many were cancelled."""
    store = svc.store
    level, seen, stopped = [job_id], 0, 0
    while level and seen < MAX_TREE:
        kids = [k for ids in await asyncio.gather(*map(store.children, level)) for k in ids]
        seen += len(kids)

        async def stop(kid: str) -> bool:
            with contextlib.suppress(JobNotFound):  # expired
                child = await store.get(kid)
                if not child.status.terminal:
                    await _stop(svc, child)
                    return True
            return False

        stopped += sum(await asyncio.gather(*map(stop, kids)))
        level = kids
    return stopped


async def _stop(svc: Services, job: Job) -> None:
    """Ask ``job``'s holder to stop its call; a queued job ends cancelled here and now."""
    store = svc.store
    job_id = job.id
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
