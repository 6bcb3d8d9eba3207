"""Progress at scale: one read of a job's log for all its watchers (tails), events written in
batches while a write is in flight (EventWriter), and ``?wait`` served from this process's
own write. Real stores: the embedded engine and Redis."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from typing import Any

import pytest

from shared import Event, JobStatus, Keys, Progress, StoreUnavailable
from supervisor.dispatch.writer import EventWriter
from supervisor.store import Fenced, Store, open_store
from supervisor.store import tails as tails_module
from tests.helpers import wait_until
from tests.supervisor.conftest import start_fleet
from tests.supervisor.test_store_contract import make_job


class Reads:
    """Counts the store's event-log reads (the one seam every follower and tail reads by)."""

    def __init__(self, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real = store._read_events

        async def counted(job_id: str, after: int, count: int) -> list[Event]:
            self.count += 1
            return await real(job_id, after, count)

        monkeypatch.setattr(store, "_read_events", counted)
        store._tails._read = counted


async def _watch(store: Store, job_id: str, got: list[Event], after: int = 0) -> None:
    async for batch in store.follow(job_id, after=after, idle_s=0.05):
        got.extend(batch)


async def test_many_watchers_share_one_read_per_batch(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = make_job()
    await store.submit(job, fingerprint="f", queue_limit=10)
    reads = Reads(store, monkeypatch)
    crowd: list[list[Event]] = [[] for _ in range(50)]
    tasks = [asyncio.create_task(_watch(store, job.id, got)) for got in crowd]
    await wait_until(lambda: all(crowd), message="every watcher has its first batch")
    joined = reads.count  # one first read each
    for n in range(20):
        await store.append(job.id, "progress", {"n": n})
    await wait_until(lambda: all(len(got) == 21 for got in crowd), message="every event, all")
    for got in crowd:
        assert [e.seq for e in got] == list(range(1, 22))  # in order, none twice
    # 20 appends, 50 watchers: one read per wake-up of the tail (at most 20 + its first),
    # not one per watcher (1,000)
    assert reads.count - joined <= 21, reads.count - joined
    shared = sum(a is b for a, b in zip(crowd[0][1:], crowd[1][1:], strict=True))
    assert shared == 20  # the same event objects: the JSON is made once for all
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await wait_until(lambda: not store._tails._tails, message="the tail ends with its watchers")


async def test_a_watcher_behind_the_window_catches_up_from_the_store(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tails_module, "WINDOW", 8)
    job = make_job()
    await store.submit(job, fingerprint="f", queue_limit=10)
    front: list[Event] = []
    late: list[Event] = []
    watchers = [asyncio.create_task(_watch(store, job.id, front))]
    try:
        await wait_until(lambda: front, message="first watcher joined")
        await store.append_many(job.id, [("progress", {"n": n}) for n in range(30)])
        await wait_until(lambda: len(front) == 31, message="the front watcher has all")
        tail = store._tails._tails[job.id]
        assert tail.start > 1  # the window moved past the start of the log
        watchers.append(asyncio.create_task(_watch(store, job.id, late, after=0)))
        await store.append(job.id, "log", {"message": "one more"})
        await wait_until(lambda: len(late) == 32, message="the late watcher caught up")
        assert [e.seq for e in late] == list(range(1, 33))
    finally:  # also when an assertion failed: a watcher left running would outlive the store
        for task in watchers:
            task.cancel()
        await asyncio.wait_for(asyncio.gather(*watchers, return_exceptions=True), 10)


async def test_an_ended_jobs_stream_is_whole_for_a_watcher_joining_a_live_tail(
    store: Store,
) -> None:
    """A watcher's first batch is its own read: joining a tail mid-read loses nothing."""
    job = make_job()
    await store.submit(job, fingerprint="f", queue_limit=10)
    early: list[Event] = []
    watcher = asyncio.create_task(_watch(store, job.id, early))
    await wait_until(lambda: early, message="joined")
    await store.append(job.id, "progress", {"n": 1})
    await store.transition(job.id, event="status", data={"status": "succeeded"}, finish=True,
                           done=job, status=JobStatus.SUCCEEDED)  # fmt: skip
    late: list[Event] = []
    async for batch in store.follow(job.id, after=0, idle_s=0.05):
        late.extend(batch)
        if any(e.type == "done" for e in late):
            break
    assert [e.type for e in late] == ["status", "progress", "status", "done"]
    watcher.cancel()
    await asyncio.gather(watcher, return_exceptions=True)


class SlowLog:
    """An event log whose writes wait for a gate: what arrives meanwhile is batched."""

    def __init__(self, fail: BaseException | None = None) -> None:
        self.writes: list[tuple[list[tuple[str, dict[str, Any]]], dict[str, Any]]] = []
        self.gate = asyncio.Event()
        self.writing = asyncio.Event()
        self.fail = fail

    async def append_many(
        self, job_id: str, events: list[tuple[str, dict[str, Any]]], *, fence: Any, **fields: Any
    ) -> int:
        self.writing.set()
        await self.gate.wait()
        self.writes.append((list(events), fields))
        if self.fail is not None:
            raise self.fail
        return len(self.writes)


async def test_events_arriving_during_a_write_go_together_in_the_next() -> None:
    log = SlowLog()
    writer = EventWriter(log, "j", fence=1)  # type: ignore[arg-type]
    await writer.add("progress", {"n": 0}, progress=Progress(progress=0))
    await asyncio.wait_for(log.writing.wait(), 5)  # the first write is in flight
    for n in range(1, 5):
        await writer.add("progress", {"n": n}, progress=Progress(progress=n))
    await writer.add("log", {"message": "m"})
    log.gate.set()
    await writer.flush()
    assert [[d.get("n", "log") for _, d in events] for events, _ in log.writes] == [
        [0],
        [1, 2, 3, 4, "log"],
    ]
    assert log.writes[1][1]["progress"].progress == 4  # the record keeps the latest progress


async def test_a_stale_fence_reaches_the_call_and_an_outage_does_not() -> None:
    fenced = SlowLog(fail=Fenced("j"))
    writer = EventWriter(fenced, "j", fence=1)  # type: ignore[arg-type]
    fenced.gate.set()
    await writer.add("progress", {"n": 0})
    with pytest.raises(Fenced):
        await writer.flush()
    with pytest.raises(Fenced):
        await writer.add("progress", {"n": 1})
    out = SlowLog(fail=StoreUnavailable("down"))
    writer = EventWriter(out, "j", fence=1)  # type: ignore[arg-type]
    out.gate.set()
    await writer.add("progress", {"n": 0})
    await writer.flush()  # best effort: the call goes on
    await writer.add("progress", {"n": 1})
    await writer.flush()
    assert len(out.writes) == 2


async def test_wait_takes_the_ended_job_from_this_process_without_a_read(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = make_job()
    with store.ending(job.id) as ending:
        await store.submit(job, fingerprint="f", queue_limit=10)
        hgetall = 0
        real = store._call

        async def counted(method: str, *args: Any, **kwargs: Any) -> Any:
            nonlocal hgetall
            hgetall += method == "hgetall"
            return await real(method, *args, **kwargs)

        monkeypatch.setattr(store, "_call", counted)
        waiter = asyncio.create_task(ending.wait(10, known=job))
        done = job.model_copy(update={"status": JobStatus.SUCCEEDED, "result": {"ok": 1}})
        await store.transition(job.id, event="status", data={"status": "succeeded"},
                               finish=True, done=done, status=JobStatus.SUCCEEDED,
                               result={"ok": 1})  # fmt: skip
        ended = await waiter
    assert ended.status is JobStatus.SUCCEEDED and ended.result == {"ok": 1}
    assert hgetall == 0
    assert await store.get(job.id) == ended  # what it was handed is what is stored


@pytest.mark.redis
async def test_watchers_read_through_their_own_pool_and_cannot_starve_jobs(
    redis_url: str, key_prefix: str
) -> None:
    """Every connection of the watchers' pool taken: jobs still run and answer."""
    async with AsyncExitStack() as stack:
        fleet = await start_fleet(stack, redis_url=redis_url, prefix=key_prefix, workers=1,
                                  watch_connections=2)  # fmt: skip
        store = fleet.services.store
        watch_pool = store._watch_r.connection_pool
        assert watch_pool is not store._r.connection_pool
        taken = [await watch_pool.get_connection() for _ in range(2)]  # a crowd holds them
        try:
            r = await fleet.api.post("/v1/jobs", params={"wait": 10},
                                     json={"capability": "noop"})  # fmt: skip
            assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
        finally:
            for connection in taken:
                await watch_pool.release(connection)
        got: list[Event] = []
        async for batch in store.follow(r.json()["id"], idle_s=0.05):
            got.extend(batch)
            if got:
                break
        assert got[0].type == "status"  # and the watchers' reads go on once it frees


async def test_watchers_beyond_the_pool_wait_in_turn_not_in_the_pool(
    redis_url: str, key_prefix: str
) -> None:
    """A crowd of watchers' reads waits in the store's own gate: no more callers than the
    pool has connections ever wait inside redis-py's pool, whose waiters lost wake-ups under
    a crowd (2,000 streams at once) and gave up after 10 s."""
    async with open_store(redis_url, Keys(key_prefix), watch_connections=2) as store:
        pool = store._watch_r.connection_pool
        inside, most = 0, 0
        get = pool.get_connection

        async def counted(*args: Any, **kwargs: Any) -> Any:
            nonlocal inside, most
            inside += 1
            most = max(most, inside)
            try:
                return await get(*args, **kwargs)
            finally:
                inside -= 1

        pool.get_connection = counted
        reads = await asyncio.gather(*(store.events(f"job-{i}") for i in range(200)))
        assert reads == [[]] * 200 and most <= 2
