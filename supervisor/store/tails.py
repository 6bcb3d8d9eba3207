"""Fan-out: one job's events read from the store once for every watcher in this process.

Each watched job has one :class:`Tail` while anyone watches it: a pump task reads the log
when a write signals it (and every ``recheck_s`` in case a wake-up from another replica was
missed) into a shared window of recent events, and wakes the watchers. A hundred watchers of
one job cost one store read per batch of events, not a hundred. The window is a list of
:class:`Batch` es, one per read: a watcher that has taken everything before a batch takes the
batch itself, the same object as every other watcher, so whatever is made of it (its SSE
frames, :meth:`Batch.encoded`) is made once for all of them. A watcher behind the window (one
resuming from an old ``Last-Event-ID``) reads the store itself until it has caught up.

Events this process appends reach its tails without a read: the writer hands them over
(:meth:`Tail.offer`) as its write returns, which spares the watchers a read's round trip and
the pump's wake-up on the way. The pump still reads for every other write (a status, another
replica's events), and it knows from the job's count of wake-ups
(:meth:`~supervisor.store.signals.Signals.count`) when its wake-up was only for events it was
handed already: then it reads nothing.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
from collections.abc import Awaitable, Callable, Iterable

from shared import Event, StoreUnavailable
from supervisor.store.signals import Signals

__all__ = ["Batch", "Tail", "Tails"]

WINDOW = 4096
"""Events a tail keeps; past this the older half is dropped (its watchers read the store)."""
BATCH = 500

ReadEvents = Callable[[str, int, int], Awaitable[list[Event]]]
Encode = Callable[[Event], bytes]


class Batch(list[Event]):
    """Consecutive events of one job's log, in order. One a tail published is shared by all
    the watchers that take it whole: read it, never change it.

    :meth:`encoded` is the batch as bytes (each event encoded, joined), made once per batch
    and encoder: a hundred watchers of a batch cost one encoding of each of its events, and
    each watcher's share is one ``bytes`` it writes as it is."""

    __slots__ = ("_encoded", "_kinds", "_parts")

    def __init__(self, events: Iterable[Event] = (), parts: list[Batch] | None = None) -> None:
        super().__init__(events)
        self._parts = parts
        self._encoded: tuple[Encode, bytes] | None = None
        self._kinds: frozenset[str] | None = None

    @classmethod
    def joined(cls, parts: list[Batch]) -> Batch:
        """The events of ``parts`` (consecutive batches) as one; its encoding joins theirs."""
        if len(parts) == 1:
            return parts[0]
        out = cls(parts=parts)
        for part in parts:
            out.extend(part)
        return out

    def encoded(self, encode: Encode) -> bytes:
        cached = self._encoded
        if cached is not None and cached[0] is encode:
            return cached[1]
        if self._parts:
            data = b"".join([part.encoded(encode) for part in self._parts])
        else:
            data = b"".join([encode(event) for event in self])
        self._encoded = (encode, data)
        return data

    def has(self, kind: str) -> bool:
        """Whether an event of this type is in the batch (looked at once per batch)."""
        if self._kinds is None:
            self._kinds = frozenset(event.type for event in self)
        return kind in self._kinds


class Tail:
    """The shared window of one job's recent events, kept up by one pump task."""

    def __init__(self, job_id: str, after: int, read: ReadEvents, signals: Signals) -> None:
        self.job_id = job_id
        self.start = after  # the window holds events with seq > start
        self.last = after  # the pump has read up to here
        self.batches: list[Batch] = []
        self.ends: list[int] = []  # the last seq of each batch
        self.size = 0  # events in the window
        self.users = 0
        self.error: StoreUnavailable | None = None
        self._read = read
        self._signals = signals
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._waiting: asyncio.Event | None = None
        self.closed = False
        self.corr: str | None = None
        """The job's correlation id, once seen in an event (every event of a job has it)."""
        self.whole_at = -1
        """The tail holds every event of the writes woken up to this count (see the module)."""

    @property
    def events(self) -> list[Event]:
        """Every event in the window (for inspection; watchers take :meth:`since`)."""
        return [event for batch in self.batches for event in batch]

    def since(self, after: int) -> Batch:
        """The window's events after ``after`` (``after`` must be at or past ``start``): the
        published batches themselves when ``after`` is where one starts (all of them, joined,
        when it is behind by more than one)."""
        i = bisect.bisect_right(self.ends, after)
        if i == len(self.batches):
            return Batch()
        first = self.batches[i]
        if after != (self.ends[i - 1] if i else self.start):  # within the batch: its tail
            first = Batch(event for event in first if event.seq > after)
        return Batch.joined([first, *self.batches[i + 1 :]])

    def offer(self, first: int, last: int, make: Callable[[int], list[Event]]) -> bool:
        """The events ``first``..``last`` (seqs) were just written by this process, whose
        wake-up for them was the job's latest: ``make(seq)`` builds those from ``seq`` on.
        Taken when they continue the window (else the pump reads them); True if taken."""
        if self.closed or self.error is not None or self.corr is None:
            return False
        if first > self.last + 1 or last <= self.last:
            return False
        count = self._signals.count(self.job_id)
        whole = self.whole_at == count - 1  # and this write's wake-up is the one since
        self._publish(make(self.last + 1))
        if whole:
            self.whole_at = count
        return True

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
        self.corr = events[-1].correlation_id
        batch = Batch(events)
        self.batches.append(batch)
        self.ends.append(events[-1].seq)
        self.last = events[-1].seq
        self.size += len(batch)
        if self.size > WINDOW:  # drop whole batches, oldest first, down to half (or the last)
            drop = 0
            while self.size > WINDOW // 2 and drop < len(self.batches) - 1:
                self.size -= len(self.batches[drop])
                drop += 1
            if drop:
                self.start = self.ends[drop - 1]
                del self.batches[:drop], self.ends[:drop]
            if self.size > WINDOW:  # one batch larger than the window: its newer half
                only, keep = self.batches[0], WINDOW // 2
                self.start = only[-keep - 1].seq
                self.batches[0], self.size = Batch(only[-keep:]), keep
        self._wake()

    def _wake(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def _pump(self, recheck_s: float) -> None:
        self._signals.track(self.job_id)
        woken = False
        try:
            while not self.closed:
                signal = self._signals.acquire(self.job_id)  # before the read: no write slips
                try:
                    count = self._signals.count(self.job_id)
                    if woken and count == self.whole_at:
                        events: list[Event] = []  # woken for events handed over: no read
                    else:
                        try:
                            events = await self._read(self.job_id, self.last, BATCH)
                        except StoreUnavailable as exc:
                            self.error = exc
                            self._wake()
                            return
                        if len(events) == BATCH:
                            self._take(events)
                            continue  # more waiting
                        self._take(events)
                        # everything written before the read began is in the window now
                        self.whole_at = max(self.whole_at, count)
                    if self.closed:
                        return
                    # else the signal, set by any write since the read
                    self._waiting = signal
                    woken = False
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(recheck_s):
                            await signal.wait()
                            woken = True
                finally:
                    self._waiting = None
                    self._signals.release(self.job_id, signal)
        finally:
            self._signals.untrack(self.job_id)

    def _take(self, events: list[Event]) -> None:
        """Publish what a read found past :attr:`last` (some may have been handed over while
        it was in flight)."""
        if events and events[0].seq <= self.last:
            events = [event for event in events if event.seq > self.last]
        if events:
            self._publish(events)


class Tails:
    """The tails of the jobs watched in this process, by job id."""

    def __init__(self, read: ReadEvents, signals: Signals) -> None:
        self._read = read
        self._signals = signals
        self._tails: dict[str, Tail] = {}
        self._pumps: set[asyncio.Task[None]] = set()

    def get(self, job_id: str) -> Tail | None:
        return self._tails.get(job_id)

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
