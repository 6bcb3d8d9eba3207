"""Supervised loops: one that dies is logged, counted, restarted, and shown in /readyz."""

from __future__ import annotations

import asyncio

from supervisor.loops import Loops, cancel_all
from supervisor.metrics import Metrics
from tests.helpers import wait_until
from tests.supervisor.conftest import Fleet


async def test_a_dying_loop_is_restarted_and_counted() -> None:
    runs = 0
    release = asyncio.Event()

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs <= 2:
            raise ValueError(f"malformed reply {runs}")
        await release.wait()  # the third run stays up

    metrics = Metrics()
    async with Loops(metrics) as loops:
        loops.start("discovery", flaky)
        await wait_until(lambda: runs == 3, message="two restarts")
        assert loops.restarts["discovery"] == 2
        assert "discovery" not in loops.down  # running again
        value = metrics.registry.get_sample_value(
            "fleet_loop_restarts_total", {"loop": "discovery"}
        )
        assert value == 2
        release.set()
        # a loop that returns has died too: it is shown down, then restarted
        await wait_until(lambda: loops.restarts["discovery"] == 3, message="a third restart")


async def test_readyz_reports_a_down_loop_as_degraded(fleet: Fleet) -> None:
    services = fleet.services
    assert (await fleet.api.get("/readyz")).json()["status"] == "ready"
    services.loops.down["intake"] = "ValueError: boom"
    try:
        r = await fleet.api.get("/readyz")
        assert r.status_code == 503
        assert r.json() == {
            "status": "degraded",
            "store": "ok",
            "loops": {"intake": "ValueError: boom"},
        }
    finally:
        services.loops.down.pop("intake")


async def test_metrics_of_a_departed_worker_are_dropped(fleet: Fleet) -> None:
    registry = fleet.services.registry
    url = fleet.worker_urls["w2"]
    name = registry.workers[url].name
    assert f'worker="{name}"' in (await fleet.api.get("/metrics")).text
    departed = registry.workers.pop(url)  # what a lapsed registration does
    try:
        assert f'worker="{name}"' not in (await fleet.api.get("/metrics")).text
    finally:
        registry.workers[url] = departed


async def test_a_loop_that_swallows_its_cancellation_is_cancelled_again() -> None:
    """As redis-py may do inside a command: the first cancel is eaten, the loop goes on."""
    started, swallowed = asyncio.Event(), asyncio.Event()

    async def stubborn() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            swallowed.set()  # and carry on, as if nothing happened
        await asyncio.Event().wait()  # the loop's next wait

    task = asyncio.create_task(stubborn())
    await started.wait()
    async with asyncio.timeout(10):
        await cancel_all([task], again_after_s=0.05)
    assert swallowed.is_set() and task.cancelled()
