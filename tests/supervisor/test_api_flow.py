"""The job flow through the real API, over HTTP, with real MCP servers."""

from __future__ import annotations

import asyncio
import json
from contextlib import AsyncExitStack
from typing import Any

from shared import META_CORRELATION_ID, META_IDEMPOTENCY_KEY, META_JOB_ID
from tests.helpers import aiter_sse, wait_until
from tests.supervisor.conftest import Fleet, start_fleet


async def test_happy_path_with_progress(any_fleet: Fleet) -> None:
    job = await any_fleet.submit("steps", {"n": 5})
    assert job["status"] == "queued"
    done = await any_fleet.wait(job["id"])
    assert done["status"] == "succeeded", done
    assert done["result"]["steps"] == 5
    assert done["attempts"] == 1
    assert done["progress"] == {"progress": 5.0, "total": 5.0, "message": "step 5/5"}
    # The worker saw the correlation id, job id and idempotency key in _meta.
    calls = [c for s in any_fleet.seen.values() for c in s.calls if c["tool"] == "steps"]
    assert calls[0]["meta"][META_CORRELATION_ID] == done["correlation_id"]
    assert calls[0]["meta"][META_JOB_ID] == done["id"]
    assert calls[0]["meta"][META_IDEMPOTENCY_KEY] == done["id"]


async def test_correlation_id_honoured_and_echoed(fleet: Fleet) -> None:
    r = await fleet.api.post(
        "/v1/jobs", json={"capability": "noop"}, headers={"X-Correlation-ID": "trace-me-123"}
    )
    assert r.status_code == 202
    assert r.headers["x-correlation-id"] == "trace-me-123"
    done = await fleet.wait(r.json()["id"])
    assert done["correlation_id"] == "trace-me-123"
    headers = [h for s in fleet.seen.values() for h in s.headers]
    assert any(h.get("x-correlation-id") == "trace-me-123" for h in headers)
    generated = await fleet.api.get("/healthz")
    assert len(generated.headers["x-correlation-id"]) >= 16


async def test_sse_events_in_order_and_resume(fleet: Fleet) -> None:
    job = await fleet.submit("steps", {"n": 20})
    await fleet.wait(job["id"])

    async def read(**kw: object) -> list[dict[str, object]]:
        out = []
        async with fleet.api.stream("GET", f"/v1/jobs/{job['id']}/events", **kw) as r:
            assert r.status_code == 200
            async for event in aiter_sse(r):
                data = json.loads(event.data)
                assert data["seq"] == int(event.id)
                out.append(data)
        return out

    everything = await read()
    seqs = [e["seq"] for e in everything]
    assert seqs == list(range(1, len(seqs) + 1))
    assert everything[-1]["type"] == "done"
    progress = [e["data"]["progress"] for e in everything if e["type"] == "progress"]
    assert progress == [float(i) for i in range(1, 21)]
    resumed = await read(headers={"Last-Event-ID": "10"})
    assert [e["seq"] for e in resumed] == seqs[10:]
    resumed_q = await read(params={"after": 15})
    assert [e["seq"] for e in resumed_q] == seqs[15:]


async def test_live_progress_then_cancel_stops_the_tool(fleet: Fleet) -> None:
    job = await fleet.submit("hold")
    await wait_until(lambda: any(s.started.is_set() for s in fleet.seen.values()))
    r = await fleet.api.post(f"/v1/jobs/{job['id']}/cancel")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled"
    await wait_until(
        lambda: any(s.cancelled for s in fleet.seen.values()), message="tool saw cancel"
    )
    assert [c for s in fleet.seen.values() for c in s.cancelled] == [job["correlation_id"]]
    again = await fleet.api.post(f"/v1/jobs/{job['id']}/cancel")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "JOB_FINISHED"


async def test_idempotency_key(any_fleet: Fleet) -> None:
    body = {"capability": "noop", "input": {}}
    first = await any_fleet.api.post("/v1/jobs", json=body, headers={"Idempotency-Key": "k-1"})
    second = await any_fleet.api.post("/v1/jobs", json=body, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == 202 and second.status_code == 200
    assert first.json()["id"] == second.json()["id"]
    assert second.headers["idempotent-replayed"] == "true"
    other = await any_fleet.api.post(
        "/v1/jobs",
        json={"capability": "steps", "input": {"n": 1}},
        headers={"Idempotency-Key": "k-1"},
    )
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "IDEMPOTENCY_CONFLICT"


async def test_busy_is_retried_on_backoff(fleet: Fleet) -> None:
    for seen in fleet.seen.values():
        seen.fail_next = 1
    job = await fleet.submit("flaky", max_attempts=1)
    done = await fleet.wait(job["id"])
    assert done["status"] == "succeeded"
    assert done["attempts"] == 1  # a BUSY answer is no attempt: one was enough after it
    events = await sse_events(fleet, job["id"], headers={"Last-Event-ID": "0"})
    retried = [e["data"]["message"] for e in events if e["type"] == "log"]
    assert any(m.startswith("attempt failed (BUSY); retrying in") for m in retried), retried


async def test_permanent_failure_dead_letters_and_redrive(fleet: Fleet) -> None:
    job = await fleet.submit("fail", {"code": "NOPE"}, max_attempts=3)
    done = await fleet.wait(job["id"])
    assert done["status"] == "failed"
    assert done["attempts"] == 1  # a permanent error is not retried
    assert done["error"]["code"] == "NOPE"
    assert done["error"]["details"]["field"] == "code"
    dead = (await fleet.api.get("/v1/dead-letters")).json()["jobs"]
    assert [d["id"] for d in dead] == [job["id"]]
    r = await fleet.api.post(f"/v1/dead-letters/{job['id']}/redrive")
    assert r.status_code == 202 and r.json()["status"] == "queued"
    again = await fleet.wait(job["id"])
    assert again["status"] == "failed" and again["attempts"] == 1
    # The stream shows the latest run: from the redrive's `queued` to the new `done`.
    latest = await sse_events(fleet, job["id"])
    assert latest[0]["data"] == {"status": "queued", "redriven": True}
    assert [e["type"] for e in latest].count("done") == 1 and latest[-1]["type"] == "done"
    # From the start it shows both runs and follows the redrive past the first done.
    whole = await sse_events(fleet, job["id"], headers={"Last-Event-ID": "0"})
    assert [e["type"] for e in whole].count("done") == 2
    assert whole[-1]["seq"] == latest[-1]["seq"]
    # Resumed after the final done, the stream closes at once.
    assert (
        await sse_events(fleet, job["id"], headers={"Last-Event-ID": str(whole[-1]["seq"])}) == []
    )
    again_redrive = await fleet.api.post(f"/v1/dead-letters/{job['id']}/redrive")
    assert again_redrive.status_code == 202  # failed again: back in the dead letters


async def sse_events(
    fleet: Fleet, job_id: str, headers: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    out = []
    async with fleet.api.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers) as r:
        assert r.status_code == 200
        async for event in aiter_sse(r):
            out.append(json.loads(event.data))
    return out


async def test_foreign_server_driven_by_tools_list(fleet: Fleet) -> None:
    caps = (await fleet.api.get("/v1/capabilities")).json()["capabilities"]
    assert caps["shout"]["idempotent"] is True
    port = fleet.worker_urls["foreign"].split("//")[1].split("/")[0]
    assert caps["shout"]["workers"][0]["name"] == f"foreign@{port}"  # service@host:port
    assert caps["shout"]["service"] == "foreign" and caps["shout"]["tool"] == "shout"
    job = await fleet.submit("shout", {"text": "hey"})
    done = await fleet.wait(job["id"])
    assert done["status"] == "succeeded" and done["result"] == "HEY"
    bad = await fleet.api.post("/v1/jobs", json={"capability": "shout", "input": {"text": 5}})
    assert bad.status_code == 422
    assert bad.json()["error"]["details"]["field"] == "input.text"


async def test_many_concurrent_jobs(any_fleet: Fleet) -> None:
    jobs = await asyncio.gather(*(any_fleet.submit("noop") for _ in range(40)))
    done = await asyncio.gather(*(any_fleet.wait(j["id"]) for j in jobs))
    assert all(d["status"] == "succeeded" for d in done)
    workers = {d["result"]["worker"] for d in done}
    assert workers == {"w1", "w2"}  # both workers got work


async def test_cancel_queued_job_takes_it_out_of_dispatch(fleet: Fleet) -> None:
    w1 = fleet.seen["w1"]
    pin = fleet.worker_urls["w1"]
    running = [await fleet.submit("hold", worker=pin) for _ in range(8)]  # fills w1's 8 slots
    await wait_until(lambda: len([c for c in w1.calls if c["tool"] == "hold"]) == 8)
    queued = await fleet.submit("hold", worker=pin)
    assert (await fleet.api.get(f"/v1/jobs/{queued['id']}")).json()["status"] == "queued"
    r = await fleet.api.post(f"/v1/jobs/{queued['id']}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    w1.release.set()
    for job in running:
        assert (await fleet.wait(job["id"]))["status"] == "succeeded"
    assert len([c for c in w1.calls if c["tool"] == "hold"]) == 8  # the cancelled one never ran
    depth = (await fleet.api.get("/v1/queues")).json()["queues"].get("hold", 0)
    assert depth == 0


async def test_openapi_and_docs(fleet: Fleet) -> None:
    spec = (await fleet.api.get("/openapi.json")).json()
    for path in ("/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/events",
                 "/v1/jobs/{job_id}/cancel", "/v1/workers", "/v1/capabilities",
                 "/v1/dead-letters", "/v1/dead-letters/{job_id}/redrive", "/healthz",
                 "/readyz", "/metrics"):  # fmt: skip
        assert path in spec["paths"], path
    assert "capability" in str(spec["paths"]["/v1/jobs"]["post"]["requestBody"])
    assert (await fleet.api.get("/docs")).status_code == 200


async def test_jobs_waiting_for_a_busy_capability_do_not_block_others() -> None:
    """8 `hold` calls fill the worker's slots for that tool; 5 more wait for it. With room for
    10 running jobs, those 13 would once have filled every slot and starved `noop`."""
    async with AsyncExitStack() as stack:
        fleet = await start_fleet(stack, workers=1, concurrency=10)
        w1 = fleet.seen["w1"]
        held = [await fleet.submit("hold") for _ in range(13)]
        await wait_until(lambda: len([c for c in w1.calls if c["tool"] == "hold"]) == 8)
        done = await fleet.api.post("/v1/jobs?wait=10", json={"capability": "noop"})
        assert done.status_code == 200 and done.json()["status"] == "succeeded", done.text
        waiting = [(await fleet.api.get(f"/v1/jobs/{j['id']}")).json() for j in held]
        assert sorted(j["status"] for j in waiting).count("queued") == 5
        w1.release.set()
        for job in held:
            assert (await fleet.wait(job["id"]))["status"] == "succeeded"
