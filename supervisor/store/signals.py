"""In-process wake-ups for event watchers: one asyncio.Event per watched job."""

from __future__ import annotations

import asyncio


class Signals:
    """One asyncio.Event per watched job, shared by its watchers, replaced once set."""

    def __init__(self) -> None:
        self._events: dict[str, tuple[asyncio.Event, int]] = {}

    def acquire(self, job_id: str) -> asyncio.Event:
        event, users = self._events.get(job_id, (None, 0))
        if event is None:
            event = asyncio.Event()
        self._events[job_id] = (event, users + 1)
        return event

    def release(self, job_id: str, event: asyncio.Event) -> None:
        current = self._events.get(job_id)
        if current is not None and current[0] is event:
            if current[1] <= 1:
                del self._events[job_id]
            else:
                self._events[job_id] = (event, current[1] - 1)

    def notify(self, job_id: str) -> None:
        current = self._events.pop(job_id, None)
        if current is not None:
            current[0].set()

    def notify_all(self) -> None:
        events, self._events = self._events, {}
        for event, _ in events.values():
            event.set()
