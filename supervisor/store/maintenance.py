"""Keeping the store bounded: the janitor trims expired index entries and departed consumers."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from redis.exceptions import RedisError

from shared import DISPATCH_GROUP, Keys, StoreUnavailable, now
from supervisor.store.base import StoreBase
from supervisor.store.codec import text


class Maintenance(StoreBase):
    """:meth:`trim` once, or :meth:`janitor` as a supervised loop."""

    async def trim(self, *, batch: int = 1000, consumer_idle_s: float = 3600.0) -> dict[str, int]:
        """One janitor pass: drop index entries (``jobs``, ``dead``) older than the retention
        whose record has expired, and dispatch consumers idle for ``consumer_idle_s`` with
        nothing pending (supervisors that are gone). At most ``batch`` ids per index."""
        removed = {"jobs": 0, "dead": 0, "by_status": 0, "consumers": 0}
        for k in self.keys.every_shard():
            await self._trim_shard(k, removed, batch, consumer_idle_s)
        return removed

    async def _trim_shard(
        self, k: Keys, removed: dict[str, int], batch: int, consumer_idle_s: float
    ) -> None:
        cutoff = now() - self.retention_s
        indexes = [("jobs", k.jobs), ("dead", k.dead)]
        indexes += [("by_status", key) for key in k.status_indexes()]
        for name, key in indexes:
            if self.embedded:  # burner-redis takes no LIMIT: slice the (in-process) range
                old = (await self._call("zrangebyscore", key, "-inf", cutoff))[:batch]
            else:
                old = await self._call("zrangebyscore", key, "-inf", cutoff, start=0, num=batch)
            ids = [text(i) for i in old]
            if not ids:
                continue

            def exists(pipe: Any, ids: list[str] = ids) -> object:
                return [pipe.exists(k.job(j)) for j in ids]  # a shard's index: its jobs

            alive = await self._run_pipeline(exists)
            gone = [i for i, a in zip(ids, alive, strict=True) if not a]
            if gone:
                removed[name] += int(await self._call("zrem", key, *gone))
                if key == k.jobs:  # every retained id is in both
                    await self._call("zrem", k.ids, *gone)
        consumers: list[dict[str, Any]] = []
        if not self.embedded:  # the engine lives and dies with its one process and consumer
            with contextlib.suppress(RedisError, OSError):  # no group yet: nothing to trim
                consumers = await self._r.xinfo_consumers(k.queue, DISPATCH_GROUP)
        for c in consumers:
            name = text(c.get("name", b""))
            idle = int(c.get("idle", 0)) >= consumer_idle_s * 1000
            if name != self.consumer and not int(c.get("pending", 0)) and idle:
                await self._call("xgroup_delconsumer", k.queue, DISPATCH_GROUP, name)
                removed["consumers"] += 1

    async def index_by_status(self, batch: int = 1000) -> int:
        """Put every retained job in its status index, once per store (a store written before
        the status indexes existed); returns the jobs indexed. Marked done in the store (each
        shard), so only the first supervisor after an upgrade does it; the scripts keep them
        after."""
        done = 0
        for k in self.keys.every_shard():
            done += await self._index_shard_by_status(k, batch)
        return done

    async def _index_shard_by_status(self, k: Keys, batch: int) -> int:
        marker = f"{k.jobs}:by_status_built"
        if await self._call("exists", marker):
            return 0
        ids = [text(i) for i in await self._call("zrange", k.jobs, 0, -1)]
        done = 0
        for start in range(0, len(ids), batch):
            chunk = ids[start : start + batch]

            def read(pipe: Any, chunk: list[str] = chunk) -> object:
                for j in chunk:  # (burner-redis pipelines have no HMGET)
                    pipe.hget(k.job(j), "status")
                    pipe.hget(k.job(j), "created_at")
                return None

            flat = await self._run_pipeline(read)
            rows = list(zip(flat[::2], flat[1::2], strict=True))

            def index(pipe: Any, chunk: list[str] = chunk, rows: list[Any] = rows) -> object:
                for job_id, (status, created) in zip(chunk, rows, strict=True):
                    if status is not None and created is not None:
                        pipe.zadd(k.by_status(text(status)), {job_id: float(text(created))})
                return None

            await self._run_pipeline(index)
            done += sum(1 for status, _ in rows if status is not None)
        await self._call("set", marker, "1")
        return done

    async def index_ids(self, batch: int = 1000) -> int:
        """Put every retained job id in the ``ids`` index (short ids), once per store (each
        shard) written before it existed; returns the ids added. SUBMIT keeps it after."""
        added = 0
        for k in self.keys.every_shard():
            marker = f"{k.ids}:built"
            if await self._call("exists", marker):
                continue
            ids = [text(i) for i in await self._call("zrange", k.jobs, 0, -1)]
            for start in range(0, len(ids), batch):
                await self._call("zadd", k.ids, dict.fromkeys(ids[start : start + batch], 0))
            await self._call("set", marker, "1")
            added += len(ids)
        return added

    async def janitor(self, interval_s: float = 60.0) -> None:
        """Run :meth:`trim` forever (a supervised loop); a store outage only skips a pass.
        The first pass builds the status and id indexes of a store written before them."""
        with contextlib.suppress(StoreUnavailable):
            await self.index_by_status()
            await self.index_ids()
        while True:
            try:
                removed = await self.trim()
                if any(removed.values()):
                    from shared import get_logger

                    get_logger("fleet.store").info("store.trimmed", **removed)
            except StoreUnavailable:
                pass
            await asyncio.sleep(interval_s)
