"""An attempt's progress and log events, written in order and in as few writes as the store
allows.

The worker's stream is read on: an event that arrives while a write is in flight waits for
the next write, which takes every event waiting then. A job that reports progress faster
than one store round trip writes its events in batches (one script call, one wake-up of its
watchers per batch) instead of one round trip each, and an idle one writes each at once.
Writes stay best effort through a store outage (the call goes on); a stale fence is raised
to the call at its next event, and at :meth:`EventWriter.flush`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from shared import Progress, StoreUnavailable, get_logger
from supervisor.store import Fenced
from supervisor.types import EventLog

__all__ = ["EventWriter"]

log = get_logger("fleet.dispatcher")

MAX_PENDING = 1000
"""Events waiting past this hold the worker's stream until the write in flight is done."""


class EventWriter:
    def __init__(self, store: EventLog, job_id: str, fence: int | None) -> None:
        self.store = store
        self.job_id = job_id
        self.fence = fence
        self._pending: list[tuple[str, dict[str, Any]]] = []
        self._progress: Progress | None = None
        self._task: asyncio.Task[None] | None = None
        self._fenced: Fenced | None = None

    async def add(self, kind: str, data: dict[str, Any], progress: Progress | None = None) -> None:
        if self._fenced is not None:
            raise self._fenced
        self._pending.append((kind, data))
        if progress is not None:
            self._progress = progress
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain())
        elif len(self._pending) >= MAX_PENDING:
            await asyncio.shield(self._task)

    async def flush(self) -> None:
        """Every event added so far is written (or given up on) when this returns."""
        if self._task is not None:
            await asyncio.shield(self._task)
        if self._fenced is not None:
            raise self._fenced

    def abandon(self) -> None:
        """The attempt was cancelled: events not yet written are dropped."""
        self._pending.clear()
        if self._task is not None:
            self._task.cancel()

    async def _drain(self) -> None:
        while self._pending and self._fenced is None:
            batch, self._pending = self._pending, []
            fields = {"progress": self._progress} if self._progress is not None else {}
            self._progress = None
            try:
                await self.store.append_many(self.job_id, batch, fence=self.fence, **fields)
            except StoreUnavailable as exc:
                log.warning("job.event_not_recorded", events=len(batch), error=exc.message)
            except Fenced as exc:
                self._fenced = exc
