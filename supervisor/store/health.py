"""Whether the store answers, as this whole process sees it.

Every part of the supervisor that talks to Redis (the dispatcher's loops, the change and
cancel listeners, discovery, the janitor, requests) reports here: a failure through
:meth:`StoreHealth.failed`, an answer through :meth:`StoreHealth.answered`. The log gets
one warning when the store stops answering (``store.unreachable``) and one info when it
answers again (``store.back``), however many loops retry in between; ``/readyz`` shows the
outage (since when, why, how many tries). Loops retry after :meth:`StoreHealth.pause`: an
exponential backoff shared by the process, cut short the moment any part sees an answer.

    health = StoreHealth()
    try:
        await store.take(...)
    except StoreUnavailable as exc:
        health.failed(exc)
        await health.pause()
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass
from typing import Any

from shared import get_logger

__all__ = ["BACKOFF_FIRST_S", "BACKOFF_MAX_S", "Outage", "StoreHealth"]

log = get_logger("fleet.store")

BACKOFF_FIRST_S = 0.25
BACKOFF_MAX_S = 5.0
"""Retries while the store is out wait 0.25 s, doubling to 5 s (with ±20 % jitter)."""


@dataclass
class Outage:
    since: float
    """Wall-clock time (epoch seconds) of the first failure."""
    reason: str
    """The latest failure, one line."""
    retries: int = 0
    """Failed tries since (every part of the process counted)."""

    def as_json(self) -> dict[str, Any]:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.since))
        return {"since": stamp, "reason": self.reason, "retries": self.retries}


class StoreHealth:
    """The store's state for this process: up, or an :class:`Outage`."""

    def __init__(self) -> None:
        self.outage: Outage | None = None
        self._answered: asyncio.Event | None = None

    @property
    def up(self) -> bool:
        return self.outage is None

    def failed(self, error: BaseException | str) -> None:
        """A try failed: the first failure of an outage logs one warning; the rest count."""
        reason = _one_line(getattr(error, "message", None) or str(error))
        if self.outage is not None:
            self.outage.reason = reason
            self.outage.retries += 1
            log.debug("store.retry_failed", error=reason, retries=self.outage.retries)
            return
        self.outage = Outage(since=time.time(), reason=reason)
        log.warning(
            "store.unreachable",
            error=reason,
            retrying=f"with backoff from {BACKOFF_FIRST_S} s to {BACKOFF_MAX_S} s",
            hint="/readyz answers 503 until the store is back; check the store URL and Redis",
        )

    def answered(self) -> None:
        """A try succeeded: after an outage, log one info and wake every paused retry."""
        outage, self.outage = self.outage, None
        if outage is None:
            return
        log.info(
            "store.back",
            down_s=round(time.time() - outage.since, 1),
            retries=outage.retries,
        )
        if self._answered is not None:
            self._answered.set()
            self._answered = None

    def retry_delay(self) -> float:
        """The wait before the next try: exponential in the outage's failed tries."""
        tries = self.outage.retries if self.outage is not None else 0
        delay: float = min(BACKOFF_FIRST_S * 2 ** min(tries, 16), BACKOFF_MAX_S)
        return delay * random.uniform(0.8, 1.2)

    async def pause(self) -> None:
        """Wait :meth:`retry_delay`, or less if some part of the process sees the store
        answer meanwhile."""
        if self.outage is None:
            return
        if self._answered is None:
            self._answered = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.retry_delay()):
                await self._answered.wait()


def _one_line(text: str) -> str:
    return " ".join(text.split())[:300]
