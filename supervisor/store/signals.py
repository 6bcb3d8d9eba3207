"""In-process wake-ups for watchers: one asyncio.Event per watched job and kind of change.

A watcher of a job's events wakes on any change; a waiter for its end (``?wait``) only when it
ends, so it reads the store once rather than once per progress event.
"""

from __future__ import annotations

import asyncio

_Key = tuple[str, bool]  # (job id, ended only)


class Signals:
    """One asyncio.Event per watched (job, kind), shared by its watchers, replaced once set."""

    def __init__(self) -> None:
        self._events: dict[_Key, tuple[asyncio.Event, int]] = {}

    def acquire(self, job_id: str, *, ended: bool = False) -> asyncio.Event:
        key = (job_id, ended)
        event, users = self._events.get(key, (None, 0))
        if event is None:
            event = asyncio.Event()
        self._events[key] = (event, users + 1)
        return event

    def release(self, job_id: str, event: asyncio.Event, *, ended: bool = False) -> None:
        key = (job_id, ended)
        current = self._events.get(key)
        if current is not None and current[0] is event:
            if current[1] <= 1:
                del self._events[key]
            else:
                self._events[key] = (event, current[1] - 1)

    def notify(self, job_id: str, *, ended: bool = False) -> None:
        for key in ((job_id, False), (job_id, True)) if ended else ((job_id, False),):
            current = self._events.pop(key, None)
            if current is not None:
                current[0].set()

    def notify_all(self) -> None:
        events, self._events = self._events, {}
        for event, _ in events.values():
            event.set()
