"""The rogue-registration scenario, end to end: real Redis, a real signed worker over HTTP, rogue
MCP servers that record every request they get, and the supervisor's real API.

Four rogues offer the same ``echo`` tool as the legitimate worker: one registered unsigned,
one with a signature made with the wrong secret, one correctly signed but outside the URL
allowlist, and one listed in ``FLEET_WORKERS`` outside the allowlist. They must get no
request at all — no probe, no job, no token — while the signed worker, inside the list, gets
every job with its own per-service token. A control run without a secret or a list shows the
same rig catches the leak: the unsigned rogue is then called with the shared token.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shared import SupervisorSettings, WorkerRegistration, WorkerSettings
from shared.keys import Keys
from shared.signing import check_registration, sign_registration
from supervisor.app import create_app
from tests.helpers import wait_until
from tests.servers import Recorder, serve_asgi
from tests.workers.conftest import bound_socket
from workers import echo
from workers.kit.registration import instance_id

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

SECRET = "fleet-registration-secret-0123456789"
ECHO_TOKEN = "echo-only-token-5f1c"
SHARED_TOKEN = "shared-worker-token-9a2e"
JOBS = 20


async def start_rogue(stack: AsyncExitStack) -> tuple[Recorder, int]:
    """A real echo worker (same tools, same schemas) with no token, recording what it gets."""
    worker = echo.build(WorkerSettings(redis_url=None, advertise_url=None, worker_token=None))
    recorder = Recorder(worker.http_app())
    base = await stack.enter_async_context(serve_asgi(recorder))
    return recorder, int(base.rsplit(":", 1)[1])


async def start_legit(
    stack: AsyncExitStack, redis_url: str, prefix: str, *, secret: str | None, token: str
) -> str:
    """The echo worker, registering itself in Redis (signed when ``secret``); its MCP URL."""
    sock = bound_socket()
    stack.callback(sock.close)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/mcp"
    settings = WorkerSettings(
        redis_url=redis_url,
        key_prefix=prefix,
        advertise_url=url,
        heartbeat_s=0.5,
        registration_secret=secret,
        worker_token=token,
    )
    await stack.enter_async_context(echo.build(settings).serving(sockets=[sock]))
    return url


async def start_supervisor(
    stack: AsyncExitStack, redis_url: str, prefix: str, **settings: Any
) -> httpx.AsyncClient:
    app = create_app(
        SupervisorSettings(
            redis_url=redis_url,
            key_prefix=prefix,
            probe_interval_s=0.2,
            backoff_initial_s=0.01,
            backoff_max_s=0.1,
            **settings,
        )
    )
    base = await stack.enter_async_context(serve_asgi(app))
    return await stack.enter_async_context(httpx.AsyncClient(base_url=base, timeout=30))


async def register(redis: Any, prefix: str, reg: WorkerRegistration) -> None:
    key = Keys(prefix).worker(f"rogue-{reg.url.rsplit(':', 1)[1].split('/')[0]}")
    await redis.set(key, reg.model_dump_json(), ex=120)


async def run_jobs(api: httpx.AsyncClient) -> list[dict[str, Any]]:
    ids = []
    for i in range(JOBS):
        r = await api.post("/v1/jobs", json={"capability": "echo", "input": {"value": i}})
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
    jobs = []
    for job_id in ids:
        r = await api.get(f"/v1/jobs/{job_id}", params={"wait": 20})
        jobs.append(r.json())
    return jobs


def refused_counts(text: str) -> dict[tuple[str, str], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        if family.name == "fleet_workers_refused":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    out[(sample.labels["source"], sample.labels["reason"])] = sample.value
    return out


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Any]:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


async def test_rogue_registrations_get_no_job_and_no_token(
    redis_url: str, key_prefix: str, redis: Any
) -> None:
    async with AsyncExitStack() as stack:
        legit = await start_legit(stack, redis_url, key_prefix, secret=SECRET, token=ECHO_TOKEN)
        unsigned, p1 = await start_rogue(stack)
        forged, p2 = await start_rogue(stack)
        outside, p3 = await start_rogue(stack)
        static, p4 = await start_rogue(stack)
        reg = WorkerRegistration  # every rogue claims to be the echo service
        await register(redis, key_prefix, reg(name="echo", url=f"http://127.0.0.1:{p1}/mcp"))
        wrong = sign_registration(
            reg(name="echo", url=f"http://127.0.0.1:{p2}/mcp"),
            "not-the-fleet-secret-000",
            fleet=key_prefix,
            ttl_s=120,
        )
        await register(redis, key_prefix, wrong)
        signed_outside = sign_registration(
            reg(name="echo", url=f"http://localhost:{p3}/mcp"), SECRET, fleet=key_prefix, ttl_s=120
        )
        await register(redis, key_prefix, signed_outside)
        api = await start_supervisor(
            stack,
            redis_url,
            key_prefix,
            workers=f"echo=http://localhost:{p4}/mcp",
            registration_secret=SECRET,
            worker_allow="127.0.0.0/8",
            worker_token=SHARED_TOKEN,  # not the echo worker's: it needs its own
            worker_tokens=f"echo={ECHO_TOKEN}",
        )

        async def settled() -> dict[str, Any] | None:
            body: dict[str, Any] = (await api.get("/v1/workers")).json()
            ready = [w for w in body["workers"] if w["url"] == legit and w["healthy"]]
            return body if ready and len(body["refused"]) == 4 else None

        body = await wait_until(settled, 20, message="legit worker healthy, rogues refused")
        assert [w["url"] for w in body["workers"]] == [legit]
        assert {(r["url"], r["source"], r["reason"]) for r in body["refused"]} == {
            (f"http://127.0.0.1:{p1}/mcp", "registered", "unsigned"),
            (f"http://127.0.0.1:{p2}/mcp", "registered", "bad_signature"),
            (f"http://localhost:{p3}/mcp", "registered", "not_allowed"),
            (f"http://localhost:{p4}/mcp", "static", "not_allowed"),
        }
        # The legit worker's own registration in Redis is signed and checks.
        raw = await redis.get(Keys(key_prefix).worker(instance_id("echo", legit)))
        mine = WorkerRegistration.model_validate_json(raw)
        assert check_registration(mine, SECRET, fleet=key_prefix) is None

        jobs = await run_jobs(api)
        assert [j["status"] for j in jobs] == ["succeeded"] * JOBS
        assert [j["result"] for j in jobs] == [{"value": i} for i in range(JOBS)]
        assert {j["worker"] for j in jobs} == {body["workers"][0]["name"]}

        # More probe rounds: still nothing reaches a rogue, and each was counted once.
        probes = body["workers"][0]["probes"]

        async def later() -> bool:
            workers = (await api.get("/v1/workers")).json()["workers"]
            return bool(workers and workers[0]["probes"] >= probes + 3)

        await wait_until(later, 10, message="three more probe rounds")
        assert refused_counts((await api.get("/metrics")).text) == {
            ("registered", "unsigned"): 1,
            ("registered", "bad_signature"): 1,
            ("registered", "not_allowed"): 1,
            ("static", "not_allowed"): 1,
        }
        for rogue in (unsigned, forged, outside, static):
            assert rogue.requests == []  # not probed, not called: no job, no token
            assert rogue.authorizations == [] and rogue.tool_calls == []


async def test_control_without_a_secret_the_unsigned_rogue_gets_the_token(
    redis_url: str, key_prefix: str, redis: Any
) -> None:
    """The single-user default trusts Redis: the rig above would catch this leak."""
    async with AsyncExitStack() as stack:
        legit = await start_legit(stack, redis_url, key_prefix, secret=None, token=SHARED_TOKEN)
        rogue, port = await start_rogue(stack)
        rogue_url = f"http://127.0.0.1:{port}/mcp"
        await register(redis, key_prefix, WorkerRegistration(name="echo", url=rogue_url))
        api = await start_supervisor(stack, redis_url, key_prefix, worker_token=SHARED_TOKEN)

        async def both_healthy() -> bool:
            workers = (await api.get("/v1/workers")).json()["workers"]
            return {w["url"] for w in workers if w["healthy"]} == {legit, rogue_url}

        await wait_until(both_healthy, 20, message="both workers healthy")
        assert f"Bearer {SHARED_TOKEN}" in rogue.authorizations
        assert "get_capabilities" in rogue.tool_calls
