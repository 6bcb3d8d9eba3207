"""A real fleet for the CLI: an echo worker and a supervisor over HTTP, in a background thread.

``CliRunner`` calls the CLI synchronously (and the CLI runs its own event loop), so the
servers live on another thread's loop; one fleet serves the whole CLI package.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import pytest
import structlog
from typer.testing import CliRunner

from shared import SupervisorSettings, WorkerSettings, configure_logging
from supervisor.cli import app
from tests.helpers import wait_until_sync
from tests.servers import free_socket, serve_asgi

T = TypeVar("T")


class BackgroundLoop:
    """An event loop on its own thread; ``run(coro)`` waits for a coroutine run there."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Awaitable[T], timeout: float = 60) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)  # type: ignore[arg-type]
        return future.result(timeout)

    def close(self) -> None:
        async def cancel_rest() -> None:  # e.g. sse-starlette's per-loop shutdown watcher
            rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in rest:
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        self.run(cancel_rest())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@dataclass
class CliFleet:
    url: str
    worker_url: str
    bg: BackgroundLoop
    http: httpx.Client

    def invoke(self, *args: str, input: str | None = None) -> Any:
        return CliRunner().invoke(app, ["--url", self.url, *args], input=input)

    def job(self, job_id: str, wait: float = 0) -> dict[str, Any]:
        r = self.http.get(f"/v1/jobs/{job_id}", params={"wait": wait} if wait else None)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def submit(self, capability: str, input: dict[str, Any], **kw: Any) -> str:
        r = self.http.post("/v1/jobs", json={"capability": capability, "input": input, **kw})
        assert r.status_code in (200, 202), r.text
        return str(r.json()["id"])

    def wait_running(self, job_id: str, min_progress: float = 0) -> dict[str, Any]:
        def running() -> dict[str, Any] | None:
            job = self.job(job_id)
            done = (job.get("progress") or {}).get("progress", 0)
            return job if job["status"] == "running" and done >= min_progress else None

        result: dict[str, Any] = wait_until_sync(running, timeout=20, message="job running")
        return result


@pytest.fixture(scope="package")
def bg() -> Iterator[BackgroundLoop]:
    loop = BackgroundLoop()
    yield loop
    loop.close()


@pytest.fixture(scope="package")
def cli_fleet(bg: BackgroundLoop) -> Iterator[CliFleet]:
    import workers.echo

    # Server logs go to the real stderr: CliRunner swaps sys.stdout while a command runs,
    # and a log line from the server thread must not land in the command's output.
    saved_structlog = structlog.get_config()
    root = logging.getLogger()
    saved_root = (root.level, list(root.handlers))
    configure_logging("json", "WARNING", stream=sys.__stderr__)
    stack = AsyncExitStack()

    async def start() -> tuple[str, str]:
        worker = workers.echo.build(WorkerSettings(_env_file=None, max_concurrency=16))
        worker_url = await stack.enter_async_context(worker.serving(sockets=[free_socket()]))
        settings = SupervisorSettings(
            redis_url="memory://",
            workers=worker_url,
            probe_interval_s=0.5,
            backoff_initial_s=0.01,
            backoff_max_s=0.05,
            sse_keepalive_s=1,
        )
        from supervisor.app import create_app

        url = await stack.enter_async_context(serve_asgi(create_app(settings)))
        return url, worker_url

    url, worker_url = bg.run(start())
    http = httpx.Client(base_url=url, timeout=30)

    def healthy() -> bool:
        workers_ = http.get("/v1/workers").json()["workers"]
        return bool(workers_) and all(w["healthy"] for w in workers_)

    wait_until_sync(healthy, timeout=20, message="echo worker healthy")
    try:
        yield CliFleet(url, worker_url, bg, http)
    finally:
        http.close()
        bg.run(stack.aclose())
        structlog.configure(**saved_structlog)  # other suites get their logging back
        root.setLevel(saved_root[0])
        root.handlers[:] = saved_root[1]


Invoke = Callable[..., Any]
