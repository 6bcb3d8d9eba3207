"""The typed async client: the API's answers as the shared models (``Job``, ``Event`` …)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from shared.models import (
    CapabilityInfo,
    Event,
    Job,
    JobPage,
    JobStatus,
    QueueDepths,
    WorkerInfo,
)
from supervisor.client.fleet_api import ApiError, FleetApi

__all__ = ["DEFAULT_URL", "AsyncFleetClient"]

DEFAULT_URL = "http://127.0.0.1:8700"
_MAX_WAIT_S = 60.0
"""The longest ``?wait`` the API takes in one request; longer waits are several requests."""

M = TypeVar("M", bound=BaseModel)


def _parse(model: type[M], body: Any) -> M:
    """A body as ``model``; a body that is not one is the supervisor's fault, said as such."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        where = ".".join(str(p) for p in exc.errors()[0]["loc"]) or "body"
        raise ApiError(
            200, "BAD_RESPONSE", f"the supervisor's answer is not a {model.__name__} ({where})", {}
        ) from exc


class AsyncFleetClient:
    """The supervisor's API for asyncio programs, typed with the shared models.

    Every call raises :class:`~supervisor.client.ApiError` (the supervisor refused: ``code``,
    ``message``, ``details``) or :class:`~supervisor.client.Unreachable` (no answer), nothing
    else. ``raw`` is the same client answering the API's JSON as dicts.

        async with AsyncFleetClient("http://127.0.0.1:8700") as fleet:
            job = await fleet.submit("sleep", {"seconds": 2}, idempotency_key="order-42")
            async for event in fleet.watch(job.id):  # resumes with Last-Event-ID by itself
                print(event.seq, event.type, event.data)
            print((await fleet.get(job.id)).result)
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
        self.raw = FleetApi(
            url,
            token=token,
            timeout=timeout,
            transport=transport,
            reconnect_deadline_s=reconnect_deadline_s,
        )

    @property
    def url(self) -> str:
        return self.raw.url

    async def __aenter__(self) -> AsyncFleetClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.raw.__aexit__(None, None, None)

    # -- jobs -------------------------------------------------------------------------------

    async def submit(
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
        parent_id: str | None = None,
        traceparent: str | None = None,
    ) -> Job:
        """Submit a job. ``idempotency_key``: a retry of this call submits it at most once
        (the first job comes back). ``wait``: seconds to wait for its end in the same request
        (at most 60); the job comes back as it is then. ``parent_id``: submit it as a child
        of that job; ``traceparent``: the W3C trace context it continues."""
        body: dict[str, Any] = {"capability": capability, "input": input or {}}
        extra = {
            "idempotency_key": idempotency_key,
            "timeout_s": timeout_s,
            "max_attempts": max_attempts,
            "worker": worker,
            "labels": labels,
            "parent_id": parent_id,
        }
        body.update({k: v for k, v in extra.items() if v is not None})
        sent = await self.raw.submit(
            body, correlation_id=correlation_id, wait=wait, traceparent=traceparent
        )
        return _parse(Job, sent)

    async def get(self, job_id: str, *, wait: float = 0) -> Job:
        """The job; with ``wait`` (at most 60 s), once it ended or when the time is up."""
        return _parse(Job, await self.raw.job(job_id, wait=wait))

    async def wait(self, job_id: str, *, timeout: float | None = None) -> Job:
        """The job once it ended, or as it is after ``timeout`` seconds (None: no limit)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= _MAX_WAIT_S:  # the last request
                return await self.get(job_id, wait=max(0.0, left))
            job = await self.get(job_id, wait=_MAX_WAIT_S)
            if job.status.terminal:
                return job

    async def list_jobs(
        self,
        *,
        status: JobStatus | str | None = None,
        capability: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> JobPage:
        """One page of jobs, newest first; pass ``page.next_cursor`` as ``cursor`` for the next."""
        page = await self.raw.jobs(
            status=str(status) if status else None,
            capability=capability,
            limit=limit,
            cursor=cursor,
        )
        return _parse(JobPage, page)

    async def iter_jobs(
        self,
        *,
        status: JobStatus | str | None = None,
        capability: str | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[Job]:
        """Every matching job, newest first, fetched a page at a time."""
        cursor: str | None = None
        while True:
            page = await self.list_jobs(
                status=status, capability=capability, limit=page_size, cursor=cursor
            )
            for job in page.jobs:
                yield job
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    async def watch(
        self,
        job_id: str,
        *,
        after: int = 0,
        on_reconnect: Callable[[int, str], None] | None = None,
    ) -> AsyncIterator[Event]:
        """Every event of the job after ``after``, in order and each once, ending with
        ``done`` (whose ``data`` is the ended job). A dropped stream (a restarted
        supervisor, a proxy's timeout) is resumed with ``Last-Event-ID`` by itself, for up to
        ``reconnect_deadline_s``; ``on_reconnect(last_seq, reason)`` hears of each retry."""
        async for event in self.raw.events(job_id, after=after, on_reconnect=on_reconnect):
            yield _parse(Event, event)

    async def cancel(self, job_id: str) -> Job:
        """Cancel a queued or running job (``JOB_FINISHED``, 409, once it ended)."""
        return _parse(Job, await self.raw.cancel(job_id))

    # -- dead letters -----------------------------------------------------------------------

    async def dead_letters(self, limit: int = 100) -> list[Job]:
        return [_parse(Job, job) for job in await self.raw.dead_letters(limit)]

    async def redrive(self, job_id: str) -> Job:
        """Queue a dead-lettered job again with a fresh attempt budget."""
        return _parse(Job, await self.raw.redrive(job_id))

    # -- the fleet --------------------------------------------------------------------------

    async def workers(self) -> list[WorkerInfo]:
        return [_parse(WorkerInfo, worker) for worker in await self.raw.workers()]

    async def capabilities(self) -> dict[str, CapabilityInfo]:
        found = await self.raw.capabilities()
        return {name: _parse(CapabilityInfo, spec) for name, spec in found.items()}

    async def queues(self) -> QueueDepths:
        return _parse(QueueDepths, await self.raw.queues())
