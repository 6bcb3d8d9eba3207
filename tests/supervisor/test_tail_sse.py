"""Over real HTTP: a batch of events is encoded into SSE frames once for all the watchers of
its job, and each watcher still gets every event, in order, once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest

from shared import Event
from shared.sse import SSEParser
from supervisor.api import jobs as jobs_api
from tests.helpers import wait_until
from tests.supervisor.conftest import Fleet, start_fleet

pytestmark = pytest.mark.e2e

WATCHERS = 10
EVENTS = 30


@pytest.fixture
async def fleet() -> AsyncIterator[Fleet]:
    async with AsyncExitStack() as stack:
        yield await start_fleet(stack, workers=1)


async def test_watchers_of_a_job_share_each_events_frame(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    framed: list[int] = []
    real = jobs_api._frame

    def counted(event: Event) -> bytes:
        if "n" in event.data:  # the test's own events (the tool reports one of its own)
            framed.append(event.seq)
        return real(event)

    monkeypatch.setattr(jobs_api, "_frame", counted)
    job = await fleet.submit("hold")
    got: list[list[int]] = [[] for _ in range(WATCHERS)]

    async def watch(seqs: list[int]) -> None:
        parser = SSEParser()
        async with fleet.api.stream("GET", f"/v1/jobs/{job['id']}/events") as r:
            async for chunk in r.aiter_bytes():
                for event in parser.feed(chunk):
                    seqs.append(int(event.id))
                    if json.loads(event.data)["data"].get("n") == EVENTS - 1:
                        return

    tasks = [asyncio.create_task(watch(seqs)) for seqs in got]
    try:
        await wait_until(lambda: all(got), message="every stream has its first events")
        store = fleet.services.store
        for n in range(EVENTS // 3):  # as a worker's writer writes: in batches
            await store.append_many(job["id"], [("progress", {"n": 3 * n + i}) for i in range(3)])
        await asyncio.wait_for(asyncio.gather(*tasks), 20)
    finally:
        for task in tasks:
            task.cancel()
        fleet.seen["w1"].release.set()
    for seqs in got:
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # in order, none twice
        assert len(seqs) > EVENTS
    assert len(framed) == EVENTS  # each event framed once, for all the watchers
    assert (await fleet.wait(job["id"]))["status"] == "succeeded"
