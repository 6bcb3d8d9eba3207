"""Job event logs and the pub-sub around them: append, read or wait, change and cancel messages."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from typing import Any

from redis.exceptions import RedisError

from shared import Event, Job, get_logger, now
from supervisor.fastjson import dumps
from supervisor.store.base import OUTAGE_ERRORS, StoreBase, parse_changed
from supervisor.store.codec import encode_fields, job_and_flags, text
from supervisor.store.errors import check_fence
from supervisor.store.signals import Wake
from supervisor.store.tails import BATCH, Batch


class EventLog(StoreBase):
    """Each job's event stream (entry ids ``{seq}-1``), its watchers and the two channels."""

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
        return await self.append_many(job_id, [(event, data)], fence=fence, **fields)

    async def append_many(
        self,
        job_id: str,
        events: list[tuple[str, dict[str, Any]]],
        *,
        fence: int | None = None,
        **fields: Any,
    ) -> int:
        """Append ``events`` (type, data) in order, and set ``fields``, in one atomic step.
        Returns the last one's seq; -1 and :class:`Fenced` as :meth:`append`.

        A job watched here gets the events handed to its tail as the write returns
        (:meth:`~supervisor.store.tails.Tail.offer`): the same events a read would give
        (the data as stored, read back from its JSON), without the read."""
        k = self.keys.of(job_id)
        ts = str(now())
        flat: list[str] = []
        for event, data in events:
            flat += [event, dumps(data), ts]
        out = await self._script(
            "APPEND",
            [k.job(job_id), k.events(job_id)],
            job_id=job_id,
            args=["" if fence is None else str(fence), str(len(events)), *flat,
                  *encode_fields(fields)],
        )  # fmt: skip
        last = check_fence(int(out), job_id)
        if last > 0 and events and (tail := self._tails.get(job_id)) is not None:
            first = last - len(events) + 1
            corr, at = tail.corr, float(ts)

            def make(seq: int) -> list[Event]:
                return [
                    Event(seq=first + i, type=flat[3 * i], job_id=job_id,  # type: ignore[arg-type]
                          correlation_id=corr or "", ts=at, data=json.loads(flat[3 * i + 1]))
                    for i in range(seq - first, len(events))
                ]  # fmt: skip

            with contextlib.suppress(ValueError):  # not an event a read would give: read it
                tail.offer(first, last, make)
        return last

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

    async def follow(
        self, job_id: str, *, after: int = 0, idle_s: float = 1.0, recheck_s: float = 15.0
    ) -> AsyncGenerator[Batch, None]:
        """Batches of the job's new events as they are written, forever: first what the log
        holds after ``after`` (empty: nothing yet, the caller may stop), then new events from
        the job's :class:`~supervisor.store.tails.Tail`, shared by every watcher here, which
        reads the log when a write signals it (and every ``recheck_s`` in case a signal from
        another replica was lost). With nothing new, an empty batch every ``idle_s`` without
        touching the store, so an idle watcher costs nothing but lets its caller look at its
        client. A batch may be the same object for every watcher of the job: read it, never
        change it (:meth:`Batch.encoded` makes its bytes once for all)."""
        first = Batch(await self._read_events(job_id, after, BATCH))
        if first:
            after = first[-1].seq
        tail = self._tails.join(job_id, after, recheck_s)
        if first and tail.corr is None:
            tail.corr = first[-1].correlation_id
        try:
            yield first
            while True:
                if after < tail.start:  # behind the shared window: catch up from the store
                    events = Batch(await self._read_events(job_id, after, BATCH))
                    if events:
                        after = events[-1].seq
                        yield events
                        continue
                changed = tail.changed()  # taken before looking: no batch slips between
                if tail.error is not None:
                    raise tail.error
                events = tail.since(after) if after >= tail.start else Batch()
                if events:
                    after = events[-1].seq
                    yield events
                    continue
                try:  # a timeout in this task, not wait_for's task per wait (and its hops)
                    async with asyncio.timeout(idle_s):
                        await changed.wait()
                except TimeoutError:
                    yield Batch()
        finally:
            self._tails.leave(tail)

    async def wait_ended(self, job_id: str, timeout: float) -> Job:
        """The job once it has ended, or as it is after ``timeout`` seconds. Wakes only for
        writes that may end it: one read of the record, not one per progress event."""
        with self.ending(job_id) as ending:
            return await ending.wait(timeout)

    @contextlib.contextmanager
    def ending(self, job_id: str) -> Iterator[Ending]:
        """A wait for the job's end, registered now: open it before a write the job's end
        may follow (its submit), and :meth:`Ending.wait` needs no first read."""
        ending = Ending(self, job_id)
        try:
            yield ending
        finally:
            ending.close()

    async def _read_job(self, job_id: str) -> Job:
        key = self.keys.of(job_id).job(job_id)
        return job_and_flags(job_id, await self._call("hgetall", key))[0]

    async def _read_events(self, job_id: str, after: int, count: int) -> list[Event]:
        key = self.keys.of(job_id).events(job_id)
        reply = await self._call("xread", {key: f"{after}-1"}, count=count, _watch=True)
        if not reply:
            return []
        entries = reply[0][1] if isinstance(reply, list) else next(iter(reply.values()))[0]
        out: list[Event] = []
        for entry_id, fields in entries:
            f = {text(a): text(b) for a, b in fields.items()}
            out.append(
                Event(
                    seq=int(text(entry_id).split("-")[0]),
                    type=f["t"],  # type: ignore[arg-type]
                    job_id=job_id,
                    correlation_id=f.get("c", ""),
                    ts=float(f["ts"]),
                    data=json.loads(f["d"]),
                )
            )
        return out

    async def listen_changes(self) -> None:
        """Relay other replicas' ``changed`` messages to local watchers (Redis only)."""
        if self.embedded:
            return
        while True:
            pubsub = self._r.pubsub()
            try:
                await pubsub.subscribe(self.keys.changed_channel)
                self._answered()
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message and message.get("type") == "message":
                        job_id, what, origin = parse_changed(text(message["data"]))
                        if origin != self.consumer:  # ours woke our watchers as written
                            self._signals.notify(job_id, ended=what == "ended")
                            if what == "queued" and self._sharded:
                                self._queued(job_id)
            except (RedisError, OSError) as exc:
                outage = isinstance(exc, OUTAGE_ERRORS)
                if outage:  # said once per outage, by the store's health; each try at DEBUG
                    self.health.failed(exc)
                log = get_logger("fleet.store")
                say = log.debug if outage else log.warning
                say("store.changes_listener_failed", error=str(exc))
                self._signals.notify_all()  # let watchers re-read rather than sleep blind
                await self.health.pause()
            finally:
                await pubsub.aclose()

    async def publish_cancel(self, job_id: str) -> None:
        await self._call("hset", self.keys.of(job_id).job(job_id), "cancel", "1")
        await self._call("publish", self.keys.cancel_channel, job_id)

    async def cancel_messages(self) -> AsyncIterator[str]:
        """Job ids whose cancellation was requested, as they are published; a lost connection
        raises :class:`StoreUnavailable` (subscribe again)."""
        pubsub = self._r.pubsub()
        try:
            await pubsub.subscribe(self.keys.cancel_channel)
            self._answered()
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message and message.get("type") == "message":
                    yield text(message["data"])
        except (RedisError, OSError) as exc:
            raise self._failed(exc) from exc
        finally:
            closer = getattr(pubsub, "aclose", None) or pubsub.close
            await closer()


class Ending:
    """One wait for a job's end (see :meth:`EventLog.ending`)."""

    def __init__(self, log: EventLog, job_id: str) -> None:
        self._log = log
        self.job_id = job_id
        self._signal: Wake = log._signals.acquire(job_id, ended=True)

    async def wait(self, timeout: float, known: Job | None = None) -> Job:
        """The job once it has ended, or as it is after ``timeout`` seconds. ``known``: the
        job as read or written since this wait was registered (no first read then)."""
        deadline = time.monotonic() + timeout
        job = known
        while True:
            if job is None:
                job = await self._log._read_job(self.job_id)
            remaining = deadline - time.monotonic()
            if job.status.terminal or remaining <= 0:
                return job
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._signal.wait(), remaining)
            woke, job = self._signal, None
            if woke.is_set():  # a fresh signal before the next read: no end slips between
                self.close()
                self._signal = self._log._signals.acquire(self.job_id, ended=True)
                job = woke.job

    def close(self) -> None:
        self._log._signals.release(self.job_id, self._signal, ended=True)
