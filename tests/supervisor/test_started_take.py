"""A job this process submitted is started in the round trip that takes its lease.

The dispatcher knows such a job's route without reading it (:meth:`Dispatcher.expect`), so it
chooses the worker first and the store's ACQUIRE takes the lease, reads the job and writes
``running`` in one step (``acquire_and_start``) instead of an ACQUIRE and a TRANSITION. The job
must look the same to everyone (its events, its record), the worker's slot must be counted
and given back, and whatever stops a start (a cancel asked, a job already ended, a reclaim)
must leave the job to the usual path.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import pytest

from shared import META_ATTEMPT, Job, JobStatus, Keys, SupervisorSettings
from supervisor.dispatch import Dispatcher
from supervisor.store import Store, open_store
from tests.helpers import wait_until
from tests.servers import serve_asgi
from tests.supervisor.test_fencing import dispatching
from tests.supervisor.test_store_contract import make_job
from tests.supervisor.toolservers import Seen, contract_server


@dataclass
class Replica:
    store: Store
    dispatcher: Dispatcher
    seen: Seen
    writes: list[str]
    """The status each TRANSITION asked to write, in order (the spy below)."""


@pytest.fixture(params=["memory", "redis"])
async def one(request: pytest.FixtureRequest) -> AsyncIterator[Replica]:
    seen = Seen()
    settings = SupervisorSettings(lease_s=5, backoff_initial_s=0.01, _env_file=None)  # type: ignore[call-arg]
    if request.param == "redis":
        url, keys = (
            request.getfixturevalue("redis_url"),
            Keys(request.getfixturevalue("key_prefix")),
        )
    else:
        url, keys = "memory://", Keys("t")
    async with AsyncExitStack() as stack:
        base = await stack.enter_async_context(
            serve_asgi(contract_server("w1", seen).http_app(path="/mcp"))
        )
        store = await stack.enter_async_context(open_store(url, keys, retention_s=120))
        writes: list[str] = []
        transition = store.transition

        async def spy(job_id: str, **kw: Any) -> int | None:
            writes.append(str(kw.get("status")))
            return await transition(job_id, **kw)

        store.transition = spy  # type: ignore[method-assign]
        dispatcher, _ = await dispatching(stack, store, base + "/mcp", settings)
        yield Replica(store, dispatcher, seen, writes)


async def _submit(r: Replica, tool: str, *, expected: bool = True) -> Job:
    job = make_job(tool, input={}, max_attempts=3)
    job.service, job.tool = "toolbox", tool
    if expected:
        r.dispatcher.expect(job)
    await r.store.submit(job, fingerprint="f", queue_limit=100)
    return job


async def _deliver(r: Replica) -> None:
    for entry, job_id in await r.store.take(10, block_ms=100):
        r.dispatcher._spawn(entry, job_id)


async def _ended(r: Replica, job_id: str) -> Job:
    async def ended() -> Job | None:
        job = await r.store.get(job_id)
        return job if job.status.terminal else None

    return await wait_until(ended, message=f"{job_id} to end", timeout=10)


def _worker_name(r: Replica) -> str:
    [worker] = r.dispatcher.runner.registry.workers.values()
    return worker.name


def _status_events(events: list[Any]) -> list[tuple[str, Any]]:
    return [(e.type, e.data.get("status")) for e in events]


async def test_an_expected_job_starts_with_its_lease(one: Replica) -> None:
    job = await _submit(one, "noop")
    await _deliver(one)
    ended = await _ended(one, job.id)
    name = _worker_name(one)
    assert ended.status is JobStatus.SUCCEEDED and ended.attempts == 1 and ended.worker == name
    assert ended.started_at is not None and ended.started_at >= job.created_at
    assert one.writes == ["succeeded"]  # no TRANSITION for running: ACQUIRE wrote it
    events = await one.store.events(job.id)
    assert _status_events(events) == [
        ("status", "queued"), ("status", "running"), ("status", "succeeded"), ("done", "succeeded")
    ]  # fmt: skip
    assert events[1].data == {"status": "running", "attempt": 1, "worker": name}
    await wait_until(lambda: not one.dispatcher.held, message="the job to be let go")
    assert not one.dispatcher.placement.inflight  # the slot taken first was given back
    assert not one.dispatcher._routes
    assert [c["meta"].get(META_ATTEMPT) for c in one.seen.calls] == [1]  # the call: attempt 1


async def test_a_job_submitted_elsewhere_is_read_then_started(one: Replica) -> None:
    job = await _submit(one, "noop", expected=False)
    await _deliver(one)
    ended = await _ended(one, job.id)
    assert ended.status is JobStatus.SUCCEEDED
    assert one.writes == ["running", "succeeded"]  # the two-step path
    events = await one.store.events(job.id)
    assert events[1].data == {"status": "running", "attempt": 1, "worker": _worker_name(one)}


async def test_the_slot_is_held_for_the_call_and_given_back(one: Replica) -> None:
    job = await _submit(one, "hold")
    await _deliver(one)
    await wait_until(one.seen.started.is_set, message="the call to reach the tool")
    assert sum(one.dispatcher.placement.inflight.values()) == 1  # counted, once
    assert (await one.store.get(job.id)).status is JobStatus.RUNNING
    one.seen.release.set()
    assert (await _ended(one, job.id)).status is JobStatus.SUCCEEDED
    await wait_until(lambda: not one.dispatcher.held, message="the job to be let go")
    assert not one.dispatcher.placement.inflight


async def test_a_started_job_is_retried_as_any_other(one: Replica) -> None:
    """The attempt the store counted as it started the job is the first of max_attempts: a
    job whose tool keeps failing retryably uses all its attempts, as one that went the
    two-step way does (the demo's flaky upstream: UPSTREAM_DOWN after 2 attempts)."""
    outcomes = []
    for expected in (True, False):
        before = len(one.seen.calls)
        job = make_job("fail", input={"code": "UPSTREAM_DOWN", "retryable": True}, max_attempts=3)
        job.service, job.tool = "toolbox", "fail"
        if expected:
            one.dispatcher.expect(job)
        await one.store.submit(job, fingerprint="f", queue_limit=100)
        await _deliver(one)
        ended = await _ended(one, job.id)
        code = ended.error.code if ended.error else None
        outcomes.append((ended.status, code, ended.attempts, len(one.seen.calls) - before))
    assert outcomes[0] == outcomes[1] == (JobStatus.FAILED, "UPSTREAM_DOWN", 3, 3)


async def test_a_cancel_asked_before_the_delivery_stops_the_start(one: Replica) -> None:
    job = await _submit(one, "noop")
    await one.store.publish_cancel(job.id)  # the flag is set before the lease is taken
    await _deliver(one)
    ended = await _ended(one, job.id)
    assert ended.status is JobStatus.CANCELLED
    assert one.seen.calls == []  # the tool was never called
    assert "running" not in [s for _, s in _status_events(await one.store.events(job.id))]
    await wait_until(lambda: not one.dispatcher.held, message="the job to be let go")
    assert not one.dispatcher.placement.inflight
    [worker] = one.dispatcher.runner.registry.workers.values()
    assert worker.breaker.available()


async def test_routes_are_forgotten_and_bounded(one: Replica) -> None:
    from supervisor.dispatch.loops import ROUTES_KEPT

    first = make_job("noop")
    first.service, first.tool = "toolbox", "noop"
    one.dispatcher.expect(first)
    for _ in range(ROUTES_KEPT):
        other = make_job("noop")
        other.service, other.tool = "toolbox", "noop"
        one.dispatcher.expect(other)
    assert len(one.dispatcher._routes) == ROUTES_KEPT and first.id not in one.dispatcher._routes
    one.dispatcher.forget(other.id)
    assert other.id not in one.dispatcher._routes
    unknown = make_job("noop")  # a job recorded before capabilities had identity: no route
    one.dispatcher.expect(unknown)
    assert unknown.id not in one.dispatcher._routes
