"""The dispatch queue: a stream read by one consumer group, its deliveries held as leases."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterable
from typing import Any

from shared import DISPATCH_GROUP, JobStatus, StoreUnavailable, now
from supervisor.store.base import OUTAGE_ERRORS, StoreBase
from supervisor.store.codec import encode_fields, entry_id_of, shard_of_entry, text
from supervisor.store.errors import check_fence

MAX_BLOCK_MS = 2000
"""Longest single blocking read; callers loop for longer waits."""

QueueEntry = tuple[str, str]
"""(stream entry id, job id) of one dispatch-queue delivery."""


class DispatchQueue(StoreBase):
    """Take, reclaim, renew and acknowledge deliveries; read leases; requeue a job."""

    async def ensure_group(self) -> None:
        """The consumer group on each shard's queue."""
        for k in self.keys.every_shard():
            try:
                await self._r.xgroup_create(k.queue, DISPATCH_GROUP, id="0", mkstream=True)
            except Exception as exc:  # BUSYGROUP: it exists already
                if "BUSYGROUP" not in str(exc) and "already exists" not in str(exc):
                    if isinstance(exc, OUTAGE_ERRORS):
                        self.health.failed(exc)
                    raise StoreUnavailable(f"cannot create dispatch group: {exc}") from exc
        self._answered()

    async def take(self, count: int, block_ms: int) -> list[QueueEntry]:
        """Up to ``count`` new deliveries, waiting up to ``block_ms`` for the first."""
        if self.embedded:
            return await self._take_here(count, block_ms)
        if self._sharded:
            return await self._take_sharded(count, block_ms)
        reply = await self._call(
            "xreadgroup",
            DISPATCH_GROUP,
            self.consumer,
            {self.keys.queue: ">"},
            count=count,
            block=min(block_ms, MAX_BLOCK_MS),
        )
        return _entries(reply)

    async def _take_here(self, count: int, block_ms: int) -> list[QueueEntry]:
        """The engine's take: every write that queues a job is in this process, and says so."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(block_ms, MAX_BLOCK_MS) / 1000
        while True:
            self._queue_grew.clear()  # before the read: a write after it sets it again
            reply = await self._call(
                "xreadgroup", DISPATCH_GROUP, self.consumer, {self.keys.queue: ">"}, count=count
            )
            left = deadline - loop.time()
            if reply or left <= 0:
                return _entries(reply)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue_grew.wait(), left)

    async def _take_sharded(self, count: int, block_ms: int) -> list[QueueEntry]:
        """A sharded store's take. No blocking read spans shards (each is a slot of its own),
        so it reads the queues of the shards a job was queued in since it last looked — this
        process's writes and other replicas' ``changed`` messages say which — and every
        shard's at least every :data:`MAX_BLOCK_MS` (a lost message costs no more). As many
        queues in one pipeline as it wants deliveries, never more than ``count`` in all (a
        shard that gave its whole share is read again, after the others, for what they left),
        starting one shard further each time (none waits behind another). With nothing to
        take it waits for such a write, or ``block_ms``, whichever comes first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(block_ms, MAX_BLOCK_MS) / 1000
        shards = self.keys.every_shard()
        n = len(shards)
        while True:
            self._queue_grew.clear()  # before the read: a write after it sets it again
            look: Iterable[int] = self._dirty
            if loop.time() >= self._full_pass_at:
                self._full_pass_at = loop.time() + MAX_BLOCK_MS / 1000
                look = range(n)
            start = self._next_shard = (self._next_shard + 1) % n
            order = sorted((i for i in look if i < n), key=lambda i: (i - start) % n)
            pending = [(i, shards[i]) for i in order]
            got: list[QueueEntry] = []
            while pending and len(got) < count:
                want = count - len(got)
                batch, pending = pending[:want], pending[want:]
                shares = [want // len(batch) + (j < want % len(batch)) for j in range(len(batch))]
                self._dirty.difference_update(i for i, _ in batch)  # a write after re-adds

                def fill(pipe: Any, batch: list[Any] = batch, shares: list[int] = shares) -> None:
                    for (_, k), share in zip(batch, shares, strict=True):
                        pipe.xreadgroup(DISPATCH_GROUP, self.consumer, {k.queue: ">"}, count=share)

                try:
                    replies = await self._run_pipeline(fill)
                except StoreUnavailable:
                    self._full_pass_at = 0.0  # unread: look at every shard next time
                    raise
                for (i, k), share, reply in zip(batch, shares, replies, strict=True):
                    entries = _entries(reply)
                    got += [(f"{eid}@{i}" if i else eid, job) for eid, job in entries]
                    if len(entries) == share:  # it may hold more: read again after the others
                        pending.append((i, k))
                        self._dirty.add(i)
            left = deadline - loop.time()
            if got or left <= 0:
                return got
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue_grew.wait(), left)

    async def reclaim(self, min_idle_ms: int, count: int = 100) -> list[QueueEntry]:
        """Deliveries whose holder stopped renewing its lease, now ours (each shard's)."""
        out: list[QueueEntry] = []
        for i, k in enumerate(self.keys.every_shard()):
            if len(out) >= count:
                break
            reply = await self._call(
                "xautoclaim",
                k.queue,
                DISPATCH_GROUP,
                self.consumer,
                min_idle_time=min_idle_ms,
                start_id="0-0",
                count=count - len(out),
            )
            for eid, fields in reply[1] if reply else []:
                if not fields:
                    continue  # deleted entry
                f = {text(a): text(b) for a, b in fields.items()}
                out.append((f"{text(eid)}@{i}" if i else text(eid), f["job"]))
        return out

    async def renew(self, entry_ids: list[str]) -> None:
        """Reset the idle time of deliveries we still hold (our lease heartbeat)."""
        by_shard: dict[int, list[str]] = {}
        for entry in entry_ids:
            by_shard.setdefault(shard_of_entry(entry), []).append(entry_id_of(entry))
        for shard, ids in by_shard.items():
            queue = self.keys.shard(shard).queue
            await self._call("xclaim", queue, DISPATCH_GROUP, self.consumer, 0, ids, justid=True)

    async def ack(self, entry_id: str) -> None:
        """Done with a delivery: acknowledge it and drop it from the stream."""
        queue, eid = self.keys.shard(shard_of_entry(entry_id)).queue, entry_id_of(entry_id)
        await self._run_pipeline(
            lambda pipe: (pipe.xack(queue, DISPATCH_GROUP, eid), pipe.xdel(queue, eid))
        )

    async def leases(self, job_ids: list[str]) -> dict[str, tuple[int | None, bool]]:
        """Each job's current fence token (None when gone) and whether a cancel was asked:
        the lease loop's one read for every job it holds."""
        if not job_ids:
            return {}

        def fill(pipe: Any) -> None:
            for j in job_ids:  # two HGETs: the engine's pipeline has no HMGET
                key = self.keys.of(j).job(j)
                pipe.hget(key, "fence")
                pipe.hget(key, "cancel")

        values = await self._run_pipeline(fill)
        return {
            j: (None if fence is None else int(text(fence)), bool(cancel and text(cancel)))
            for j, fence, cancel in zip(job_ids, values[::2], values[1::2], strict=True)
        }

    async def requeue(
        self,
        job_id: str,
        *,
        allowed: Iterable[JobStatus],
        data: dict[str, Any],
        fence: int | None = None,
        entry_id: str | None = None,
        **fields: Any,
    ) -> int | None:
        """Put the job back in the queue in one atomic step (a redrive, or a retry after an
        unexpected error): status ``queued`` and its event, a new dispatch entry, the old one
        (``entry_id``) acknowledged, out of the dead letters, its TTL lifted. The new event
        starts the job's latest run. None when the status is not in ``allowed``."""
        k = self.keys.of(job_id)
        out = await self._script(
            "REQUEUE",
            [k.job(job_id), k.events(job_id), k.queued, k.queue, k.dead, *k.status_indexes()],
            job_id=job_id,
            args=[
                ",".join(s.value for s in allowed),
                "" if fence is None else str(fence),
                entry_id_of(entry_id) if entry_id else "",
                str(now()),
                json.dumps(data, separators=(",", ":"), default=str),
                *encode_fields(fields),
            ],
        )
        result = check_fence(int(out), job_id)
        return None if result < 0 else result


def _entries(reply: Any) -> list[QueueEntry]:
    if not reply:
        return []
    entries = reply[0][1] if isinstance(reply, list) else next(iter(reply.values()))[0]
    return [(text(eid), text(f[b"job"] if b"job" in f else f["job"])) for eid, f in entries]
