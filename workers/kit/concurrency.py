"""Per-tool concurrency limits that refuse instead of queueing, and the live load figures.

A :class:`Slots` never waits: :meth:`Slots.try_acquire` either takes a slot or says no, and
the caller answers ``BUSY`` at once. Tasks running tool bodies are tracked so a draining
worker can cancel whatever is left when its grace period ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from shared.models import Load

__all__ = ["LoadTracker", "Slots"]


class Slots:
    """A non-blocking counting limit.

    >>> s = Slots(1)
    >>> s.try_acquire(), s.try_acquire()
    (True, False)
    >>> s.release(); s.in_flight
    0
    """

    __slots__ = ("in_flight", "limit")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self.in_flight = 0

    def try_acquire(self) -> bool:
        if self.in_flight >= self.limit:
            return False
        self.in_flight += 1
        return True

    def release(self) -> None:
        self.in_flight = max(0, self.in_flight - 1)


class LoadTracker:
    """The slots of every tool, plus the tasks currently running a tool body."""

    def __init__(self, limits: dict[str, int]) -> None:
        self.slots = {name: Slots(limit) for name, limit in limits.items()}
        self.tasks: set[asyncio.Task[object]] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def in_flight(self) -> int:
        return sum(s.in_flight for s in self.slots.values())

    @property
    def max_concurrency(self) -> int:
        return sum(s.limit for s in self.slots.values())

    def load(self) -> Load:
        return Load(in_flight=self.in_flight, max_concurrency=self.max_concurrency)

    def by_tool(self) -> dict[str, Load]:
        return {
            n: Load(in_flight=s.in_flight, max_concurrency=s.limit) for n, s in self.slots.items()
        }

    def track(self, task: asyncio.Task[object]) -> None:
        self.tasks.add(task)
        self._idle.clear()

    def untrack(self, task: asyncio.Task[object]) -> None:
        self.tasks.discard(task)
        if not self.tasks:
            self._idle.set()

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no tool body runs, at most ``timeout`` seconds. True if idle."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def cancel_all(self) -> Iterable[asyncio.Task[object]]:
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        return tasks
