"""Tenants over the real HTTP API, on memory:// and on the real Redis: one tenant cannot
see, watch, cancel, redrive or collide with another's jobs (404, not 403); admin sees all;
without tenants nothing changes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.supervisor.conftest import Fleet, start_fleet, store_of
from tests.supervisor.issuer import ISSUER, Issuer

pytestmark = pytest.mark.e2e

TOKENS = "acme=a-tok:jobs:read+jobs:write,globex=g-tok:jobs:read+jobs:write,ops=o-tok:admin"
TENANTS = "acme=acme,globex=globex"


@dataclass
class Tenants:
    fleet: Fleet
    acme: httpx.AsyncClient
    globex: httpx.AsyncClient
    ops: httpx.AsyncClient


@pytest.fixture(params=["memory", "redis"])
async def tenants(request: pytest.FixtureRequest) -> AsyncIterator[Tenants]:
    store = store_of(request)
    async with AsyncExitStack() as stack:
        fleet = await start_fleet(stack, api_tokens=TOKENS, token_tenants=TENANTS, **store)
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=fleet.url, timeout=30, headers={"Authorization": f"Bearer {tok}"}
                )
            )
            for tok in ("a-tok", "g-tok", "o-tok")
        ]
        try:
            yield Tenants(fleet, *clients)
        finally:
            for seen in fleet.seen.values():
                seen.release.set()


async def submit(api: httpx.AsyncClient, capability: str, **kw: Any) -> dict[str, Any]:
    r = await api.post("/v1/jobs", json={"capability": capability, **kw})
    assert r.status_code in (200, 202), r.text
    return dict(r.json())


async def ended(api: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    r = await api.get(f"/v1/jobs/{job_id}", params={"wait": 20})
    assert r.status_code == 200, r.text
    assert r.json()["status"] in ("succeeded", "failed", "cancelled"), r.text
    return dict(r.json())


def not_found(r: httpx.Response, job_id: str) -> None:
    assert r.status_code == 404, r.text
    assert r.json()["error"] == {
        "code": "JOB_NOT_FOUND",
        "message": f"no job with id {job_id!r}",
        "details": {"job_id": job_id},
    }


async def test_jobs_are_isolated_between_tenants(tenants: Tenants) -> None:
    t = tenants
    a = await submit(t.acme, "steps", input={"n": 1})
    g = await submit(t.globex, "steps", input={"n": 1})
    assert (a["tenant"], g["tenant"]) == ("acme", "globex")
    await ended(t.acme, a["id"])
    await ended(t.globex, g["id"])

    listed = {
        name: (await api.get("/v1/jobs")).json()["jobs"]
        for name, api in (("acme", t.acme), ("globex", t.globex), ("ops", t.ops))
    }
    assert [j["id"] for j in listed["acme"]] == [a["id"]]
    assert [j["id"] for j in listed["globex"]] == [g["id"]]
    assert {j["id"] for j in listed["ops"]} == {a["id"], g["id"]}  # admin sees all

    # Another tenant's job is not there: get, long-poll, events, cancel all answer as for
    # an id never minted, with the same message.
    not_found(await t.globex.get(f"/v1/jobs/{a['id']}"), a["id"])
    not_found(await t.globex.get(f"/v1/jobs/{a['id']}", params={"wait": 1}), a["id"])
    not_found(await t.globex.get(f"/v1/jobs/{a['id']}/events"), a["id"])
    not_found(await t.globex.post(f"/v1/jobs/{a['id']}/cancel"), a["id"])
    assert (await t.acme.get(f"/v1/jobs/{a['id']}")).status_code == 200
    assert (await t.ops.get(f"/v1/jobs/{g['id']}")).status_code == 200
    async with t.acme.stream("GET", f"/v1/jobs/{a['id']}/events") as own:
        assert own.status_code == 200
        assert "event: done" in "".join([chunk async for chunk in own.aiter_text()])


async def test_cancel_of_another_tenants_job_leaves_it_running(tenants: Tenants) -> None:
    t = tenants
    held = await submit(t.acme, "hold")
    not_found(await t.globex.post(f"/v1/jobs/{held['id']}/cancel"), held["id"])
    assert (await t.acme.get(f"/v1/jobs/{held['id']}")).json()["status"] in ("queued", "running")
    r = await t.acme.post(f"/v1/jobs/{held['id']}/cancel")
    assert r.status_code in (200, 202) and r.json()["tenant"] == "acme", r.text
    assert (await ended(t.acme, held["id"]))["status"] == "cancelled"


async def test_idempotency_keys_are_per_tenant(tenants: Tenants) -> None:
    t = tenants
    body = {"capability": "noop", "idempotency_key": "order-1"}
    a = await t.acme.post("/v1/jobs", json=body)
    g = await t.globex.post("/v1/jobs", json=body)
    assert (a.status_code, g.status_code) == (202, 202)  # no collision: two jobs
    assert a.json()["id"] != g.json()["id"]
    again = await t.acme.post("/v1/jobs", json=body)
    assert again.status_code == 200 and again.json()["id"] == a.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    # A different body under the same key conflicts within the tenant only.
    other = {**body, "input": {"x": 1}}
    assert (await t.acme.post("/v1/jobs", json=other)).status_code == 409
    # A caller without a tenant keeps the plain key namespace, apart from both tenants.
    o = await t.ops.post("/v1/jobs", json=body)
    assert o.status_code == 202 and o.json()["id"] not in (a.json()["id"], g.json()["id"])
    assert o.json()["tenant"] is None


async def test_dead_letters_and_redrive_are_for_admins_who_see_every_tenant(
    tenants: Tenants,
) -> None:
    t = tenants
    a = await submit(t.acme, "fail", input={"code": "NOPE"})
    g = await submit(t.globex, "fail", input={"code": "NOPE"})
    await ended(t.acme, a["id"])
    await ended(t.globex, g["id"])
    # A tenant's token has no admin scope: the operator's routes are closed to it (403).
    assert (await t.acme.get("/v1/dead-letters")).status_code == 403
    assert (await t.acme.post(f"/v1/dead-letters/{a['id']}/redrive")).status_code == 403
    dead = (await t.ops.get("/v1/dead-letters")).json()["jobs"]
    assert {d["id"] for d in dead} == {a["id"], g["id"]}
    r = await t.ops.post(f"/v1/dead-letters/{g['id']}/redrive")
    assert r.status_code == 202 and r.json()["tenant"] == "globex"
    await ended(t.globex, g["id"])
    # The redriven job stays its tenant's.
    not_found(await t.acme.get(f"/v1/jobs/{g['id']}"), g["id"])


async def test_without_tenants_nothing_changes() -> None:
    async with AsyncExitStack() as stack:
        fleet = await start_fleet(
            stack, workers=1, api_tokens="a=a-tok:jobs:read+jobs:write,b=b-tok"
        )
        job = await fleet.submit("noop", idempotency_key="k")
        assert job["tenant"] is None
        other = {"Authorization": "Bearer b-tok"}
        r = await fleet.api.get(f"/v1/jobs/{job['id']}", headers=other)
        assert r.status_code == 200  # every token sees every job, as before
        listed = (await fleet.api.get("/v1/jobs", headers=other)).json()["jobs"]
        assert [j["id"] for j in listed] == [job["id"]]
        replay = await fleet.api.post(
            "/v1/jobs", json={"capability": "noop", "idempotency_key": "k"}, headers=other
        )
        assert replay.status_code == 200 and replay.json()["id"] == job["id"]
        raw = fleet.services.store.client
        assert await raw.get(f"{fleet.settings.key_prefix}:idem:k") is not None


async def test_jwt_tenant_claim() -> None:
    issuer = Issuer(audience="https://fleet.test")
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(issuer.serving())
        fleet = await start_fleet(
            stack,
            workers=1,
            api_tokens=TOKENS,
            token_tenants=TENANTS,
            jwks_url=issuer.jwks_url,
            jwt_issuer=ISSUER,
            public_url="https://fleet.test",
            jwt_tenant_claim="org",
        )

        def bearer(**claims: Any) -> dict[str, str]:
            token = issuer.mint(scope="jobs:read jobs:write", **claims)
            return {"Authorization": f"Bearer {token}"}

        acme_jwt, globex_jwt = bearer(sub="ann", org="acme"), bearer(sub="gil", org="globex")
        r = await fleet.api.post("/v1/jobs", json={"capability": "noop"}, headers=acme_jwt)
        assert r.status_code == 202 and r.json()["tenant"] == "acme", r.text
        job_id = r.json()["id"]
        # The same tenant, by a static token or a JWT, sees the job; another does not.
        assert (await fleet.api.get(f"/v1/jobs/{job_id}", headers=acme_jwt)).status_code == 200
        static_acme = {"Authorization": "Bearer a-tok"}
        assert (await fleet.api.get(f"/v1/jobs/{job_id}", headers=static_acme)).status_code == 200
        not_found(await fleet.api.get(f"/v1/jobs/{job_id}", headers=globex_jwt), job_id)
        listed = await fleet.api.get("/v1/jobs", headers=globex_jwt)
        assert listed.json()["jobs"] == []
        # Only the configured claim names the tenant; a JWT without it is not confined.
        other_claim = bearer(sub="tim", tenant="globex")
        assert (await fleet.api.get(f"/v1/jobs/{job_id}", headers=other_claim)).status_code == 200
        # A claim that is not a tenant name refuses the token.
        for bad in ("ac:me", ["acme"], ""):
            r = await fleet.api.get("/v1/jobs", headers=bearer(org=bad))
            assert r.status_code == 401, r.text
            assert r.json()["error"]["details"]["reason"] == "bad_tenant"


@pytest.mark.parametrize("store", ["memory", "redis"])
async def test_one_tenant_filling_a_queue_leaves_room_for_the_others(
    store: str, request: pytest.FixtureRequest
) -> None:
    """A queue of 4, a share of 0.5: with the worker's 8 slots held, acme queues 2 and is
    refused (429 QUEUE_FULL naming it); globex still gets in; every accepted job runs."""
    async with AsyncExitStack() as stack:
        fleet = await start_fleet(
            stack,
            workers=1,
            api_tokens=TOKENS,
            token_tenants=TENANTS,
            queue_limit=4,
            tenant_queue_share=0.5,
            **store_of(request, store),
        )

        def caller(token: str) -> httpx.AsyncClient:
            headers = {"Authorization": f"Bearer {token}"}
            return httpx.AsyncClient(base_url=fleet.url, timeout=30, headers=headers)

        acme = await stack.enter_async_context(caller("a-tok"))
        globex = await stack.enter_async_context(caller("g-tok"))
        accepted: list[str] = []
        try:
            for _ in range(20):
                r = await acme.post("/v1/jobs", json={"capability": "hold"})
                if r.status_code == 429:
                    break
                assert r.status_code == 202, r.text
                accepted.append(r.json()["id"])
            else:
                pytest.fail("acme was never refused")
            error = r.json()["error"]
            assert error["code"] == "QUEUE_FULL" and error["details"]["tenant"] == "acme"
            assert error["details"]["tenant_depth"] == 2
            assert int(r.headers["Retry-After"]) >= 1
            queued = (await acme.get("/v1/jobs", params={"status": "queued"})).json()["jobs"]
            assert len(queued) == 2  # the rest hold the worker's slots
            theirs = await globex.post("/v1/jobs", json={"capability": "hold"})
            assert theirs.status_code == 202, theirs.text
            accepted.append(theirs.json()["id"])
        finally:
            fleet.seen["w1"].release.set()
        for job_id in accepted:
            ops = acme if job_id != accepted[-1] else globex
            done = (await ops.get(f"/v1/jobs/{job_id}", params={"wait": 20})).json()
            assert done["status"] == "succeeded"
