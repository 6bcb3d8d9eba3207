"""What ``fleet top`` reads: one snapshot of the fleet, and rates over a sliding window.

A snapshot is five reads at once: ``/v1/workers``, ``/v1/queues`` (queue depths, each
capability's slots, the retained jobs per status), a page of running jobs, a page of queued
ones and the last few failed ones (``/v1/jobs?status=…``, index listings whose cost is the
page, not the store).

Rates are computed here, from successive snapshots of ``by_status``: over the window, the
growth of ``succeeded`` and ``failed`` and of the sum of all statuses (every submitted job
enters the status indexes). The janitor's trimming of expired records and a redrive (failed
back to queued) can shrink a count; a rate is never shown below zero.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from typing import Any

from supervisor.client import ApiError, FleetApi, Unreachable

__all__ = ["FATAL_STATUSES", "Rates", "describe", "fatal", "guarded", "snapshot"]

Snapshot = dict[str, Any]

FATAL_STATUSES = (401, 403)
"""Answers that retrying cannot change: ``fleet top`` exits on them (exit 5)."""


def fatal(exc: BaseException) -> bool:
    return isinstance(exc, ApiError) and exc.status in FATAL_STATUSES


async def snapshot(api: FleetApi, limit: int = 50, failures: int = 4) -> Snapshot:
    workers, queues, running, queued, failed = await asyncio.gather(
        api.workers(),
        api.queues(),
        api.jobs(status="running", limit=limit),
        api.jobs(status="queued", limit=limit),
        api.jobs(status="failed", limit=failures),
    )
    # A job that started between the two reads is in both: it is running.
    started = {job.get("id") for job in running["jobs"]}
    return {
        "at": time.time(),
        "url": api.url,
        "workers": workers,
        "queues": queues.get("queues", {}),
        "held_by_this_supervisor": queues.get("held_by_this_supervisor"),
        "slots": queues.get("slots"),
        "by_status": queues.get("by_status"),
        "running": running["jobs"],
        "queued": [job for job in queued["jobs"] if job.get("id") not in started],
        "failures": failed["jobs"],
    }


async def guarded(api: FleetApi, timeout: float) -> Snapshot:
    """A snapshot, or :class:`Unreachable` when it takes longer than ``timeout`` (a
    supervisor that accepts connections but does not answer is as good as down)."""
    try:
        return await asyncio.wait_for(snapshot(api), timeout)
    except TimeoutError as exc:
        raise Unreachable(f"no answer from {api.url} within {timeout:.0f}s") from exc


class Rates:
    """Submitted, succeeded and failed per second over the last ``window`` seconds.

    >>> rates = Rates(window=20)
    >>> rates.add(0.0, {"queued": 1, "succeeded": 0})
    >>> rates.add(10.0, {"queued": 0, "succeeded": 6})
    >>> rates.now()
    {'submitted': 0.5, 'succeeded': 0.6, 'failed': 0.0}
    """

    def __init__(self, window: float = 20.0) -> None:
        self.window = window
        self._samples: deque[tuple[float, dict[str, int]]] = deque()

    def add(self, at: float, counts: dict[str, int] | None) -> None:
        if counts is None:  # a supervisor that does not count: no rates
            return
        self._samples.append((at, dict(counts)))
        while len(self._samples) > 2 and self._samples[1][0] <= at - self.window:
            self._samples.popleft()

    def now(self) -> dict[str, float] | None:
        if len(self._samples) < 2:
            return None
        (t0, first), (t1, last) = self._samples[0], self._samples[-1]
        span = t1 - t0
        if span <= 0:
            return None

        def rate(before: int, after: int) -> float:
            return max(0.0, (after - before) / span)

        return {
            "submitted": rate(sum(first.values()), sum(last.values())),
            "succeeded": rate(first.get("succeeded", 0), last.get("succeeded", 0)),
            "failed": rate(first.get("failed", 0), last.get("failed", 0)),
        }


def describe(exc: BaseException) -> str:
    """One line for the reconnecting banner."""
    if isinstance(exc, ApiError):
        return exc.one_line()
    if isinstance(exc, (ValueError, KeyError, TypeError)):
        return f"not a supervisor's answer ({type(exc).__name__}: {exc})"
    text = (str(exc) or type(exc).__name__).splitlines()[0]
    # The URL is on the line above; the reason is what is worth the width.
    found = re.match(r"supervisor unreachable at \S+: (.*)", text)
    return f"unreachable: {found.group(1)}" if found else text
