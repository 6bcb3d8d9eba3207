"""The event stream's own duties, over real HTTP: a keep-alive comment while a job is quiet,
and a stream whose client went away ends on the server and gives its watcher place back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import httpx
import pytest

from tests.helpers import wait_until
from tests.supervisor.conftest import Fleet, start_fleet

pytestmark = pytest.mark.e2e


@pytest.fixture
async def fleet() -> AsyncIterator[Fleet]:
    async with AsyncExitStack() as stack:
        yield await start_fleet(stack, workers=1, sse_keepalive_s=0.2)


def open_streams(fleet: Fleet) -> int:
    return sum(fleet.app.state.watchers.open.values())


async def test_a_quiet_stream_gets_keepalive_comments(fleet: Fleet) -> None:
    job = await fleet.submit("hold")
    received = b""
    async with fleet.api.stream("GET", f"/v1/jobs/{job['id']}/events") as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert "content-length" not in r.headers
        async for chunk in r.aiter_bytes():
            received += chunk
            if b": ping\r\n\r\n" in received:
                break
    assert b"event: status" in received  # the events came first, the comment after them
    fleet.seen["w1"].release.set()
    assert (await fleet.wait(job["id"]))["status"] == "succeeded"


async def test_a_stream_whose_client_left_ends_on_the_server(fleet: Fleet) -> None:
    job = await fleet.submit("hold")
    url = f"/v1/jobs/{job['id']}/events"
    async with (
        httpx.AsyncClient(base_url=fleet.url, timeout=30) as own,
        own.stream("GET", url) as r,
    ):
        async for _ in r.aiter_bytes():
            break  # the first bytes: the stream is open on the server
        assert open_streams(fleet) == 1
    # the client is gone (its connection closed): the server's stream ends and gives its place
    await wait_until(lambda: open_streams(fleet) == 0, timeout=10, message="stream ended")
    await fleet.api.post(f"/v1/jobs/{job['id']}/cancel")
