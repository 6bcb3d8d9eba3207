"""Waiting on conditions with a deadline: the suite's only way to synchronise."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

__all__ = ["TimedOut", "remaining", "wait_until"]

T = TypeVar("T")


class TimedOut(Exception):
    """A condition did not hold before its deadline."""


async def wait_until(
    predicate: Callable[[], Any | Awaitable[Any]],
    *,
    timeout: float,
    what: str,
    interval: float = 0.05,
) -> Any:
    """Poll ``predicate`` (sync or async) until it returns something truthy; return that.

    Raises :class:`TimedOut` naming ``what`` when ``timeout`` seconds pass first.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimedOut(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(interval)


def remaining(deadline: float) -> float:
    """Seconds left until a ``time.monotonic()`` deadline (never negative)."""
    return max(0.0, deadline - time.monotonic())
