"""Per-tenant limits over the real HTTP API: submissions a second and jobs in flight, counted
in the store so that two supervisors sharing one Redis enforce one budget; and the ADMIT
script's Lua and its Python twin answering alike."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from burner_redis import BurnerRedis

from shared import Keys
from supervisor.store.embedded import EmbeddedScripts
from supervisor.store.lua import register
from tests.helpers import wait_until
from tests.supervisor.conftest import Fleet, start_fleet, store_of

pytestmark = pytest.mark.e2e

TOKENS = "acme=a-tok:jobs:read+jobs:write,globex=g-tok:jobs:read+jobs:write,ops=o-tok"
TENANTS = "acme=acme,globex=globex"


def client(stack: AsyncExitStack, fleet: Fleet, token: str) -> Any:
    return stack.enter_async_context(
        httpx.AsyncClient(
            base_url=fleet.url, timeout=30, headers={"Authorization": f"Bearer {token}"}
        )
    )


async def one_in_flight(stack: AsyncExitStack, request: pytest.FixtureRequest, store: str) -> Fleet:
    """One supervisor and one worker on ``store``, each tenant (or actor) one job in flight."""
    return await start_fleet(
        stack,
        workers=1,
        api_tokens=TOKENS,
        token_tenants=TENANTS,
        tenant_max_inflight=1,
        **store_of(request, store),
    )


def limited(r: httpx.Response, limit: str, tenant: str) -> int:
    """Asserts a 429 RATE_LIMITED naming ``limit`` and ``tenant``; returns its Retry-After."""
    assert r.status_code == 429, r.text
    error = r.json()["error"]
    assert error["code"] == "RATE_LIMITED"
    assert error["details"]["limit"] == limit and error["details"]["tenant"] == tenant
    retry_after = int(r.headers["Retry-After"])
    assert error["details"]["retry_after"] == retry_after >= 1
    return retry_after


@pytest.fixture
async def replicas(redis_url: str, key_prefix: str) -> AsyncIterator[tuple[Fleet, Fleet]]:
    """Two supervisors (two apps) on one Redis under one key prefix."""
    async with AsyncExitStack() as stack:
        fleets = [
            await start_fleet(
                stack,
                redis_url=redis_url,
                prefix=key_prefix,
                workers=1,
                api_tokens=TOKENS,
                token_tenants=TENANTS,
                rate_submit_per_s=0.1,  # one token every 10 s: none comes back during the test
                rate_burst=2,
                tenant_max_inflight=3,
            )
            for _ in range(2)
        ]
        try:
            yield fleets[0], fleets[1]
        finally:
            for fleet in fleets:
                for seen in fleet.seen.values():
                    seen.release.set()


async def test_submission_rate_is_shared_by_replicas(replicas: tuple[Fleet, Fleet]) -> None:
    one, two = replicas
    async with AsyncExitStack() as stack:
        acme1, acme2 = await client(stack, one, "a-tok"), await client(stack, two, "a-tok")
        globex2 = await client(stack, two, "g-tok")
        job = {"capability": "noop"}
        assert (await acme1.post("/v1/jobs", json=job)).status_code == 202
        assert (await acme1.post("/v1/jobs", json=job)).status_code == 202
        # The second supervisor sees the first one's count: the burst of 2 is spent.
        retry_after = limited(await acme2.post("/v1/jobs", json=job), "submit_rate", "acme")
        assert retry_after <= 10
        limited(await acme1.post("/v1/jobs", json=job), "submit_rate", "acme")
        # Another tenant has its own budget.
        assert (await globex2.post("/v1/jobs", json=job)).status_code == 202


async def test_jobs_in_flight_are_shared_by_replicas(replicas: tuple[Fleet, Fleet]) -> None:
    one, two = replicas
    for fleet in replicas:
        fleet.settings.rate_submit_per_s = 0  # this test is about the in-flight limit only
    async with AsyncExitStack() as stack:
        acme1, acme2 = await client(stack, one, "a-tok"), await client(stack, two, "a-tok")
        held = [(await acme1.post("/v1/jobs", json={"capability": "hold"})).json() for _ in "ab"]
        held.append((await acme2.post("/v1/jobs", json={"capability": "hold"})).json())
        assert all(job["status"] == "queued" for job in held), held
        limited(await acme1.post("/v1/jobs", json={"capability": "noop"}), "in_flight", "acme")
        limited(await acme2.post("/v1/jobs", json={"capability": "noop"}), "in_flight", "acme")
        globex = await client(stack, two, "g-tok")
        assert (await globex.post("/v1/jobs", json={"capability": "noop"})).status_code == 202
        # One ends: its place is free again, on either replica.
        r = await acme2.post(f"/v1/jobs/{held[0]['id']}/cancel")
        assert r.status_code in (200, 202), r.text
        ended = await acme1.get(f"/v1/jobs/{held[0]['id']}", params={"wait": 20})
        assert ended.json()["status"] == "cancelled"
        assert (await acme2.post("/v1/jobs", json={"capability": "noop"})).status_code == 202


@pytest.mark.parametrize("store", ["memory", "redis"])
async def test_limits_on_one_supervisor(store: str, request: pytest.FixtureRequest) -> None:
    async with AsyncExitStack() as stack:
        fleet = await one_in_flight(stack, request, store)
        acme, ops = await client(stack, fleet, "a-tok"), await client(stack, fleet, "o-tok")
        try:
            body = {"capability": "hold", "idempotency_key": "k1"}
            first = await acme.post("/v1/jobs", json=body)
            assert first.status_code == 202
            # An idempotent replay is not a new job: it is answered, not limited.
            again = await acme.post("/v1/jobs", json=body)
            assert again.status_code == 200, again.text
            assert again.json()["id"] == first.json()["id"]
            limited(await acme.post("/v1/jobs", json={"capability": "noop"}), "in_flight", "acme")
            # A caller without a tenant is limited as itself.
            r = await ops.post("/v1/jobs", json={"capability": "hold"})
            assert r.status_code == 202
            r = await ops.post("/v1/jobs", json={"capability": "noop"})
            assert r.status_code == 429 and r.json()["error"]["details"] == {
                "limit": "in_flight",
                "actor": "ops",
                "retry_after": 1,
            }
        finally:
            for seen in fleet.seen.values():
                seen.release.set()


@pytest.mark.parametrize("store", ["memory", "redis"])
async def test_a_redriven_job_counts_in_flight_again(
    store: str, request: pytest.FixtureRequest
) -> None:
    """A dead letter left its tenant's budget when it failed; redriven, it is in flight again
    and counted: the tenant's next submission waits for it."""
    async with AsyncExitStack() as stack:
        fleet = await one_in_flight(stack, request, store)
        acme, ops = await client(stack, fleet, "a-tok"), await client(stack, fleet, "o-tok")
        try:
            body = {"capability": "fail", "input": {"code": "NOPE"}, "max_attempts": 1}
            job = (await acme.post("/v1/jobs", json=body)).json()
            failed = (await acme.get(f"/v1/jobs/{job['id']}", params={"wait": 20})).json()
            assert failed["status"] == "failed"
            # Ended, it left the set: the next admission found the set full and pruned it.
            held = await acme.post("/v1/jobs", json={"capability": "hold"})
            assert held.status_code == 202
            fleet.seen["w1"].release.set()
            ended = await acme.get(f"/v1/jobs/{held.json()['id']}", params={"wait": 20})
            assert ended.json()["status"] == "succeeded"
            fleet.seen["w1"].release.clear()
            key = f"{fleet.settings.key_prefix}:inflight:tenant:acme"
            raw = fleet.services.store.client
            assert await raw.zscore(key, job["id"]) is None
            redriven = await ops.post(f"/v1/dead-letters/{job['id']}/redrive")
            assert redriven.status_code == 202, redriven.text
            assert await raw.zscore(key, job["id"]) is not None
        finally:
            for seen in fleet.seen.values():
                seen.release.set()


async def test_without_limits_nothing_is_counted() -> None:
    async with AsyncExitStack() as stack:
        fleet = await start_fleet(stack, workers=1, api_tokens=TOKENS, token_tenants=TENANTS)
        acme = await client(stack, fleet, "a-tok")
        for _ in range(5):
            assert (await acme.post("/v1/jobs", json={"capability": "noop"})).status_code == 202
        raw = fleet.services.store.client
        prefix = fleet.settings.key_prefix
        assert not await raw.exists(f"{prefix}:rate:tenant:acme", f"{prefix}:inflight:tenant:acme")


ADMIT_CASES = [
    # now_ms, rate, burst, max_inflight, job id
    ("1000", "1.5", "2", "2", "j1"),  # ok: a full bucket, an empty set
    ("1000", "1.5", "2", "2", "j2"),  # ok: the last token, the last place
    ("1100", "1.5", "2", "3", "j3"),  # rate: 0.15 tokens refilled, 567 ms to go
    ("1100", "1.5", "2", "2", "j3"),  # in flight: 2 of 2
    ("2000", "0", "0", "3", "j3"),  # ok: no rate limit
    ("2500", "2", "3", "0", "j4"),  # ok: no in-flight limit
]


async def test_admit_twin_and_lua_answer_alike(redis_url: str, key_prefix: str) -> None:
    k = Keys(key_prefix)
    keys = [k.rate("tenant:t"), k.inflight("tenant:t")]
    twin = EmbeddedScripts(BurnerRedis())
    real = aioredis.Redis.from_url(redis_url)
    lua = register(real)["ADMIT"]
    try:
        answers = []
        for case in ADMIT_CASES:
            args = [*case, "600"]
            got = await twin.run("ADMIT", keys, args)
            want = [x.decode() for x in await lua(keys=keys, args=args)]
            answers.append(want)
            assert got == want, (case, got, want)
        assert [a[0] for a in answers] == ["ok", "ok", "rate", "inflight", "ok", "ok"]
        assert answers[2][1] == "567"
        for key in keys:
            mine = await twin.r.hgetall(key) if key == keys[0] else await twin.r.zrange(key, 0, -1)
            theirs = await real.hgetall(key) if key == keys[0] else await real.zrange(key, 0, -1)
            assert mine == theirs, key
    finally:
        await real.aclose()


async def test_event_streams_are_capped_per_tenant_and_the_place_comes_back() -> None:
    async with AsyncExitStack() as stack:
        fleet = await start_fleet(stack, workers=1, api_tokens=TOKENS, token_tenants=TENANTS,
                                  tenant_max_watchers=1)  # fmt: skip
        acme = await stack.enter_async_context(
            httpx.AsyncClient(
                base_url=fleet.url, timeout=30, headers={"Authorization": "Bearer a-tok"}
            )
        )
        globex = await stack.enter_async_context(
            httpx.AsyncClient(
                base_url=fleet.url, timeout=30, headers={"Authorization": "Bearer g-tok"}
            )
        )
        held = (await acme.post("/v1/jobs", json={"capability": "hold"})).json()["id"]
        other = (await globex.post("/v1/jobs", json={"capability": "hold"})).json()["id"]
        try:
            async with acme.stream("GET", f"/v1/jobs/{held}/events") as first:
                assert first.status_code == 200
                await anext(first.aiter_bytes())  # the stream is open and counted
                second = await acme.get(f"/v1/jobs/{held}/events")
                assert second.status_code == 429, second.text
                error = second.json()["error"]
                assert error["code"] == "RATE_LIMITED"
                assert error["details"]["limit"] == "watchers"
                assert second.headers["retry-after"] == "5"
                async with globex.stream("GET", f"/v1/jobs/{other}/events") as theirs:
                    assert theirs.status_code == 200  # another tenant's budget
            watchers = fleet.app.state.watchers
            await wait_until(lambda: not watchers.open, message="the closed stream's place")
            async with acme.stream("GET", f"/v1/jobs/{held}/events") as again:
                assert again.status_code == 200
        finally:
            for seen in fleet.seen.values():
                seen.release.set()
