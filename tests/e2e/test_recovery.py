"""Crashes with real processes over HTTP: a worker killed mid-job, a supervisor killed -9."""

from __future__ import annotations

import json
import sys

import httpx
import pytest

from tests.helpers import iter_sse, wait_until_sync
from tests.processes import Proc, start_supervisor, supervisor, worker, worker_env

pytestmark = pytest.mark.e2e

FAST = {
    "FLEET_PROBE_INTERVAL_S": "0.5",
    "FLEET_BACKOFF_INITIAL_S": "0.05",
    "FLEET_BACKOFF_MAX_S": "0.2",
}


def job_state(api: httpx.Client, job_id: str) -> dict[str, object]:
    return dict(api.get(f"/v1/jobs/{job_id}").json())


def workers_up(api: httpx.Client, n: int) -> bool:
    ws = api.get("/v1/workers").json()["workers"]
    return len([w for w in ws if w["healthy"]]) >= n


def test_worker_killed_mid_job_fails_over() -> None:
    with worker() as w1, worker() as w2:
        env = {**FAST, "FLEET_WORKERS": f"{w1.url},{w2.url}"}
        with supervisor(**env) as sup, httpx.Client(base_url=sup.url, timeout=30) as api:
            wait_until_sync(lambda: workers_up(api, 2), timeout=20, message="2 workers")
            job = api.post(
                "/v1/jobs", json={"capability": "sleep", "input": {"seconds": 3, "steps": 30}}
            ).json()
            running = wait_until_sync(
                lambda: (s := job_state(api, job["id"]))["progress"] and s,
                timeout=20,
                message="progress",
            )
            victim = w1 if running["worker"].endswith(w1.url.split("//")[1].split("/")[0]) else w2
            victim.kill()
            done = api.get(f"/v1/jobs/{job['id']}", params={"wait": 30}).json()
            assert done["status"] == "succeeded", done
            assert done["attempts"] == 2
            assert done["worker"] != running["worker"]


def test_supervisor_kill9_recovers_from_redis(redis_url: str, key_prefix: str) -> None:
    env = {
        **FAST,
        "FLEET_REDIS_URL": redis_url,
        "FLEET_KEY_PREFIX": key_prefix,
        "FLEET_LEASE_S": "1.5",
    }
    with worker() as w:
        env["FLEET_WORKERS"] = w.url
        with supervisor(**env) as first, httpx.Client(base_url=first.url, timeout=30) as api:
            wait_until_sync(lambda: workers_up(api, 1), timeout=20, message="worker seen")
            long_job = api.post(
                "/v1/jobs", json={"capability": "sleep", "input": {"seconds": 2, "steps": 20}}
            ).json()
            wait_until_sync(
                lambda: job_state(api, long_job["id"])["progress"], timeout=20, message="progress"
            )
            queued = [
                api.post("/v1/jobs", json={"capability": "echo", "input": {"value": i}}).json()
                for i in range(5)
            ]
            first.kill()  # SIGKILL: no cleanup, leases just stop being renewed
        with supervisor(**env) as second, httpx.Client(base_url=second.url, timeout=30) as api2:
            done = api2.get(f"/v1/jobs/{long_job['id']}", params={"wait": 40}).json()
            assert done["status"] == "succeeded", done
            for q in queued:
                assert (
                    api2.get(f"/v1/jobs/{q['id']}", params={"wait": 20}).json()["status"]
                    == "succeeded"
                )
            # The event log survived: one gap-free sequence across both supervisors.
            with api2.stream("GET", f"/v1/jobs/{long_job['id']}/events") as r:
                events = [json.loads(event.data) for event in iter_sse(r)]
            seqs = [e["seq"] for e in events]
            assert seqs == list(range(1, len(seqs) + 1))
            assert events[-1]["type"] == "done"
            assert (
                sum(
                    1
                    for e in events
                    if e["type"] == "status" and e["data"].get("status") == "running"
                )
                >= 2
            )


def test_worker_token_is_presented_and_required() -> None:
    with worker(FLEET_WORKER_TOKEN="s3cret") as w:
        with (
            supervisor(**FAST, FLEET_WORKERS=w.url, FLEET_WORKER_TOKEN="s3cret") as sup,
            httpx.Client(base_url=sup.url, timeout=30) as api,
        ):
            wait_until_sync(lambda: workers_up(api, 1), timeout=20, message="worker up")
            job = api.post("/v1/jobs?wait=20", json={"capability": "noop"}).json()
            assert job["status"] == "succeeded", job
        with supervisor(**FAST, FLEET_WORKERS=w.url) as sup, httpx.Client(base_url=sup.url) as api:
            # without the token the worker refuses: it is never healthy here
            wait_until_sync(
                lambda: (ws := api.get("/v1/workers").json()["workers"]) and ws[0]["error"],
                timeout=20,
                message="probe error",
            )
            assert not api.get("/v1/workers").json()["workers"][0]["healthy"]


def test_worker_restart_on_same_port_reconnects() -> None:
    with worker() as w:
        port = w.url.split(":")[2].split("/")[0]
        with (
            supervisor(**FAST, FLEET_WORKERS=w.url) as sup,
            httpx.Client(base_url=sup.url, timeout=30) as api,
        ):
            wait_until_sync(lambda: workers_up(api, 1), timeout=20, message="worker up")
            assert (
                api.post("/v1/jobs?wait=20", json={"capability": "noop"}).json()["status"]
                == "succeeded"
            )
            w.kill()
            restarted = Proc(
                [sys.executable, "-m", "workers.echo", "--host", "127.0.0.1", "--port", port],
                worker_env(),
                w.url,
                w.health,
            )
            try:
                restarted.wait_healthy()
                for _ in range(3):
                    job = api.post("/v1/jobs?wait=20", json={"capability": "noop"}).json()
                    assert job["status"] == "succeeded", job
            finally:
                restarted.stop()


def test_supervisor_stops_cleanly_on_sigterm() -> None:
    proc = start_supervisor(**FAST).wait_healthy()
    proc.p.terminate()
    assert proc.p.wait(20) == 0
    proc.stop()
