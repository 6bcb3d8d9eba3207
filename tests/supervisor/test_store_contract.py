"""One contract, two backends: the embedded engine and the real Redis.

The store's methods run on three engines: the embedded engine with the scripts' Python twins
(what ``memory://`` runs), the same engine running the Lua, and Redis. The scripts themselves
are held to one another in test_store_scripts.py.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable

import pytest

from shared import IdempotencyConflict, Job, JobNotFound, JobStatus, Keys, now
from shared.errors import DelegationLimit
from supervisor.store import MAX_BLOCK_MS, AdmissionFull, Fenced, Store, open_store
from supervisor.store.codec import text


@pytest.fixture(params=["memory", "memory-lua", "redis", "redis-sharded", "cluster"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    if request.param == "memory":
        async with open_store("memory://", Keys("t")) as s:
            yield s
    elif request.param == "memory-lua":
        async with open_store("memory://", Keys("t")) as s:
            yield Store(
                s.client, s.keys, retention_s=s.retention_s, idempotency_ttl_s=60, twins=False
            )
    elif request.param == "cluster":
        url = request.getfixturevalue("redis_cluster")
        prefix = request.getfixturevalue("cluster_prefix")
        async with open_store(url, Keys(prefix), retention_s=120) as s:
            yield s
    else:  # redis-sharded: 4 shards on one server (a cluster has 64: CLUSTER_SHARDS)
        url = request.getfixturevalue("redis_url")
        prefix = request.getfixturevalue("key_prefix")
        shards = 4 if request.param == "redis-sharded" else None
        async with open_store(url, Keys(prefix), retention_s=120, shards=shards) as s:
            yield s


async def every_shard(store: Store, index: Callable[[Keys], str]) -> set[str]:
    """The members of ``index`` in every shard of ``store``."""
    out: set[str] = set()
    for k in store.keys.every_shard():
        out |= {text(m) for m in await store.client.zrange(index(k), 0, -1)}
    return out


def make_job(capability: str = "echo", key: str | None = None, **kw: object) -> Job:
    fields: dict[str, object] = {
        "id": uuid.uuid4().hex,
        "status": JobStatus.QUEUED,
        "capability": capability,
        "input": {"value": 1},
        "correlation_id": "corr-" + uuid.uuid4().hex[:6],
        "idempotency_key": key,
        "created_at": now(),
    }
    return Job.model_validate({**fields, **kw})


async def test_submit_get_roundtrip(store: Store) -> None:
    job = make_job(labels={"team": "a"})
    _, created = await store.submit(job, fingerprint="f", queue_limit=10)
    assert created
    got = await store.get(job.id)
    assert got == job
    events = await store.events(job.id)
    assert [(e.seq, e.type, e.data) for e in events] == [(1, "status", {"status": "queued"})]
    assert events[0].correlation_id == job.correlation_id


async def test_children_are_listed_and_limited(store: Store) -> None:
    parent = make_job()
    await store.submit(parent, fingerprint="p", queue_limit=10)
    kids = [make_job(parent_id=parent.id, depth=1) for _ in range(2)]
    for kid in kids:
        await store.submit(kid, fingerprint="k", queue_limit=10, max_children=2)
    with pytest.raises(DelegationLimit):
        await store.submit(
            make_job(parent_id=parent.id), fingerprint="k", queue_limit=10, max_children=2
        )
    assert await store.children(parent.id) == [k.id for k in kids]
    got = await store.get_with_children(parent.id)
    assert got.children == [k.id for k in kids] and got.id == parent.id
    assert (await store.get_with_children(kids[0].id)).children is None
    with pytest.raises(JobNotFound):
        await store.get_with_children("nope")


async def test_unknown_job(store: Store) -> None:
    with pytest.raises(JobNotFound):
        await store.get("nope")


async def test_idempotency_same_and_different_body(store: Store) -> None:
    key = uuid.uuid4().hex
    first, created = await store.submit(make_job(key=key), fingerprint="a", queue_limit=10)
    again, created2 = await store.submit(make_job(key=key), fingerprint="a", queue_limit=10)
    assert created and not created2 and again.id == first.id
    with pytest.raises(IdempotencyConflict):
        await store.submit(make_job(key=key), fingerprint="b", queue_limit=10)


async def test_admission_limit_per_capability(store: Store) -> None:
    await store.submit(make_job("a"), fingerprint="x", queue_limit=2)
    await store.submit(make_job("a"), fingerprint="x", queue_limit=2)
    with pytest.raises(AdmissionFull):
        await store.submit(make_job("a"), fingerprint="x", queue_limit=2)
    await store.submit(make_job("b"), fingerprint="x", queue_limit=2)  # another capability
    assert (await store.queue_depths())["a"] == 2


async def test_admission_is_fair_between_tenants(store: Store) -> None:
    """With a share of 0.5 of a limit of 4, one tenant's queued jobs take 2 places at most:
    the others still get in; leaving the queue (running, ended) gives a place back."""
    limits = {"fingerprint": "x", "queue_limit": 4, "tenant_share": 0.5}
    acme = [make_job("a", tenant="acme") for _ in range(2)]
    for job in acme:
        await store.submit(job, **limits)
    with pytest.raises(AdmissionFull) as refused:
        await store.submit(make_job("a", tenant="acme"), **limits)
    assert refused.value.tenant == "acme" and refused.value.depth == 2
    await store.submit(make_job("a", tenant="bolt"), **limits)  # another tenant gets in
    await store.submit(make_job("a"), **limits)  # and a job without a tenant
    assert await store.queue_depths() == {"a": 4}  # the shares are not capabilities
    await store.transition(
        acme[0].id, allowed=[JobStatus.QUEUED], event="status", data={}, status=JobStatus.RUNNING
    )
    await store.submit(make_job("a", tenant="acme"), **limits)  # its place came back


async def test_transition_guards_and_counts(store: Store) -> None:
    job = make_job("c")
    await store.submit(job, fingerprint="x", queue_limit=10)
    seq = await store.transition(
        job.id,
        allowed=[JobStatus.QUEUED],
        event="status",
        data={"status": "running"},
        status=JobStatus.RUNNING,
        attempts=1,
    )
    assert seq == 2
    assert (await store.queue_depths())["c"] == 0
    refused = await store.transition(job.id, allowed=[JobStatus.QUEUED], status=JobStatus.CANCELLED)
    assert refused is None
    final = (await store.get(job.id)).model_copy(update={"status": JobStatus.SUCCEEDED})
    seq = await store.transition(
        job.id,
        event="status",
        data={"status": "succeeded"},
        finish=True,
        done=final,
        status=JobStatus.SUCCEEDED,
        result={"ok": True},
    )
    assert seq == 4
    got = await store.get(job.id)
    assert got.status is JobStatus.SUCCEEDED and got.result == {"ok": True} and got.attempts == 1
    events = await store.events(job.id)
    assert [e.type for e in events] == ["status", "status", "status", "done"]
    assert events[-1].data["status"] == "succeeded"
    assert 0 < await store.client.ttl(store.keys.of(job.id).job(job.id)) <= store.retention_s


async def test_events_resume_and_block(store: Store) -> None:
    job = make_job()
    await store.submit(job, fingerprint="x", queue_limit=10)
    for i in range(5):
        await store.append(job.id, "progress", {"progress": i})
    after3 = await store.events(job.id, after=3)
    assert [e.seq for e in after3] == [4, 5, 6]

    async def later() -> None:
        await asyncio.sleep(0)
        await store.append(job.id, "log", {"message": "hi"})

    task = asyncio.create_task(later())
    got = await store.events(job.id, after=6, block_ms=5000)
    await task
    assert [(e.seq, e.type) for e in got] == [(7, "log")]


async def test_dispatch_take_ack_and_reclaim(store: Store) -> None:
    job = make_job()
    await store.submit(job, fingerprint="x", queue_limit=10)
    taken = await store.take(10, block_ms=100)
    assert [j for _, j in taken] == [job.id]
    assert await store.take(10, block_ms=10) == []
    # Another replica reclaims once the lease lapses (idle 0 here = lapsed at once).
    other = Store(store.client, store.keys, retention_s=60, idempotency_ttl_s=60)
    reclaimed = await other.reclaim(min_idle_ms=0)
    assert [j for _, j in reclaimed] == [job.id]
    await other.ack(reclaimed[0][0])
    assert await other.reclaim(min_idle_ms=0) == []


async def test_a_waiting_take_wakes_for_a_submit(store: Store) -> None:
    """A take blocked on an empty queue returns the job submitted meanwhile (the engine's
    takers are woken by the write itself), not at the end of its wait."""
    await store.ensure_group()
    taking = asyncio.ensure_future(store.take(10, block_ms=60_000))
    await asyncio.sleep(0)  # the take is waiting
    job = make_job()
    await store.submit(job, fingerprint="x", queue_limit=10)
    # Well inside the 2 s one read waits at most (MAX_BLOCK_MS): a take nobody woke would
    # see the job only at the end of that read.
    taken = await asyncio.wait_for(taking, timeout=MAX_BLOCK_MS / 1000 * 0.75)
    assert [j for _, j in taken] == [job.id]


async def test_leases_taken_together_answer_as_each_alone(store: Store) -> None:
    """The intake's deliveries take their leases in the same turn (one pipeline on Redis):
    each answers as it would alone (a gone job: JobNotFound; a delivery a reclaim took over:
    Fenced)."""
    jobs = [make_job() for _ in range(3)]
    for job in jobs:
        await store.submit(job, fingerprint="x", queue_limit=10)
    taken = await store.take(10, block_ms=100)
    assert sorted(j for _, j in taken) == sorted(job.id for job in jobs)  # FIFO per shard
    taken = [next(t for t in taken if t[1] == job.id) for job in jobs]
    await store.acquire(jobs[2].id, entry=taken[2][0], reclaimed=True)  # a reclaim came first
    leases = await asyncio.gather(
        *(store.acquire(j, entry=e) for e, j in [*taken, ("0-1", "no-such-job")]),
        return_exceptions=True,
    )
    (f0, j0, _), (f1, j1, flags1), stale, missing = leases  # type: ignore[misc]
    assert (f0, j0.id, j0.status) == (1, jobs[0].id, JobStatus.QUEUED)
    assert (f1, j1.id, flags1["fence"]) == (1, jobs[1].id, "1")
    assert isinstance(stale, Fenced) and isinstance(missing, JobNotFound)


async def test_list_newest_first_with_cursor(store: Store) -> None:
    jobs = []
    for i in range(5):
        j = make_job("l", created_at=now() + i)
        jobs.append(j)
        await store.submit(j, fingerprint="x", queue_limit=100)
    page, cursor = await store.list_jobs(capability="l", limit=3)
    assert [j.id for j in page] == [j.id for j in reversed(jobs)][:3]
    page2, _ = await store.list_jobs(capability="l", limit=3, before=cursor)
    assert [j.id for j in page2] == [j.id for j in reversed(jobs)][3:]


async def test_listing_by_status_reads_that_status_index(store: Store) -> None:
    """Each status change moves the job between the status indexes in the same script, so a
    status listing pages through that status's jobs alone, newest first, with a cursor."""
    jobs = [make_job("s", created_at=now() + i) for i in range(6)]
    for job in jobs:
        await store.submit(job, fingerprint="x", queue_limit=100)
    for job in jobs[:4]:
        await store.transition(
            job.id, allowed=[JobStatus.QUEUED], event="status", data={}, status=JobStatus.RUNNING
        )
    await store.transition(
        jobs[0].id, allowed=[JobStatus.RUNNING], event="status", data={},
        status=JobStatus.SUCCEEDED, finish=True,
    )  # fmt: skip
    running = [j.id for j in reversed(jobs[1:4])]
    page, cursor = await store.list_jobs(status=JobStatus.RUNNING, limit=2)
    assert [j.id for j in page] == running[:2]
    page2, _ = await store.list_jobs(status=JobStatus.RUNNING, limit=2, before=cursor)
    assert [j.id for j in page2] == running[2:]
    queued, _ = await store.list_jobs(status=JobStatus.QUEUED, limit=10)
    assert [j.id for j in queued] == [j.id for j in reversed(jobs[4:])]
    done, _ = await store.list_jobs(status=JobStatus.SUCCEEDED, limit=10)
    assert [j.id for j in done] == [jobs[0].id]
    members = await every_shard(store, lambda k: k.by_status("running"))
    assert sorted(members) == sorted(running)


async def test_status_indexes_are_built_for_a_store_written_before_them(store: Store) -> None:
    jobs = [make_job("u", created_at=now() + i) for i in range(3)]
    for job in jobs:
        await store.submit(job, fingerprint="x", queue_limit=100)
    for k in store.keys.every_shard():  # as an older version left them
        await store.client.delete(*k.status_indexes())
    assert (await store.list_jobs(status=JobStatus.QUEUED))[0] == []
    assert await store.index_by_status() == 3
    listed, _ = await store.list_jobs(status=JobStatus.QUEUED, limit=10)
    assert [j.id for j in listed] == [j.id for j in reversed(jobs)]
    assert await store.index_by_status() == 0  # once per store


async def test_short_ids_find_jobs_by_the_start_of_their_id(store: Store) -> None:
    ids = []
    for job_id in ["abcdef01" + "0" * 24, "abcdef02" + "0" * 24, "abcdff00" + "0" * 24]:
        job = make_job("u", id=job_id)
        await store.submit(job, fingerprint="x", queue_limit=100)
        ids.append(job.id)  # a sharded store places it: its digits from the 13th may change
    assert await store.ids_with_prefix("abcdef") == ids[:2]  # in id order
    assert await store.ids_with_prefix("abcdef02") == [ids[1]]
    assert await store.ids_with_prefix("abcd", limit=1) == [ids[0]]
    assert await store.ids_with_prefix("abcdf0") == []
    assert await store.ids_with_prefix(ids[2]) == [ids[2]]  # a whole id starts itself
    await store.client.delete(store.keys.of(ids[0]).job(ids[0]))  # its record expired
    assert await store.ids_with_prefix("abcdef") == [ids[1]]
    assert ids[0] not in await every_shard(store, lambda k: k.ids)


async def test_short_id_index_is_built_for_a_store_written_before_it(store: Store) -> None:
    jobs = [make_job("u") for _ in range(3)]
    for job in jobs:
        await store.submit(job, fingerprint="x", queue_limit=100)
    for k in store.keys.every_shard():  # as an older version left it
        await store.client.delete(k.ids)
    assert await store.ids_with_prefix(jobs[0].id[:12]) == []
    assert await store.index_ids() == 3
    assert await store.ids_with_prefix(jobs[0].id[:12]) == [jobs[0].id]
    assert await store.index_ids() == 0  # once per store


async def test_dead_letters(store: Store) -> None:
    job = make_job()
    await store.submit(job, fingerprint="x", queue_limit=10)
    await store.dead_letter(job.id)
    assert [j.id for j in await store.dead_letters()] == [job.id]
    assert await store.is_dead_letter(job.id)
    assert not await store.is_dead_letter(make_job().id)


async def test_fencing_refuses_a_stale_holder(store: Store) -> None:
    job = make_job()
    await store.submit(job, fingerprint="f", queue_limit=10)
    first, read, flags = await store.acquire(job.id)
    assert read == job and flags["fence"] == str(first)  # the lease and the read at once
    second, _, _ = await store.acquire(job.id)  # a reclaim by another supervisor
    assert second > first
    assert await store.leases([job.id, "gone"]) == {job.id: (second, False), "gone": (None, False)}
    await store.publish_cancel(job.id)
    assert await store.leases([job.id]) == {job.id: (second, True)}
    await store.client.hset(store.keys.of(job.id).job(job.id), "cancel", "")
    running = (JobStatus.QUEUED, JobStatus.RUNNING)
    with pytest.raises(Fenced):
        await store.append(job.id, "progress", {"progress": 1}, fence=first)
    with pytest.raises(Fenced):
        await store.transition(job.id, allowed=running, event="status", fence=first)
    assert await store.append(job.id, "progress", {"progress": 1}, fence=second) == 2
    seq = await store.transition(
        job.id,
        allowed=running,
        event="status",
        data={"status": "failed"},
        finish=True,
        done=job,
        fence=second,
        dead_letter=True,
        status=JobStatus.FAILED,
    )
    assert seq == 4
    assert [j.id for j in await store.dead_letters()] == [job.id]  # in the same script
    # nothing is ever appended after done, whoever asks
    assert await store.append(job.id, "progress", {"progress": 2}, fence=second) == -1
    assert await store.append(job.id, "log", {"message": "late"}) == -1
    assert [e.type for e in await store.events(job.id)] == ["status", "progress", "status", "done"]
    with pytest.raises(JobNotFound):
        await store.acquire("nope")


async def test_requeue_is_one_step(store: Store) -> None:
    job = make_job()
    await store.submit(job, fingerprint="f", queue_limit=10)
    [(entry, _)] = await store.take(10, block_ms=10)
    fence, _, _ = await store.acquire(job.id)
    await store.transition(
        job.id,
        allowed=(JobStatus.QUEUED,),
        event="status",
        data={"status": "failed"},
        finish=True,
        done=job,
        fence=fence,
        dead_letter=True,
        status=JobStatus.FAILED,
    )
    seq = await store.requeue(
        job.id,
        allowed=(JobStatus.FAILED,),
        data={"status": "queued", "redriven": True},
        entry_id=entry,
        attempts=0,
    )
    assert seq == 4
    assert (await store.get(job.id)).status is JobStatus.QUEUED
    assert await store.dead_letters() == []
    assert [j for _, j in await store.take(10, block_ms=10)] == [job.id]  # a new delivery
    assert (
        await store.requeue(job.id, allowed=(JobStatus.FAILED,), data={"status": "queued"}) is None
    )


async def test_trim_drops_expired_index_entries_and_gone_consumers(store: Store) -> None:
    old_gone = make_job(created_at=now() - 10 * store.retention_s)
    old_alive = make_job(created_at=now() - 10 * store.retention_s)  # still queued: kept
    for job in (old_gone, old_alive):
        await store.submit(job, fingerprint=job.id, queue_limit=10)
    dead = store.keys.of(old_gone.id).dead
    await store.client.zadd(dead, {old_gone.id: now() - 10 * store.retention_s})
    await store.client.delete(store.keys.of(old_gone.id).job(old_gone.id))  # its record expired
    assert len(await store.take(10, block_ms=10)) == 2
    ghost = Store(store.client, store.keys, retention_s=store.retention_s, idempotency_ttl_s=60)
    await store.submit(make_job(), fingerprint="g", queue_limit=10)
    [(entry, _)] = await ghost.take(1, block_ms=10)  # another supervisor's consumer ...
    await ghost.ack(entry)  # ... that finished its work and went away
    removed = await store.trim(consumer_idle_s=0)
    assert removed["jobs"] == 1 and removed["dead"] == 1
    listed = {j.id for j in (await store.list_jobs(limit=100))[0]}
    assert old_alive.id in listed and old_gone.id not in listed
    in_ids = await every_shard(store, lambda k: k.ids)
    assert old_alive.id in in_ids and old_gone.id not in in_ids  # the short-id index too
    if not store.embedded:  # the engine has no XINFO CONSUMERS
        assert removed["consumers"] >= 1


async def test_acquire_and_start_writes_what_acquire_then_transition_would(store: Store) -> None:
    """The dispatcher's one-round-trip start of a job it knows the route of leaves the job,
    its events, its queued count and its status index as the lease and then the ``running``
    TRANSITION leave them; it starts only a fresh delivery of a queued job with no cancel."""
    active = (JobStatus.QUEUED, JobStatus.RUNNING)
    jobs = [make_job("c", tenant="t1") for _ in range(4)]
    for job in jobs:
        await store.submit(job, fingerprint="x", queue_limit=10, tenant_share=10)
    entries = {j: e for e, j in await store.take(10, block_ms=100)}
    two_steps, one_step, cancelled, ended = jobs
    ts = now()
    fence, _, _ = await store.acquire(two_steps.id, entry=entries[two_steps.id])
    data = {"status": "running", "attempt": 1, "worker": "w-1"}
    seq = await store.transition(two_steps.id, allowed=active, event="status", data=data,
                                 status=JobStatus.RUNNING, attempts=1, worker="w-1",
                                 started_at=ts, fence=fence)  # fmt: skip
    assert seq == 2
    fence, job, flags, started = await store.acquire_and_start(
        one_step.id, entry=entries[one_step.id], worker="w-1", ts=ts
    )
    assert started and (fence, flags["fence"]) == (1, "1")
    assert (job.status, job.attempts, job.worker, job.started_at) == (
        JobStatus.RUNNING, 1, "w-1", ts
    )  # fmt: skip
    a, b = await store.get(two_steps.id), await store.get(one_step.id)
    same = ("status", "attempts", "worker", "started_at", "capability", "tenant", "error")
    assert b == job and [getattr(a, f) for f in same] == [getattr(b, f) for f in same]
    ea, eb = await store.events(two_steps.id), await store.events(one_step.id)
    assert [(e.seq, e.type, e.data) for e in ea] == [(e.seq, e.type, e.data) for e in eb]
    assert (await store.queue_depths())["c"] == 2  # the two not started
    running, _ = await store.list_jobs(status=JobStatus.RUNNING, limit=10)
    assert {j.id for j in running} == {two_steps.id, one_step.id}
    await store.publish_cancel(cancelled.id)
    fence, job, flags, started = await store.acquire_and_start(
        cancelled.id, entry=entries[cancelled.id], worker="w-1", ts=ts
    )
    assert not started and job.status is JobStatus.QUEUED and flags["cancel"] == "1"
    assert fence == 1 and [e.type for e in await store.events(cancelled.id)] == ["status"]
    await store.transition(ended.id, allowed=active, status=JobStatus.CANCELLED)
    _, job, _, started = await store.acquire_and_start(
        ended.id, entry=entries[ended.id], worker="w-1", ts=ts
    )
    assert not started and job.status is JobStatus.CANCELLED
    await store.acquire(one_step.id, entry=entries[one_step.id], reclaimed=True)
    with pytest.raises(Fenced):  # a reclaim took the delivery over: its fresh holder is stale
        await store.acquire_and_start(one_step.id, entry=entries[one_step.id], worker="w", ts=ts)
    with pytest.raises(JobNotFound):
        await store.acquire_and_start("nope", entry="1-1", worker="w", ts=ts)
