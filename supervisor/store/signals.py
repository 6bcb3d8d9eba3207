"""In-process wake-ups for watchers: one asyncio.Event per watched job and kind of change.

A watcher of a job's events wakes on any change; a waiter for its end (``?wait``) only when it
ends, so it reads the store once rather than once per progress event — and not at all when
the end was written in this process, which hands the ended job over with the wake-up.

A job's tail (:mod:`supervisor.store.tails`) also counts the job's wake-ups (:meth:`Signals.track`):
a tail that took a write's events from the writer itself, with no other wake-up since it was
last whole, knows its next wake-up is that write's and need not read the store for it.
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
        self._counts: dict[str, list[int]] = {}  # tracked job -> [wake-ups, trackers]

    def track(self, job_id: str) -> None:
        """Count the job's wake-ups from now (:meth:`count`) until as many :meth:`untrack`."""
        counted = self._counts.setdefault(job_id, [0, 0])
        counted[1] += 1

    def untrack(self, job_id: str) -> None:
        counted = self._counts.get(job_id)
        if counted is not None:
            counted[1] -= 1
            if counted[1] <= 0:
                del self._counts[job_id]

    def count(self, job_id: str) -> int:
        """How many times a tracked job's watchers were woken (any change, ``ended`` or not)."""
        counted = self._counts.get(job_id)
        return counted[0] if counted is not None else 0

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
        counted = self._counts.get(job_id)
        if counted is not None:
            counted[0] += 1
        for key in ((job_id, False), (job_id, True)) if ended else ((job_id, False),):
            current = self._events.pop(key, None)
            if current is not None:
                if key[1]:
                    current[0].job = job
                current[0].set()

    def notify_all(self) -> None:
        for counted in self._counts.values():
            counted[0] += 1
        events, self._events = self._events, {}
        for event, _ in events.values():
            event.set()
