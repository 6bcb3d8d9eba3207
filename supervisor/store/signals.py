"""In-process wake-ups for watchers: one asyncio.Event per watched job and kind of change.

A watcher of a job's events wakes on any change; a waiter for its end (``?wait``) only when it
ends, so it reads the store once rather than once per progress event — and not at all when
the end was written in this process, which hands the ended job over with the wake-up.
"""

from __future__ import annotations

import asyncio

from shared import Job

_Key = tuple[str, bool]  # (job id, ended only)


class Wake(asyncio.Event):
    """A wake-up; ``job``: the job as its ending write left it, when this process wrote it."""

    job: Job | None = None


class Signals:
    """One :class:`Wake` per watched (job, kind), shared by its watchers, replaced once set."""

    def __init__(self) -> None:
        self._events: dict[_Key, tuple[Wake, int]] = {}

    def acquire(self, job_id: str, *, ended: bool = False) -> Wake:
        key = (job_id, ended)
        event, users = self._events.get(key, (None, 0))
        if event is None:
            event = Wake()
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

    def notify(self, job_id: str, *, ended: bool = False, job: Job | None = None) -> None:
        """Wake the job's watchers (and, with ``ended``, its waiters, handing ``job`` over)."""
        for key in ((job_id, False), (job_id, True)) if ended else ((job_id, False),):
            current = self._events.pop(key, None)
            if current is not None:
                if key[1]:
                    current[0].job = job
                current[0].set()

    def notify_all(self) -> None:
        events, self._events = self._events, {}
        for event, _ in events.values():
            event.set()
