"""``GET /v1/queues``: each capability's slots (queued, in flight, limit) and the retained
jobs per status, on both stores, with real tool servers and the real dispatcher."""

from __future__ import annotations

from contextlib import AsyncExitStack

import pytest

from tests.helpers import wait_until
from tests.supervisor.conftest import Fleet, start_fleet, store_of


@pytest.mark.parametrize("store", ["memory", "redis"])
async def test_queues_answer_slots_and_counts_by_status(
    request: pytest.FixtureRequest, store: str
) -> None:
    async with AsyncExitStack() as stack:
        # Two workers of one service: `hold` has 8 slots on each (its declared concurrency).
        fleet = await start_fleet(stack, workers=2, concurrency=30, **store_of(request, store))
        before = (await fleet.api.get("/v1/queues")).json()
        assert before["slots"]["hold"] == {
            "queued": 0, "in_flight": 0, "limit": 16, "workers": 2, "healthy_workers": 2,
            "running": 0,
        }  # fmt: skip
        assert before["backlog"]["hold"] == 0
        assert before["by_status"] == dict.fromkeys(
            ("queued", "running", "succeeded", "failed", "cancelled"), 0
        )

        held = [await fleet.submit("hold") for _ in range(19)]  # 16 run, 3 wait
        failed = await fleet.submit("fail", {"code": "NOPE"}, max_attempts=1)
        assert (await fleet.wait(failed["id"]))["status"] == "failed"
        done = await fleet.submit("noop")
        assert (await fleet.wait(done["id"]))["status"] == "succeeded"

        async def busy() -> dict[str, object] | None:
            body = (await fleet.api.get("/v1/queues")).json()
            hold = body["slots"]["hold"]
            return body if hold["in_flight"] == 16 and hold["queued"] == 3 else None

        body = await wait_until(busy, timeout=20, message="16 hold calls in flight, 3 queued")
        assert body["slots"]["hold"]["limit"] == 16
        assert body["queues"]["hold"] == 3  # the old field still says the same
        assert body["by_status"] == {
            "queued": 3, "running": 16, "succeeded": 1, "failed": 1, "cancelled": 0,
        }  # fmt: skip
        assert body["slots"]["noop"]["in_flight"] == 0
        # fleet-wide: the 16 running (any replica's) and the 3 waiting, what KEDA scales on
        assert body["slots"]["hold"]["running"] == 16
        assert body["backlog"]["hold"] == 19 and body["backlog"]["noop"] == 0

        await _release(fleet)
        for job in held:
            assert (await fleet.wait(job["id"]))["status"] == "succeeded"
        after = (await fleet.api.get("/v1/queues")).json()
        assert after["slots"]["hold"]["in_flight"] == 0 and after["slots"]["hold"]["queued"] == 0
        assert after["by_status"]["succeeded"] == 20
        assert after["backlog"]["hold"] == 0


async def _release(fleet: Fleet) -> None:
    for seen in fleet.seen.values():
        seen.release.set()
