"""A Redis outage answers 503, never 422: the registry keeps the last-known registrations.

A worker registers itself in a Redis of the test's own (never the shared one, which is not
ours to kill); the supervisor uses the same Redis. While it is down, every submission gets
503 ``STORE_UNAVAILABLE`` and the worker stays listed; once it is back, work flows again.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

import httpx
import pytest
import redis

from shared import JobStatus, Keys, SupervisorSettings
from shared.serving import free_port
from supervisor.app import create_app
from supervisor.store import open_store
from tests.helpers import wait_until
from tests.processes import own_redis, worker
from tests.servers import serve_asgi
from tests.supervisor.test_store_contract import make_job

pytestmark = pytest.mark.e2e


async def test_submissions_get_503_during_an_outage_and_flow_after() -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    wport = free_port()
    with own_redis(port) as server:
        env = {
            "FLEET_REDIS_URL": url,
            "FLEET_ADVERTISE_URL": f"http://127.0.0.1:{wport}/mcp",
            "FLEET_HEARTBEAT_S": "0.5",
        }
        with worker("echo", port=wport, **env):
            settings = SupervisorSettings(
                redis_url=url,
                probe_interval_s=0.3,
                _env_file=None,  # type: ignore[call-arg]
            )
            async with AsyncExitStack() as stack:
                base = await stack.enter_async_context(serve_asgi(create_app(settings)))
                api = await stack.enter_async_context(httpx.AsyncClient(base_url=base, timeout=30))

                async def listed() -> list[dict[str, object]]:
                    return list((await api.get("/v1/workers")).json()["workers"])

                async def healthy() -> bool:
                    return any(w["healthy"] for w in await listed())

                await wait_until(healthy, timeout=30, message="the registered worker")
                ok = await api.post("/v1/jobs?wait=10", json={"capability": "noop"})
                assert ok.status_code == 200 and ok.json()["status"] == "succeeded", ok.text

                server.kill()
                server.wait(10)
                body = {"capability": "noop"}
                statuses = [(await api.post("/v1/jobs", json=body)).status_code for _ in range(20)]
                assert set(statuses) == {503}, statuses
                r = await api.post("/v1/jobs", json=body)
                assert r.json()["error"]["code"] == "STORE_UNAVAILABLE"
                await wait_until(
                    lambda: _probed_during_outage(api), timeout=10, message="a probe round"
                )
                assert [w["url"] for w in await listed()] == [env["FLEET_ADVERTISE_URL"]]
                assert (await api.post("/v1/jobs", json=body)).status_code == 503

                with own_redis(port):

                    async def flows() -> bool:
                        r = await api.post("/v1/jobs?wait=5", json=body)
                        return r.status_code == 200 and r.json()["status"] == "succeeded"

                    await wait_until(flows, timeout=30, message="work to flow again")


async def _probed_during_outage(api: httpx.AsyncClient) -> bool:
    ready = await api.get("/readyz")
    return ready.status_code == 503


async def test_scripts_run_by_evalsha_alone_and_reload_after_a_flush() -> None:
    """A write is one EVALSHA (no SCRIPT EXISTS before it); after Redis forgets its scripts
    (a restart, SCRIPT FLUSH) the next write loads the script and runs once."""
    port = free_port()
    with own_redis(port):
        admin = redis.Redis(port=port)
        async with open_store(f"redis://127.0.0.1:{port}/0", Keys("scripts")) as store:
            job = make_job()
            await store.submit(job, fingerprint="f", queue_limit=10)
            admin.script_flush()
            admin.config_resetstat()
            fence, _, _ = await store.acquire(job.id)
            seq = await store.transition(job.id, fence=fence, event="status", status="running")
            assert seq == 2 and (await store.get(job.id)).status is JobStatus.RUNNING
            stats = admin.info("commandstats")
            assert "cmdstat_script|exists" not in stats
            assert stats["cmdstat_script|load"]["calls"] >= 1  # loaded again, once each
            await store.append(job.id, "progress", {"n": 1}, fence=fence)
            assert "cmdstat_script|exists" not in admin.info("commandstats")
            # Leases taken together (one pipeline) after a flush: each taken once.
            more = [make_job() for _ in range(2)]
            for other in more:
                await store.submit(other, fingerprint="f", queue_limit=10)
            admin.script_flush()
            leases = await asyncio.gather(*(store.acquire(o.id) for o in more))
            assert [(fence, j.id) for fence, j, _ in leases] == [(1, o.id) for o in more]
        admin.close()
