"""A job's tail takes this process's own appends from the writer (no read of the log), reads
for every other write, and never holds an event twice or out of order. Real stores for the
end-to-end checks (the embedded engine and Redis), a scripted read for the races."""

from __future__ import annotations

import asyncio

import pytest

from shared import Event, JobStatus
from supervisor.store import Store
from supervisor.store import tails as tails_module
from supervisor.store.signals import Signals
from supervisor.store.tails import Batch, Tail
from tests.helpers import wait_until
from tests.supervisor.test_store_contract import make_job


class Reads:
    """Counts the tails' reads of the log."""

    def __init__(self, store: Store) -> None:
        self.count = 0
        real = store._tails._read

        async def counted(job_id: str, after: int, count: int) -> list[Event]:
            self.count += 1
            return await real(job_id, after, count)

        store._tails._read = counted


async def _watch(store: Store, job_id: str, got: list[Event]) -> None:
    async for batch in store.follow(job_id, idle_s=0.05):
        got.extend(batch)


async def _crowd(
    store: Store, job_id: str, n: int
) -> tuple[list[list[Event]], list[asyncio.Task[None]]]:
    crowd: list[list[Event]] = [[] for _ in range(n)]
    tasks = [asyncio.create_task(_watch(store, job_id, got)) for got in crowd]
    await wait_until(lambda: all(crowd), message="every watcher has its first batch")
    tail = tail_of(store, job_id)
    await wait_until(lambda: tail.whole_at >= 0, message="the tail's first read is done")
    return crowd, tasks


def tail_of(store: Store, job_id: str) -> Tail:
    tail = store._tails.get(job_id)
    assert tail is not None
    return tail


async def _settled(tail: Tail) -> None:
    """Until the pump waits on a fresh wake-up: it has handled every earlier one."""

    def waiting() -> bool:
        return tail._waiting is not None and not tail._waiting.is_set()

    await wait_until(waiting, message="the pump waits again")


async def _stop(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_own_appends_reach_every_watcher_without_a_read(store: Store) -> None:
    job = make_job()
    await store.submit(job, fingerprint="f", queue_limit=10)
    reads = Reads(store)
    crowd, tasks = await _crowd(store, job.id, 5)
    try:
        before = reads.count
        for n in range(10):
            await store.append(job.id, "progress", {"n": n, "f": 0.1 + n})
        await store.append_many(job.id, [("log", {"message": f"m{n}"}) for n in range(10)])
        await wait_until(lambda: all(len(got) == 21 for got in crowd), message="all events")
        await _settled(tail_of(store, job.id))
        assert reads.count == before  # every wake-up was for events handed over
        stored = await store.events(job.id, after=0)
        for got in crowd:  # in order, once each, exactly as the log holds them
            assert [e.model_dump() for e in got] == [e.model_dump() for e in stored]
            assert all(a is b for a, b in zip(got[1:], crowd[0][1:], strict=True))
    finally:
        await _stop(tasks)


async def test_other_writes_are_read_between_handed_over_ones(store: Store) -> None:
    job = make_job()
    await store.submit(job, fingerprint="f", queue_limit=10)
    reads = Reads(store)
    crowd, tasks = await _crowd(store, job.id, 3)
    try:
        before = reads.count
        await store.append(job.id, "progress", {"n": 1})
        # a write this process does not hand over: the pump reads it, and the append just
        # after it (not continuing the window yet) is read with it
        await store.transition(job.id, event="status", data={"status": "running"},
                               status=JobStatus.RUNNING)  # fmt: skip
        await store.append(job.id, "progress", {"n": 2})
        await store.append(job.id, "progress", {"n": 3})
        await store.transition(job.id, event="status", data={"status": "succeeded"},
                               finish=True, done=job, status=JobStatus.SUCCEEDED)  # fmt: skip
        stored = await store.events(job.id, after=0)
        assert [e.type for e in stored][-2:] == ["status", "done"]
        await wait_until(lambda: all(len(got) == len(stored) for got in crowd), message="all")
        for got in crowd:
            assert [e.model_dump() for e in got] == [e.model_dump() for e in stored]
        assert reads.count > before  # the transitions were read
    finally:
        await _stop(tasks)


def _event(seq: int) -> Event:
    return Event(seq=seq, type="progress", job_id="j", correlation_id="c", ts=1.0,
                 data={"n": seq})  # fmt: skip


class ScriptedLog:
    """A log whose reads wait for a gate, so that a hand-over can come mid-read."""

    def __init__(self) -> None:
        self.log: list[Event] = []
        self.reads = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.reading = asyncio.Event()

    async def read(self, job_id: str, after: int, count: int) -> list[Event]:
        self.reads += 1
        found = [e for e in self.log if e.seq > after][:count]  # what the log held at the call
        self.reading.set()
        await self.gate.wait()
        return found


async def _tail(log: ScriptedLog, signals: Signals) -> tuple[Tail, set[asyncio.Task[None]]]:
    tail = Tail("j", 0, log.read, signals)
    tail.corr = "c"
    pumps: set[asyncio.Task[None]] = set()
    tail.begin(60.0, pumps)
    await wait_until(lambda: tail.whole_at >= 0, message="first read")
    return tail, pumps


def _write(log: ScriptedLog, signals: Signals, tail: Tail, seqs: range, *, hand: bool) -> None:
    """As a write does: to the log, its wake-up, then (``hand``) the hand-over."""
    log.log += [_event(s) for s in seqs]
    signals.notify("j")
    if hand:
        tail.offer(seqs[0], seqs[-1], lambda frm: [_event(s) for s in range(frm, seqs[-1] + 1)])


async def _ended(tail: Tail, pumps: set[asyncio.Task[None]]) -> None:
    tail.end()
    await asyncio.wait_for(asyncio.gather(*pumps), 5)


async def test_a_wake_up_only_for_handed_over_events_reads_nothing() -> None:
    log, signals = ScriptedLog(), Signals()
    tail, pumps = await _tail(log, signals)
    first = log.reads
    _write(log, signals, tail, range(1, 4), hand=True)
    _write(log, signals, tail, range(4, 5), hand=True)
    await _settled(tail)
    assert log.reads == first
    # a wake-up of a write that was not handed over (another replica's, a status): a read,
    # and the hand-over that follows it does not continue the window: read as well
    _write(log, signals, tail, range(5, 6), hand=False)
    _write(log, signals, tail, range(6, 7), hand=True)
    await wait_until(lambda: tail.last == 6, message="read")
    assert log.reads > first
    assert [e.seq for e in tail.events] == list(range(1, 7))
    await _ended(tail, pumps)


async def test_a_wake_up_without_events_still_reads_after_a_hand_over() -> None:
    """A write that changed only the record woke the job too: the tail is no longer known
    whole at that count, so the next hand-over's wake-up is read."""
    log, signals = ScriptedLog(), Signals()
    tail, pumps = await _tail(log, signals)
    first = log.reads
    signals.notify("j")  # a record-only write
    _write(log, signals, tail, range(1, 3), hand=True)
    await wait_until(lambda: log.reads > first, message="a read")
    assert [e.seq for e in tail.events] == [1, 2]
    await _ended(tail, pumps)


async def test_events_handed_over_during_a_read_are_not_taken_twice() -> None:
    log, signals = ScriptedLog(), Signals()
    tail, pumps = await _tail(log, signals)
    log.gate.clear()
    log.reading.clear()
    _write(log, signals, tail, range(1, 3), hand=False)  # the pump reads 1-2 ...
    await asyncio.wait_for(log.reading.wait(), 5)
    _write(log, signals, tail, range(3, 4), hand=True)  # ... so 3 does not continue: refused
    assert tail.last == 0
    log.gate.set()
    await wait_until(lambda: tail.last == 3, message="1-2, then 3 read")
    log.gate.clear()
    log.reading.clear()
    log.log += [_event(4), _event(5)]  # written; a read that finds them is in flight ...
    signals.notify("j")
    await asyncio.wait_for(log.reading.wait(), 5)
    reads = log.reads
    tail.offer(4, 5, lambda frm: [_event(s) for s in range(frm, 6)])  # ... and handed over
    assert tail.last == 5
    log.gate.set()  # the read answers 4-5: in the window already
    await _settled(tail)
    assert log.reads == reads
    assert [e.seq for e in tail.events] == [1, 2, 3, 4, 5]
    await _ended(tail, pumps)


def test_a_batch_is_encoded_once_for_all_its_watchers() -> None:
    calls: list[int] = []

    def encode(event: Event) -> bytes:
        calls.append(event.seq)
        return f"{event.seq};".encode()

    one, two = Batch([_event(1), _event(2)]), Batch([_event(3)])
    for _ in range(100):
        assert one.encoded(encode) == b"1;2;"
    joined = Batch.joined([one, two])
    assert list(joined) == [_event(1), _event(2), _event(3)]
    assert joined.encoded(encode) == b"1;2;3;"
    assert calls == [1, 2, 3]  # each event once, whatever the number of watchers
    assert Batch.joined([two]) is two
    assert one.has("progress") and not one.has("done")


def test_the_window_drops_whole_batches_oldest_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tails_module, "WINDOW", 8)
    tail = Tail("j", 0, ScriptedLog().read, Signals())
    tail._publish([_event(s) for s in range(1, 5)])
    tail._publish([_event(s) for s in range(5, 9)])
    assert (tail.start, tail.size) == (0, 8)
    tail._publish([_event(s) for s in range(9, 12)])  # past 8: the oldest go, down to half
    assert (tail.start, [e.seq for e in tail.events]) == (8, [9, 10, 11])
    assert tail.since(8) is tail.batches[0]  # a watcher at a batch's start takes it whole
    assert [e.seq for e in tail.since(9)] == [10, 11]
    tail._publish([_event(s) for s in range(12, 32)])  # one batch past the window alone
    assert (tail.start, [e.seq for e in tail.events]) == (27, list(range(28, 32)))
    assert tail.size == 4
