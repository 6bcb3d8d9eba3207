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


async def test_a_store_failure_mid_stream_ends_it_cleanly_for_a_resume() -> None:
    """Once the status is sent, a failing store read can only end the stream: it ends as a
    whole HTTP response (its last chunk sent), so a reader resumes with Last-Event-ID instead
    of reading a broken transfer (what a crowd of 2,000 streams got from a starved pool)."""
    from collections.abc import AsyncGenerator

    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.routing import Route

    from shared import StoreUnavailable
    from supervisor.api.sse import EventStream
    from tests.servers import serve_asgi

    async def body() -> AsyncGenerator[bytes, None]:
        yield b"id: 1\r\nevent: status\r\ndata: {}\r\n\r\n"
        raise StoreUnavailable("store unavailable: No connection available.")

    async def events(request: Request) -> EventStream:
        return EventStream(body(), headers={})

    async with (
        serve_asgi(Starlette(routes=[Route("/events", events)])) as url,
        httpx.AsyncClient(base_url=url) as client,
        client.stream("GET", "/events") as r,  # a broken one raises in here
    ):
        received = b"".join([chunk async for chunk in r.aiter_bytes()])
    assert received == b"id: 1\r\nevent: status\r\ndata: {}\r\n\r\n"
