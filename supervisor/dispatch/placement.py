"""Placing an attempt on a worker: routing, this supervisor's per-tool slots, waiting for one.

``inflight`` counts this supervisor's calls per (worker URL, tool); the router reads it as
load, and a worker whose slots are all taken is not chosen. A job that finds no worker waits
for a slot of its tool to free, holding no dispatcher slot meanwhile.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import NamedTuple

from shared import Job, UnknownCapability, WorkerCallError
from supervisor.dispatch.held import Held
from supervisor.dispatch.router import Router
from supervisor.types import WorkerDirectory, WorkerView

__all__ = ["NoWorker", "Placement", "Route", "tool_of"]


class Route(NamedTuple):
    """What routing a job needs, known when it was submitted: its tool, the service and
    input schema its capability resolved to, and the worker it is pinned to."""

    tool: str
    service: str | None
    digest: str | None
    pinned: str | None

    @classmethod
    def of(cls, job: Job) -> Route:
        return cls(tool_of(job), job.service, job.schema_digest, job.pinned_worker)


class NoWorker(WorkerCallError):
    code = "NO_WORKER"
    retryable = True
    delivered = False


class Placement:
    def __init__(self, registry: WorkerDirectory, wake_intake: Callable[[], None]) -> None:
        self.registry = registry
        self.wake_intake = wake_intake
        self.inflight: collections.Counter[tuple[str, str]] = collections.Counter()
        self.router = Router(registry, lambda url, cap: self.inflight[(url, cap)])
        self._waiters: dict[str, collections.deque[asyncio.Future[object]]] = {}
        """Per tool, the jobs waiting for one of its slots, oldest first. Plain futures, no
        ``asyncio.Condition``: a Condition waited on under ``wait_for`` and cancelled while
        it re-takes its lock leaves ``async with`` releasing a lock it does not hold
        (``RuntimeError``), which turned every waiting job's shutdown into an error."""

    def route(self, job: Job, avoid: set[str] | None = None) -> WorkerView | None:
        if job.service is None:  # a job recorded before capabilities had identity
            try:
                target = self.registry.resolve(job.capability)
            except UnknownCapability:
                return None
            job.service, job.tool, job.schema_digest = target.service, target.tool, target.digest
        return self.route_to(Route.of(job), avoid)

    def route_to(self, route: Route, avoid: set[str] | None = None) -> WorkerView | None:
        """:meth:`route` for a job known by its :class:`Route` alone (not yet read)."""
        return self.router.choose(
            route.tool,
            pinned=route.pinned,
            avoid=avoid or (),
            service=route.service,
            digest=route.digest,
        )

    async def choose(self, job: Job, held: Held) -> WorkerView:
        """A worker for a retry; waits (holding no slot) up to the job's timeout."""
        deadline = time.monotonic() + min(job.timeout_s, 60.0)
        while True:
            worker = self.route(job, avoid=held.tried)
            if worker is not None:
                return worker
            if time.monotonic() >= deadline:
                raise NoWorker(f"no healthy worker serves {job.capability!r} right now")
            await self.wait_tool(tool_of(job), held, min(1.0, deadline - time.monotonic()))

    async def wait_tool(self, tool: str, held: Held, timeout: float) -> None:
        """Wait for a slot of ``tool`` to free (or ``timeout``, which also catches registry
        changes), holding no dispatcher slot meanwhile. The wait is one future and one timer
        (``asyncio.wait_for`` makes two futures and a callback more): thousands of jobs may
        wait at once."""
        waiters = self._waiters.setdefault(tool, collections.deque())
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[object] = loop.create_future()
        waiters.append(waiter)
        timer = loop.call_later(timeout, _time_up, waiter)
        held.waiting = True
        self.wake_intake()  # intake may take another job in this one's place
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.result() is None:
                self._wake(tool)  # woken, but leaving: the slot goes to the next one
            raise
        finally:
            timer.cancel()
            held.waiting = False
            if not waiter.done() or waiter.cancelled() or waiter.result() is _TIMED_OUT:
                waiter.cancel()  # not woken: the waker takes those off
                with contextlib.suppress(ValueError):
                    waiters.remove(waiter)

    @contextlib.asynccontextmanager
    async def slot(self, worker: WorkerView, tool: str) -> AsyncIterator[None]:
        """One of ``worker``'s slots for ``tool``, for the length of one call."""
        self.take(worker, tool)  # taken before any await: the next routing decision sees it
        try:
            yield
        finally:
            await self.give_back(worker, tool)

    def take(self, worker: WorkerView, tool: str) -> None:
        """Take one of ``worker``'s slots for ``tool`` (:meth:`give_back` it once)."""
        self.inflight[(worker.url, tool)] += 1

    async def give_back(self, worker: WorkerView, tool: str) -> None:
        slot = (worker.url, tool)
        self.inflight[slot] -= 1
        if not self.inflight[slot]:
            del self.inflight[slot]
        await self._tool_slot_freed(tool)  # a slot freed: a waiting job may go

    async def _tool_slot_freed(self, tool: str) -> None:
        self._wake(tool)

    def _wake(self, tool: str) -> None:
        """One slot: one waiter, the oldest still waiting (the others retry within a
        second)."""
        waiters = self._waiters.get(tool)
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


_TIMED_OUT = object()


def _time_up(waiter: asyncio.Future[object]) -> None:
    if not waiter.done():
        waiter.set_result(_TIMED_OUT)


def tool_of(job: Job) -> str:
    """The MCP tool a job calls (a job recorded before capabilities had identity: its name)."""
    return job.tool or job.capability
