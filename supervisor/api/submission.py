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
    now,
)
from shared.errors import AmbiguousJobId
from supervisor.api.auth import Principal
from supervisor.api.limits import MIN_JOB_ID_PREFIX, is_job_id, is_job_id_prefix, new_job_id
from supervisor.api.quotas import admitted
from supervisor.api.validation import check_capability
from supervisor.services import Services
from supervisor.store import AdmissionFull

__all__ = ["Submitted", "cancel", "resolve_job_id", "seen_by", "submit"]

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
) -> Submitted:
    """Validate ``body`` against the catalog, count it against ``who``'s limits and store it;
    with ``wait``, return once it ended or ``wait`` seconds passed."""
    target = await check_capability(svc, body)
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
        correlation_id=correlation_id,
        idempotency_key=body.idempotency_key,
        tenant=who.tenant,
        labels=body.labels,
        created_at=now(),
    )
    canonical = body.model_dump(mode="json", exclude={"idempotency_key"})
    fingerprint = hashlib.sha256(
        json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    # With a wait, the wait for the end is registered before the submit: no first read after.
    with svc.store.ending(job.id) if wait else contextlib.nullcontext() as ending:
        try:
            async with admitted(svc, who, job) as ticket:
                saved, created = await svc.store.submit(
                    job,
                    fingerprint=fingerprint,
                    queue_limit=settings.queue_limit,
                    tenant_share=settings.tenant_queue_share,
                )
                ticket.created = created
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
    """Cancel a queued or running job ``who`` may see; the job once it ended (or, after
    ``wait`` seconds, as it is: still stopping)."""
    store = svc.store
    job = seen_by(who, await store.get(job_id))
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
    return await store.wait_ended(job_id, wait)
