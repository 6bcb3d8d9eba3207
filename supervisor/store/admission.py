"""Per-tenant limits kept in the store, so every supervisor sharing it enforces the same
budget: submissions a second (a token bucket) and jobs in flight (queued or running).

One script (``scripts/admit.lua``, its twin in :mod:`supervisor.store.embedded`) takes a
submission's token and its place in flight together, atomically. A well-kept rate-limit
library (``limits``) was considered: it opens its own Redis connections and cannot run on the
in-process engine (``memory://``), and it has no in-flight count; one ~25-line script with
the store's own plumbing covers both backends.

The in-flight set holds the ids admitted; it is not told when a job ends (no write on the
dispatch path changes). When it is full, the ids of jobs that ended (or whose record never
appeared within :data:`STALE_S`) are pruned, and the admission is tried once more.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from shared import JobStatus
from supervisor.store.base import StoreBase
from supervisor.store.codec import text

__all__ = ["OverLimit"]

STALE_S = 60.0
"""An admitted id whose job record is still absent after this long was never submitted."""
_TERMINAL = {s.value for s in JobStatus if s.terminal}


class OverLimit(Exception):
    """A submission over one of its tenant's limits: ``limit`` is ``submit_rate`` or
    ``in_flight``; ``retry_after`` in whole seconds."""

    def __init__(self, limit: str, retry_after: int, count: int | None = None) -> None:
        super().__init__(limit)
        self.limit, self.retry_after, self.count = limit, retry_after, count


class Admission(StoreBase):
    clock: Callable[[], float] = time.time

    async def admit(
        self, who: str, job_id: str, *, rate_per_s: float, burst: int, max_inflight: int
    ) -> None:
        """Count ``job_id`` against ``who``'s limits (0: none), or raise :class:`OverLimit`."""
        burst = burst or max(1, int(rate_per_s + 0.999))
        for attempt in (1, 2):
            now_ms = int(self.clock() * 1000)
            args = [str(now_ms), repr(rate_per_s), str(burst), str(max_inflight), job_id]
            keys = [self.keys.rate(who), self.keys.inflight(who)]
            out = await self._script("ADMIT", keys, [*args, str(self.retention_s)])
            verdict, value = text(out[0]), text(out[1])
            if verdict == "ok":
                return
            if verdict == "rate":
                raise OverLimit("submit_rate", max(1, -(-int(value) // 1000)))
            if attempt == 1 and await self._prune(keys[1], now_ms):
                continue
            raise OverLimit("in_flight", 1, int(value))

    async def key_used(self, key: str, tenant: str | None) -> bool:
        """Whether the idempotency ``key`` (of ``tenant``) names a job already."""
        k = self.keys.shard(self.keys.keyed(key, tenant))
        return bool(await self._call("exists", k.idempotency(key, tenant)))

    async def count(self, who: str, job_id: str) -> None:
        """Count ``job_id`` in flight for ``who`` without asking (a redriven job: an admin put
        it back, and it is in flight again whatever the budget says)."""
        key = self.keys.inflight(who)
        await self._call("zadd", key, {job_id: int(self.clock() * 1000)})
        await self._call("expire", key, int(self.retention_s))

    async def release(self, who: str, job_id: str) -> None:
        """Give back ``job_id``'s place in flight (it was not created: a replay, a refusal)."""
        await self._call("zrem", self.keys.inflight(who), job_id)

    async def _prune(self, key: str, now_ms: int) -> int:
        rows = await self._call("zrange", key, 0, -1, withscores=True)
        ids = [(text(member), float(score)) for member, score in rows]

        def fill(pipe: Any) -> None:
            for job_id, _ in ids:
                pipe.hget(self.keys.of(job_id).job(job_id), "status")

        statuses = await self._run_pipeline(fill) if ids else []
        gone = [
            job_id
            for (job_id, score), status in zip(ids, statuses, strict=True)
            if (status is not None and text(status) in _TERMINAL)
            or (status is None and now_ms - score > STALE_S * 1000)
        ]
        if gone:
            await self._call("zrem", key, *gone)
        return len(gone)
