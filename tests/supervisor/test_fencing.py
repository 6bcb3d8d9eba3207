"""Two supervisors, one Redis: a holder whose lease was taken over writes nothing more.

Supervisor A runs a job and is then "paused" (its lease loop does not run); supervisor B
reclaims the job. A's late writes are refused by the fence, A stops its call when it sees the
lease is gone, and a non-idempotent call that may have run is never run a second time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass

import pytest

from shared import JobStatus, Keys, SupervisorSettings
from supervisor.calls import WorkerPool
from supervisor.discovery import Discovery
from supervisor.dispatch import Dispatcher
from supervisor.metrics import Metrics
from supervisor.registry import Registry
from supervisor.store import Store, open_store
from tests.helpers import wait_until
from tests.servers import serve_asgi
from tests.supervisor.test_store_contract import make_job
from tests.supervisor.toolservers import Seen, contract_server


@dataclass
class Replica:
    store: Store
    dispatcher: Dispatcher
    registry: Registry


async def dispatching(
    stack: AsyncExitStack, store: Store, worker_url: str, settings: SupervisorSettings
) -> tuple[Dispatcher, Registry]:
    """A dispatcher over ``store`` that knows the worker at ``worker_url`` (closed by
    ``stack``): a supervisor's dispatching half, without its API."""
    pool = await stack.enter_async_context(WorkerPool())
    registry = Registry()
    discovery = Discovery(registry, pool, store, static_urls=[worker_url])
    stack.push_async_callback(discovery.aclose)
    await discovery.refresh()
    dispatcher = Dispatcher(store, registry, pool, settings, Metrics())
    stack.push_async_callback(dispatcher.stop)
    return dispatcher, registry


@pytest.fixture
async def two(redis_url: str, key_prefix: str) -> AsyncIterator[tuple[Replica, Replica, Seen]]:
    seen = Seen()
    settings = SupervisorSettings(lease_s=1, backoff_initial_s=0.01, _env_file=None)  # type: ignore[call-arg]
    async with AsyncExitStack() as stack:
        base = await stack.enter_async_context(
            serve_asgi(contract_server("w1", seen).http_app(path="/mcp"))
        )
        replicas = []
        for _ in range(2):
            store = await stack.enter_async_context(
                open_store(redis_url, Keys(key_prefix), retention_s=120)
            )
            dispatcher, registry = await dispatching(stack, store, base + "/mcp", settings)
            replicas.append(Replica(store, dispatcher, registry))
        yield replicas[0], replicas[1], seen


async def _start_on_a(a: Replica, tool: str) -> str:
    job = make_job(tool, input={}, max_attempts=3)
    job.service, job.tool = "toolbox", tool
    await a.store.submit(job, fingerprint="f", queue_limit=100)
    [(entry, job_id)] = await a.store.take(1, block_ms=100)
    a.dispatcher._spawn(entry, job_id)
    return job_id


async def _reclaim_on_b(b: Replica) -> None:
    for entry, job_id in await b.store.reclaim(0):
        b.dispatcher._spawn(entry, job_id, reclaimed=True)


async def test_a_paused_holder_never_writes_after_the_takeover(
    two: tuple[Replica, Replica, Seen],
) -> None:
    a, b, seen = two
    job_id = await _start_on_a(a, "hold")  # not idempotent; the worker does not de-duplicate
    await wait_until(seen.started.is_set, message="the call to reach the tool")
    await _reclaim_on_b(b)  # A "paused" past its lease: B takes over
    ended = await wait_until(
        lambda: _terminal(b.store, job_id), message="B to end the job", timeout=10
    )
    assert ended.status is JobStatus.FAILED and ended.error is not None
    assert ended.error.code == "DROPPED"  # may have run, not idempotent: not run again
    assert ended.attempts == 1
    seen.release.set()  # A wakes up: its call returns and it tries to finish the job
    await wait_until(lambda: not a.dispatcher.held, message="A to let go", timeout=10)
    events = await a.store.events(job_id)
    assert [e.type for e in events].count("done") == 1
    assert events[-1].type == "done"  # nothing after done
    assert (await a.store.get(job_id)).error == ended.error  # A's success never landed
    assert len([c for c in seen.calls if c["tool"] == "hold"]) == 1


async def test_a_holder_paused_before_it_took_the_lease_never_calls(
    two: tuple[Replica, Replica, Seen],
) -> None:
    """A takes the entry and is paused before its ACQUIRE; B reclaims the entry and runs the
    job; when A wakes, its ACQUIRE is refused, so the tool is called once, by B."""
    a, b, seen = two
    job = make_job("hold", input={}, max_attempts=3)
    job.service, job.tool = "toolbox", "hold"
    await a.store.submit(job, fingerprint="f", queue_limit=100)
    [(entry, job_id)] = await a.store.take(1, block_ms=100)  # A "pauses" here
    await _reclaim_on_b(b)
    await wait_until(seen.started.is_set, message="B's call to reach the tool")
    a.dispatcher._spawn(entry, job_id)  # A wakes up with the fresh delivery
    await wait_until(lambda: not a.dispatcher.held, message="A to let go", timeout=10)
    seen.release.set()
    ended = await wait_until(lambda: _terminal(b.store, job_id), message="B to end the job")
    assert ended.status is JobStatus.SUCCEEDED
    assert len([c for c in seen.calls if c["tool"] == "hold"]) == 1


async def test_a_holder_that_sees_its_lease_gone_stops_its_call(
    two: tuple[Replica, Replica, Seen],
) -> None:
    a, b, seen = two
    job_id = await _start_on_a(a, "hold")
    await wait_until(seen.started.is_set, message="the call to reach the tool")
    await b.store.acquire(job_id)  # B's reclaim moved the fence on
    await a.dispatcher._check_leases()  # A's next lease tick
    await wait_until(lambda: seen.cancelled, message="A to cancel its call", timeout=10)
    await wait_until(lambda: not a.dispatcher.held, message="A to let go", timeout=10)
    job = await a.store.get(job_id)
    assert job.status is JobStatus.RUNNING  # A wrote nothing: the job is B's to finish


async def test_a_reclaim_counts_as_an_attempt(two: tuple[Replica, Replica, Seen]) -> None:
    a, b, _ = two
    job = make_job("noop", input={}, max_attempts=1, status=JobStatus.RUNNING, attempts=1)
    job.service, job.tool = "toolbox", "noop"
    await a.store.submit(job, fingerprint="f", queue_limit=100)
    await a.store.take(1, block_ms=100)  # A took it and died holding it
    await _reclaim_on_b(b)
    ended = await wait_until(lambda: _terminal(b.store, job.id), message="the job to end")
    assert ended.status is JobStatus.FAILED and ended.error is not None
    assert ended.error.code == "LEASE_LOST" and ended.attempts == 1
    assert [j.id for j in await b.store.dead_letters()] == [job.id]


async def _terminal(store: Store, job_id: str) -> object:
    job = await store.get(job_id)
    return job if job.status.terminal else None


async def test_an_unexpected_error_is_an_attempt_and_poison_jobs_end(
    two: tuple[Replica, Replica, Seen], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, _, _ = two
    calls = 0

    async def broken(*args: object, **kwargs: object) -> object:
        nonlocal calls
        calls += 1
        raise RuntimeError("a bug in handling")

    monkeypatch.setattr(a.dispatcher.runner.calls, "call", broken)  # what the test is not about
    job = make_job("noop", input={}, max_attempts=3)
    job.service, job.tool = "toolbox", "noop"
    await a.store.submit(job, fingerprint="f", queue_limit=100)
    for _ in range(10):  # bounded: a poison job must end well before this
        for entry, job_id in await a.store.take(10, block_ms=100):
            a.dispatcher._spawn(entry, job_id)
        await wait_until(lambda: not a.dispatcher.held, message="the attempt to end")
        if (await a.store.get(job.id)).status.terminal:
            break
    ended = await a.store.get(job.id)
    assert ended.status is JobStatus.FAILED and ended.error is not None
    assert ended.error.code == "INTERNAL" and ended.error.details["exception"] == "RuntimeError"
    assert ended.attempts == 3 and calls == 3
    assert [j.id for j in await a.store.dead_letters()] == [job.id]
    assert await a.store.take(10, block_ms=10) == []  # nothing left to re-deliver
    assert await a.store.reclaim(0) == []
