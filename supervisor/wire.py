"""A lean ``tools/call`` over streamable HTTP, protocol 2026-07-28, for the dispatch hot path.

In that protocol revision every request is its own HTTP exchange: no session, no
``initialize``; the request ``_meta`` carries the envelope (protocol version, client info,
capabilities) and closing the response stream cancels the call on the server. So a call is
one POST whose answer is either JSON or an SSE stream of ``notifications/progress``,
``notifications/message`` and finally the result. Doing just that over one shared
``aiohttp.ClientSession`` costs a fraction of the CPU of a general-purpose MCP client over
httpx (see ``bench/overhead.py``), which matters: the supervisor makes one call per job.
Servers that speak only older revisions are detected (:class:`LegacyServer`) and handed to
the full FastMCP client by :mod:`supervisor.pool`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from shared import WorkerCallError, WorkerDropped, WorkerTimeout, WorkerUnreachable

__all__ = ["PROTOCOL_VERSION", "LegacyServer", "ToolCallFailed", "call_tool"]

PROTOCOL_VERSION = "2026-07-28"
_ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": PROTOCOL_VERSION,
    "io.modelcontextprotocol/clientInfo": {"name": "mcp-fleet", "version": "0.1.0"},
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/logLevel": "info",
}
_ids = itertools.count(1)

ProgressFn = Callable[[float, float | None, str | None], Awaitable[None]]
LogFn = Callable[[str, Any], Awaitable[None]]


class LegacyServer(Exception):
    """The server did not accept a 2026-07-28 request; use a session-based client."""


class ToolCallFailed(Exception):
    """The tool ran and reported an error (``isError``); ``text`` is its message."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


async def call_tool(
    http: aiohttp.ClientSession,
    url: str,
    name: str,
    arguments: dict[str, Any],
    *,
    timeout: float,
    meta: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    on_progress: ProgressFn | None = None,
    on_log: LogFn | None = None,
) -> dict[str, Any]:
    """Call one tool; returns the JSON-RPC ``result`` object (``structuredContent`` etc.)."""
    request_id = next(_ids)
    token = f"p{request_id}"
    body = {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {
            "name": name,
            "arguments": arguments,
            "_meta": {**(meta or {}), **_ENVELOPE, "progressToken": token},
        },
    }
    request_headers = {
        "accept": "application/json, text/event-stream",
        "content-type": "application/json",
        "mcp-protocol-version": PROTOCOL_VERSION,
        "mcp-method": "tools/call",
        "mcp-name": name,
        **(headers or {}),
    }
    content = json.dumps(body, separators=(",", ":")).encode()
    try:
        async with asyncio.timeout(timeout):
            async with http.post(url, data=content, headers=request_headers) as r:
                if r.status in (401, 403):
                    raise WorkerCallError(
                        f"worker {url} refused the call ({r.status}): check FLEET_WORKER_TOKEN",
                        code="UNAUTHORIZED",
                        retryable=False,
                        details={"worker": url},
                    )
                if r.status == 503:
                    raise WorkerUnreachable(
                        f"worker {url} is not taking calls (503)", details={"worker": url}
                    )
                kind = r.content_type
                if kind == "application/json":
                    return _answer(json.loads(await r.read()), url)
                if r.status >= 400:
                    raise LegacyServer(f"{r.status} from {url}")
                async for raw in r.content:
                    if not raw.startswith(b"data:"):
                        continue
                    message = json.loads(raw[5:])
                    if message.get("id") == request_id:
                        return _answer(message, url)
                    method = message.get("method")
                    params = message.get("params") or {}
                    if method == "notifications/progress" and on_progress is not None:
                        await on_progress(
                            float(params.get("progress", 0)),
                            params.get("total"),
                            params.get("message"),
                        )
                    elif method == "notifications/message" and on_log is not None:
                        await on_log(str(params.get("level", "info")), params.get("data"))
                raise WorkerDropped(
                    f"{name} on {url}: stream ended without a result",
                    details={"worker": url, "tool": name},
                )
    except TimeoutError as exc:
        raise WorkerTimeout(
            f"{name} on {url} timed out after {timeout:g}s", details={"worker": url, "tool": name}
        ) from exc
    except aiohttp.ClientConnectorError as exc:
        raise WorkerUnreachable(
            f"worker {url} unreachable: {exc}", details={"worker": url}
        ) from exc
    except (aiohttp.ClientError, ValueError) as exc:
        raise WorkerDropped(
            f"call to {name} on {url} dropped: {exc!r}", details={"worker": url, "tool": name}
        ) from exc


def _answer(message: dict[str, Any], url: str) -> dict[str, Any]:
    error = message.get("error")
    if error is not None:
        code = int(error.get("code", 0))
        text = str(error.get("message", ""))
        if code == -32602 and "envelope" in text:
            raise LegacyServer(text)
        if code in (-32602, -32601):
            raise WorkerCallError(
                text, code="INVALID_REQUEST", retryable=False, details={"worker": url}
            )
        raise WorkerDropped(f"worker {url} answered error {code}: {text}", details={"worker": url})
    result: dict[str, Any] = message.get("result") or {}
    if result.get("isError"):
        texts = [c.get("text", "") for c in result.get("content", []) if c.get("type") == "text"]
        raise ToolCallFailed("\n".join(texts))
    return result


def result_value(result: dict[str, Any], *, wrapped: bool) -> Any:
    """The call's value: structured content (unwrapped when the tool wraps a primitive)."""
    structured = result.get("structuredContent")
    if structured is not None:
        if wrapped and isinstance(structured, dict) and set(structured) == {"result"}:
            return structured["result"]
        return structured
    texts = [c.get("text", "") for c in result.get("content", []) if c.get("type") == "text"]
    return "\n".join(texts) if texts else None
