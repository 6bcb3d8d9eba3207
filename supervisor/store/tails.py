"""Fan-out: one job's events read from the store once for every watcher in this process.

Each watched job has one :class:`Tail` while anyone watches it: a pump task reads the log
when a write signals it (and every ``recheck_s`` in case a wake-up from another replica was
missed) into a shared window of recent events, and wakes the watchers. A hundred watchers of
one job cost one store read per batch of events, not a hundred; each watcher takes its slice
of the window from its own position. A watcher behind the window (one resuming from an old
``Last-Event-ID``) reads the store itself until it has caught up.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
from collections.abc import Awaitable, Callable

from shared import Event, StoreUnavailable
from supervisor.store.signals import Signals

__all__ = ["Tail", "Tails"]

WINDOW = 4096
"""Events a tail keeps; past this the older half is dropped (its watchers read the store)."""
BATCH = 500

ReadEvents = Callable[[str, int, int], Awaitable[list[Event]]]


class Tail:
    """The shared window of one job's recent events, kept up by one pump task."""

    def __init__(self, job_id: str, after: int, read: ReadEvents, signals: Signals) -> None:
        self.job_id = job_id
        self.start = after  # the window holds events with seq > start
        self.last = after  # the pump has read up to here
        self.events: list[Event] = []
        self.seqs: list[int] = []
        self.users = 0
        self.error: StoreUnavailable | None = None
        self._read = read
        self._signals = signals
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._waiting: asyncio.Event | None = None
        self.closed = False

    def since(self, after: int) -> list[Event]:
        """The window's events after ``after`` (``after`` must be at or past ``start``)."""
        return self.events[bisect.bisect_right(self.seqs, after) :]

    def changed(self) -> asyncio.Event:
        """Set at the pump's next batch (or failure); take it before looking at the window."""
        return self._changed

    def begin(self, recheck_s: float, pumps: set[asyncio.Task[None]]) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._pump(recheck_s), name=f"tail-{self.job_id}")
            pumps.add(self._task)
            self._task.add_done_callback(pumps.discard)

    def end(self) -> None:
        """Stop the pump: it ends at its next turn. It is woken, not cancelled: a read
        cancelled halfway leaves redis-py a connection it drops without closing."""
        self.closed = True
        if self._waiting is not None:
            self._waiting.set()  # a spurious wake-up for anyone else on it: they re-read

    def _publish(self, events: list[Event]) -> None:
        self.events.extend(events)
        self.seqs.extend(e.seq for e in events)
        self.last = events[-1].seq
        if len(self.events) > WINDOW:
            drop = len(self.events) - WINDOW // 2
            self.start = self.seqs[drop - 1]
            del self.events[:drop], self.seqs[:drop]
        self._wake()

    def _wake(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def _pump(self, recheck_s: float) -> None:
        while not self.closed:
            signal = self._signals.acquire(self.job_id)  # before the read: no write slips by
            try:
                try:
                    events = await self._read(self.job_id, self.last, BATCH)
                except StoreUnavailable as exc:
                    self.error = exc
                    self._wake()
                    return
                if events:
                    self._publish(events)
                if len(events) == BATCH:
                    continue  # more waiting; else the signal, set by any write since the read
                if self.closed:
                    return
                self._waiting = signal
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(signal.wait(), recheck_s)
            finally:
                self._waiting = None
                self._signals.release(self.job_id, signal)


class Tails:
    """The tails of the jobs watched in this process, by job id."""

    def __init__(self, read: ReadEvents, signals: Signals) -> None:
        self._read = read
        self._signals = signals
        self._tails: dict[str, Tail] = {}
        self._pumps: set[asyncio.Task[None]] = set()

    def join(self, job_id: str, after: int, recheck_s: float) -> Tail:
        tail = self._tails.get(job_id)
        if tail is None or tail.error is not None:
            tail = self._tails[job_id] = Tail(job_id, after, self._read, self._signals)
        tail.users += 1
        tail.begin(recheck_s, self._pumps)
        return tail

    def leave(self, tail: Tail) -> None:
        tail.users -= 1
        if tail.users <= 0:
            if self._tails.get(tail.job_id) is tail:
                del self._tails[tail.job_id]
            tail.end()

    async def close(self) -> None:
        """Stop every pump, the ending ones too, before the store's connections close."""
        for tail in list(self._tails.values()):
            tail.end()
        self._tails.clear()
        if self._pumps:  # each ends after its read in flight, if any
            await asyncio.wait(set(self._pumps), timeout=5.0)
        for task in self._pumps:  # a read that hangs past that: the connection goes with it
            task.cancel()
