"""Waiting for a tool's slot: a waiter is woken once per freed slot, oldest first, and a
waiter cancelled at any point (shutdown, a cancelled job) leaves cleanly — under Python
3.11 an ``asyncio.Condition`` waited on under ``wait_for`` could raise ``RuntimeError: Lock
is not acquired`` there, which ended jobs waiting at shutdown as ``INTERNAL`` errors."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from contextlib import AsyncExitStack

import pytest
from structlog.testing import capture_logs

from shared import Job
from supervisor.dispatch.held import Held
from supervisor.dispatch.placement import Placement
from supervisor.registry import Registry
from tests.helpers import wait_until
from tests.supervisor.conftest import start_fleet


def placement() -> Placement:
    return Placement(Registry(), lambda: None)


async def test_a_freed_slot_wakes_the_oldest_waiter_only() -> None:
    p = placement()
    first = asyncio.create_task(p.wait_tool("echo", Held("1-0"), 30))
    second = asyncio.create_task(p.wait_tool("echo", Held("2-0"), 30))
    await asyncio.sleep(0)  # both waiting (one loop turn: no timing involved)
    await p._tool_slot_freed("echo")
    await asyncio.wait_for(first, 5)
    assert not second.done()
    await p._tool_slot_freed("echo")
    await asyncio.wait_for(second, 5)
    assert not p._waiters["echo"]


@pytest.mark.parametrize("woken", [False, True])
async def test_a_cancelled_waiter_leaves_cleanly(woken: bool) -> None:
    p = placement()
    held = Held("1-0")
    task = asyncio.create_task(p.wait_tool("echo", held, 30))
    await asyncio.sleep(0)
    assert held.waiting
    if woken:  # woken and cancelled in the same turn: the case the Condition got wrong
        await p._tool_slot_freed("echo")
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task  # a woken waiter may return before the cancel lands: either is clean
    assert not held.waiting and not p._waiters["echo"]
    other = asyncio.create_task(p.wait_tool("echo", Held("2-0"), 30))
    await asyncio.sleep(0)
    await p._tool_slot_freed("echo")  # the slot goes to a live waiter, not the cancelled one
    await asyncio.wait_for(other, 5)


async def test_a_waiter_times_out_and_is_forgotten() -> None:
    p = placement()
    await p.wait_tool("echo", Held("1-0"), 0.01)
    assert not p._waiters["echo"]


async def test_stopping_a_supervisor_leaves_waiting_jobs_untouched() -> None:
    """Jobs held waiting for a slot when the supervisor stops stay queued, with no attempt
    counted and nothing logged as unexpected: another replica (or this one, restarted)
    takes them as they were."""
    async with AsyncExitStack() as stack:
        fleet = await start_fleet(stack, workers=1)
        jobs = [await fleet.submit("hold") for _ in range(12)]  # 8 slots: 4 wait
        dispatcher = fleet.services.dispatcher

        def four_wait() -> bool:
            return sum(1 for h in dispatcher.held.values() if h.waiting) == 4

        await wait_until(four_wait, timeout=10, message="4 jobs waiting for a slot")
        with capture_logs() as logs:
            await dispatcher.stop()
        assert not [e for e in logs if e["event"] == "dispatcher.unexpected"], logs
        store = fleet.services.store
        states = [await store.get(j["id"]) for j in jobs]
        waiting = [j for j in states if j.attempts == 0]
        assert len(waiting) == 4 and {j.status.value for j in waiting} == {"queued"}


async def test_a_waiting_job_holds_its_route_not_its_record() -> None:
    """A supervisor holds thousands of jobs waiting for a slot (FLEET_WAITING_LIMIT): each
    waits with its id and route, and its record is read again once a slot frees."""
    async with AsyncExitStack() as stack:
        fleet = await start_fleet(stack, workers=1)
        jobs = [await fleet.submit("hold") for _ in range(10)]  # 8 slots: 2 wait
        dispatcher = fleet.services.dispatcher

        def waiting() -> set[str]:
            return {j for j, h in dispatcher.held.items() if h.waiting}

        await wait_until(lambda: len(waiting()) == 2, timeout=10, message="2 jobs waiting")
        gc.collect()
        alive = {o.id for o in gc.get_objects() if isinstance(o, Job)}
        assert not waiting() & alive, "a waiting job's record is held"
        assert {j["id"] for j in jobs} - waiting() <= alive  # the running ones hold theirs
        fleet.seen["w1"].release.set()  # the waiting jobs run, from their records read again
        for j in jobs:
            done = await fleet.wait(j["id"])
            assert done["status"] == "succeeded", done
