"""The atomic scripts' Python twins, run on the in-process engine instead of its Lua.

burner-redis 0.1.7 runs the Lua files itself (``register_script``, EVALSHA), but at several
times the cost: it starts a fresh interpreter each call, against ~1 µs for a plain command.
Measured on the engine (Python 3.11, 2 cores; a timing script driving 2000 jobs through
submit, acquire, transition, 3 appends, a dead-lettering finish and a requeue; median µs a
call, twin vs Lua):

    SUBMIT 21 vs 148 (7x)    ACQUIRE 9 vs 95 (10x)    TRANSITION 14 vs 91 (6.5x)
    APPEND 7 vs 58 (8x)      REQUEUE 17 vs 115 (7x)

A plain job (submit, acquire, two transitions) would spend ~0.4 ms more in Lua, about half
the supervisor's whole ``memory://`` overhead (README, Speed), and every progress event
~50 µs more; so every twin stays. In one process every store call goes through one event
loop, so each twin runs under an asyncio.Lock with the same atomicity. The store contract
suite runs the twins and the Lua on the engine, and the Lua on Redis, and checks that all
three answer alike.
"""

import asyncio
import math
from typing import Any

from shared.keys import STATUS_ORDER
from supervisor.store.codec import USAGE_FIGURES, text


class EmbeddedScripts:
    """The twins, by script name; :meth:`run` holds the lock around one."""

    def __init__(self, client: Any) -> None:
        self.r = client
        self.lock = asyncio.Lock()

    async def run(self, name: str, keys: list[str], args: list[str]) -> Any:
        async with self.lock:
            return await getattr(self, name.lower())(keys, args)

    async def submit(self, keys: list[str], a: list[str]) -> Any:
        r = self.r
        idem, job, jobs, queue, queued, events, queued_index, ids, kids = keys
        if a[1] == "1":
            existing = await r.get(idem)
            if existing is not None:
                return ["exists", existing]
        if a[10]:
            count = await r.llen(kids)
            if count >= int(a[11]):
                return ["children", str(count)]
        depth = int(text(await r.hget(queued, a[4]) or b"0"))
        if depth >= int(a[3]):
            return ["full", str(depth)]
        share = f"{a[4]}@{a[8]}" if a[8] else None
        if share is not None:
            mine = int(text(await r.hget(queued, share) or b"0"))
            if mine >= int(a[9]):
                return ["share", str(mine)]
        if a[10]:
            await r.rpush(kids, a[0])
            await r.expire(kids, int(a[12]))
        if a[1] == "1":
            await r.set(idem, a[0], ex=int(a[2]))
        await r.hset(job, mapping=dict(zip(a[13::2], a[14::2], strict=True)))
        await r.zadd(jobs, {a[0]: float(a[5])})
        await r.zadd(queued_index, {a[0]: float(a[5])})
        await r.zadd(ids, {a[0]: 0.0})
        await r.hincrby(queued, a[4], 1)
        if share is not None:
            await r.hincrby(queued, share, 1)
            await r.hset(job, "qt", a[8])
        seq = await r.hincrby(job, "seq", 1)
        await r.xadd(events, {"t": "status", "d": a[6], "ts": a[5], "c": a[7]}, id=f"{seq}-1")
        await r.xadd(queue, {"job": a[0]})
        return ["ok", ""]

    async def _reindex(self, job: str, indexes: list[str], cur: str, new: str) -> None:
        """From ``cur``'s status index to ``new``'s (``indexes`` in ``STATUS_ORDER``)."""
        job_id = job.rsplit(":", 1)[-1]
        by_status = dict(zip(STATUS_ORDER, indexes, strict=True))
        if cur in by_status:
            await self.r.zrem(by_status[cur], job_id)
        if new in by_status:
            created = float(text(await self.r.hget(job, "created_at") or b"0"))
            await self.r.zadd(by_status[new], {job_id: created})

    async def _count_queued(self, job: str, queued: str, step: int) -> None:
        """The capability's queued count, and its tenant's (``qt``) when it has one."""
        cap = text(await self.r.hget(job, "capability"))
        await self.r.hincrby(queued, cap, step)
        tenant = await self.r.hget(job, "qt")
        if tenant is not None:
            await self.r.hincrby(queued, f"{cap}@{text(tenant)}", step)

    async def _fenced(self, job: str, fence: str) -> bool:
        return bool(fence) and text(await self.r.hget(job, "fence") or b"") != fence

    async def acquire(self, keys: list[str], a: list[str]) -> Any:
        if not await self.r.exists(keys[0]):
            return {}
        entry, reclaimed = a[:2]
        if entry:
            if reclaimed == "1":
                await self.r.hset(keys[0], "claimed", entry)
            elif text(await self.r.hget(keys[0], "claimed") or b"") == entry:
                return -2
        await self.r.hincrby(keys[0], "fence", 1)
        if len(keys) == 1:
            return await self.r.hgetall(keys[0])
        return await self._start(keys, a)

    async def _start(self, keys: list[str], a: list[str]) -> Any:
        """ACQUIRE's START (see acquire.lua): the record's fields as a flat list after
        ``started, seq``, as the Lua answers."""
        r = self.r
        job, events, queued = keys[:3]
        _, reclaimed, worker, ts = a
        started = seq = 0
        cancel = text(await r.hget(job, "cancel") or b"")
        status = text(await r.hget(job, "status") or b"")
        if reclaimed != "1" and status == "queued" and not cancel:
            attempts = int(text(await r.hget(job, "attempts") or b"0")) + 1
            since = await r.hget(job, "started_at")
            fields = {"status": "running", "attempts": str(attempts), "worker": worker}
            if since is None or text(since) == "null":
                fields["started_at"] = ts
            await r.hset(job, mapping=fields)
            await self._reindex(job, keys[3:8], "queued", "running")
            await self._count_queued(job, queued, -1)
            corr = text(await r.hget(job, "correlation_id") or b"")
            data = f'{{"status":"running","attempt":{attempts},"worker":{worker}}}'
            seq = await r.hincrby(job, "seq", 1)
            await r.xadd(events, {"t": "status", "d": data, "ts": ts, "c": corr}, id=f"{seq}-1")
            started = 1
        out: list[Any] = [started, seq]
        for name, value in (await r.hgetall(job)).items():
            out += [name, value]
        return out

    async def transition(self, keys: list[str], a: list[str]) -> Any:
        r = self.r
        job, events, queued, dead, queue = keys[:5]
        raw = await r.hget(job, "status")
        if raw is None:
            return -1
        if await self._fenced(job, a[6]):  # before the status, as in the Lua
            return -2
        cur = text(raw)
        if a[0] and cur not in a[0].split(","):
            return -1
        fields = dict(zip(a[10::2], a[11::2], strict=True))
        new = fields.get("status", cur)
        if fields:
            await r.hset(job, mapping=fields)
        if cur != new:
            await self._reindex(job, keys[5:10], cur, new)
        if cur != new and "queued" in (cur, new):
            await self._count_queued(job, queued, -1 if cur == "queued" else 1)
        corr = text(await r.hget(job, "correlation_id") or b"")
        seq = 0
        if a[1]:
            seq = await r.hincrby(job, "seq", 1)
            await r.xadd(events, {"t": a[1], "d": a[2], "ts": a[3], "c": corr}, id=f"{seq}-1")
        if a[5]:
            seq = await r.hincrby(job, "seq", 1)
            await r.xadd(events, {"t": "done", "d": a[5], "ts": a[3], "c": corr}, id=f"{seq}-1")
        if a[7] == "1":
            await r.zadd(dead, {job.rsplit(":", 1)[-1]: float(a[3])})
        if a[8]:
            await r.xack(queue, "dispatchers", a[8])
            await r.xdel(queue, a[8])
        if a[9]:
            ttl_s, *amounts, base = a[9].split(" ", 6)
            for figure, amount in zip(USAGE_FIGURES, amounts, strict=True):
                await r.hincrby(keys[10], base + figure, int(amount))
            await r.expire(keys[10], int(ttl_s))
        ttl = int(a[4])
        if ttl > 0:
            await r.expire(job, ttl)
            await r.expire(events, ttl)
        elif ttl < 0:  # no PERSIST in the engine; ten years is forever for a process
            await r.expire(job, 315360000)
            await r.expire(events, 315360000)
        return seq

    async def append(self, keys: list[str], a: list[str]) -> Any:
        r = self.r
        job, events = keys
        if text(await r.hget(job, "status") or b"") not in ("queued", "running"):
            return -1
        if await self._fenced(job, a[0]):
            return -2
        n = int(a[1])
        pairs = a[2 + 3 * n :]
        if pairs:
            await r.hset(job, mapping=dict(zip(pairs[::2], pairs[1::2], strict=True)))
        corr = text(await r.hget(job, "correlation_id") or b"")
        seq = 0
        for i in range(2, 2 + 3 * n, 3):
            seq = await r.hincrby(job, "seq", 1)
            fields = {"t": a[i], "d": a[i + 1], "ts": a[i + 2], "c": corr}
            await r.xadd(events, fields, id=f"{seq}-1")
        return seq

    async def admit(self, keys: list[str], a: list[str]) -> Any:
        r = self.r
        bucket, inflight = keys
        now, rate, limit = float(a[0]), float(a[1]), int(a[3])
        if limit > 0:
            n = await r.zcard(inflight)
            if n >= limit:
                return ["inflight", str(n)]
        if rate > 0:
            burst = float(a[2])
            tokens_raw, ts_raw = await r.hget(bucket, "tokens"), await r.hget(bucket, "ts")
            tokens = float(text(tokens_raw)) if tokens_raw is not None else burst
            ts = float(text(ts_raw)) if ts_raw is not None else now
            tokens = min(burst, tokens + max(0.0, now - ts) * rate / 1000)
            if tokens < 1:
                return ["rate", str(math.ceil((1 - tokens) * 1000 / rate))]
            await r.hset(bucket, mapping={"tokens": "%.14g" % (tokens - 1), "ts": a[0]})
            await r.expire(bucket, math.ceil(burst / rate) + 1)
        if limit > 0:
            await r.zadd(inflight, {a[4]: now})
            await r.expire(inflight, int(a[5]))
        return ["ok", ""]

    async def requeue(self, keys: list[str], a: list[str]) -> Any:
        r = self.r
        job, events, queued, queue, dead = keys[:5]
        raw = await r.hget(job, "status")
        if raw is None or text(raw) not in a[0].split(","):
            return -1
        cur = text(raw)
        if await self._fenced(job, a[1]):
            return -2
        fields = dict(zip(a[5::2], a[6::2], strict=True))
        await r.hset(job, mapping={**fields, "status": "queued"})
        if cur != "queued":
            await self._reindex(job, keys[5:], cur, "queued")
            await self._count_queued(job, queued, 1)
        await r.expire(job, 315360000)
        await r.expire(events, 315360000)
        corr = text(await r.hget(job, "correlation_id") or b"")
        seq = await r.hincrby(job, "seq", 1)
        await r.hset(job, "run_start", str(seq))
        await r.xadd(events, {"t": "status", "d": a[4], "ts": a[3], "c": corr}, id=f"{seq}-1")
        job_id = job.rsplit(":", 1)[-1]
        await r.xadd(queue, {"job": job_id})
        if a[2]:
            await r.xack(queue, "dispatchers", a[2])
            await r.xdel(queue, a[2])
        await r.zrem(dead, job_id)
        return seq
