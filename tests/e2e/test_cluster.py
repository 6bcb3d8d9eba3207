"""The fleet on a real Redis Cluster (``redis+cluster://``): supervisor and worker processes,
a batch through two supervisors, and a master killed with ``kill -9``.

A fleet's jobs are spread over 64 shards (CLUSTER_SHARDS), each a hash slot of its own with
its records, indexes and dispatch queue, so every master holds some of them. What a master's
death costs:
- with a replica per master, the replica takes over and nothing accepted is lost: every job
  that was answered 202 ends, exactly once; submissions during the takeover get 503;
- without a replica and without persistence, the restarted master comes back empty: the jobs
  of its shards are gone (404), the other masters' jobs are not — the fleet itself recovers
  and runs new work.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import httpx
import pytest
import redis
from redis.crc import key_slot

from bench.cluster import RedisClusterProcs
from shared.keys import shard_of, shard_prefix
from shared.redis_urls import cluster_nodes, store_prefix
from shared.serving import free_port
from tests.helpers import wait_until
from tests.processes import Proc, supervisor, worker

pytestmark = pytest.mark.e2e


@contextmanager
def fleet_on(
    url: str, prefix: str, supervisors: int = 2, workers: int = 2, heartbeat_s: float = 0.5
) -> Iterator[list[Proc]]:
    """``supervisors`` supervisor processes and ``workers`` self-registering echo workers,
    all on the cluster at ``url`` under ``prefix``. A registration lives 3 heartbeats."""
    common = {"FLEET_REDIS_URL": url, "FLEET_KEY_PREFIX": prefix}
    with ExitStack() as stack:
        for _ in range(workers):
            port = free_port()
            stack.enter_context(
                worker(
                    "echo",
                    port=port,
                    FLEET_ADVERTISE_URL=f"http://127.0.0.1:{port}/mcp",
                    FLEET_HEARTBEAT_S=str(heartbeat_s),
                    **common,
                )
            )
        sups = [
            stack.enter_context(
                supervisor(FLEET_PROBE_INTERVAL_S="0.3", FLEET_LEASE_S="3", **common)
            )
            for _ in range(supervisors)
        ]
        yield sups


async def registered(api: httpx.AsyncClient, n: int) -> None:
    async def healthy() -> bool:
        workers = (await api.get("/v1/workers")).json()["workers"]
        return sum(1 for w in workers if w["healthy"]) >= n

    await wait_until(healthy, timeout=30, message=f"{n} registered workers healthy")


async def test_a_batch_through_two_supervisors_with_progress_and_cancel(
    redis_cluster: str, cluster_prefix: str
) -> None:
    with fleet_on(redis_cluster, cluster_prefix) as (one, two):
        async with (
            httpx.AsyncClient(base_url=one.url, timeout=60) as a,
            httpx.AsyncClient(base_url=two.url, timeout=60) as b,
        ):
            await registered(a, 2)
            await registered(b, 2)
            gate = asyncio.Semaphore(32)

            async def submit(api: httpx.AsyncClient, body: dict[str, Any]) -> str:
                """Keyed, so a request cut by a keep-alive race is sent again safely."""
                key = {"Idempotency-Key": uuid.uuid4().hex}
                async with gate:
                    for _ in range(3):
                        try:
                            r = await api.post("/v1/jobs", json=body, headers=key)
                            break
                        except httpx.TransportError:
                            continue
                    assert r.status_code in (200, 202), r.text
                    return str(r.json()["id"])

            work = {"capability": "progress", "input": {"steps": 3, "delay_ms": 5}}
            batch = await asyncio.gather(*(submit((a, b)[i % 2], work) for i in range(500)))
            long = {"capability": "sleep", "input": {"seconds": 60, "steps": 60}}
            doomed = [await submit(a, long) for _ in range(5)]

            async def ended(api: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
                async with gate:
                    r = await api.get(f"/v1/jobs/{job_id}", params={"wait": 60})
                    return dict(r.json())

            async def running(job_id: str) -> bool:
                return (await b.get(f"/v1/jobs/{job_id}")).json()["status"] == "running"

            for job_id in doomed:  # submitted through one, cancelled through the other
                await wait_until(lambda j=job_id: running(j), timeout=60, message="running")
                r = await b.post(f"/v1/jobs/{job_id}/cancel")
                assert r.status_code in (200, 202), r.text
            done = await asyncio.gather(*(ended((b, a)[i % 2], j) for i, j in enumerate(batch)))
            failed = [(j["id"], j.get("error")) for j in done if j["status"] != "succeeded"]
            assert not failed, failed[:5]
            assert {j["attempts"] for j in done} == {1}
            cancelled = [await ended(a, j) for j in doomed]
            assert {j["status"] for j in cancelled} == {"cancelled"}
            async with b.stream("GET", f"/v1/jobs/{batch[0]}/events") as r:  # one's, via two
                lines = [line async for line in r.aiter_lines() if line.startswith("data:")]
            events = [json.loads(line[5:]) for line in lines]
            assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
            assert sum(e["type"] == "progress" for e in events) == 3
            assert events[-1]["type"] == "done"
    spread = records_per_master(redis_cluster, cluster_prefix)
    print(f"job records per master: {spread}")
    assert len(spread) == 3 and all(spread.values()), spread  # every master holds jobs
    assert sum(spread.values()) == len(batch) + len(doomed)
    assert len({shard_of(j) for j in batch}) > 32  # of 64: spread (each takes 1/64 at random)


def records_per_master(url: str, prefix: str) -> dict[str, int]:
    """How many of the fleet's job records each master of the cluster holds (SCAN is a
    node's own keys)."""
    (host, port), *_ = cluster_nodes(url)[0]
    seed = redis.Redis(host=host, port=port, decode_responses=True)
    try:
        masters = {(m[0], int(m[1])) for _, _, m, *_ in seed.cluster("slots")}
    finally:
        seed.close()
    out = {}
    for host, port in sorted(masters):
        node = redis.Redis(host=host, port=port, decode_responses=True)
        try:
            keys = node.scan_iter(match="{" + prefix + "[}.]*:job:*", count=1000)
            out[f"{host}:{port}"] = sum(1 for key in keys if key.count(":") == 2)
        finally:
            node.close()
    return out


def _slot_of_job(url: str, prefix: str, job_id: str) -> int:
    return key_slot(shard_prefix(store_prefix(url, prefix), shard_of(job_id)).encode())


def _master_of_fleet(cluster: RedisClusterProcs, prefix: str) -> Any:
    return cluster.master_of_slot(key_slot(store_prefix(cluster.url, prefix).encode()))


async def test_a_replica_takes_over_a_killed_master_and_nothing_accepted_is_lost() -> None:
    prefix = f"fleet-test-{uuid.uuid4().hex[:12]}"
    with (
        RedisClusterProcs(masters=3, replicas=1) as cluster,
        # registrations outlive the takeover (~2-3 s): a worker is not forgotten meanwhile
        fleet_on(cluster.url, prefix, supervisors=1, workers=1, heartbeat_s=3) as (sup,),
    ):
        async with httpx.AsyncClient(base_url=sup.url, timeout=60) as api:
            await registered(api, 1)
            accepted: list[str] = []
            refused: list[int] = []
            stop = asyncio.Event()

            async def submitter() -> None:
                body = {"capability": "progress", "input": {"steps": 2, "delay_ms": 20}}
                while not stop.is_set():
                    r = await api.post("/v1/jobs", json=body)
                    if r.status_code == 202:
                        accepted.append(r.json()["id"])
                    else:
                        assert r.status_code == 503, r.text  # store away: refused, not lost
                        refused.append(r.status_code)
                    await asyncio.sleep(0)

            feeders = [asyncio.create_task(submitter()) for _ in range(4)]
            await wait_until(lambda: len(accepted) >= 100, timeout=60, message="100 accepted")
            victim = _master_of_fleet(cluster, prefix)
            cluster.kill(victim)  # kill -9 of the master holding shard 0 (and some others)
            at_kill = len(accepted)
            slot = key_slot(store_prefix(cluster.url, prefix).encode())
            await asyncio.to_thread(cluster.wait_promoted, slot, victim)  # its replica took over
            await wait_until(
                lambda: len(accepted) >= at_kill + 100, timeout=60, message="100 more accepted"
            )
            stop.set()
            await asyncio.gather(*feeders)
            assert _master_of_fleet(cluster, prefix) is not victim

            async def final(job_id: str) -> dict[str, Any]:
                r = await api.get(f"/v1/jobs/{job_id}", params={"wait": 60})
                assert r.status_code == 200, (job_id, r.text)  # 404 would be a lost job
                return dict(r.json())

            done = [await final(j) for j in accepted]
            assert {j["status"] for j in done} == {"succeeded"}, [
                (j["id"], j["status"]) for j in done if j["status"] != "succeeded"
            ]
            print(f"accepted {len(accepted)}, refused during the takeover {len(refused)}")


async def test_without_replicas_a_restarted_master_comes_back_empty() -> None:
    prefix = f"fleet-test-{uuid.uuid4().hex[:12]}"
    with (
        RedisClusterProcs(masters=3) as cluster,
        fleet_on(cluster.url, prefix, supervisors=1, workers=1) as (sup,),
    ):
        async with httpx.AsyncClient(base_url=sup.url, timeout=60) as api:
            await registered(api, 1)
            before = []
            for _ in range(12):
                r = await api.post("/v1/jobs?wait=10", json={"capability": "noop"})
                assert r.json()["status"] == "succeeded", r.text
                before.append(r.json()["id"])
            where = {
                j: cluster.master_of_slot(_slot_of_job(cluster.url, prefix, j)) for j in before
            }
            victim = where[before[0]]
            cluster.restart(victim)  # kill -9, then the same node again: no AOF, no replica
            await asyncio.to_thread(cluster.wait_ok, 60)
            lost = [j for j in before if where[j] is victim]
            kept = [j for j in before if where[j] is not victim]
            assert lost and kept, where  # 12 jobs over 64 shards on 3 masters: both
            for job_id in lost:  # lost with the master's memory
                r = await api.get(f"/v1/jobs/{job_id}")
                assert r.status_code == 404, r.text
            for job_id in kept:  # on the other masters: still there
                r = await api.get(f"/v1/jobs/{job_id}")
                assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
            print(f"lost {len(lost)} of {len(before)} jobs: those of the restarted master")

            async def flows() -> bool:
                r = await api.post("/v1/jobs?wait=5", json={"capability": "noop"})
                return r.status_code == 200 and r.json()["status"] == "succeeded"

            await wait_until(flows, timeout=60, message="new work to flow again")
