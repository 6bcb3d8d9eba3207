"""Usage accounting over the real API, on memory:// and the real Redis: a known batch from two
tenants, summed per tenant and capability in GET /v1/usage and the Prometheus counters, and
equal to the figures recorded on each job."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest

from tests.supervisor.conftest import start_fleet, store_of
from tests.supervisor.test_tenants import TENANTS, TOKENS

pytestmark = pytest.mark.e2e


@pytest.fixture(params=["memory", "redis"])
async def clients(request: pytest.FixtureRequest) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    store = store_of(request)
    async with AsyncExitStack() as stack:
        fleet = await start_fleet(
            stack, workers=1, api_tokens=TOKENS, token_tenants=TENANTS, **store
        )
        out = {"fleet": fleet.api}
        for name, tok in (("acme", "a-tok"), ("globex", "g-tok"), ("ops", "o-tok")):
            out[name] = await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=fleet.url, timeout=30, headers={"Authorization": f"Bearer {tok}"}
                )
            )
        yield out


async def run(api: httpx.AsyncClient, capability: str, **input: Any) -> dict[str, Any]:
    body = {"capability": capability, "input": input, "max_attempts": 1}
    r = await api.post("/v1/jobs", params={"wait": 20}, json=body)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def test_usage_sums_a_known_batch_per_tenant_and_capability(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    acme, globex, ops = clients["acme"], clients["globex"], clients["ops"]
    jobs = [await run(acme, "steps", n=n) for n in (1, 2, 3)]
    jobs.append(await run(acme, "fail", code="NOPE"))
    jobs += [await run(globex, "steps", n=2) for _ in range(2)]
    for job in jobs:
        usage = job["usage"]
        assert usage["worker_s"] > 0
        assert usage["bytes_in"] == len(json.dumps(job["input"], separators=(",", ":")))
    steps_out = [len(json.dumps([j["result"], j["content"]], separators=(",", ":"))) for j in jobs]
    assert all(j["usage"]["bytes_out"] == out for j, out in zip(jobs[:3], steps_out, strict=False))

    def expected(tenant: str, capability: str) -> dict[str, Any]:
        mine = [j for j in jobs if j["tenant"] == tenant and j["capability"] == capability]
        return {
            "tenant": tenant,
            "capability": capability,
            "jobs": len(mine),
            "attempts": sum(j["attempts"] for j in mine),
            "bytes_in": sum(j["usage"]["bytes_in"] for j in mine),
            "bytes_out": sum(j["usage"]["bytes_out"] for j in mine),
        }

    def without_time(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in row.items() if k != "worker_s"} for row in rows]

    everyone = (await ops.get("/v1/usage")).json()
    assert without_time(everyone["usage"]) == [
        expected("acme", "fail"), expected("acme", "steps"), expected("globex", "steps")
    ]  # fmt: skip
    acme_steps = everyone["usage"][1]
    assert acme_steps["worker_s"] == pytest.approx(
        sum(j["usage"]["worker_s"] for j in jobs[:3]), abs=1e-5
    )
    own = (await acme.get("/v1/usage", params={"tenant": "globex"})).json()  # its own only
    assert without_time(own["usage"]) == [expected("acme", "fail"), expected("acme", "steps")]
    picked = (await ops.get("/v1/usage", params={"tenant": "globex"})).json()
    assert without_time(picked["usage"]) == [expected("globex", "steps")]
    later = (await ops.get("/v1/usage", params={"since": 4102444800})).json()
    assert later.get("error", {}).get("code") == "VALIDATION_ERROR"  # the future

    metrics = (await clients["fleet"].get("/metrics")).text
    assert 'fleet_usage_jobs_total{capability="steps",tenant="acme"} 3.0' in metrics
    assert 'fleet_usage_jobs_total{capability="steps",tenant="globex"} 2.0' in metrics
    sent = sum(j["usage"]["bytes_in"] for j in jobs[4:])
    assert (
        f'fleet_usage_bytes_total{{capability="steps",direction="in",tenant="globex"}} {sent:.1f}'
        in metrics
    )
