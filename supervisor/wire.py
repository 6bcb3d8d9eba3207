"""MCP over streamable HTTP, every protocol revision, with every answer classified.

One :class:`Connection` per worker endpoint. It learns the endpoint's dialect once and
remembers it:

- **modern** (2026-07-28): every request is its own POST, no session; the request ``_meta``
  carries the envelope; closing the response stream cancels the call on the server.
- **legacy** (2024-11-05, 2025-03-26, 2025-06-18, 2025-11-25): an ``initialize`` handshake,
  an ``Mcp-Session-Id`` when the server keeps sessions (none when it is stateless), the
  negotiated ``MCP-Protocol-Version`` header on every later request, and
  ``notifications/cancelled`` to stop a call.

Detection follows the MCP SDK's own connect-time policy (``mcp.client._probe``): probe
``server/discover`` at 2026-07-28; anything that is not positive evidence of a modern server
(an HTTP 4xx, a JSON-RPC error, a result without 2026-07-28 among ``supportedVersions``) falls
back to the ``initialize`` handshake. Only status codes, JSON-RPC error codes and result fields
decide, never the text of a message. A request refused later at the protocol level (an HTTP
4xx or ``-32022``) makes the connection look again once (a restart or an upgrade), and a
legacy session the server forgot (404) is re-established once; both re-sends are safe because
a refused request never reached a tool.

Every answer is read by the rules: JSON-RPC messages through the MCP SDK's own message types
(``mcp_types.jsonrpc_message_adapter``), event streams through :mod:`shared.sse` (WHATWG rules,
no size limit). Whatever is not a valid JSON-RPC response to our request becomes one
classified :class:`shared.errors.WorkerCallError` — never delivered (safe to retry anywhere)
or possibly delivered. A POST that fails on a *reused* keep-alive connection before any byte
of the answer arrived (the server closed it while idle) is re-sent once on a fresh connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import mcp_types
from pydantic import ValidationError

from shared import (
    WorkerBadResponse,
    WorkerBusy,
    WorkerCallError,
    WorkerDropped,
    WorkerHttpError,
    WorkerRefused,
    WorkerTimeout,
    WorkerUnreachable,
    get_logger,
)
from shared.sse import SSEParser

__all__ = [
    "LEGACY_VERSIONS",
    "MODERN_VERSION",
    "Connection",
    "LogFn",
    "ProgressFn",
    "ServerInfo",
    "ToolCallFailed",
    "reuse_tracing",
]

log = get_logger("fleet.wire")

MODERN_VERSION = "2026-07-28"
LEGACY_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05")
"""Handshake revisions we speak, newest first; ``initialize`` asks for the first."""

CLIENT_INFO = {"name": "mcp-fleet", "version": "0.1.0"}
_ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": MODERN_VERSION,
    "io.modelcontextprotocol/clientInfo": CLIENT_INFO,
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/logLevel": "info",
}
_UNSUPPORTED_VERSION = -32022
_INVALID_PARAMS = -32602
_METHOD_NOT_FOUND = -32601
_REJECTION_STATUSES = frozenset({400, 404, 405, 406, 415, 422})
_EXCERPT = 300
_ids = itertools.count(1)

ProgressFn = Callable[[float, float | None, str | None], Awaitable[None]]
LogFn = Callable[[str, Any], Awaitable[None]]


class ToolCallFailed(Exception):
    """The tool ran and reported an error (``isError``); ``text`` is its message."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class _Rejected(Exception):
    """The server refused the request at the protocol level: it never reached a tool."""

    def __init__(self, status: int, code: int | None, message: str) -> None:
        super().__init__(f"HTTP {status}, JSON-RPC {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


@dataclass
class ServerInfo:
    """What an endpoint told us about itself when we connected."""

    name: str
    version: str
    protocol: str
    dialect: str  # "modern" | "legacy"
    stateful: bool = False
    capabilities: dict[str, Any] = field(default_factory=dict)


def reuse_tracing() -> aiohttp.TraceConfig:
    """A trace config that marks a request's context when it rides a reused connection."""
    config = aiohttp.TraceConfig()

    async def on_reuse(_s: Any, ctx: Any, _p: Any) -> None:
        if isinstance(ctx.trace_request_ctx, dict):
            ctx.trace_request_ctx["reused"] = True

    config.on_connection_reuseconn.append(on_reuse)
    return config


class Connection:
    """One MCP endpoint.

    ``http`` is the shared keep-alive session (its connector should carry
    :func:`reuse_tracing`); ``fresh`` gives a session that opens a new connection per request,
    for the one re-send after a stale keep-alive connection.
    """

    def __init__(
        self,
        url: str,
        http: Callable[[], aiohttp.ClientSession],
        fresh: Callable[[], aiohttp.ClientSession],
        *,
        connect_timeout: float = 10.0,
    ) -> None:
        self.url = url
        self._http = http
        self._fresh = fresh
        self.connect_timeout = connect_timeout
        self.info: ServerInfo | None = None
        self._session_id: str | None = None
        self._lock = asyncio.Lock()
        self._generation = 0
        self._background: set[asyncio.Task[Any]] = set()

    # -- public --------------------------------------------------------------------------

    async def connect(self) -> ServerInfo:
        """Learn (or recall) the dialect; for a legacy server, hold an initialized session."""
        if self.info is not None:
            return self.info
        async with self._lock:
            if self.info is None:
                await self._detect()
            assert self.info is not None
            return self.info

    def forget(self) -> None:
        """Look again on the next request (the server may have restarted or changed)."""
        self.info = None
        self._session_id = None
        self._generation += 1

    async def call_tool(
        self,
        name: str,
        arguments: dict[str, Any],
        *,
        timeout: float,
        meta: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        on_progress: ProgressFn | None = None,
        on_log: LogFn | None = None,
    ) -> dict[str, Any]:
        """Call one tool; returns the JSON-RPC ``result`` (raises :class:`ToolCallFailed`)."""
        try:
            async with asyncio.timeout(timeout):
                result = await self._request(
                    "tools/call",
                    {"name": name, "arguments": arguments},
                    meta=meta,
                    headers=headers,
                    on_progress=on_progress,
                    on_log=on_log,
                    tool=name,
                )
        except TimeoutError as exc:
            raise WorkerTimeout(
                f"{name} on {self.url} timed out after {timeout:g}s",
                details={"worker": self.url, "tool": name},
            ) from exc
        _check_tool_result(result, self.url)
        if result.get("isError"):
            raise ToolCallFailed(_texts(result) or "the tool reported an error")
        return result

    async def list_tools(self, *, timeout: float) -> list[dict[str, Any]]:
        """Every tool the server lists (all pages), as raw MCP ``Tool`` objects."""
        tools: list[dict[str, Any]] = []
        cursor: str | None = None
        try:
            async with asyncio.timeout(timeout):
                for _ in range(100):  # a server that pages forever is not our problem
                    params = {"cursor": cursor} if cursor else {}
                    result = await self._request("tools/list", params)
                    page = result.get("tools")
                    if not isinstance(page, list):
                        raise self._bad("tools/list answered without a tools list")
                    tools.extend(t for t in page if isinstance(t, dict) and t.get("name"))
                    cursor = result.get("nextCursor")
                    if not cursor:
                        break
        except TimeoutError as exc:
            raise WorkerTimeout(
                f"tools/list on {self.url} timed out", details={"worker": self.url}
            ) from exc
        return tools

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        if self._session_id and self.info is not None:
            headers = self._legacy_headers(self.info)
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    async with self._http().delete(self.url, headers=headers):
                        pass
        self._session_id = None

    # -- requests ------------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        params: dict[str, Any],
        *,
        meta: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        on_progress: ProgressFn | None = None,
        on_log: LogFn | None = None,
        tool: str | None = None,
    ) -> dict[str, Any]:
        looked_again = False
        while True:
            info = await self.connect()
            generation = self._generation
            try:
                return await self._send(
                    info, method, params, meta, headers, on_progress, on_log, tool
                )
            except _Rejected as exc:
                if looked_again:
                    raise self._refused(exc) from exc
                looked_again = True
                log.info("wire.look_again", url=self.url, reason=str(exc)[:200])
                if self._generation == generation:
                    self.forget()

    async def _send(
        self,
        info: ServerInfo,
        method: str,
        params: dict[str, Any],
        meta: dict[str, Any] | None,
        headers: dict[str, str] | None,
        on_progress: ProgressFn | None,
        on_log: LogFn | None,
        tool: str | None,
    ) -> dict[str, Any]:
        request_id = next(_ids)
        request_meta = dict(meta or {})
        if on_progress is not None:
            request_meta["progressToken"] = f"p{request_id}"
        if info.dialect == "modern":
            request_meta.update(_ENVELOPE)
            http_headers = {"mcp-protocol-version": MODERN_VERSION, "mcp-method": method}
            if tool is not None:
                http_headers["mcp-name"] = tool
        else:
            http_headers = self._legacy_headers(info)
        body = {
            "jsonrpc": "2.0",
            "id": request_id,
            "method": method,
            "params": {**params, "_meta": request_meta} if request_meta else params,
        }
        sent = False
        try:
            response = await self._post(body, {**http_headers, **(headers or {})})
            sent = True
            async with response:
                message = await self._answer(response, request_id, on_progress, on_log)
        except BaseException as exc:
            aborted = not isinstance(exc, WorkerCallError) or isinstance(exc, WorkerDropped)
            if sent and aborted and info.dialect == "legacy" and method == "tools/call":
                self._cancel_later(info, request_id)  # stop the tool: timeout, cancel, drop
            raise
        return message

    def _legacy_headers(self, info: ServerInfo) -> dict[str, str]:
        headers = {"mcp-protocol-version": info.protocol}
        if self._session_id:
            headers["mcp-session-id"] = self._session_id
        return headers

    async def _post(self, body: dict[str, Any], headers: dict[str, str]) -> aiohttp.ClientResponse:
        """POST once; once more on a fresh connection if a reused one died before answering."""
        content = json.dumps(body, separators=(",", ":")).encode()
        headers = {
            "accept": "application/json, text/event-stream",
            "content-type": "application/json",
            **headers,
        }
        for fresh in (False, True):
            trace: dict[str, bool] = {}
            session = self._fresh() if fresh else self._http()
            try:
                return await session.post(
                    self.url, data=content, headers=headers, trace_request_ctx=trace
                )
            except aiohttp.ClientConnectorError as exc:
                if fresh:  # the first try may have reached a server that then died
                    raise WorkerDropped(
                        f"worker {self.url} closed the connection before answering, then "
                        f"refused a new one: {exc}",
                        details={"worker": self.url},
                    ) from exc
                raise WorkerUnreachable(
                    f"worker {self.url} unreachable: {exc}", details={"worker": self.url}
                ) from exc
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                if trace.get("reused") and not fresh:
                    log.debug("wire.stale_connection", url=self.url, error=repr(exc))
                    continue
                raise WorkerDropped(
                    f"worker {self.url} closed the connection before answering: {exc!r}",
                    details={"worker": self.url},
                ) from exc
            except aiohttp.ClientError as exc:
                raise WorkerDropped(
                    f"call to {self.url} failed: {exc!r}", details={"worker": self.url}
                ) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def _answer(
        self,
        response: aiohttp.ClientResponse,
        request_id: int,
        on_progress: ProgressFn | None,
        on_log: LogFn | None,
    ) -> dict[str, Any]:
        status = response.status
        if status >= 300:
            await self._raise_for_status(response)
        kind = response.content_type
        try:
            if kind == "application/json":
                message = self._message(await response.read())
                try:
                    return self._response_to(message, request_id)
                except _NotOurs:
                    raise self._bad(f"the answer is not for request {request_id}") from None
            if kind == "text/event-stream":
                return await self._stream(response, request_id, on_progress, on_log)
        except aiohttp.ClientPayloadError as exc:
            raise WorkerDropped(
                f"answer from {self.url} broke off: {exc!r}", details={"worker": self.url}
            ) from exc
        except (aiohttp.ClientError, ConnectionError) as exc:
            raise WorkerDropped(
                f"connection to {self.url} dropped mid-answer: {exc!r}",
                details={"worker": self.url},
            ) from exc
        excerpt = (await response.read())[:_EXCERPT].decode("utf-8", "replace")
        raise self._bad(
            f"answer is {kind or 'untyped'} with status {status}, not JSON-RPC",
            status=status,
            body=excerpt,
        )

    async def _raise_for_status(self, response: aiohttp.ClientResponse) -> None:
        status = response.status
        raw = b""
        with contextlib.suppress(aiohttp.ClientError, ConnectionError):
            raw = await response.content.read(64 * 1024)
        excerpt = raw[:_EXCERPT].decode("utf-8", "replace")
        details = {"worker": self.url, "status": status, "body": excerpt}
        if status in (401, 403):
            raise WorkerCallError(
                f"worker {self.url} refused the call ({status}): check FLEET_WORKER_TOKEN",
                code="UNAUTHORIZED",
                retryable=False,
                delivered=False,
                details=details,
            )
        if status == 429:
            raise WorkerBusy(f"worker {self.url} is rate limiting (429)", details=details)
        if status == 503:
            raise WorkerUnreachable(f"worker {self.url} is not taking calls (503)", details=details)
        if 400 <= status < 500:
            code, message = None, excerpt
            with contextlib.suppress(ValueError, ValidationError):
                parsed = mcp_types.jsonrpc_message_adapter.validate_json(raw)
                if isinstance(parsed, mcp_types.JSONRPCError):
                    code, message = parsed.error.code, parsed.error.message
            if status in _REJECTION_STATUSES:
                raise _Rejected(status, code, message)
            raise WorkerRefused(f"worker {self.url} refused the call ({status})", details=details)
        if status < 400:  # a redirect we did not follow: the request went nowhere
            raise WorkerRefused(
                f"worker {self.url} redirected the call ({status})", details=details
            )
        raise WorkerHttpError(f"worker {self.url} answered HTTP {status}", details=details)

    async def _stream(
        self,
        response: aiohttp.ClientResponse,
        request_id: int,
        on_progress: ProgressFn | None,
        on_log: LogFn | None,
    ) -> dict[str, Any]:
        parser = SSEParser()
        async for chunk in response.content.iter_any():
            for event in parser.feed(chunk):
                if event.event != "message" or not event.data:
                    continue  # priming events (an id, no data) and other event types
                message = self._message(event.data.encode())
                if isinstance(message, mcp_types.JSONRPCNotification):
                    await _notify(message, on_progress, on_log)
                elif isinstance(message, mcp_types.JSONRPCRequest):
                    self._answer_server_request(message)
                else:
                    try:
                        return self._response_to(message, request_id)
                    except _NotOurs:
                        continue
        raise WorkerDropped(
            f"stream from {self.url} ended without an answer", details={"worker": self.url}
        )

    def _message(self, raw: bytes) -> mcp_types.JSONRPCMessage:
        try:
            return mcp_types.jsonrpc_message_adapter.validate_json(raw)
        except (ValueError, ValidationError) as exc:
            raise self._bad(
                "answer is not a JSON-RPC message",
                body=raw[:_EXCERPT].decode("utf-8", "replace"),
            ) from exc

    def _response_to(self, message: mcp_types.JSONRPCMessage, request_id: int) -> dict[str, Any]:
        if isinstance(message, mcp_types.JSONRPCResponse):
            if str(message.id) != str(request_id):  # some servers echo the id as a string
                raise _NotOurs()
            result = message.result
            if not isinstance(result, dict):
                raise self._bad("result is not an object")
            return result
        if isinstance(message, mcp_types.JSONRPCError):
            if message.id is not None and str(message.id) != str(request_id):
                raise _NotOurs()
            error = message.error
            if error.code == _UNSUPPORTED_VERSION:
                raise _Rejected(200, error.code, error.message)
            details = {"worker": self.url, "rpc_code": error.code}
            if error.code in (_INVALID_PARAMS, _METHOD_NOT_FOUND):
                raise WorkerCallError(
                    f"worker {self.url} refused the request: {error.message}",
                    code="INVALID_REQUEST",
                    retryable=False,
                    delivered=False,
                    details=details,
                )
            raise WorkerCallError(
                f"worker {self.url} answered error {error.code}: {error.message}",
                code="RPC_ERROR",
                details=details,
            )
        raise self._bad(
            f"expected the answer to request {request_id}, got a {type(message).__name__}"
        )

    def _bad(self, message: str, **details: Any) -> WorkerBadResponse:
        return WorkerBadResponse(f"{self.url}: {message}", details={"worker": self.url, **details})

    def _refused(self, exc: _Rejected) -> WorkerRefused:
        return WorkerRefused(
            f"worker {self.url} refused the request (HTTP {exc.status}): {exc.message[:200]}",
            details={"worker": self.url, "status": exc.status, "rpc_code": exc.code},
        )

    # -- server requests and cancellation --------------------------------------------------

    def _answer_server_request(self, request: mcp_types.JSONRPCRequest) -> None:
        """Answer ``ping``; refuse sampling, elicitation, roots: a fleet has no human or LLM."""
        if request.method == "ping":
            reply: dict[str, Any] = {"jsonrpc": "2.0", "id": request.id, "result": {}}
        else:
            reply = {
                "jsonrpc": "2.0",
                "id": request.id,
                "error": {"code": _METHOD_NOT_FOUND, "message": f"{request.method} unsupported"},
            }
        self._background_post(reply)

    def _cancel_later(self, info: ServerInfo, request_id: int) -> None:
        self._background_post(
            {
                "jsonrpc": "2.0",
                "method": "notifications/cancelled",
                "params": {"requestId": request_id, "reason": "cancelled by the fleet"},
            },
            info,
        )

    def _background_post(self, message: dict[str, Any], info: ServerInfo | None = None) -> None:
        info = info or self.info
        if info is None:
            return
        headers = (
            {"mcp-protocol-version": MODERN_VERSION}
            if info.dialect == "modern"
            else self._legacy_headers(info)
        )

        async def post() -> None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    response = await self._post(message, headers)
                    response.release()

        task = asyncio.get_running_loop().create_task(post())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- detection and the legacy handshake --------------------------------------------------

    async def _detect(self) -> None:
        self.info = None
        self._session_id = None
        self._generation += 1
        try:
            async with asyncio.timeout(self.connect_timeout):
                probe = ServerInfo("?", "?", MODERN_VERSION, "modern")
                try:
                    result = await self._send(
                        probe, "server/discover", {}, None, None, None, None, None
                    )
                except (_Rejected, WorkerRefused, WorkerBadResponse):
                    result = None
                except WorkerCallError as exc:
                    if exc.code not in ("INVALID_REQUEST", "RPC_ERROR"):
                        raise
                    result = None
                versions = (result or {}).get("supportedVersions") or []
                if isinstance(versions, list) and MODERN_VERSION in versions:
                    server = _server_info(
                        (result or {}).get("_meta") or {}, "io.modelcontextprotocol/serverInfo"
                    )
                    self.info = ServerInfo(
                        server[0],
                        server[1],
                        MODERN_VERSION,
                        "modern",
                        capabilities=dict((result or {}).get("capabilities") or {}),
                    )
                else:
                    await self._handshake()
        except TimeoutError as exc:
            raise WorkerTimeout(
                f"connecting to {self.url} timed out", details={"worker": self.url}
            ) from exc
        assert self.info is not None
        log.info(
            "wire.connected",
            url=self.url,
            dialect=self.info.dialect,
            protocol=self.info.protocol,
            server=self.info.name,
            stateful=self.info.stateful,
        )

    async def _handshake(self) -> None:
        request_id = next(_ids)
        body = {
            "jsonrpc": "2.0",
            "id": request_id,
            "method": "initialize",
            "params": {
                "protocolVersion": LEGACY_VERSIONS[0],
                "capabilities": {},
                "clientInfo": CLIENT_INFO,
            },
        }
        try:
            response = await self._post(body, {})
            async with response:
                result = await self._answer(response, request_id, None, None)
                session_id = response.headers.get("mcp-session-id")
        except _Rejected as exc:
            raise self._refused(exc) from exc
        version = result.get("protocolVersion")
        if version not in LEGACY_VERSIONS:
            raise WorkerRefused(
                f"worker {self.url} offers protocol {version!r}; this supervisor speaks "
                f"{', '.join((MODERN_VERSION, *LEGACY_VERSIONS))}",
                retryable=False,
                details={"worker": self.url, "protocol": version},
            )
        name, server_version = _server_info(result, "serverInfo")
        info = ServerInfo(
            name,
            server_version,
            str(version),
            "legacy",
            stateful=bool(session_id),
            capabilities=dict(result.get("capabilities") or {}),
        )
        self._session_id = session_id
        initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        response = await self._post(initialized, self._legacy_headers(info))
        response.release()
        if response.status >= 300:
            raise WorkerRefused(
                f"worker {self.url} refused notifications/initialized ({response.status})",
                details={"worker": self.url, "status": response.status},
            )
        if "logging" in info.capabilities:
            with contextlib.suppress(WorkerCallError, _Rejected):
                await self._send(
                    info, "logging/setLevel", {"level": "info"}, None, None, None, None, None
                )
        self.info = info


class _NotOurs(Exception):
    """A response to some other request id on our stream: skip it."""


async def _notify(
    message: mcp_types.JSONRPCNotification, on_progress: ProgressFn | None, on_log: LogFn | None
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


def _server_info(container: dict[str, Any], key: str) -> tuple[str, str]:
    info = container.get(key)
    if not isinstance(info, dict):
        return "?", "?"
    return str(info.get("name") or "?"), str(info.get("version") or "?")


def _texts(result: dict[str, Any]) -> str:
    return "\n".join(
        str(block.get("text", ""))
        for block in result.get("content") or []
        if isinstance(block, dict) and block.get("type") == "text"
    )


def _check_tool_result(result: dict[str, Any], url: str) -> None:
    content = result.get("content", [])
    structured = result.get("structuredContent")
    if not isinstance(content, list) or not all(
        isinstance(block, dict) and isinstance(block.get("type"), str) for block in content
    ):
        raise WorkerBadResponse(
            f"{url}: tools/call result has malformed content", details={"worker": url}
        )
    if structured is not None and not isinstance(structured, dict):
        raise WorkerBadResponse(
            f"{url}: structuredContent is not an object", details={"worker": url}
        )


def result_value(
    result: dict[str, Any], *, wrapped: bool
) -> tuple[Any, list[dict[str, Any]] | None]:
    """The job's ``(result, content)`` from a tool's result.

    ``result``: ``structuredContent`` (a FastMCP-wrapped primitive unwrapped), else the text
    blocks joined by newlines, else None. ``content``: every content block, kept whenever it
    holds more than ``result`` already says (an image, audio, a resource, a link, or text
    beside structured content other than its one serialised copy); else None.
    """
    blocks: list[dict[str, Any]] = result.get("content") or []
    structured = result.get("structuredContent")
    meta = result.get("_meta")
    wrap_meta = isinstance(meta, dict) and (meta.get("fastmcp") or {}).get("wrap_result")
    only_text = all(block.get("type") == "text" for block in blocks)
    if structured is not None:
        if (wrapped or wrap_meta) and set(structured) == {"result"}:
            value: Any = structured["result"]
        else:
            value = structured
        serialised_copy = len(blocks) == 1 and blocks[0].get("type") == "text"
        return value, None if (not blocks or serialised_copy) else blocks
    text = _texts(result) if any(b.get("type") == "text" for b in blocks) else None
    return text, None if only_text else blocks
