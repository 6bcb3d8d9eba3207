"""Discovery and the registry it fills: health thresholds, identity and names. The wire is not
what these test, so a scripted caller stands in for it (the ``WorkerCaller`` seam); the store
is the real one."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from shared import (
    CapabilitySpec,
    Keys,
    UnknownCapability,
    WorkerRegistration,
    WorkerUnreachable,
)
from supervisor.calls import CallResult, ServerInfo
from supervisor.discovery import Discovery, parse_worker_entry
from supervisor.dispatch.breaker import Breaker
from supervisor.registry import Registry, WorkerState, instance_name
from supervisor.store import Store, open_store


def tool(name: str, schema: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {"name": name, "inputSchema": schema or {"type": "object"}, **extra}


class ScriptedCaller:
    """Each URL answers ``tools/list`` from ``tools[url]``; ``down`` URLs are unreachable."""

    def __init__(self) -> None:
        self.tools: dict[str, list[dict[str, Any]]] = {}
        self.names: dict[str, str] = {}
        self.down: set[str] = set()
        self.garbage: set[str] = set()
        self.dropped: list[str] = []

    async def connect(self, url: str) -> ServerInfo:
        if url in self.down:
            raise WorkerUnreachable(f"{url} down")
        return ServerInfo(self.names.get(url, "svc"), "1", "2025-11-25", "legacy", True)

    async def list_tools(self, url: str, *, timeout: float) -> list[dict[str, Any]]:
        if url in self.garbage:
            raise ValueError("a malformed reply")  # not even a WorkerCallError
        return self.tools[url]

    async def call(self, url: str, tool: str, arguments: dict[str, Any], **kw: Any) -> CallResult:
        raise AssertionError("foreign servers have no get_capabilities")

    def in_flight(self, url: str) -> int:
        return 0

    async def drop(self, url: str) -> None:
        self.dropped.append(url)


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    async with open_store("memory://", Keys("t"), retention_s=60, idempotency_ttl_s=60) as s:
        yield s


def discovery(caller: ScriptedCaller, store: Store, urls: list[str]) -> Discovery:
    return Discovery(Registry(), caller, store, static_urls=urls, probe_interval_s=60, down_after=2)


async def test_down_only_after_consecutive_failed_probes(store: Store) -> None:
    caller = ScriptedCaller()
    url = "http://a:1/mcp"
    caller.tools[url] = [tool("x")]
    found = discovery(caller, store, [url])
    reg = found.registry
    await found.refresh()
    worker = reg.workers[url]
    assert worker.healthy
    caller.down.add(url)
    await found.refresh()
    assert worker.healthy and worker.failures == 1  # one blip is not an outage
    caller.down.discard(url)
    await found.refresh()
    assert worker.healthy and worker.failures == 0
    caller.down.add(url)
    await found.refresh()
    await found.refresh()
    assert not worker.healthy and worker.health == "down" and "down" in (worker.error or "")


async def test_a_new_worker_that_fails_is_down_at_once_and_bad_replies_never_stop_discovery(
    store: Store,
) -> None:
    caller = ScriptedCaller()
    good, bad = "http://good:1/mcp", "http://bad:1/mcp"
    caller.tools[good] = [tool("x")]
    caller.garbage.add(bad)
    found = discovery(caller, store, [good, bad])
    reg = found.registry
    await found.refresh()
    assert reg.workers[good].healthy
    assert not reg.workers[bad].healthy and "malformed" in (reg.workers[bad].error or "")


async def test_same_tool_on_two_services_gets_qualified_names(store: Store) -> None:
    caller = ScriptedCaller()
    a, a2, b = "http://a:1/mcp", "http://a2:1/mcp", "http://b:1/mcp"
    caller.names = {a: "alpha", a2: "alpha", b: "beta"}
    caller.tools = {
        a: [tool("echo"), tool("only_alpha")],
        a2: [tool("echo"), tool("only_alpha")],
        b: [tool("echo", {"type": "object", "required": ["m"]})],
    }
    found = discovery(caller, store, [a, a2, b])
    reg = found.registry
    await found.refresh()
    assert set(reg.catalog()) == {"alpha.echo", "beta.echo", "only_alpha"}
    assert reg.resolve("alpha.only_alpha").name == "only_alpha"  # qualified always works
    target = reg.resolve("beta.echo")
    assert (target.service, target.tool) == ("beta", "echo")
    with pytest.raises(UnknownCapability) as caught:
        reg.resolve("echo")
    assert caught.value.details["choices"] == ["alpha.echo", "beta.echo"]
    # replicas of one service are told apart
    assert {w.name for w in reg.workers.values()} == {"alpha@a:1", "alpha@a2:1", "beta@b:1"}


async def test_tools_that_require_tasks_are_left_out_with_a_reason(store: Store) -> None:
    caller = ScriptedCaller()
    url = "http://a:1/mcp"
    caller.tools[url] = [tool("x"), tool("t", execution={"taskSupport": "required"})]
    found = discovery(caller, store, [url])
    reg = found.registry
    await found.refresh()
    worker = reg.workers[url]
    assert set(worker.capabilities) == {"x"}
    assert "requires MCP tasks" in worker.excluded["t"]
    assert "t" not in reg.catalog()


def test_names_and_entries() -> None:
    assert instance_name("svc", "http://h:1/mcp") == "svc@h:1"
    assert instance_name("svc", "http://gw:80/a/mcp") == "svc@gw:80/a/mcp"
    assert parse_worker_entry("everything=http://h:1/mcp") == ("everything", "http://h:1/mcp")
    assert parse_worker_entry("http://h:1/mcp?x=1") == (None, "http://h:1/mcp?x=1")


async def test_a_lapsed_registration_drops_the_worker_and_its_connection(store: Store) -> None:
    caller = ScriptedCaller()
    url = "http://reg:1/mcp"
    caller.tools[url] = [tool("x")]
    reg_key = store.keys.worker("svc@reg:1")
    await store.client.set(reg_key, WorkerRegistration(name="svc", url=url).model_dump_json())
    found = discovery(caller, store, [])
    reg = found.registry
    await found.refresh()
    assert reg.workers[url].healthy and reg.workers[url].source == "registered"
    await store.client.delete(reg_key)  # its heartbeat stopped and the key expired
    await found.refresh()
    assert url not in reg.workers and caller.dropped == [url]


def test_a_registry_handed_its_workers_answers_for_them() -> None:
    worker = WorkerState(
        url="http://a:1/mcp",
        name="svc@a:1",
        source="static",
        breaker=Breaker(1, 60),
        service="svc",
        healthy=True,
        capabilities={"x": CapabilitySpec()},
        digests={"x": "d1"},
    )
    reg = Registry([worker])
    assert reg.resolve("x").digest == "d1" and reg.resolve("svc.x").name == "x"
    assert reg.spec("x") == CapabilitySpec() and reg.spec("nothing") is None
    reg.mark_down(worker.url, "connection refused")
    assert not worker.healthy and worker.downs == 1 and worker.error == "connection refused"
    worker.capabilities = {}  # being re-probed: the name is known, no worker serves it yet
    with pytest.raises(UnknownCapability, match="right now"):
        reg.resolve("x")


async def test_a_down_worker_says_why_and_since_when(store: Store) -> None:
    caller = ScriptedCaller()
    up, never, garbled = "http://a:1/mcp", "http://b:1/mcp", "http://c:1/mcp"
    caller.tools[up] = [tool("x")]
    caller.down.add(never)
    caller.garbage.add(garbled)
    found = discovery(caller, store, [up, never, garbled])
    reg = found.registry
    before = time.time()
    await found.refresh()
    views = {url: w.view(0) for url, w in reg.workers.items()}
    assert views[up]["down_reason"] is None and views[up]["down_since"] is None
    assert views[never]["down_reason"] == "http://b:1/mcp down"
    assert views[garbled]["down_reason"] == "ValueError: a malformed reply"
    since = views[never]["down_since"]
    assert isinstance(since, float) and before <= since <= time.time()
    assert [w.url for w in reg.unheard()] == [never, garbled]  # never heard: might serve any name
    await found.refresh()
    assert reg.workers[never].down_since == since  # since it went down, not since the last probe
    caller.down.add(up)
    await found.refresh()
    await found.refresh()  # down after two failed probes
    assert reg.workers[up].down_reason == "http://a:1/mcp down"
    assert reg.workers[up] not in reg.unheard()  # heard from: its capabilities are known
    caller.down.discard(never)
    caller.tools[never] = [tool("y")]
    await found.refresh()
    assert reg.workers[never].down_reason is None and reg.workers[never].down_since is None
