"""Job records: submit (with idempotency and admission), read, transition, take the lease."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Iterable
from typing import Any

from shared import IdempotencyConflict, Job, JobStatus, now
from shared.errors import DelegationLimit
from shared.keys import shard_of
from supervisor.fastjson import dumps
from supervisor.store.base import StoreBase
from supervisor.store.codec import encode_fields, entry_id_of, job_and_flags, job_fields, text
from supervisor.store.errors import AdmissionFull, check_fence
from supervisor.store.usage import usage_args

ESTIMATE_S = 0.5
"""How long a sharded store's admission uses its last read of the queue counts (see
:meth:`JobRecords._over_limit`)."""


class JobRecords(StoreBase):
    """The job hash: created by :meth:`submit`, advanced by :meth:`transition`."""

    async def submit(
        self,
        job: Job,
        *,
        fingerprint: str,
        queue_limit: int,
        tenant_share: float = 1.0,
        max_children: int = 1000,
    ) -> tuple[Job, bool]:
        """Persist and enqueue ``job``. Returns ``(job, created)``. On a sharded store a job
        whose id was not made by :meth:`place` gets its place here: its ``id`` changes.

        With an idempotency key already used: the same fingerprint returns the first job
        (``created`` False); another raises :class:`IdempotencyConflict`. A full capability
        queue returns the count through :class:`AdmissionFull`, and so does a tenant's job when
        the tenant holds ``tenant_share`` of ``queue_limit`` already (fair admission: one
        tenant filling a queue does not lock the others out).
        """
        if self._sharded and len(job.id) == 32 and job.id[12] != "8":  # not placed yet: here
            job.id = self.place(
                job.id, parent_id=job.parent_id, idempotency_key=job.idempotency_key,
                tenant=job.tenant,
            )  # fmt: skip
        k = self.keys.of(job.id)
        key = job.idempotency_key
        idem = k.idempotency(key, job.tenant) if key else k.idempotency("-")
        tenant_limit = max(1, math.ceil(queue_limit * tenant_share))
        over: AdmissionFull | None = None
        if self._sharded:  # the limits count every shard: read them first
            over = await self._over_limit(job, queue_limit, tenant_limit)
            if over is not None:
                if not key:
                    raise over
                queue_limit = 0  # SUBMIT still hands back a replay; anything else is full
        # A new record leaves its empty fields out (absent reads as None; a transition writes
        # a field it clears): half the hash of a queued job, in Redis and in memory://.
        fields = {name: v for name, v in job_fields(job).items() if v is not None}
        fields["fingerprint"] = fingerprint
        event = json.dumps({"status": job.status.value})
        out = await self._script(
            "SUBMIT",
            [
                idem,
                k.job(job.id),
                k.jobs,
                k.queue,
                k.queued,
                k.events(job.id),
                k.by_status("queued"),
                k.ids,
                k.children(job.parent_id or "-"),
            ],
            job_id=job.id,
            args=[
                job.id,
                "1" if job.idempotency_key else "0",
                str(self.idempotency_ttl_s),
                str(queue_limit),
                job.capability,
                str(job.created_at),
                event,
                job.correlation_id,
                job.tenant or "",
                str(tenant_limit),
                job.parent_id or "",
                str(max_children),
                str(self.retention_s + 86_400),  # outlives the parent's record once it ends
                *encode_fields(fields),
            ],
        )
        verdict = text(out[0])
        if verdict == "ok":
            return job, True
        if over is not None and verdict in ("full", "share"):
            raise over
        if verdict == "full":
            raise AdmissionFull(int(text(out[1])))
        if verdict == "share":
            raise AdmissionFull(int(text(out[1])), tenant=job.tenant)
        if verdict == "children":
            raise DelegationLimit(
                f"job {job.parent_id} already has {text(out[1])} children "
                f"(FLEET_MAX_CHILDREN={max_children})",
                details={"limit": "children", "max": max_children, "parent_id": job.parent_id},
            )
        existing_id = text(out[1])
        existing = await self.get(existing_id)
        stored = await self._call("hget", self.keys.of(existing_id).job(existing_id), "fingerprint")
        if stored is None or json.loads(text(stored)) != fingerprint:
            raise IdempotencyConflict(
                "this Idempotency-Key was already used with a different request body",
                details={"idempotency_key": job.idempotency_key, "job_id": existing_id},
            )
        return existing, False

    def place(
        self, job_id: str, *, parent_id: str | None, idempotency_key: str | None, tenant: str | None
    ) -> str:
        """The id a new job takes, with its shard in it (unchanged with one shard): a child
        joins its parent's shard (its place in the parent's list of children is written with
        it), a keyed job the shard of its key (a replay finds the first job in one step), any
        other job a shard at random (its id's first digits)."""
        n = self.keys.shards
        if n == 1:
            return job_id
        if parent_id:
            shard = shard_of(parent_id)
        elif idempotency_key:
            shard = self.keys.keyed(idempotency_key, tenant)
        else:
            shard = int(job_id[:8], 16) % n
        return self.keys.place(job_id, shard)

    async def _over_limit(
        self, job: Job, queue_limit: int, tenant_limit: int
    ) -> AdmissionFull | None:
        """On a sharded store, the refusal the limits give ``job``, summed over every shard.

        The sum is read (one pipeline to every shard) at most every :data:`ESTIMATE_S` per
        capability and tenant, and counts this process's submissions since: below the limits
        the job goes in on that estimate; at them, a fresh read decides, so a refusal is
        always made on the store's own counts. So a queue can pass its limit by what other
        replicas submitted within that time, or by as many submissions as arrive at once."""
        share = f"{job.capability}@{job.tenant}" if job.tenant else None
        if self._under_estimate(job.capability, share, queue_limit, tenant_limit):
            return None
        if len(self._estimate_reads) > 4096:  # capabilities x tenants: bounded all the same
            self._estimate_reads.clear()
        async with self._estimate_reads.setdefault((job.capability, share), asyncio.Lock()):
            # one read at a time per queue: who waited for it goes in on its answer
            if self._under_estimate(job.capability, share, queue_limit, tenant_limit):
                return None
            return await self._read_limits(job, share, queue_limit, tenant_limit)

    def _under_estimate(
        self, capability: str, share: str | None, queue_limit: int, tenant_limit: int
    ) -> bool:
        """Whether the last reading of the counts, with this process's submits since, is fresh
        and below both limits (then this submit is counted in it)."""
        estimate = self._estimates.get((capability, share))
        if estimate is None or time.monotonic() - estimate[0] >= ESTIMATE_S:
            return False
        if estimate[1] >= queue_limit or (share is not None and estimate[2] >= tenant_limit):
            return False
        estimate[1] += 1
        estimate[2] += 1
        return True

    async def _read_limits(
        self, job: Job, share: str | None, queue_limit: int, tenant_limit: int
    ) -> AdmissionFull | None:
        clock = time.monotonic()

        def fill(pipe: Any) -> None:
            for k in self.keys.every_shard():
                pipe.hget(k.queued, job.capability)
                if share:
                    pipe.hget(k.queued, share)

        values = [int(text(v)) if v is not None else 0 for v in await self._run_pipeline(fill)]
        step = 2 if share else 1
        depth = sum(values[::step])
        mine = sum(values[1::2]) if share else 0
        if len(self._estimates) > 4096:  # capabilities x tenants: bounded all the same
            self._estimates.clear()
        self._estimates[(job.capability, share)] = [clock, depth + 1, mine + 1]
        if depth >= queue_limit:
            return AdmissionFull(depth)
        if share and mine >= tenant_limit:
            return AdmissionFull(mine, tenant=job.tenant)
        return None

    async def get(self, job_id: str) -> Job:
        return (await self.get_with_flags(job_id))[0]

    async def children(self, job_id: str) -> list[str]:
        """The ids of the job's children, in submit order."""
        key = self.keys.of(job_id).children(job_id)
        return [text(v) for v in await self._call("lrange", key, 0, -1)]

    async def get_with_children(self, job_id: str) -> Job:
        """The job with its ``children`` (None: it has none), in one round trip: what
        ``GET /v1/jobs/{id}`` answers."""
        k = self.keys.of(job_id)

        def fill(pipe: Any) -> None:
            pipe.hgetall(k.job(job_id))
            pipe.lrange(k.children(job_id), 0, -1)

        raw, kids = await self._run_pipeline(fill)
        job = job_and_flags(job_id, raw)[0]
        job.children = [text(v) for v in kids] or None
        return job

    async def get_with_flags(self, job_id: str) -> tuple[Job, dict[str, str]]:
        """The job and its internal fields (``cancel``, ``fence``, ``run_start``) in one read."""
        key = self.keys.of(job_id).job(job_id)
        return job_and_flags(job_id, await self._call("hgetall", key))

    async def flag(self, job_id: str, name: str) -> str | None:
        """An internal field of the job hash (``cancel``), or None."""
        value = await self._call("hget", self.keys.of(job_id).job(job_id), name)
        return None if value is None or not text(value) else text(value)

    async def transition(
        self,
        job_id: str,
        *,
        allowed: Iterable[JobStatus] = (),
        event: str | None = None,
        data: dict[str, Any] | None = None,
        finish: bool = False,
        done: Job | None = None,
        persist: bool = False,
        fence: int | None = None,
        dead_letter: bool = False,
        ack: str | None = None,
        ledger: Job | None = None,
        **fields: Any,
    ) -> int | None:
        """Set ``fields`` if the job's status is in ``allowed`` (any when empty), append an
        event, and on ``finish`` give the record and its log their retention TTL. ``ack``: a
        dispatch entry to acknowledge in the same step, once the write is made; ``usage``: the
        ended job whose ``usage`` the ledger adds up, in the same step (none when refused).

        Returns the event's sequence number (0 when no event), None when refused by status.
        Raises :class:`Fenced` when ``fence`` is not the job's current lease token.
        """
        k = self.keys.of(job_id)
        payload = dumps(data or {})
        keys = [k.job(job_id), k.events(job_id), k.queued, k.dead, k.queue, *k.status_indexes()]
        figures = ""
        if ledger is not None and ledger.usage is not None:
            day, figures = usage_args(k, ledger)
            keys.append(day)
        out = await self._script(
            "TRANSITION",
            keys,
            job_id=job_id,
            ends=finish,
            ended=done if finish else None,
            args=[
                ",".join(s.value for s in allowed),
                event or "",
                payload,
                str(now()),
                str(-1 if persist else self.retention_s if finish else 0),
                done.model_dump_json() if done is not None else "",
                "" if fence is None else str(fence),
                "1" if dead_letter else "",
                entry_id_of(ack) if ack else "",
                figures,
                *encode_fields(fields),
            ],
        )
        result = check_fence(int(out), job_id)
        return None if result < 0 else result

    async def acquire(
        self, job_id: str, *, entry: str | None = None, reclaimed: bool = False
    ) -> tuple[int, Job, dict[str, str]]:
        """Take the job's lease — a new fence token, greater than every earlier one — and
        read the job and its flags, in one round trip.

        ``entry`` is the dispatch entry the caller holds (``reclaimed``: it came by a reclaim).
        Raises :class:`Fenced` when a reclaim of that entry already took the lease: the fresh
        holder was paused past its lease before it got here, and another supervisor runs it.
        """
        key = self.keys.of(job_id).job(job_id)
        args = [entry_id_of(entry) if entry else "", "1" if reclaimed else ""]
        return _acquired(job_id, await self._script("ACQUIRE", [key], args))

    async def acquire_and_start(
        self, job_id: str, *, entry: str, worker: str, ts: float
    ) -> tuple[int, Job, dict[str, str], bool]:
        """:meth:`acquire` a fresh delivery and, if the job is still ``queued`` with no
        cancel asked, mark it ``running`` on ``worker`` in the same round trip, as
        ``transition(allowed=ACTIVE, event="status", status=RUNNING, attempts=+1, worker=...,
        started_at=ts if unset)`` would: the fence token, the job and its flags as they are
        after it, and whether it started (not: go on as after :meth:`acquire`)."""
        k = self.keys.of(job_id)
        keys = [k.job(job_id), k.events(job_id), k.queued, *k.status_indexes()]
        args = [entry_id_of(entry), "", dumps(worker), dumps(ts)]
        raw = await self._script("ACQUIRE", keys, args, job_id=job_id)
        if isinstance(raw, int):
            check_fence(raw, job_id)
        started = bool(raw) and int(raw[0]) == 1
        return (*_acquired(job_id, raw[2:] if raw else raw), started)


Acquired = tuple[int, Job, dict[str, str]]
"""A held job's fence token, the job and its flags (:meth:`JobRecords.acquire`)."""


def _acquired(job_id: str, raw: Any) -> Acquired:
    if isinstance(raw, int):
        check_fence(raw, job_id)
    job, flags = job_and_flags(job_id, raw)
    return int(flags["fence"]), job, flags
