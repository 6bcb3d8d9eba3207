"""Reading one POST's answer, a JSON body or an event stream, down to our request's response.

JSON-RPC messages are read through the MCP SDK's own message types
(``mcp_types.jsonrpc_message_adapter``), event streams through :mod:`shared.sse` (WHATWG
rules, no size limit). On a stream, progress and log notifications go to the caller's
handlers, requests from the server are answered (``ping``) or refused (sampling, elicitation,
roots: a fleet has no human or LLM), and responses to other requests are skipped. Whatever is
not a valid JSON-RPC response to our request becomes a classified error (:mod:`.errors`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import mcp_types
from pydantic import ValidationError

from shared import WorkerDropped
from shared.sse import SSEParser
from supervisor.calls import errors

__all__ = ["LogHandler", "ProgressHandler", "Reply", "read"]

ProgressHandler = Callable[[float, float | None, str | None], Awaitable[None]]
LogHandler = Callable[[str, Any], Awaitable[None]]
Reply = Callable[[dict[str, Any]], None]
"""Sends a message back to the server (an answer to its request) without waiting."""


class _NotOurs(Exception):
    """A response to some other request id on our stream: skip it."""


async def read(
    response: aiohttp.ClientResponse,
    request_id: int,
    url: str,
    *,
    on_progress: ProgressHandler | None = None,
    on_log: LogHandler | None = None,
    reply: Reply | None = None,
) -> dict[str, Any]:
    """The ``result`` of the response to ``request_id``; raises a classified error else."""
    status = response.status
    if status >= 300:
        raw = b""
        with contextlib.suppress(*errors.TRANSPORT_ERRORS):
            raw = await response.content.read(64 * 1024)
        raise errors.http_error(url, status, raw)
    kind = response.content_type
    try:
        if kind == "application/json":
            message = _message(await response.read(), url)
            try:
                return _response_to(message, request_id, url)
            except _NotOurs:
                raise errors.bad(url, f"the answer is not for request {request_id}") from None
        if kind == "text/event-stream":
            return await _stream(response, request_id, url, on_progress, on_log, reply)
    except errors.TRANSPORT_ERRORS as exc:
        raise errors.transport_error(url, "answer", exc) from exc
    excerpt = (await response.read())[: errors.EXCERPT].decode("utf-8", "replace")
    raise errors.bad(
        url,
        f"answer is {kind or 'untyped'} with status {status}, not JSON-RPC",
        status=status,
        body=excerpt,
    )


async def _stream(
    response: aiohttp.ClientResponse,
    request_id: int,
    url: str,
    on_progress: ProgressHandler | None,
    on_log: LogHandler | None,
    reply: Reply | None,
) -> dict[str, Any]:
    parser = SSEParser()
    async for chunk in response.content.iter_any():
        for event in parser.feed(chunk):
            if event.event != "message" or not event.data:
                continue  # priming events (an id, no data) and other event types
            message = _message(event.data.encode(), url)
            if isinstance(message, mcp_types.JSONRPCNotification):
                await _notify(message, on_progress, on_log)
            elif isinstance(message, mcp_types.JSONRPCRequest):
                if reply is not None:
                    reply(_server_reply(message))
            else:
                try:
                    return _response_to(message, request_id, url)
                except _NotOurs:
                    continue
    raise WorkerDropped(f"stream from {url} ended without an answer", details={"worker": url})


def _message(raw: bytes, url: str) -> mcp_types.JSONRPCMessage:
    try:
        return mcp_types.jsonrpc_message_adapter.validate_json(raw)
    except (ValueError, ValidationError) as exc:
        raise errors.bad(
            url,
            "answer is not a JSON-RPC message",
            body=raw[: errors.EXCERPT].decode("utf-8", "replace"),
        ) from exc


def _response_to(message: mcp_types.JSONRPCMessage, request_id: int, url: str) -> dict[str, Any]:
    if isinstance(message, mcp_types.JSONRPCResponse):
        if str(message.id) != str(request_id):  # some servers echo the id as a string
            raise _NotOurs()
        result = message.result
        if not isinstance(result, dict):
            raise errors.bad(url, "result is not an object")
        return result
    if isinstance(message, mcp_types.JSONRPCError):
        if message.id is not None and str(message.id) != str(request_id):
            raise _NotOurs()
        raise errors.rpc_error(url, message.error.code, message.error.message)
    raise errors.bad(
        url, f"expected the answer to request {request_id}, got a {type(message).__name__}"
    )


async def _notify(
    message: mcp_types.JSONRPCNotification,
    on_progress: ProgressHandler | None,
    on_log: LogHandler | None,
) -> None:
    params = message.params or {}
    if message.method == "notifications/progress" and on_progress is not None:
        progress = params.get("progress")
        total = params.get("total")
        text = params.get("message")
        if isinstance(progress, int | float):
            await on_progress(
                float(progress),
                float(total) if isinstance(total, int | float) else None,
                text if isinstance(text, str) else None,
            )
    elif message.method == "notifications/message" and on_log is not None:
        await on_log(str(params.get("level", "info")), params.get("data"))


def _server_reply(request: mcp_types.JSONRPCRequest) -> dict[str, Any]:
    """Answer ``ping``; refuse sampling, elicitation, roots: a fleet has no human or LLM."""
    if request.method == "ping":
        return {"jsonrpc": "2.0", "id": request.id, "result": {}}
    return {
        "jsonrpc": "2.0",
        "id": request.id,
        "error": {"code": errors.METHOD_NOT_FOUND, "message": f"{request.method} unsupported"},
    }
