"""Discovery with a WorkerTrust: refused workers are never probed, are logged and counted once,
and only admitted URLs get a token (the per-service one, else the shared one). A scripted
caller stands in for the wire where the wire is not the point; the pool test uses a real
worker over HTTP that records what it receives."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from structlog.testing import capture_logs

from shared import Keys, WorkerRegistration, WorkerSettings
from shared.allowlist import Allowlist
from shared.signing import sign_registration
from supervisor.calls import ServerInfo, WorkerPool
from supervisor.discovery import Discovery
from supervisor.metrics import Metrics
from supervisor.registry import Registry
from supervisor.store import Store, open_store
from supervisor.trust import WorkerTrust
from tests.servers import Recorder, serve_asgi
from tests.supervisor.test_registry import ScriptedCaller, tool
from workers import echo

SECRET = "registration-secret-0123456789"


class CountingCaller(ScriptedCaller):
    """Every URL answers; ``connected`` lists each URL probed."""

    def __init__(self) -> None:
        super().__init__()
        self.connected: list[str] = []

    async def connect(self, url: str) -> ServerInfo:
        self.connected.append(url)
        self.tools.setdefault(url, [tool("x")])
        return await super().connect(url)


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    async with open_store("memory://", Keys("t"), retention_s=60, idempotency_ttl_s=60) as s:
        yield s


@pytest.fixture
async def discover(store: Store) -> AsyncIterator[Any]:
    """Make a Discovery over ``store`` with a CountingCaller; each is closed afterwards."""
    made: list[Discovery] = []

    def make(trust: WorkerTrust, static: list[str] | None = None) -> Discovery:
        caller = CountingCaller()
        found = Discovery(Registry(), caller, store, static_urls=static or [], trust=trust)
        made.append(found)
        return found

    yield make
    for found in made:
        await found.aclose()


def caller_of(found: Discovery) -> CountingCaller:
    assert isinstance(found.caller, CountingCaller)
    return found.caller


def refused_count(metrics: Metrics, source: str, reason: str) -> float:
    value = metrics.registry.get_sample_value(
        "fleet_workers_refused_total", {"source": source, "reason": reason}
    )
    return value or 0.0


async def put(store: Store, key: str, reg: WorkerRegistration) -> None:
    await store.client.set(store.keys.worker(key), reg.model_dump_json(), ex=60)


def signed(name: str, url: str, *, secret: str = SECRET, ttl: int = 60) -> WorkerRegistration:
    return sign_registration(WorkerRegistration(name=name, url=url), secret, fleet="t", ttl_s=ttl)


async def test_bad_registrations_are_not_probed_and_are_logged_and_counted_once(
    store: Store, discover: Any
) -> None:
    metrics = Metrics()
    trust = WorkerTrust(secret=SECRET, fleet="t", token="shared", metrics=metrics)
    found = discover(trust)
    caller = caller_of(found)
    good = "http://good:1/mcp"
    await put(store, "good", signed("svc", good))
    await put(store, "plain", WorkerRegistration(name="svc", url="http://plain:1/mcp"))
    await put(store, "forged", signed("svc", "http://forged:1/mcp", secret="x" * 20))
    past = time.time() - 3600
    old = sign_registration(
        WorkerRegistration(name="svc", url="http://old:1/mcp"), SECRET, fleet="t", ttl_s=5, at=past
    )
    await put(store, "old", old)
    with capture_logs() as logs:
        for _ in range(3):
            await found.refresh()
    assert set(caller.connected) == {good}
    assert set(found.registry.workers) == {good}
    refusals = [e for e in logs if e["event"] == "registry.worker_refused"]
    assert sorted((e["url"], e["reason"]) for e in refusals) == [
        ("http://forged:1/mcp", "bad_signature"),
        ("http://old:1/mcp", "expired"),
        ("http://plain:1/mcp", "unsigned"),
    ]  # once each, over three rounds
    for reason in ("unsigned", "bad_signature", "expired"):
        assert refused_count(metrics, "registered", reason) == 1
    shown = {r["url"]: r for r in found.registry.refused()}
    assert shown["http://plain:1/mcp"]["reason"] == "unsigned"
    assert shown["http://plain:1/mcp"]["source"] == "registered"
    assert trust.token_for(good) == "shared"
    assert trust.token_for("http://plain:1/mcp") is None

    # Gone, it is forgotten; back again, it is logged and counted again.
    await store.client.delete(store.keys.worker("plain"))
    await found.refresh()
    assert "http://plain:1/mcp" not in {r["url"] for r in found.registry.refused()}
    await put(store, "plain", WorkerRegistration(name="svc", url="http://plain:1/mcp"))
    await found.refresh()
    assert refused_count(metrics, "registered", "unsigned") == 2


async def test_the_allowlist_holds_static_and_registered_workers_alike(
    store: Store, discover: Any
) -> None:
    metrics = Metrics()
    trust = WorkerTrust(
        allow=Allowlist.parse(["127.0.0.0/8", "*.internal"]),
        token="shared",
        tokens={"echo": "echo-token", "data": "data-token"},
        metrics=metrics,
    )
    static = ["echo=http://127.0.0.2:1/mcp", "http://w.internal:1/mcp", "echo=http://evil:1/mcp"]
    found = discover(trust, static)
    caller = caller_of(found)
    await put(store, "in", WorkerRegistration(name="data", url="http://127.0.0.3:1/mcp"))
    await put(store, "out", WorkerRegistration(name="data", url="http://192.168.1.1:1/mcp"))
    await found.refresh()
    await found.refresh()
    assert set(caller.connected) == {
        "http://127.0.0.2:1/mcp",
        "http://w.internal:1/mcp",
        "http://127.0.0.3:1/mcp",
    }
    assert {(r["url"], r["source"], r["reason"]) for r in found.registry.refused()} == {
        ("http://evil:1/mcp", "static", "not_allowed"),
        ("http://192.168.1.1:1/mcp", "registered", "not_allowed"),
    }
    assert refused_count(metrics, "static", "not_allowed") == 1
    assert refused_count(metrics, "registered", "not_allowed") == 1
    # Per-service tokens by the static entry's service or the registered name; else shared.
    assert trust.token_for("http://127.0.0.2:1/mcp") == "echo-token"
    assert trust.token_for("http://127.0.0.3:1/mcp") == "data-token"
    assert trust.token_for("http://w.internal:1/mcp") == "shared"
    assert trust.token_for("http://evil:1/mcp") is None
    assert trust.token_for("http://192.168.1.1:1/mcp") is None


async def test_a_worker_whose_registration_goes_bad_loses_its_token_and_its_place(
    store: Store, discover: Any
) -> None:
    trust = WorkerTrust(secret=SECRET, fleet="t", token="shared")
    found = discover(trust)
    caller = caller_of(found)
    url = "http://w:1/mcp"
    await put(store, "w", signed("svc", url))
    await found.refresh()
    assert url in found.registry.workers and trust.token_for(url) == "shared"
    await put(store, "w", WorkerRegistration(name="svc", url=url))  # overwritten, unsigned
    await found.refresh()
    assert url not in found.registry.workers and caller.dropped == [url]
    assert trust.token_for(url) is None


async def test_refusals_survive_a_store_outage_without_being_counted_again(
    store: Store, discover: Any
) -> None:
    metrics = Metrics()
    trust = WorkerTrust(secret=SECRET, fleet="t", metrics=metrics)
    found = discover(trust)
    await put(store, "plain", WorkerRegistration(name="svc", url="http://plain:1/mcp"))
    await found.refresh()
    real = store.registrations

    async def down() -> list[WorkerRegistration]:
        raise ConnectionError("store down")

    store.registrations = down  # type: ignore[method-assign]
    await found.refresh()
    assert [r["url"] for r in found.registry.refused()] == ["http://plain:1/mcp"]
    store.registrations = real  # type: ignore[method-assign]
    await found.refresh()
    assert refused_count(metrics, "registered", "unsigned") == 1


async def test_the_pool_asks_for_the_token_on_every_request() -> None:
    """A real worker over HTTP that records its requests: no token before admission or after
    revocation, the service's own token while admitted."""
    worker = echo.build(WorkerSettings(redis_url=None, advertise_url=None, worker_token=None))
    recorder = Recorder(worker.http_app())
    trust = WorkerTrust(token="shared", tokens={"echo": "echo-token"})
    async with serve_asgi(recorder) as base, WorkerPool(credentials=trust.token_for) as pool:
        url = base + "/mcp"
        await pool.list_tools(url, timeout=5)
        assert recorder.requests and recorder.authorizations == []
        trust.admit(url, "echo")
        seen = len(recorder.requests)
        assert (await pool.call(url, "echo", {"value": 1}, timeout=5)).value == {"value": 1}
        assert recorder.authorizations == ["Bearer echo-token"] * (len(recorder.requests) - seen)
        trust.revoke(url)
        seen = len(recorder.authorizations)
        await pool.call(url, "noop", {}, timeout=5)
        assert len(recorder.authorizations) == seen and recorder.tool_calls[-1] == "noop"
