"""The call path against a raw HTTP server that answers exactly what each test needs.

Every answer that is not a valid JSON-RPC response to our request must become a classified
error (never a success), and every legal way of framing a valid answer must work.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from shared import (
    ToolFailed,
    WorkerBadResponse,
    WorkerCallError,
    WorkerDropped,
    WorkerHttpError,
    WorkerRefused,
)
from supervisor.calls import WorkerPool

DISCOVER = {
    "supportedVersions": ["2026-07-28"],
    "capabilities": {"tools": {}},
    "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "edge", "version": "1"}},
}


@dataclass
class Request:
    conn: int  # which TCP connection (0, 1, ...) carried it
    body: dict[str, Any]


class Close(bytes):
    """Write these bytes, then close the connection."""


Answer = Callable[[Request], Awaitable[bytes | None]]  # the raw answer; None: close unanswered


@dataclass
class EdgeServer:
    answer: Answer
    requests: list[Request] = field(default_factory=list)
    connections: int = 0
    url: str = ""


def http(
    status: int, body: bytes, kind: str = "application/json", *, chunked: bool = False
) -> bytes:
    reason = {200: "OK", 202: "Accepted", 404: "Not Found", 502: "Bad Gateway"}.get(status, "X")
    head = f"HTTP/1.1 {status} {reason}\r\ncontent-type: {kind}\r\n"
    if chunked:
        return head.encode() + b"transfer-encoding: chunked\r\n\r\n"
    return head.encode() + f"content-length: {len(body)}\r\n\r\n".encode() + body


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def result(req: Request, value: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": req.body["id"], "result": value}


def text_result(req: Request, text: str) -> dict[str, Any]:
    return result(req, {"content": [{"type": "text", "text": text}], "isError": False})


def progress(req: Request, n: int) -> dict[str, Any]:
    token = req.body["params"]["_meta"]["progressToken"]
    params = {"progressToken": token, "progress": n, "total": 3, "message": f"step {n}"}
    return {"jsonrpc": "2.0", "method": "notifications/progress", "params": params}


@asynccontextmanager
async def edge(answer: Answer, *, close_after_discover: bool = False) -> AsyncIterator[EdgeServer]:
    server_state = EdgeServer(answer)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = server_state.connections
        server_state.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.decode().split("\r\n"):
                    if line.lower().startswith("content-length:"):
                        length = int(line.split(":")[1])
                body = json.loads(await reader.readexactly(length)) if length else {}
                req = Request(conn, body)
                if body.get("method") == "server/discover":
                    out: bytes | None = http(200, json.dumps(result(req, DISCOVER)).encode())
                    if close_after_discover:
                        out = Close(out)
                else:
                    server_state.requests.append(req)
                    out = await answer(req)
                if out is None:
                    break
                writer.write(out)
                await writer.drain()
                if isinstance(out, Close):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server_state.url = f"http://127.0.0.1:{port}/mcp"
    try:
        yield server_state
    finally:
        server.close()
        await server.wait_closed()


async def call(url: str, **kw: Any) -> Any:
    events: list[tuple[float, str | None]] = []

    async def on_progress(p: float, total: float | None, message: str | None) -> None:
        events.append((p, message))

    async with WorkerPool() as pool:
        out = await pool.call(url, "t", {"x": 1}, timeout=10, on_progress=on_progress, **kw)
    return out, events


def sse(*messages: dict[str, Any]) -> bytes:
    return b"".join(b"data: " + json.dumps(m).encode() + b"\n\n" for m in messages)


async def test_split_data_lines_crlf_comments_and_ids() -> None:
    async def answer(req: Request) -> bytes:
        final = json.dumps(text_result(req, "ok"), indent=1).encode()  # multi-line JSON
        data = b"\r\n".join(b"data: " + line for line in final.split(b"\n"))
        body = (
            b": a comment\r\nid: 1\r\nevent: message\r\n"
            + b"data: "
            + json.dumps(progress(req, 1)).encode()
            + b"\r\n\r\nid: 2\r\n"
            + data
            + b"\r\n\r\n"
        )
        return http(200, body, "text/event-stream")

    async with edge(answer) as server:
        out, events = await call(server.url)
    assert out.value == "ok"
    assert events == [(1.0, "step 1")]


@pytest.mark.parametrize("framing", ["json", "sse"])
async def test_ten_megabyte_result_arrives_intact(framing: str) -> None:
    big = "x" * (10 * 1024 * 1024 - 7) + "é✓end"

    async def answer(req: Request) -> bytes:
        final = json.dumps(text_result(req, big)).encode()
        if framing == "json":
            return http(200, final)
        head = http(200, b"", "text/event-stream", chunked=True)
        stream = sse(progress(req, 1), progress(req, 2)) + b"data: " + final + b"\n\n"
        pieces = [stream[i : i + 65536] for i in range(0, len(stream), 65536)]
        return head + b"".join(chunk(p) for p in pieces) + b"0\r\n\r\n"

    async with edge(answer) as server:
        out, events = await call(server.url)
    assert out.value == big
    if framing == "sse":
        assert [p for p, _ in events] == [1.0, 2.0]


@pytest.mark.parametrize(
    ("status", "kind", "body", "error", "delivered"),
    [
        (502, "application/json", b'{"message": "upstream died"}', WorkerHttpError, True),
        (500, "text/html", b"<html>oops</html>", WorkerHttpError, True),
        (200, "application/json", b'{"message": "hello"}', WorkerBadResponse, True),
        (200, "text/html", b"<html>login page</html>", WorkerBadResponse, True),
        (200, "application/json", b"[1, 2]", WorkerBadResponse, True),
        (200, "application/json", b'{"jsonrpc": "2.0", "id": 999999999, "result": {}}', None, True),
        (200, "text/event-stream", b'data: {"message": "x"}\n\n', WorkerBadResponse, True),
        (200, "text/plain", b"ok", WorkerBadResponse, True),
        (503, "text/plain", b"draining", None, False),
        (401, "application/json", b"{}", None, False),
    ],
    ids=[
        "502-gateway-json",
        "500-html",
        "200-message-body",
        "200-html",
        "200-array",
        "200-other-id",
        "sse-not-jsonrpc",
        "text-plain",
        "503",
        "401",
    ],
)
async def test_anything_but_a_jsonrpc_answer_is_a_classified_error(
    status: int, kind: str, body: bytes, error: type[Exception] | None, delivered: bool
) -> None:
    async def answer(req: Request) -> bytes:
        return http(status, body, kind)

    async with edge(answer) as server:
        with pytest.raises(WorkerCallError) as caught:
            await call(server.url)
    if error is not None:
        assert isinstance(caught.value, error), caught.value
    assert caught.value.delivered is delivered
    assert caught.value.details["delivery"] == ("possibly" if delivered else "never")


async def test_a_stream_that_ends_before_the_result_is_dropped() -> None:
    async def answer(req: Request) -> bytes:
        return http(200, sse(progress(req, 1)), "text/event-stream")

    async with edge(answer) as server:
        with pytest.raises(WorkerDropped) as caught:
            await call(server.url)
    assert caught.value.delivered


async def test_a_connection_cut_mid_stream_is_dropped() -> None:
    async def answer(req: Request) -> bytes:
        head = http(200, b"", "text/event-stream", chunked=True)
        return Close(head + chunk(sse(progress(req, 1))) + chunk(b'data: {"jsonrpc": "2.0", "id"'))

    async with edge(answer) as server:
        with pytest.raises(WorkerDropped):
            await call(server.url)


@pytest.mark.parametrize(
    ("code", "expected", "delivered"),
    [
        (-32602, "INVALID_REQUEST", False),
        (-32601, "INVALID_REQUEST", False),
        (-32603, "RPC_ERROR", True),
    ],
)
async def test_jsonrpc_errors(code: int, expected: str, delivered: bool) -> None:
    async def answer(req: Request) -> bytes:
        error = {"jsonrpc": "2.0", "id": req.body["id"], "error": {"code": code, "message": "m"}}
        return http(200, json.dumps(error).encode())

    async with edge(answer) as server:
        with pytest.raises(WorkerCallError) as caught:
            await call(server.url)
    assert caught.value.code == expected and caught.value.delivered is delivered


async def test_tool_error_keeps_the_workers_code() -> None:
    async def answer(req: Request) -> bytes:
        text = json.dumps({"code": "NOPE", "message": "bad x", "retryable": False})
        res = result(req, {"content": [{"type": "text", "text": text}], "isError": True})
        return http(200, json.dumps(res).encode())

    async with edge(answer) as server:
        with pytest.raises(ToolFailed) as caught:
            await call(server.url)
    assert caught.value.code == "NOPE" and caught.value.delivered


async def test_a_connection_closed_between_keepalive_requests_is_resent_once() -> None:
    async def answer(req: Request) -> bytes | None:
        if req.conn == 0 and len([r for r in server.requests if r.conn == 0]) > 1:
            return None  # the server closed the idle keep-alive connection: no answer
        return http(200, json.dumps(text_result(req, f"conn {req.conn}")).encode())

    async with edge(answer) as server, WorkerPool() as pool:
        first = await pool.call(server.url, "t", {}, timeout=5)
        second = await pool.call(server.url, "t", {}, timeout=5)
    assert first.value == "conn 0"
    assert second.value.startswith("conn ") and second.value != "conn 0"
    assert len(server.requests) == 3  # first, the lost one, and its one re-send


async def test_a_new_connection_closed_before_answering_is_not_resent() -> None:
    async def answer(req: Request) -> bytes | None:
        return None  # reads the request, then hangs up: it may have run

    async with edge(answer, close_after_discover=True) as server:
        with pytest.raises(WorkerDropped) as caught:
            await call(server.url)
    assert caught.value.delivered
    assert len(server.requests) == 1


async def test_html_404_is_refused_after_looking_again() -> None:
    async def answer(req: Request) -> bytes:
        return http(404, b"<html>no such page</html>", "text/html")

    async with edge(answer) as server:
        with pytest.raises(WorkerRefused) as caught:
            await call(server.url)
    assert not caught.value.delivered


async def test_non_text_content_is_kept() -> None:
    blocks = [
        {"type": "text", "text": "a chart"},
        {"type": "image", "data": "iVBORw0KGgo=", "mimeType": "image/png"},
        {"type": "resource_link", "uri": "file:///x", "name": "x"},
        {
            "type": "resource",
            "resource": {"uri": "file:///y", "text": "y", "mimeType": "text/plain"},
        },
        {"type": "audio", "data": "AAAA", "mimeType": "audio/wav"},
    ]

    async def answer(req: Request) -> bytes:
        return http(200, json.dumps(result(req, {"content": blocks})).encode())

    async with edge(answer) as server:
        out, _ = await call(server.url)
    assert out.value == "a chart"
    assert out.content == blocks


async def test_structured_content_with_its_serialised_copy_keeps_only_the_value() -> None:
    async def answer(req: Request) -> bytes:
        value = {"content": [{"type": "text", "text": '{"a": 1}'}], "structuredContent": {"a": 1}}
        return http(200, json.dumps(result(req, value)).encode())

    async with edge(answer) as server:
        out, _ = await call(server.url)
    assert out.value == {"a": 1} and out.content is None
