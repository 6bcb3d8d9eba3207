"""Circuit breaker states and the router's choices."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from shared import CapabilitySpec
from supervisor.dispatch.breaker import Breaker, BreakerState
from supervisor.dispatch.router import Router
from supervisor.registry import Registry, WorkerState
from tests.helpers import wait_until_sync


def test_breaker_opens_half_opens_and_closes(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    b = Breaker(threshold=3, reset_s=10)
    for _ in range(2):
        b.failure()
    assert b.state is BreakerState.CLOSED and b.allow()
    b.failure()
    assert b.state is BreakerState.OPEN and not b.allow() and not b.available()
    clock[0] += 10
    assert b.available()
    assert b.allow()  # the one half-open probe
    assert b.state is BreakerState.HALF_OPEN and not b.allow()
    b.failure()  # probe failed: open again
    assert b.state is BreakerState.OPEN and not b.allow()
    clock[0] += 10
    assert b.allow()
    b.success()
    assert b.state is BreakerState.CLOSED and b.failures == 0 and b.allow()


def worker(
    name: str, *, healthy: bool = True, limit: int = 2, caps: tuple[str, ...] = ("x",)
) -> WorkerState:
    return WorkerState(
        url=f"http://{name}/mcp",
        name=name,
        source="static",
        service="svc",
        breaker=Breaker(1, 60),
        healthy=healthy,
        capabilities={c: CapabilitySpec(max_concurrency=limit) for c in caps},
    )


def router_with(*workers: WorkerState) -> tuple[Router, Counter[tuple[str, str]]]:
    registry = Registry(workers)
    load: Counter[tuple[str, str]] = Counter()
    return Router(registry, lambda url, cap: load[(url, cap)]), load


def test_router_skips_unhealthy_open_and_full() -> None:
    a, b, c, d = worker("a"), worker("b", healthy=False), worker("c"), worker("d", caps=("y",))
    router, load = router_with(a, b, c, d)
    c.breaker.failure()  # threshold 1: open
    assert {router.choose("x").name for _ in range(20)} == {"a"}  # type: ignore[union-attr]
    load[(a.url, "x")] = 2  # at its limit for x ...
    assert router.choose("x") is None
    assert router.choose("y") is d  # ... other capabilities are counted apart
    assert router.choose("nothing") is None


def test_router_prefers_less_loaded_and_untried_and_pins() -> None:
    a, b = worker("a", limit=10), worker("b", limit=10)
    router, load = router_with(a, b)
    load[(a.url, "x")] = 5
    assert all(router.choose("x") is b for _ in range(10))
    load[(a.url, "x")] = 0
    assert all(router.choose("x", avoid={a.url}) is b for _ in range(10))
    assert all(router.choose("x", pinned="a") is a for _ in range(10))
    assert all(router.choose("x", pinned="svc") in (a, b) for _ in range(10))
    assert router.choose("x", pinned="ghost") is None


def test_a_cancelled_half_open_probe_does_not_wedge_the_breaker() -> None:
    breaker = Breaker(1, 0.05)
    breaker.failure()  # open
    wait_until_sync(breaker.available, timeout=5, message="cool-down")
    assert breaker.allow()  # the half-open probe ...
    assert not breaker.allow()
    breaker.release()  # ... was cancelled: no verdict
    assert breaker.allow()  # another probe may go
    # a probe whose caller vanished without a word is abandoned after another cool-down
    wait_until_sync(breaker.available, timeout=5, message="abandoned probe")
    assert breaker.allow()
