"""The legacy (``initialize``) revisions and the error table, against a scripted aiohttp server.

The server answers ``server/discover`` with a 400 (a legacy server), then holds a session;
each test overrides the methods it needs. Every request it received is kept, with its
headers, so a test can check what the client sent.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from shared import (
    WorkerBadResponse,
    WorkerBusy,
    WorkerCallError,
    WorkerRefused,
    WorkerTimeout,
    WorkerUnreachable,
)
from shared.serving import free_port
from supervisor.calls import WorkerPool
from tests.helpers import wait_until

Handler = Callable[[dict[str, Any]], Awaitable[web.StreamResponse]]


@dataclass
class Seen:
    method: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class Legacy:
    url: str = ""
    script: dict[str, Handler] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    version: str = "2025-06-18"
    session: str | None = "s1"
    hold: list[web.StreamResponse] = field(default_factory=list)
    """Responses the server starts and then never finishes."""

    def of(self, method: str) -> list[Seen]:
        return [s for s in self.seen if s.method == method]


def rpc(body: dict[str, Any], result: dict[str, Any]) -> web.Response:
    return web.json_response({"jsonrpc": "2.0", "id": body["id"], "result": result})


def text(body: dict[str, Any], value: str) -> web.Response:
    return rpc(body, {"content": [{"type": "text", "text": value}]})


def error(body: dict[str, Any], code: int, status: int = 200) -> web.Response:
    message = {"jsonrpc": "2.0", "id": body.get("id"), "error": {"code": code, "message": "no"}}
    return web.json_response(message, status=status)


async def accepted(body: dict[str, Any]) -> web.Response:
    return web.Response(status=202)


@pytest.fixture
async def legacy() -> AsyncIterator[Legacy]:
    server = Legacy()

    async def initialize(body: dict[str, Any]) -> web.Response:
        result = {
            "protocolVersion": server.version,
            "capabilities": {"tools": {}, "logging": {}},
            "serverInfo": {"name": "old", "version": "9"},
        }
        response = rpc(body, result)
        if server.session:
            response.headers["mcp-session-id"] = server.session
        return response

    async def discover(body: dict[str, Any]) -> web.Response:
        return error(body, -32600, status=400)

    async def set_level(body: dict[str, Any]) -> web.Response:
        return rpc(body, {})

    async def call(body: dict[str, Any]) -> web.Response:
        return text(body, "ok")

    server.script.update(
        {
            "server/discover": discover,
            "initialize": initialize,
            "notifications/initialized": accepted,
            "logging/setLevel": set_level,
            "tools/call": call,
        }
    )

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.json() if request.method == "POST" else {}
        method = body.get("method") or ("reply" if request.method == "POST" else request.method)
        server.seen.append(Seen(method, dict(request.headers), body))
        response = await server.script.get(method, accepted)(body)
        if not response.prepared and response in server.hold:
            await response.prepare(request)
            await asyncio.Event().wait()
        return response

    app = web.Application()
    app.router.add_route("*", "/mcp", handle)
    runner = web.AppRunner(app, handle_signals=False, handler_cancellation=True)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    server.url = f"http://127.0.0.1:{port}/mcp"
    try:
        yield server
    finally:
        await runner.cleanup()


async def test_a_stateful_legacy_server_gets_its_session_and_version_and_answers(
    legacy: Legacy,
) -> None:
    async def call(body: dict[str, Any]) -> web.StreamResponse:
        events = [
            {"jsonrpc": "2.0", "id": "srv-1", "method": "ping"},
            {"jsonrpc": "2.0", "id": "srv-2", "method": "sampling/createMessage", "params": {}},
            {"jsonrpc": "2.0", "id": 999999999, "result": {}},  # some other request's
            {"jsonrpc": "2.0", "method": "notifications/message", "params": {"data": "hi"}},
            {"jsonrpc": "2.0", "id": body["id"], "result": {"content": []}},
        ]
        payload = "".join(f"data: {json.dumps(e)}\n\n" for e in events)
        return web.Response(body=payload.encode(), content_type="text/event-stream")

    legacy.script["tools/call"] = call
    logs: list[Any] = []

    async def on_log(level: str, data: Any) -> None:
        logs.append((level, data))

    async with WorkerPool() as pool:
        info = await pool.connect(legacy.url)
        assert (info.dialect, info.protocol, info.stateful, info.name) == (
            "legacy",
            "2025-06-18",
            True,
            "old",
        )
        out = await pool.call(legacy.url, "t", {}, timeout=5, on_log=on_log)
        assert out.value is None and logs == [("info", "hi")]
        replies = await wait_until(lambda: len(legacy.of("reply")) == 2 and legacy.of("reply"))
    assert {r.body["id"]: r.body.get("result", r.body.get("error")) for r in replies} == {
        "srv-1": {},
        "srv-2": {"code": -32601, "message": "sampling/createMessage unsupported"},
    }
    for seen in (*legacy.of("logging/setLevel"), *legacy.of("tools/call"), *replies):
        assert seen.headers["mcp-session-id"] == "s1"
        assert seen.headers["mcp-protocol-version"] == "2025-06-18"
    assert "mcp-session-id" not in legacy.of("initialize")[0].headers
    assert legacy.of("DELETE")[0].headers["mcp-session-id"] == "s1"  # closed politely


async def test_a_forgotten_session_is_established_again_once(legacy: Legacy) -> None:
    forgotten = {"s1"}

    async def call(body: dict[str, Any]) -> web.Response:
        if legacy.seen[-1].headers.get("mcp-session-id") in forgotten:
            return web.Response(status=404, text="unknown session")
        return text(body, "again")

    legacy.script["tools/call"] = call
    async with WorkerPool() as pool:
        await pool.connect(legacy.url)
        legacy.session = "s2"
        assert (await pool.call(legacy.url, "t", {}, timeout=5)).value == "again"
        assert len(legacy.of("initialize")) == 2
        forgotten.add("s2")  # forgotten again at once: refused, never delivered
        with pytest.raises(WorkerRefused) as caught:
            await pool.call(legacy.url, "t", {}, timeout=5)
    assert not caught.value.delivered and caught.value.details["status"] == 404


async def test_a_legacy_call_that_times_out_is_cancelled_on_the_server(legacy: Legacy) -> None:
    async def call(body: dict[str, Any]) -> web.StreamResponse:
        stream = web.StreamResponse(headers={"content-type": "text/event-stream"})
        legacy.hold.append(stream)  # the server took the call: headers sent, no result ever
        return stream

    legacy.script["tools/call"] = call
    legacy.session = None  # stateless: no session header, and still a cancellation
    async with WorkerPool() as pool:
        with pytest.raises(WorkerTimeout) as caught:
            await pool.call(legacy.url, "slow", {}, timeout=0.3)
        cancelled = await wait_until(lambda: legacy.of("notifications/cancelled"))
    assert caught.value.details["tool"] == "slow" and caught.value.delivered
    call_id = legacy.of("tools/call")[0].body["id"]
    assert cancelled[0].body["params"]["requestId"] == call_id
    assert "mcp-session-id" not in cancelled[0].headers


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("version", "offers protocol '1999-01-01'"),
        ("initialized", "refused notifications/initialized (500)"),
        ("initialize", "refused the request (HTTP 400)"),
    ],
)
async def test_a_handshake_that_fails_is_refused(legacy: Legacy, change: str, message: str) -> None:
    async def fail(body: dict[str, Any]) -> web.Response:
        status = 500 if change == "initialized" else 400
        return web.Response(status=status, text="no")

    if change == "version":
        legacy.version = "1999-01-01"
    else:
        legacy.script[f"notifications/{change}" if change == "initialized" else change] = fail
    async with WorkerPool() as pool:
        with pytest.raises(WorkerRefused, match=re.escape(message)) as caught:
            await pool.connect(legacy.url)
    assert not caught.value.delivered
    assert caught.value.retryable is (change != "version")


async def test_a_discover_error_falls_back_unless_the_worker_is_unavailable(
    legacy: Legacy,
) -> None:
    async def internal(body: dict[str, Any]) -> web.Response:
        return error(body, -32603)

    legacy.script["server/discover"] = internal
    async with WorkerPool() as pool:
        assert (await pool.connect(legacy.url)).dialect == "legacy"

    async def draining(body: dict[str, Any]) -> web.Response:
        return web.Response(status=503, text="draining")

    legacy.script["server/discover"] = draining
    async with WorkerPool() as pool:
        with pytest.raises(WorkerUnreachable):
            await pool.connect(legacy.url)
    assert not legacy.of("initialize")[1:]


async def test_connecting_to_a_server_that_never_answers_times_out(legacy: Legacy) -> None:
    async def hang(body: dict[str, Any]) -> web.Response:
        await asyncio.Event().wait()
        raise AssertionError("never answered")

    legacy.script["server/discover"] = hang
    async with WorkerPool(connect_timeout=0.3) as pool:
        with pytest.raises(WorkerTimeout, match="connecting to"):
            await pool.connect(legacy.url)


async def test_list_tools_pages_and_refuses_a_page_without_tools(legacy: Legacy) -> None:
    async def tools(body: dict[str, Any]) -> web.Response:
        cursor = body["params"].get("cursor")
        if cursor == "bad":
            return rpc(body, {"tools": "many"})
        page = {"tools": [{"name": cursor or "a"}, {"nameless": 1}]}
        return rpc(body, {**page, "nextCursor": None if cursor else "b"})

    legacy.script["tools/list"] = tools
    async with WorkerPool() as pool:
        listed = await pool.list_tools(legacy.url, timeout=5)
        assert [t["name"] for t in listed] == ["a", "b"]

        async def bad(body: dict[str, Any]) -> web.Response:
            return await tools({**body, "params": {"cursor": "bad"}})

        legacy.script["tools/list"] = bad
        with pytest.raises(WorkerBadResponse, match="without a tools list"):
            await pool.list_tools(legacy.url, timeout=5)


@pytest.mark.parametrize(
    ("answer", "error", "code", "delivered"),
    [
        (lambda b: web.Response(status=429), WorkerBusy, "BUSY", False),
        (lambda b: web.Response(status=403), WorkerCallError, "UNAUTHORIZED", False),
        (lambda b: web.Response(status=409), WorkerRefused, "REFUSED", False),
        (lambda b: web.Response(status=300), WorkerRefused, "REFUSED", False),
        (lambda b: error(b, -32022), WorkerRefused, "REFUSED", False),
        (lambda b: rpc(b, {"content": "x"}), WorkerBadResponse, "BAD_RESPONSE", True),
        (lambda b: rpc(b, {"structuredContent": [1]}), WorkerBadResponse, "BAD_RESPONSE", True),
        (lambda b: error({"id": 424242}, -32603), WorkerBadResponse, "BAD_RESPONSE", True),
        (
            lambda b: web.json_response({"jsonrpc": "2.0", "id": b["id"], "result": [1]}),
            WorkerBadResponse,
            "BAD_RESPONSE",
            True,
        ),
    ],
    ids=[
        "429",
        "403",
        "409",
        "300-not-followed",
        "unsupported-version-twice",
        "malformed-content",
        "structured-not-object",
        "error-for-another-id",
        "result-not-object",
    ],
)
async def test_each_answer_is_classified_by_the_table(
    legacy: Legacy,
    answer: Callable[[dict[str, Any]], web.Response],
    error: type[WorkerCallError],
    code: str,
    delivered: bool,
) -> None:
    async def call(body: dict[str, Any]) -> web.Response:
        return answer(body)

    legacy.script["tools/call"] = call
    async with WorkerPool() as pool:
        with pytest.raises(error) as caught:
            await pool.call(legacy.url, "t", {}, timeout=5)
    assert caught.value.code == code and caught.value.delivered is delivered


async def test_a_worker_that_is_not_listening_is_unreachable() -> None:
    async with WorkerPool() as pool:
        with pytest.raises(WorkerUnreachable) as caught:
            await pool.call(f"http://127.0.0.1:{free_port()}/mcp", "t", {}, timeout=5)
    assert not caught.value.delivered
