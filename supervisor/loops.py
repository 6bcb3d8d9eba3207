"""Supervised background loops: one that dies is logged, counted, and restarted with backoff.

Every long-lived loop of the supervisor (discovery, intake, leases, cancels, the change
listener) runs under :class:`Loops`. A loop that raises is restarted after an exponential
backoff (0.1 s doubling to 10 s, reset after a minute of good running); while it waits,
:attr:`Loops.down` names it and ``/readyz`` answers degraded. A loop that returns is treated
as having died: these loops are meant to run for the life of the process.

    async with Loops(metrics) as loops:
        loops.start("registry", discovery.run)
        ...
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from shared import get_logger
from supervisor.metrics import Metrics

__all__ = ["Loops", "cancel_all"]

log = get_logger("fleet.loops")

BACKOFF_FIRST_S = 0.1
BACKOFF_MAX_S = 10.0
HEALTHY_AFTER_S = 60.0
"""A loop that ran this long before dying starts its backoff again from the first step."""


class Loops:
    def __init__(self, metrics: Metrics | None = None) -> None:
        self.metrics = metrics
        self.down: dict[str, str] = {}
        self.restarts: dict[str, int] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    async def __aenter__(self) -> Loops:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def start(self, name: str, loop: Callable[[], Awaitable[Any]]) -> None:
        self.restarts.setdefault(name, 0)
        self._tasks[name] = asyncio.create_task(self._run(name, loop), name=f"loop-{name}")

    async def stop(self) -> None:
        tasks, self._tasks = list(self._tasks.values()), {}
        await cancel_all(tasks)

    async def _run(self, name: str, loop: Callable[[], Awaitable[Any]]) -> None:
        delay = BACKOFF_FIRST_S
        while True:
            started = time.monotonic()
            try:
                await loop()
                reason = "returned"
                log.error("loop.returned", loop=name)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"[:300]
                log.exception("loop.died", loop=name)
            if time.monotonic() - started >= HEALTHY_AFTER_S:
                delay = BACKOFF_FIRST_S
            self.down[name] = reason
            self.restarts[name] = self.restarts.get(name, 0) + 1
            if self.metrics is not None:
                self.metrics.loop_restarts.labels(name).inc()
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX_S)
            self.down.pop(name, None)
            log.info("loop.restarted", loop=name, restarts=self.restarts[name])


async def cancel_all(tasks: Iterable[asyncio.Task[Any]], *, again_after_s: float = 0.5) -> None:
    """Cancel ``tasks`` and wait for them to end, cancelling again any that keeps running.

    redis-py can swallow a cancellation that lands inside a command (redis/redis-py#2028,
    #2551): the task then carries on as if nothing happened, and a loop would never stop.
    """
    pending = {t for t in tasks if not t.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=again_after_s)
    for task in tasks:
        if not task.cancelled():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                task.result()
