"""The durable job store: job records, the dispatch queue, event logs, idempotency, dead letters.

One implementation speaks the Redis protocol to either a real Redis (``redis://``) or the
in-process ``burner-redis`` engine (``memory://``), so both backends share every line of logic
and one contract suite tests them. Every multi-key change is one Lua script, hence atomic on
both. Key names come from :class:`shared.keys.Keys`; the layout is documented there.

    async with open_store("memory://") as store:
        job, created = await store.submit(job, fingerprint="...", queue_limit=100)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
from pydantic import BaseModel
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

from shared import (
    DISPATCH_GROUP,
    Event,
    IdempotencyConflict,
    Job,
    JobNotFound,
    JobStatus,
    Keys,
    StoreUnavailable,
    WorkerRegistration,
    now,
)
from supervisor._scripts import (
    ACQUIRE,
    APPEND,
    REQUEUE,
    SUBMIT,
    TRANSITION,
    EmbeddedScripts,
)

__all__ = ["AdmissionFull", "Fenced", "QueueEntry", "Store", "open_store"]

# Fields stored raw rather than JSON-encoded, because the Lua scripts read them.
_RAW = {"status", "capability", "correlation_id", "cancel"}
# Internal fields of the job hash handed out beside the job (not part of the Job model).
_FLAGS = {"cancel", "fence"}
_JOB_FIELDS = tuple(Job.model_fields)

MAX_BLOCK_MS = 2000
"""Longest single blocking read; callers loop for longer waits."""

QueueEntry = tuple[str, str]
"""(stream entry id, job id) of one dispatch-queue delivery."""


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _json_default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return str(value)


def _encode_fields(fields: dict[str, Any]) -> list[str]:
    flat: list[str] = []
    for name, value in fields.items():
        flat.append(name)
        if name in _RAW:
            flat.append(str(value))
        else:
            flat.append(json.dumps(value, separators=(",", ":"), default=_json_default))
    return flat


def _job_fields(job: Job) -> dict[str, Any]:
    return job.model_dump(mode="json")


class Store:
    """Job store over a Redis-protocol client. Use :func:`open_store` to get one."""

    def __init__(self, client: Any, keys: Keys, *, retention_s: int, idempotency_ttl_s: int):
        self._r = client
        self.keys = keys
        self.retention_s = retention_s
        self.idempotency_ttl_s = idempotency_ttl_s
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.embedded = not isinstance(client, aioredis.Redis)
        self._signals = _Signals()
        self._embedded_scripts = EmbeddedScripts(client) if self.embedded else None
        self._scripts: dict[str, Any] = (
            {}
            if self.embedded
            else {
                "SUBMIT": client.register_script(SUBMIT),
                "TRANSITION": client.register_script(TRANSITION),
                "APPEND": client.register_script(APPEND),
                "ACQUIRE": client.register_script(ACQUIRE),
                "REQUEUE": client.register_script(REQUEUE),
            }
        )

    @property
    def client(self) -> Any:
        return self._r

    def _pipeline(self) -> Any:
        """A pipeline of plain commands (no MULTI on Redis; the engine has no such option)."""
        return self._r.pipeline() if self.embedded else self._r.pipeline(transaction=False)

    async def _run_pipeline(self, fill: Callable[[Any], object]) -> list[Any]:
        """Queue commands with ``fill(pipe)`` and run them; the pipeline is always released
        (a failed one on Redis would otherwise keep its connection until collected)."""
        pipe = self._pipeline()
        fill(pipe)
        try:
            return list(await pipe.execute())
        finally:
            reset = getattr(pipe, "reset", None)
            if reset is not None:
                await reset()

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return await getattr(self._r, method)(*args, **kwargs)
        except RedisError as exc:
            raise StoreUnavailable(f"store unavailable: {exc}") from exc
        except OSError as exc:
            raise StoreUnavailable(f"store unavailable: {exc}") from exc

    async def _script(
        self, name: str, keys: list[str], args: list[str], *, job_id: str | None = None
    ) -> Any:
        """Run one of the atomic scripts: EVALSHA on Redis, in Python on the engine; then
        wake whoever watches ``job_id`` (here directly, elsewhere through ``changed``)."""
        try:
            if self._embedded_scripts is not None:
                out = await self._embedded_scripts.run(name, keys, args)
            else:
                if job_id is None:
                    out = await self._scripts[name](keys=keys, args=args)
                else:  # script and wake-up in one round trip
                    async with self._r.pipeline(transaction=False) as pipe:
                        await self._scripts[name](keys=keys, args=args, client=pipe)
                        pipe.publish(self.keys.changed_channel, job_id)
                        out, _ = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"store unavailable: {exc}") from exc
        if job_id is not None:
            self._signals.notify(job_id)
        return out

    # -- bounds ----------------------------------------------------------------------------

    async def trim(self, *, batch: int = 1000, consumer_idle_s: float = 3600.0) -> dict[str, int]:
        """One janitor pass: drop index entries (``jobs``, ``dead``) older than the retention
        whose record has expired, and dispatch consumers idle for ``consumer_idle_s`` with
        nothing pending (supervisors that are gone). At most ``batch`` ids per index."""
        cutoff = now() - self.retention_s
        removed = {"jobs": 0, "dead": 0, "consumers": 0}
        for name, key in (("jobs", self.keys.jobs), ("dead", self.keys.dead)):
            if self.embedded:  # burner-redis takes no LIMIT: slice the (in-process) range
                old = (await self._call("zrangebyscore", key, "-inf", cutoff))[:batch]
            else:
                old = await self._call("zrangebyscore", key, "-inf", cutoff, start=0, num=batch)
            ids = [_s(i) for i in old]
            if not ids:
                continue

            def exists(pipe: Any, ids: list[str] = ids) -> object:
                return [pipe.exists(self.keys.job(j)) for j in ids]

            try:
                alive = await self._run_pipeline(exists)
            except (RedisError, OSError) as exc:
                raise StoreUnavailable(f"store unavailable: {exc}") from exc
            gone = [i for i, a in zip(ids, alive, strict=True) if not a]
            if gone:
                removed[name] = int(await self._call("zrem", key, *gone))
        consumers: list[dict[str, Any]] = []
        if not self.embedded:  # the engine lives and dies with its one process and consumer
            with contextlib.suppress(RedisError, OSError):  # no group yet: nothing to trim
                consumers = await self._r.xinfo_consumers(self.keys.queue, DISPATCH_GROUP)
        for c in consumers:
            name = _s(c.get("name", b""))
            idle = int(c.get("idle", 0)) >= consumer_idle_s * 1000
            if name != self.consumer and not int(c.get("pending", 0)) and idle:
                await self._call("xgroup_delconsumer", self.keys.queue, DISPATCH_GROUP, name)
                removed["consumers"] += 1
        return removed

    async def janitor(self, interval_s: float = 60.0) -> None:
        """Run :meth:`trim` forever (a supervised loop); a store outage only skips a pass."""
        while True:
            try:
                removed = await self.trim()
                if any(removed.values()):
                    from shared import get_logger

                    get_logger("fleet.store").info("store.trimmed", **removed)
            except StoreUnavailable:
                pass
            await asyncio.sleep(interval_s)

    async def listen_changes(self) -> None:
        """Relay other replicas' ``changed`` messages to local watchers (Redis only)."""
        if self.embedded:
            return
        while True:
            pubsub = self._r.pubsub()
            try:
                await pubsub.subscribe(self.keys.changed_channel)
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message and message.get("type") == "message":
                        self._signals.notify(_s(message["data"]))
            except (RedisError, OSError) as exc:
                from shared import get_logger

                get_logger("fleet.store").warning("store.changes_listener_failed", error=str(exc))
                self._signals.notify_all()  # let watchers re-read rather than sleep blind
                await asyncio.sleep(1.0)
            finally:
                await pubsub.aclose()

    async def ping(self) -> bool:
        try:
            await self._call("exists", self.keys.queue)
            return True
        except StoreUnavailable:
            return False

    async def ensure_group(self) -> None:
        try:
            await self._r.xgroup_create(self.keys.queue, DISPATCH_GROUP, id="0", mkstream=True)
        except Exception as exc:  # BUSYGROUP: it exists already
            if "BUSYGROUP" not in str(exc) and "already exists" not in str(exc):
                raise StoreUnavailable(f"cannot create dispatch group: {exc}") from exc

    # -- jobs ---------------------------------------------------------------------------

    async def submit(self, job: Job, *, fingerprint: str, queue_limit: int) -> tuple[Job, bool]:
        """Persist and enqueue ``job``. Returns ``(job, created)``.

        With an idempotency key already used: the same fingerprint returns the first job
        (``created`` False); another raises :class:`IdempotencyConflict`. A full capability
        queue returns the count through :class:`AdmissionFull`.
        """
        k = self.keys
        idem = k.idempotency(job.idempotency_key) if job.idempotency_key else k.idempotency("-")
        fields = _job_fields(job)
        fields["fingerprint"] = fingerprint
        event = json.dumps({"status": job.status.value})
        out = await self._script(
            "SUBMIT",
            [idem, k.job(job.id), k.jobs, k.queue, k.queued, k.events(job.id)],
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
                *_encode_fields(fields),
            ],
        )
        verdict = _s(out[0])
        if verdict == "ok":
            return job, True
        if verdict == "full":
            raise AdmissionFull(int(_s(out[1])))
        existing_id = _s(out[1])
        existing = await self.get(existing_id)
        stored = await self._call("hget", k.job(existing_id), "fingerprint")
        if stored is None or json.loads(_s(stored)) != fingerprint:
            raise IdempotencyConflict(
                "this Idempotency-Key was already used with a different request body",
                details={"idempotency_key": job.idempotency_key, "job_id": existing_id},
            )
        return existing, False

    async def get(self, job_id: str) -> Job:
        return (await self.get_with_flags(job_id))[0]

    async def get_with_flags(self, job_id: str) -> tuple[Job, dict[str, str]]:
        """The job and its internal fields (``cancel``) in one read."""
        return self._job_and_flags(job_id, await self._call("hgetall", self.keys.job(job_id)))

    def _job_and_flags(self, job_id: str, raw: Any) -> tuple[Job, dict[str, str]]:
        if isinstance(raw, list):  # a script's HGETALL reply: field, value, field, value ...
            raw = dict(zip(raw[::2], raw[1::2], strict=True))
        if not raw:
            raise JobNotFound(f"no job with id {job_id!r}", details={"job_id": job_id})
        flags = {_s(k): _s(v) for k, v in raw.items() if _s(k) in _FLAGS}
        return self._decode_job(raw), flags

    @staticmethod
    def _decode_job(raw: dict[Any, Any]) -> Job:
        data: dict[str, Any] = {}
        for key, value in raw.items():
            name = _s(key)
            if name not in _JOB_FIELDS:
                continue
            text = _s(value)
            data[name] = text if name in _RAW else json.loads(text)
        return Job.model_validate(data)

    async def flag(self, job_id: str, name: str) -> str | None:
        """An internal field of the job hash (``cancel``), or None."""
        value = await self._call("hget", self.keys.job(job_id), name)
        return None if value is None or not _s(value) else _s(value)

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
        **fields: Any,
    ) -> int | None:
        """Set ``fields`` if the job's status is in ``allowed`` (any when empty), append an
        event, and on ``finish`` give the record and its log their retention TTL.

        Returns the event's sequence number (0 when no event), None when refused by status.
        Raises :class:`Fenced` when ``fence`` is not the job's current lease token.
        """
        k = self.keys
        payload = json.dumps(data or {}, separators=(",", ":"), default=str)
        out = await self._script(
            "TRANSITION",
            [k.job(job_id), k.events(job_id), k.queued, k.dead],
            job_id=job_id,
            args=[
                ",".join(s.value for s in allowed),
                event or "",
                payload,
                str(now()),
                str(-1 if persist else self.retention_s if finish else 0),
                done.model_dump_json() if done is not None else "",
                "" if fence is None else str(fence),
                "1" if dead_letter else "",
                *_encode_fields(fields),
            ],
        )
        result = _fenced(int(out), job_id)
        return None if result < 0 else result

    async def append(
        self,
        job_id: str,
        event: str,
        data: dict[str, Any],
        *,
        fence: int | None = None,
        **fields: Any,
    ) -> int:
        """Append one event (and set ``fields``, e.g. the latest progress) atomically, to a
        job that has not ended. Returns its seq, -1 when the job has ended (or is gone);
        raises :class:`Fenced` when ``fence`` is stale."""
        k = self.keys
        payload = json.dumps(data, separators=(",", ":"), default=str)
        out = await self._script(
            "APPEND",
            [k.job(job_id), k.events(job_id)],
            job_id=job_id,
            args=[
                event,
                payload,
                str(now()),
                "" if fence is None else str(fence),
                *_encode_fields(fields),
            ],
        )
        return _fenced(int(out), job_id)

    async def acquire(self, job_id: str) -> tuple[int, Job, dict[str, str]]:
        """Take the job's lease — a new fence token, greater than every earlier one — and
        read the job and its flags, in one round trip."""
        raw = await self._script("ACQUIRE", [self.keys.job(job_id)], [])
        job, flags = self._job_and_flags(job_id, raw)
        return int(flags["fence"]), job, flags

    async def leases(self, job_ids: list[str]) -> dict[str, tuple[int | None, bool]]:
        """Each job's current fence token (None when gone) and whether a cancel was asked:
        the lease loop's one read for every job it holds."""
        if not job_ids:
            return {}

        def fill(pipe: Any) -> None:
            for j in job_ids:  # two HGETs: the engine's pipeline has no HMGET
                pipe.hget(self.keys.job(j), "fence")
                pipe.hget(self.keys.job(j), "cancel")

        try:
            values = await self._run_pipeline(fill)
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"store unavailable: {exc}") from exc
        return {
            j: (None if fence is None else int(_s(fence)), bool(cancel and _s(cancel)))
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
        k = self.keys
        out = await self._script(
            "REQUEUE",
            [k.job(job_id), k.events(job_id), k.queued, k.queue, k.dead],
            job_id=job_id,
            args=[
                ",".join(s.value for s in allowed),
                "" if fence is None else str(fence),
                entry_id or "",
                str(now()),
                json.dumps(data, separators=(",", ":"), default=str),
                *_encode_fields(fields),
            ],
        )
        result = _fenced(int(out), job_id)
        return None if result < 0 else result

    async def events(
        self, job_id: str, *, after: int = 0, block_ms: int | None = None, count: int = 500
    ) -> list[Event]:
        """Events with ``seq > after``; with ``block_ms``, wait that long for the next one.

        Waiting holds no connection: a watcher sleeps on an in-process signal, set by this
        process's own writes and, across replicas, by the ``changed`` channel.
        """
        if not block_ms:
            return await self._read_events(job_id, after, count)
        signal = self._signals.acquire(job_id)
        try:
            events = await self._read_events(job_id, after, count)
            if events:
                return events
            try:
                await asyncio.wait_for(signal.wait(), block_ms / 1000)
            except TimeoutError:
                return []
            return await self._read_events(job_id, after, count)
        finally:
            self._signals.release(job_id, signal)

    async def _read_events(self, job_id: str, after: int, count: int) -> list[Event]:
        key = self.keys.events(job_id)
        reply = await self._call("xread", {key: f"{after}-1"}, count=count)
        if not reply:
            return []
        entries = reply[0][1] if isinstance(reply, list) else next(iter(reply.values()))[0]
        out: list[Event] = []
        for entry_id, fields in entries:
            f = {_s(a): _s(b) for a, b in fields.items()}
            out.append(
                Event(
                    seq=int(_s(entry_id).split("-")[0]),
                    type=f["t"],  # type: ignore[arg-type]
                    job_id=job_id,
                    correlation_id=f.get("c", ""),
                    ts=float(f["ts"]),
                    data=json.loads(f["d"]),
                )
            )
        return out

    async def list_jobs(
        self,
        *,
        status: JobStatus | None = None,
        capability: str | None = None,
        before: float | None = None,
        limit: int = 50,
    ) -> tuple[list[Job], float | None]:
        """Newest first. ``before`` is the cursor: a creation time (exclusive)."""
        jobs: list[Job] = []
        top = f"({before}" if before is not None else "+inf"
        cursor = before
        while len(jobs) < limit:
            page = await self._ids_before(self.keys.jobs, top, 200)
            if not page:
                return jobs, None
            stale = []
            for job_id, score in page:
                cursor = score
                top = f"({score}"
                raw = await self._call("hgetall", self.keys.job(job_id))
                if not raw:
                    stale.append(job_id)
                    continue
                job = self._decode_job(raw)
                if (status and job.status != status) or (
                    capability and job.capability != capability
                ):
                    continue
                jobs.append(job)
                if len(jobs) == limit:
                    break
            if stale:
                await self._call("zrem", self.keys.jobs, *stale)
        return jobs, cursor

    async def _ids_before(self, key: str, top: str, n: int) -> list[tuple[str, float]]:
        if hasattr(self._r, "zrevrangebyscore"):
            rows = await self._call(
                "zrevrangebyscore", key, top, "-inf", start=0, num=n, withscores=True
            )
        else:  # burner-redis has no reverse or exclusive range: filter the ascending one
            limit = float(top[1:]) if top.startswith("(") else float("inf")
            rows = await self._call("zrangebyscore", key, "-inf", "+inf", withscores=True)
            rows = [row for row in reversed(rows) if float(row[1]) < limit][:n]
        return [(_s(member), float(score)) for member, score in rows]

    async def queue_depths(self) -> dict[str, int]:
        raw = await self._call("hgetall", self.keys.queued)
        return {_s(k): max(0, int(_s(v))) for k, v in (raw or {}).items()}

    # -- dispatch queue -------------------------------------------------------------------

    async def take(self, count: int, block_ms: int) -> list[QueueEntry]:
        reply = await self._call(
            "xreadgroup",
            DISPATCH_GROUP,
            self.consumer,
            {self.keys.queue: ">"},
            count=count,
            block=min(block_ms, MAX_BLOCK_MS),
        )
        if not reply:
            return []
        entries = reply[0][1] if isinstance(reply, list) else next(iter(reply.values()))[0]
        return [(_s(eid), _s(f[b"job"] if b"job" in f else f["job"])) for eid, f in entries]

    async def reclaim(self, min_idle_ms: int, count: int = 100) -> list[QueueEntry]:
        """Deliveries whose holder stopped renewing its lease, now ours."""
        reply = await self._call(
            "xautoclaim",
            self.keys.queue,
            DISPATCH_GROUP,
            self.consumer,
            min_idle_time=min_idle_ms,
            start_id="0-0",
            count=count,
        )
        entries = reply[1] if reply else []
        out = []
        for eid, fields in entries:
            if not fields:
                continue  # deleted entry
            f = {_s(a): _s(b) for a, b in fields.items()}
            out.append((_s(eid), f["job"]))
        return out

    async def renew(self, entry_ids: list[str]) -> None:
        """Reset the idle time of deliveries we still hold (our lease heartbeat)."""
        if entry_ids:
            await self._call(
                "xclaim", self.keys.queue, DISPATCH_GROUP, self.consumer, 0, entry_ids, justid=True
            )

    async def ack(self, entry_id: str) -> None:
        """Done with a delivery: acknowledge it and drop it from the stream."""
        try:
            await self._run_pipeline(
                lambda pipe: (
                    pipe.xack(self.keys.queue, DISPATCH_GROUP, entry_id),
                    pipe.xdel(self.keys.queue, entry_id),
                )
            )
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"store unavailable: {exc}") from exc

    # -- dead letters, cancel, registrations --------------------------------------------

    async def dead_letter(self, job_id: str) -> None:
        await self._call("zadd", self.keys.dead, {job_id: now()})

    async def dead_letters(self, limit: int = 100) -> list[Job]:
        rows = await self._ids_before(self.keys.dead, "+inf", limit)
        jobs, stale = [], []
        for job_id, _ in rows:
            try:
                jobs.append(await self.get(job_id))
            except JobNotFound:
                stale.append(job_id)
        if stale:
            await self._call("zrem", self.keys.dead, *stale)
        return jobs

    async def is_dead_letter(self, job_id: str) -> bool:
        return await self._call("zscore", self.keys.dead, job_id) is not None

    async def publish_cancel(self, job_id: str) -> None:
        await self._call("hset", self.keys.job(job_id), "cancel", "1")
        await self._call("publish", self.keys.cancel_channel, job_id)

    async def cancel_messages(self) -> AsyncIterator[str]:
        """Job ids whose cancellation was requested, as they are published."""
        pubsub = self._r.pubsub()
        await pubsub.subscribe(self.keys.cancel_channel)
        try:
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message and message.get("type") == "message":
                    yield _s(message["data"])
        finally:
            closer = getattr(pubsub, "aclose", None) or pubsub.close
            await closer()

    async def registrations(self) -> list[WorkerRegistration]:
        out = []
        keys = [k async for k in self._r.scan_iter(match=self.keys.worker_pattern)]
        for key in keys:
            raw = await self._call("get", _s(key))
            if raw is None:
                continue
            try:
                out.append(WorkerRegistration.model_validate_json(_s(raw)))
            except ValueError:
                continue
        return out


class _Signals:
    """One asyncio.Event per watched job, shared by its watchers, replaced once set."""

    def __init__(self) -> None:
        self._events: dict[str, tuple[asyncio.Event, int]] = {}

    def acquire(self, job_id: str) -> asyncio.Event:
        event, users = self._events.get(job_id, (None, 0))
        if event is None:
            event = asyncio.Event()
        self._events[job_id] = (event, users + 1)
        return event

    def release(self, job_id: str, event: asyncio.Event) -> None:
        current = self._events.get(job_id)
        if current is not None and current[0] is event:
            if current[1] <= 1:
                del self._events[job_id]
            else:
                self._events[job_id] = (event, current[1] - 1)

    def notify(self, job_id: str) -> None:
        current = self._events.pop(job_id, None)
        if current is not None:
            current[0].set()

    def notify_all(self) -> None:
        events, self._events = self._events, {}
        for event, _ in events.values():
            event.set()


class Fenced(Exception):
    """A write by a holder whose lease was taken over (its fence token is stale)."""


def _fenced(result: int, job_id: str) -> int:
    if result == -2:
        raise Fenced(job_id)
    return result


class AdmissionFull(Exception):
    """The capability's queue is at its limit (the API turns this into 429)."""

    def __init__(self, depth: int) -> None:
        super().__init__(f"queue depth {depth}")
        self.depth = depth


@asynccontextmanager
async def open_store(
    url: str,
    keys: Keys | None = None,
    *,
    retention_s: int = 7 * 86_400,
    idempotency_ttl_s: int = 86_400,
    max_connections: int = 256,
) -> AsyncIterator[Store]:
    """Open the store named by ``url`` (``memory://`` or ``redis://...``)."""
    keys = keys or Keys()
    client: Any
    if url.startswith("memory://"):
        from burner_redis import BurnerRedis

        client = BurnerRedis()
    elif url.startswith(("redis://", "rediss://", "unix://")):
        # Blocking reads are capped at MAX_BLOCK_MS, well inside the socket timeout, so a
        # silent connection is detected and a long wait is a loop of short ones.
        # A blocking pool: at the cap a command waits for a free connection instead of
        # failing with "Too many connections" (the default pool's answer).
        # Two quick retries on a connection error: after a Redis restart every pooled
        # connection is dead, and the first command on each would otherwise fail although
        # Redis is back. (A command whose reply was lost may run twice: the scripts are safe
        # to repeat — submissions are keyed, transitions check the status and the fence.)
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=10,
            socket_connect_timeout=5,
            socket_timeout=10,
            health_check_interval=30,
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 2),
        )
        client = aioredis.Redis(connection_pool=pool)
    else:
        raise ValueError(f"unsupported store URL {url!r}: use memory:// or redis://host:port/db")
    store = Store(client, keys, retention_s=retention_s, idempotency_ttl_s=idempotency_ttl_s)
    try:
        try:
            await store.ensure_group()
        except StoreUnavailable as exc:  # start anyway: /readyz says 503, requests get 503
            from shared import get_logger

            get_logger("fleet.store").warning("store.unavailable_at_start", error=exc.message)
        yield store
    finally:
        closer = getattr(client, "aclose", None) or client.close
        result = closer()
        if hasattr(result, "__await__"):
            await result
