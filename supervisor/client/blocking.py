"""The sync client: :class:`AsyncFleetClient` run on an event loop of its own.

One implementation serves both: each call runs the async one to its end on a private
``asyncio.Runner`` (the same loop for the client's life, so connections are reused), and
``watch`` steps the async iterator one event at a time. Use it from plain code, not from inside
a running event loop (there, use the async client).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping
from types import TracebackType
from typing import Any, TypeVar

import httpx

from shared.models import CapabilityInfo, Event, Job, JobPage, JobStatus, QueueDepths, WorkerInfo
from supervisor.client.typed import DEFAULT_URL, AsyncFleetClient
from supervisor.client.workflows import Workflow

__all__ = ["FleetClient"]

T = TypeVar("T")


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class FleetClient:
    """The supervisor's API for plain (blocking) programs; the same calls as
    :class:`~supervisor.client.AsyncFleetClient`, and ``watch`` is a plain iterator.

        with FleetClient("http://127.0.0.1:8700") as fleet:
            job = fleet.submit("sleep", {"seconds": 2})
            for event in fleet.watch(job.id):
                print(event.seq, event.type, event.data)
            print(fleet.get(job.id).status)
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        reconnect_deadline_s: float = 60.0,
    ) -> None:
        self._runner = asyncio.Runner()
        self._closed = False
        self.aio = AsyncFleetClient(
            url,
            token=token,
            timeout=timeout,
            transport=transport,
            reconnect_deadline_s=reconnect_deadline_s,
        )
        """The async client underneath (its ``raw`` answers dicts)."""

    @property
    def url(self) -> str:
        return self.aio.url

    def __enter__(self) -> FleetClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if not _loop_running():  # else every call was refused: no connection to close
                self._run(self.aio.aclose())
        finally:
            self._runner.close()

    def _run(self, call: Coroutine[Any, Any, T]) -> T:
        if _loop_running():
            call.close()
            raise RuntimeError(
                "FleetClient blocks, so it cannot run inside an event loop: "
                "use AsyncFleetClient there"
            )
        return self._runner.run(call)

    def _iterate(self, source: AsyncIterator[T]) -> Iterator[T]:
        """An async iterator as a plain one; leaving the loop early closes it."""

        async def step() -> T:  # Runner.run takes a coroutine, and __anext__ is not one
            return await anext(source)

        async def close() -> None:
            aclose = getattr(source, "aclose", None)
            if aclose is not None:
                await aclose()

        try:
            while True:
                try:
                    yield self._run(step())
                except StopAsyncIteration:
                    return
        finally:
            if not self._closed:  # else its connections went with the client
                self._run(close())

    # -- jobs -------------------------------------------------------------------------------

    def submit(
        self,
        capability: str,
        input: dict[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
        timeout_s: float | None = None,
        max_attempts: int | None = None,
        worker: str | None = None,
        labels: dict[str, str] | None = None,
        wait: float = 0,
    ) -> Job:
        return self._run(
            self.aio.submit(
                capability,
                input,
                idempotency_key=idempotency_key,
                correlation_id=correlation_id,
                timeout_s=timeout_s,
                max_attempts=max_attempts,
                worker=worker,
                labels=labels,
                wait=wait,
            )
        )

    def get(self, job_id: str, *, wait: float = 0) -> Job:
        return self._run(self.aio.get(job_id, wait=wait))

    def wait(self, job_id: str, *, timeout: float | None = None) -> Job:
        return self._run(self.aio.wait(job_id, timeout=timeout))

    def list_jobs(
        self,
        *,
        status: JobStatus | str | None = None,
        capability: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> JobPage:
        return self._run(
            self.aio.list_jobs(status=status, capability=capability, limit=limit, cursor=cursor)
        )

    def iter_jobs(
        self,
        *,
        status: JobStatus | str | None = None,
        capability: str | None = None,
        page_size: int = 100,
    ) -> Iterator[Job]:
        return self._iterate(
            self.aio.iter_jobs(status=status, capability=capability, page_size=page_size)
        )

    def watch(
        self,
        job_id: str,
        *,
        after: int = 0,
        on_reconnect: Callable[[int, str], None] | None = None,
    ) -> Iterator[Event]:
        return self._iterate(self.aio.watch(job_id, after=after, on_reconnect=on_reconnect))

    def cancel(self, job_id: str) -> Job:
        return self._run(self.aio.cancel(job_id))

    # -- workflows --------------------------------------------------------------------------

    def submit_workflow(
        self,
        spec: Mapping[str, Any],
        input: dict[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
        wait: float = 0,
    ) -> Job:
        return self._run(
            self.aio.submit_workflow(
                spec,
                input,
                idempotency_key=idempotency_key,
                correlation_id=correlation_id,
                wait=wait,
            )
        )

    def workflow(self, job_id: str, *, wait: float = 0) -> Workflow:
        return self._run(self.aio.workflow(job_id, wait=wait))

    # -- dead letters -----------------------------------------------------------------------

    def dead_letters(self, limit: int = 100) -> list[Job]:
        return self._run(self.aio.dead_letters(limit))

    def redrive(self, job_id: str) -> Job:
        return self._run(self.aio.redrive(job_id))

    # -- the fleet --------------------------------------------------------------------------

    def workers(self) -> list[WorkerInfo]:
        return self._run(self.aio.workers())

    def capabilities(self) -> dict[str, CapabilityInfo]:
        return self._run(self.aio.capabilities())

    def queues(self) -> QueueDepths:
        return self._run(self.aio.queues())
