"""The public client against a real supervisor and a real echo worker, each its own process,
over HTTP: every call, async and sync, and a watch that survives a supervisor restart."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import httpx
import pytest

from shared.serving import free_port
from supervisor.client import (
    ApiError,
    AsyncFleetClient,
    CapabilityInfo,
    Event,
    FleetClient,
    Job,
    JobPage,
    JobStatus,
    QueueDepths,
    Unreachable,
    WorkerInfo,
)
from tests.helpers import wait_until, wait_until_sync
from tests.processes import start_supervisor, supervisor, worker

pytestmark = pytest.mark.e2e

FAST = {
    "FLEET_PROBE_INTERVAL_S": "0.5",
    "FLEET_BACKOFF_INITIAL_S": "0.05",
    "FLEET_BACKOFF_MAX_S": "0.2",
}
UNKNOWN_ID = "0" * 32


def _worker_healthy(url: str) -> bool:
    found = httpx.get(f"{url}/v1/workers", timeout=5).json()["workers"]
    return bool(found) and all(w["healthy"] for w in found)


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    """A supervisor (memory://) with one echo worker, both real processes."""
    with worker("echo") as echo, supervisor(**FAST, FLEET_WORKERS=echo.url) as sup:
        wait_until_sync(lambda: _worker_healthy(sup.url), timeout=30, message="echo healthy")
        yield sup.url


def _seqs(events: list[Event]) -> list[int]:
    return [event.seq for event in events]


# -- async ------------------------------------------------------------------------------------


async def test_submit_with_idempotency_key_and_correlation_id(url: str) -> None:
    key = f"order-{uuid.uuid4().hex[:8]}"
    async with AsyncFleetClient(url) as fleet:
        job = await fleet.submit("noop", idempotency_key=key, correlation_id="corr-42")
        again = await fleet.submit("noop", idempotency_key=key)
        done = await fleet.submit("noop", wait=20)
    assert isinstance(job, Job)
    assert job.capability == "noop" and job.idempotency_key == key
    assert job.correlation_id == "corr-42"
    assert again.id == job.id  # the retry got the first job back
    assert done.status is JobStatus.SUCCEEDED and done.result == {"ok": True}


async def test_get_wait_and_cancel(url: str) -> None:
    async with AsyncFleetClient(url) as fleet:
        quick = await fleet.submit("sleep", {"seconds": 0.2, "steps": 2})
        assert (await fleet.get(quick.id)).id == quick.id
        ended = await fleet.wait(quick.id, timeout=30)
        assert ended.status is JobStatus.SUCCEEDED and ended.result == {"slept": 0.2}
        assert (await fleet.get(quick.id, wait=5)).status is JobStatus.SUCCEEDED

        slow = await fleet.submit("sleep", {"seconds": 60, "steps": 60})
        still = await fleet.wait(slow.id, timeout=0.3)  # the wait ends before the job
        assert still.status in (JobStatus.QUEUED, JobStatus.RUNNING)
        await wait_until(
            lambda: _running(fleet, slow.id), timeout=20, message="the slow job running"
        )
        await fleet.cancel(slow.id)
        assert (await fleet.wait(slow.id, timeout=30)).status is JobStatus.CANCELLED
        with pytest.raises(ApiError) as refused:
            await fleet.cancel(slow.id)
    assert refused.value.status == 409 and refused.value.code == "JOB_FINISHED"


async def _running(fleet: AsyncFleetClient, job_id: str) -> bool:
    return (await fleet.get(job_id)).status is JobStatus.RUNNING


async def test_list_pages_and_iterates_every_job(url: str) -> None:
    async with AsyncFleetClient(url) as fleet:
        mine = [(await fleet.submit("echo", {"value": i})).id for i in range(5)]
        paged: list[str] = []
        page = await fleet.list_jobs(capability="echo", limit=2)
        assert isinstance(page, JobPage) and len(page.jobs) == 2
        while True:
            paged += [job.id for job in page.jobs]
            if page.next_cursor is None:
                break
            page = await fleet.list_jobs(capability="echo", limit=2, cursor=page.next_cursor)
        iterated = [job.id async for job in fleet.iter_jobs(capability="echo", page_size=2)]
        ended = [await fleet.wait(job_id, timeout=30) for job_id in mine]
        succeeded = await fleet.list_jobs(status=JobStatus.SUCCEEDED, capability="echo")
    assert paged == iterated
    assert paged[: len(mine)] == mine[::-1]  # newest first
    assert {job.id for job in ended} <= {job.id for job in succeeded.jobs}


async def test_watch_yields_typed_events_in_order_ending_with_done(url: str) -> None:
    async with AsyncFleetClient(url) as fleet:
        job = await fleet.submit("progress", {"steps": 5})
        events = [event async for event in fleet.watch(job.id)]
        later = [event async for event in fleet.watch(job.id, after=3)]
    assert all(isinstance(event, Event) for event in events)
    assert _seqs(events) == list(range(1, len(events) + 1))
    assert sum(event.type == "progress" for event in events) == 5
    assert events[-1].type == "done" and events[-1].data["status"] == "succeeded"
    assert _seqs(later) == _seqs(events)[3:]


async def test_dead_letters_and_redrive(url: str) -> None:
    async with AsyncFleetClient(url) as fleet:
        job = await fleet.submit("fail", {"code": "NOPE"}, max_attempts=1)
        failed = await fleet.wait(job.id, timeout=30)
        assert failed.status is JobStatus.FAILED and failed.error is not None
        assert failed.error.code == "NOPE"
        assert job.id in [dead.id for dead in await fleet.dead_letters()]
        redriven = await fleet.redrive(job.id)
        assert redriven.id == job.id
        assert (await fleet.wait(job.id, timeout=30)).status is JobStatus.FAILED


async def test_workers_capabilities_and_queues(url: str) -> None:
    async with AsyncFleetClient(url) as fleet:
        workers = await fleet.workers()
        catalog = await fleet.capabilities()
        queues = await fleet.queues()
    assert [type(w) for w in workers] == [WorkerInfo]
    assert workers[0].healthy and "noop" in workers[0].capabilities
    assert isinstance(catalog["noop"], CapabilityInfo)
    assert catalog["noop"].workers[0].url == workers[0].url
    assert catalog["sleep"].input_schema["properties"]["seconds"]["maximum"] == 300
    assert isinstance(queues, QueueDepths) and queues.held_by_this_supervisor >= 0
    assert queues.slots["noop"].healthy_workers == 1 and queues.slots["noop"].limit >= 1


async def test_errors_are_api_errors_or_unreachable(url: str) -> None:
    async with AsyncFleetClient(url) as fleet:
        with pytest.raises(ApiError) as missing:
            await fleet.get(UNKNOWN_ID)
        with pytest.raises(ApiError) as invalid:
            await fleet.submit("sleep", {"seconds": "soon"})
        raw = await fleet.raw.job((await fleet.submit("noop", wait=20)).id)
    assert missing.value.status == 404 and missing.value.code == "JOB_NOT_FOUND"
    assert invalid.value.status == 422 and invalid.value.field == "input.seconds"
    assert isinstance(raw, dict) and raw["status"] == "succeeded"  # the raw layer: dicts
    async with AsyncFleetClient(f"http://127.0.0.1:{free_port()}") as nobody:
        with pytest.raises(Unreachable):
            await nobody.get(UNKNOWN_ID)


# -- sync -------------------------------------------------------------------------------------


def test_sync_client_covers_every_call(url: str) -> None:
    key = f"sync-{uuid.uuid4().hex[:8]}"
    with FleetClient(url) as fleet:
        job = fleet.submit("progress", {"steps": 3}, idempotency_key=key, correlation_id="c-1")
        assert fleet.submit("progress", {"steps": 3}, idempotency_key=key).id == job.id
        events = list(fleet.watch(job.id))
        assert _seqs(events) == list(range(1, len(events) + 1)) and events[-1].type == "done"
        first = next(iter(fleet.watch(job.id)))  # leaving a watch early closes its stream
        assert first.seq == 1
        assert fleet.get(job.id).correlation_id == "c-1"
        assert fleet.get(job.id, wait=5).status is JobStatus.SUCCEEDED
        assert fleet.wait(job.id, timeout=10).result == {"steps": 3}

        page = fleet.list_jobs(capability="progress", limit=1)
        assert page.jobs[0].id == job.id
        assert job.id in [j.id for j in fleet.iter_jobs(capability="progress", page_size=1)]

        slow = fleet.submit("sleep", {"seconds": 60, "steps": 60})
        wait_until_sync(
            lambda: fleet.get(slow.id).status is JobStatus.RUNNING, timeout=20, message="running"
        )
        fleet.cancel(slow.id)
        assert fleet.wait(slow.id, timeout=30).status is JobStatus.CANCELLED

        failing = fleet.submit("fail", max_attempts=1)
        assert fleet.wait(failing.id, timeout=30).status is JobStatus.FAILED
        assert failing.id in [dead.id for dead in fleet.dead_letters(limit=500)]
        assert fleet.redrive(failing.id).id == failing.id

        assert fleet.workers()[0].healthy
        assert "noop" in fleet.capabilities()
        assert isinstance(fleet.queues(), QueueDepths)
        with pytest.raises(ApiError):
            fleet.get(UNKNOWN_ID)


def test_sync_watch_left_open_past_the_clients_close(url: str) -> None:
    fleet = FleetClient(url)
    job = fleet.submit("progress", {"steps": 2})
    events = fleet.watch(job.id)
    assert next(events).seq == 1
    fleet.close()  # the stream goes with the client's loop
    events.close()
    fleet.close()  # twice is harmless


def test_sync_client_refuses_to_run_inside_an_event_loop(url: str) -> None:
    async def inside() -> None:
        with FleetClient(url) as fleet, pytest.raises(RuntimeError, match="AsyncFleetClient"):
            fleet.get(UNKNOWN_ID)

    asyncio.run(inside())


# -- a supervisor restart ---------------------------------------------------------------------


@pytest.mark.redis
async def test_watch_resumes_across_a_supervisor_restart_with_no_gap(
    redis_url: str, key_prefix: str
) -> None:
    """The watcher is mid-job when its supervisor is killed; another starts on the same port
    over the same Redis, reclaims the job, and the iterator carries on from where it was."""
    port = str(free_port())
    env = {
        **FAST,
        "FLEET_REDIS_URL": redis_url,
        "FLEET_KEY_PREFIX": key_prefix,
        "FLEET_LEASE_S": "1.5",
    }
    reconnects: list[int] = []
    with worker("echo") as echo:
        env["FLEET_WORKERS"] = echo.url
        first = start_supervisor(port=port, **env).wait_healthy()
        second = None
        try:
            await asyncio.to_thread(
                wait_until_sync, lambda: _worker_healthy(first.url), 30, 0.05, "echo healthy"
            )
            async with AsyncFleetClient(first.url, reconnect_deadline_s=60) as fleet:
                job = await fleet.submit("sleep", {"seconds": 3, "steps": 30})
                events: list[Event] = []
                async for event in fleet.watch(
                    job.id, on_reconnect=lambda n, _: reconnects.append(n)
                ):
                    events.append(event)
                    if event.type == "progress" and second is None:
                        first.kill()  # mid-job: no clean-up, its lease just lapses
                        second = start_supervisor(port=port, **env)
        finally:
            first.stop()
            if second is not None:
                second.stop()
    assert reconnects, "the stream never dropped: the restart did not happen mid-watch"
    assert _seqs(events) == list(range(1, len(events) + 1)), _seqs(events)
    assert events[-1].type == "done"
    assert events[-1].data["status"] == "succeeded"
    starts = [e for e in events if e.type == "status" and e.data.get("status") == "running"]
    assert len(starts) >= 2  # the second supervisor ran the job again after the restart
