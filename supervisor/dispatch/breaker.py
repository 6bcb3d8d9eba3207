"""A per-worker circuit breaker: closed → open after N consecutive failures → half-open
after a cool-down (one probe call allowed) → closed on its success, open again on failure.

A probe that ends with no verdict (its call was cancelled) gives its slot back
(:meth:`Breaker.release`); a probe that never reports at all is abandoned after another
cool-down, so the breaker can never wedge half-open.

    breaker = Breaker(threshold=3, reset_s=10)
    if breaker.allow():
        ...call...; breaker.success()  # or breaker.failure()
"""

from __future__ import annotations

import time
from enum import StrEnum

__all__ = ["Breaker", "BreakerState"]


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Breaker:
    def __init__(self, threshold: int = 5, reset_s: float = 10.0) -> None:
        self.threshold = threshold
        self.reset_s = reset_s
        self.state = BreakerState.CLOSED
        self.failures = 0
        self.opened_at = 0.0
        self._probing = False
        self._probe_started = 0.0

    def _probe_in_flight(self) -> bool:
        if self._probing and time.monotonic() - self._probe_started >= self.reset_s:
            self._probing = False  # abandoned: its caller never said how it went
        return self._probing

    def available(self) -> bool:
        """Could a call go through now? (Does not take the half-open probe slot.)"""
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.OPEN:
            return time.monotonic() - self.opened_at >= self.reset_s
        return not self._probe_in_flight()

    def allow(self) -> bool:
        """Take permission for one call; in half-open state only one probe at a time."""
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.OPEN:
            if time.monotonic() - self.opened_at < self.reset_s:
                return False
            self.state = BreakerState.HALF_OPEN
            self._probing = False
        if self._probe_in_flight():
            return False
        self._probing = True
        self._probe_started = time.monotonic()
        return True

    def release(self) -> None:
        """The call ended with no verdict (cancelled): give a half-open probe slot back."""
        self._probing = False

    def success(self) -> None:
        self.state = BreakerState.CLOSED
        self.failures = 0
        self._probing = False

    def failure(self) -> None:
        self._probing = False
        self.failures += 1
        if self.state is BreakerState.HALF_OPEN or self.failures >= self.threshold:
            self.state = BreakerState.OPEN
            self.opened_at = time.monotonic()
