"""Indexes over the job records: listing, dead letters, queue depths, worker registrations."""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

from redis.exceptions import RedisError

from shared import Job, JobNotFound, JobStatus, Keys, WorkerRegistration, now
from shared.keys import STATUS_ORDER
from supervisor.store.codec import decode_job, text
from supervisor.store.jobs import JobRecords


class JobIndex(JobRecords):
    """Reads across many records (built on :class:`JobRecords`: it reads each job)."""

    async def list_jobs(
        self,
        *,
        status: JobStatus | None = None,
        capability: str | None = None,
        before: float | None = None,
        limit: int = 50,
        tenant: str | None = None,
    ) -> tuple[list[Job], float | None]:
        """Newest first. ``before`` is the cursor: a creation time (exclusive). ``tenant``:
        only that tenant's jobs (None: every job).

        With ``status``, the ids come from that status's index (kept by the scripts that
        change a status): a page of running jobs reads running jobs, however many others are
        retained. Each page of records is read in one round trip."""
        jobs: list[Job] = []
        top = f"({before}" if before is not None else "+inf"
        cursor = before

        def index(k: Keys) -> str:
            return k.by_status(status.value) if status else k.jobs

        while len(jobs) < limit:
            # each shard gives its newest n: 200 over-reads for filters on one index, but on
            # many the merge already reads n of each (64 x 200 ids: 60 ms a page, measured)
            n = max(limit, 50) if status or self._sharded else 200
            page = await self._ids_before_all(index, top, n)
            if not page:
                return jobs, None

            def read(pipe: Any, page: list[tuple[str, float]] = page) -> object:
                return [pipe.hgetall(self.keys.of(job_id).job(job_id)) for job_id, _ in page]

            records = await self._run_pipeline(read)
            stale = []
            for (job_id, score), raw in zip(page, records, strict=True):
                cursor = score
                top = f"({score}"
                if not raw:
                    stale.append(job_id)
                    continue
                job = decode_job(raw)
                if (
                    (status and job.status != status)
                    or (capability and job.capability != capability)
                    or (tenant and job.tenant != tenant)
                ):
                    continue
                jobs.append(job)
                if len(jobs) == limit:
                    break
            for k, gone in self._by_shard(stale).items():
                await self._call("zrem", index(k), *gone)
                if not status:
                    await self._call("zrem", k.ids, *gone)
        return jobs, cursor

    def _by_shard(self, job_ids: list[str]) -> dict[Keys, list[str]]:
        """``job_ids`` grouped by the keys of their shard."""
        out: dict[Keys, list[str]] = {}
        for job_id in job_ids:
            out.setdefault(self.keys.of(job_id), []).append(job_id)
        return out

    async def _ids_before_all(
        self, index: Callable[[Keys], str], top: str, n: int
    ) -> list[tuple[str, float]]:
        """The ``n`` newest ids below ``top`` in ``index`` of every shard, newest first: each
        shard's ``n`` in one pipeline, merged."""
        shards = self.keys.every_shard()
        if len(shards) == 1:
            return await self._ids_before(index(shards[0]), top, n)

        def fill(pipe: Any) -> None:
            for k in shards:
                pipe.zrevrangebyscore(index(k), top, "-inf", start=0, num=n, withscores=True)

        rows = [(text(m), float(score)) for each in await self._run_pipeline(fill)
                for m, score in each]  # fmt: skip
        return heapq.nlargest(n, rows, key=lambda row: row[1])

    async def ids_with_prefix(self, prefix: str, limit: int = 10) -> list[str]:
        """Up to ``limit`` retained job ids starting with ``prefix``, in id order: a short id's
        lookup, O(log n + limit) on Redis (``ids`` is ordered by the id itself). Ids whose record
        has expired are dropped from the index on the way."""
        if self.embedded:  # burner-redis has no ZRANGEBYLEX: filter the in-process index
            every = await self._call("zrange", self.keys.ids, 0, -1)
            found = [i for i in map(text, every) if i.startswith(prefix)][: limit + 1]
        else:  # ids are hex, all below "g": [prefix, prefix + "g") is every id it starts

            def fill(pipe: Any) -> None:
                for k in self.keys.every_shard():
                    pipe.zrangebylex(k.ids, f"[{prefix}", f"({prefix}g", start=0, num=limit + 1)

            found = sorted(text(i) for rows in await self._run_pipeline(fill) for i in rows)
            found = found[: limit + 1]
        if not found:
            return []

        def exists(pipe: Any) -> object:
            return [pipe.exists(self.keys.of(j).job(j)) for j in found]

        alive = await self._run_pipeline(exists)
        gone = [i for i, a in zip(found, alive, strict=True) if not a]
        for k, ids in self._by_shard(gone).items():
            await self._call("zrem", k.ids, *ids)
        return [i for i, a in zip(found, alive, strict=True) if a][:limit]

    async def _ids_before(self, key: str, top: str, n: int) -> list[tuple[str, float]]:
        if hasattr(self._r, "zrevrangebyscore"):
            rows = await self._call(
                "zrevrangebyscore", key, top, "-inf", start=0, num=n, withscores=True
            )
        else:  # burner-redis has no reverse or exclusive range: filter the ascending one
            limit = float(top[1:]) if top.startswith("(") else float("inf")
            rows = await self._call("zrangebyscore", key, "-inf", "+inf", withscores=True)
            rows = [row for row in reversed(rows) if float(row[1]) < limit][:n]
        return [(text(member), float(score)) for member, score in rows]

    async def queue_depths(self) -> dict[str, int]:
        """Jobs queued per capability (summed over the shards)."""

        def fill(pipe: Any) -> None:
            for k in self.keys.every_shard():
                pipe.hgetall(k.queued)

        depths: dict[str, int] = {}
        for raw in await self._run_pipeline(fill):
            for field, value in (raw or {}).items():
                name = text(field)
                if "@" not in name:  # capability@tenant: a tenant's share (SUBMIT)
                    depths[name] = depths.get(name, 0) + max(0, int(text(value)))
        return depths

    async def status_counts(self) -> dict[str, int]:
        """Retained jobs per status, from the status indexes (one round trip, O(1) each).

        Read twice, they give rates: the difference is what changed status in between,
        less the ids the janitor trimmed (expired records) meanwhile."""

        shards = self.keys.every_shard()

        def count(pipe: Any) -> object:
            return [pipe.zcard(key) for k in shards for key in k.status_indexes()]

        counts = await self._run_pipeline(count)
        width = len(STATUS_ORDER)
        return {s: sum(int(n or 0) for n in counts[i::width]) for i, s in enumerate(STATUS_ORDER)}

    async def running_by_capability(self) -> dict[str, int]:
        """Jobs running now per capability, fleet-wide: the running index and one field of
        each of its records, in one round trip (O(jobs running), not O(jobs retained))."""

        def running(pipe: Any) -> object:
            return [pipe.zrange(k.by_status("running"), 0, -1) for k in self.keys.every_shard()]

        ids = [text(i) for each in await self._run_pipeline(running) for i in each]
        if not ids:
            return {}

        def capabilities(pipe: Any) -> object:
            return [pipe.hget(self.keys.of(j).job(j), "capability") for j in ids]

        counts: dict[str, int] = {}
        for cap in await self._run_pipeline(capabilities):
            if cap is not None:
                counts[text(cap)] = counts.get(text(cap), 0) + 1
        return counts

    async def dead_letter(self, job_id: str) -> None:
        await self._call("zadd", self.keys.of(job_id).dead, {job_id: now()})

    async def dead_letters(self, limit: int = 100) -> list[Job]:
        rows = await self._ids_before_all(lambda k: k.dead, "+inf", limit)
        jobs, stale = [], []
        for job_id, _ in rows:
            try:
                jobs.append(await self.get(job_id))
            except JobNotFound:
                stale.append(job_id)
        for k, gone in self._by_shard(stale).items():
            await self._call("zrem", k.dead, *gone)
        return jobs

    async def is_dead_letter(self, job_id: str) -> bool:
        return await self._call("zscore", self.keys.of(job_id).dead, job_id) is not None

    async def registrations(self) -> list[WorkerRegistration]:
        out = []
        try:
            keys = [k async for k in self._r.scan_iter(match=self.keys.worker_pattern, count=1000)]
        except (RedisError, OSError) as exc:
            raise self._failed(exc) from exc
        for key in keys:
            raw = await self._call("get", text(key))
            if raw is None:
                continue
            try:
                out.append(WorkerRegistration.model_validate_json(text(raw)))
            except ValueError:
                continue
        return out
