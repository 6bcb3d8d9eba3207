"""A sharded store (``FLEET_SHARDS``) through the real HTTP API on the real Redis: jobs spread
over the shards' queues and records, and everything that reads across them — listing with a
cursor, short ids, dead letters, queue depths and the admission limit, usage — sees them all.

The same store runs the contract suite (test_store_contract.py, ``redis-sharded`` and
``cluster``); this file is what a user of the API sees of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest

from shared import Job, JobStatus, Keys, now
from shared.keys import shard_of
from supervisor.store import open_store
from tests.helpers import wait_until
from tests.supervisor.conftest import Fleet, start_fleet

SHARDS = 4


@pytest.fixture
async def fleet(redis_url: str, key_prefix: str) -> AsyncIterator[Fleet]:
    async with AsyncExitStack() as stack:
        yield await start_fleet(stack, redis_url=redis_url, prefix=key_prefix, shards=SHARDS)


async def test_jobs_spread_over_every_shard_and_all_run(fleet: Fleet) -> None:
    jobs = await asyncio.gather(*(fleet.submit("steps", {"n": 2}) for _ in range(40)))
    assert {j["id"][12] for j in jobs} == {"8"}  # a sharded id: a UUIDv8 ...
    assert {shard_of(j["id"]) for j in jobs} == set(range(SHARDS))  # ... naming its shard
    done = await asyncio.gather(*(fleet.wait(j["id"]) for j in jobs))
    assert {d["status"] for d in done} == {"succeeded"}
    assert {d["attempts"] for d in done} == {1}
    redis = fleet.services.store.client
    for shard in range(SHARDS):  # each shard's queue was taken from and emptied
        queue = Keys(fleet.settings.key_prefix).shard(shard).queue
        assert await redis.xlen(queue) == 0


async def test_listing_pages_merge_the_shards_newest_first(fleet: Fleet) -> None:
    ids = [(await fleet.submit("noop"))["id"] for _ in range(12)]
    for job_id in ids:
        await fleet.wait(job_id)
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 5, "capability": "noop", **({"cursor": cursor} if cursor else {})}
        body = (await fleet.api.get("/v1/jobs", params=params)).json()
        seen += [j["id"] for j in body["jobs"]]
        cursor = body.get("next_cursor")
        if not cursor:
            break
    assert seen == list(reversed(ids))  # every shard's, newest first, none twice
    running = (await fleet.api.get("/v1/jobs", params={"status": "succeeded"})).json()
    assert {j["id"] for j in running["jobs"]} == set(ids)


async def test_short_ids_dead_letters_and_redrive_across_shards(fleet: Fleet) -> None:
    failed = [await fleet.submit("fail", {"code": "NOPE"}) for _ in range(6)]
    for job in failed:
        assert (await fleet.wait(job["id"]))["status"] == "failed"
    assert len({shard_of(j["id"]) for j in failed}) > 1
    dead = (await fleet.api.get("/v1/dead-letters")).json()["jobs"]
    assert {d["id"] for d in dead} == {j["id"] for j in failed}
    short = failed[-1]["id"][:10]
    assert (await fleet.api.get(f"/v1/jobs/{short}")).json()["id"] == failed[-1]["id"]
    r = await fleet.api.post(f"/v1/dead-letters/{short}/redrive")
    assert r.status_code == 202, r.text
    assert (await fleet.wait(failed[-1]["id"]))["status"] == "failed"


async def test_a_child_lives_in_its_parents_shard(fleet: Fleet) -> None:
    parent = await fleet.submit("hold")
    kids = [
        (await fleet.api.post("/v1/jobs", json={"capability": "noop", "parent_id": parent["id"]}))
        for _ in range(5)
    ]
    kid_ids = [k.json()["id"] for k in kids]
    assert {shard_of(k) for k in kid_ids} == {shard_of(parent["id"])}
    got = (await fleet.api.get(f"/v1/jobs/{parent['id']}")).json()
    assert got["children"] == kid_ids
    for k in kid_ids:
        assert (await fleet.wait(k))["status"] == "succeeded"
    for seen in fleet.seen.values():
        seen.release.set()
    assert (await fleet.wait(parent["id"]))["status"] == "succeeded"


async def test_an_idempotency_key_replays_from_its_shard(fleet: Fleet) -> None:
    headers = {"Idempotency-Key": "shard-key-1"}
    body = {"capability": "noop", "input": {}}
    first = await fleet.api.post("/v1/jobs", json=body, headers=headers)
    again = await fleet.api.post("/v1/jobs", json=body, headers=headers)
    assert first.status_code == 202 and again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]
    other = await fleet.api.post(
        "/v1/jobs", json={"capability": "steps", "input": {"n": 1}}, headers=headers
    )
    assert other.status_code == 409 and other.json()["error"]["code"] == "IDEMPOTENCY_CONFLICT"


async def test_the_queue_limit_counts_every_shard(redis_url: str, key_prefix: str) -> None:
    async with AsyncExitStack() as stack:
        fleet = await start_fleet(
            stack, redis_url=redis_url, prefix=key_prefix, shards=SHARDS, queue_limit=6,
            concurrency=1, tenant_queue_share=1.0,
        )  # fmt: skip
        await fleet.submit("hold")  # the one slot: the rest wait in the queue
        await wait_until(lambda: any(s.started.is_set() for s in fleet.seen.values()), timeout=10)
        codes = []
        for _ in range(10):
            r = await fleet.api.post("/v1/jobs", json={"capability": "hold", "input": {}})
            codes.append(r.status_code)
        assert codes.count(202) == 6 and codes.count(429) == 4, codes  # 6 over 4 shards
        depths = (await fleet.api.get("/v1/queues")).json()
        assert depths["queues"]["hold"] == 6, depths
        for seen in fleet.seen.values():
            seen.release.set()


async def test_a_submit_on_one_replica_wakes_the_takers_of_another(
    redis_url: str, key_prefix: str
) -> None:
    """No blocking read spans shards: a waiting take sleeps until a ``changed`` message says a
    job was queued (or its block runs out)."""
    keys = Keys(key_prefix)
    async with (
        open_store(redis_url, keys, retention_s=60, shards=SHARDS) as writer,
        open_store(redis_url, keys, retention_s=60, shards=SHARDS) as taker,
    ):
        listener = asyncio.create_task(taker.listen_changes())
        try:
            taker._queue_grew.clear()
            job = Job(
                id="0" * 32, status=JobStatus.QUEUED, capability="c", correlation_id="x",
                created_at=now(),
            )  # fmt: skip
            await writer.submit(job, fingerprint="f", queue_limit=10)
            await wait_until(taker._queue_grew.is_set, timeout=10, message="woken")
            [(entry, job_id)] = await taker.take(10, block_ms=10)
            assert job_id == job.id and entry.endswith(f"@{shard_of(job.id)}") == bool(
                shard_of(job.id)
            )
            await taker.ack(entry)
            pending = await taker.client.xpending(keys.shard(shard_of(job.id)).queue, "dispatchers")
            assert pending["pending"] == 0
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)


async def test_a_burst_beyond_a_cluster_nodes_pool_waits_rather_than_fails(
    redis_cluster: str, cluster_prefix: str
) -> None:
    """redis-py's cluster client fails a command when its node's pool is full
    (MaxConnectionsError) instead of waiting: the store's gate makes the burst wait."""
    async with open_store(redis_cluster, Keys(cluster_prefix), max_connections=8) as store:
        jobs = [
            Job(id=f"{i:032x}", status=JobStatus.QUEUED, capability="c", correlation_id="x",
                created_at=now())
            for i in range(200)
        ]  # fmt: skip
        results = await asyncio.gather(
            *(store.submit(j, fingerprint="f", queue_limit=1000) for j in jobs)
        )
        assert all(created for _, created in results)
        assert (await store.queue_depths())["c"] == 200
