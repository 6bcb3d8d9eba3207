"""A service process settles its heap once it has started (shared.serving.settle_heap).

Everything alive after start-up is frozen out of the cyclic collector's sight: under load the
collector walked it again at every full collection (about 15 % of the supervisor's CPU per
job). Only whole processes do it; an embedding process (tests, ``fleet demo``) owns its heap.
Each test here unfreezes what it froze.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from shared.serving import _config, _Process, serving, settle_heap
from shared.settings import WorkerSettings
from shared.startup import bind_socket
from tests.helpers import wait_until
from workers.kit import Toolset, Worker


@pytest.fixture(autouse=True)
def thawed() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


def _app() -> Starlette:
    return Starlette(routes=[Route("/", lambda request: PlainTextResponse("ok"))])


def test_settle_heap_freezes_what_is_alive() -> None:
    alive = [object() for _ in range(10)] + [{"a": [1]}]
    settle_heap()
    assert gc.get_freeze_count() > 0
    assert not any(o is alive[-1] for o in gc.get_objects())  # out of the collector's sight


async def test_a_whole_process_server_settles_once_started() -> None:
    sock = bind_socket("127.0.0.1", 0)
    config = _config(_app(), limits=None, host="127.0.0.1", port=0)
    config.load()  # as uvicorn's own serve() does before its startup
    server = _Process(config)
    server.lifespan = config.lifespan_class(config)
    try:
        await server.startup(sockets=[sock])
        assert server.started and gc.get_freeze_count() > 0
    finally:
        await server.shutdown(sockets=[sock])
        sock.close()


async def test_an_embedded_server_leaves_the_heap_alone() -> None:
    async with serving(_app(), sockets=[bind_socket("127.0.0.1", 0)]):
        assert gc.get_freeze_count() == 0


@pytest.mark.parametrize("settle", [True, False])
async def test_a_worker_settles_only_as_the_whole_process(settle: bool) -> None:
    settings = WorkerSettings(redis_url=None, advertise_url=None, worker_token=None)
    worker = Worker("heap", tools=Toolset(), settings=settings)
    task = asyncio.create_task(worker.serve(sockets=[bind_socket("127.0.0.1", 0)], settle=settle))
    try:
        await wait_until(lambda: worker.url is not None or task.done(), timeout=10)
        assert worker.url is not None
        assert (gc.get_freeze_count() > 0) is settle
    finally:
        worker.request_shutdown()
        await task
