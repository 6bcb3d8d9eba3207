"""Long-lived MCP clients, one per worker endpoint, with every failure translated.

- One ``fastmcp.Client`` per worker URL, entered once and reused (a fresh client costs
  7–13× a reused one); all clients share one ``ssl.SSLContext``.
- In-flight calls per client are bounded below httpx's 100-connection pool limit.
- A client that dies (worker restart, dropped stream) is discarded and re-entered on the
  next call.
- Correlation id, job id and trace context ride in the request ``_meta`` and, through an
  httpx request hook reading :data:`call_headers`, as HTTP headers.
- Failures become :class:`shared.errors.WorkerCallError` subclasses whose ``retryable`` flag
  the dispatcher's retry policy reads.

    async with WorkerPool(token=None) as pool:
        result = await pool.call("http://w:8701/mcp", "noop", {}, timeout=5)
"""

from __future__ import annotations

import asyncio
import contextvars
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import aiohttp
import httpx2
import mcp.types
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport
from fastmcp.exceptions import ToolError
from mcp.shared.exceptions import MCPError
from opentelemetry import propagate, trace

from shared import (
    WorkerBusy,
    WorkerCallError,
    WorkerDropped,
    WorkerTimeout,
    WorkerUnreachable,
    decode_tool_error,
    get_logger,
    tracer,
)
from supervisor import wire

__all__ = ["LogHandler", "ProgressHandler", "WorkerCaller", "WorkerPool", "call_headers"]

log = get_logger("fleet.pool")
_tracer = tracer("mcp-fleet.pool")

ProgressHandler = Callable[[float, float | None, str | None], Awaitable[None]]
LogHandler = Callable[[str, Any], Awaitable[None]]

call_headers: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "fleet_call_headers", default=None
)
"""Headers added to every HTTP request sent from this context (correlation id, trace)."""

_log_sink: contextvars.ContextVar[LogHandler | None] = contextvars.ContextVar(
    "fleet_log_sink", default=None
)


class WorkerCaller(Protocol):
    """The seam between the dispatcher and the wire (tests may hand in another one)."""

    async def call(
        self,
        url: str,
        tool: str,
        arguments: dict[str, Any],
        *,
        timeout: float,
        meta: dict[str, Any] | None = None,
        on_progress: ProgressHandler | None = None,
        on_log: LogHandler | None = None,
        wrapped: bool = False,
    ) -> Any: ...

    async def list_tools(self, url: str, *, timeout: float) -> list[mcp.types.Tool]: ...

    def in_flight(self, url: str) -> int: ...

    def server_info(self, url: str) -> tuple[str, str] | None: ...


async def _add_context_headers(request: httpx2.Request) -> None:
    for name, value in (call_headers.get() or {}).items():
        request.headers[name] = value


async def _route_log(message: mcp.types.LoggingMessageNotificationParams) -> None:
    # The client runs its log handler in the calling task's context, so the sink set by
    # the call that caused the message receives it.
    sink = _log_sink.get()
    if sink is not None:
        await sink(str(message.level), message.data)


class _Endpoint:
    def __init__(self, url: str, pool: WorkerPool) -> None:
        self.url = url
        self.pool = pool
        self.client: Client[Any] | None = None
        self.limit = asyncio.Semaphore(pool.max_in_flight)
        self.in_flight = 0
        self.lock = asyncio.Lock()
        self.generation = 0
        self.legacy = False

    async def ensure(self) -> tuple[Client[Any], int]:
        if self.client is not None:
            return self.client, self.generation
        async with self.lock:
            if self.client is None:
                transport = StreamableHttpTransport(
                    self.url,
                    auth=self.pool.token,
                    httpx_client_factory=self.pool.http_factory,
                )
                client: Client[Any] = Client(transport, log_handler=_route_log)
                try:
                    await client.__aenter__()  # type: ignore[no-untyped-call]  # fastmcp leaves it untyped
                except (Exception, asyncio.CancelledError) as exc:
                    if isinstance(exc, asyncio.CancelledError):
                        raise
                    raise _unreachable(self.url, exc) from exc
                self.client = client
                self.generation += 1
            return self.client, self.generation

    async def discard(self, generation: int) -> None:
        """Drop a dead client (only the one that failed: a newer one may be healthy)."""
        async with self.lock:
            if self.client is not None and self.generation == generation:
                client, self.client = self.client, None
                await _close_quietly(client)

    async def close(self) -> None:
        async with self.lock:
            if self.client is not None:
                client, self.client = self.client, None
                await _close_quietly(client)


async def _close_quietly(client: Client[Any]) -> None:
    try:
        await client.__aexit__(None, None, None)  # type: ignore[no-untyped-call]
    except Exception as exc:  # closing a dead client may raise; it is gone either way
        log.debug("pool.close_failed", error=str(exc))


def _unreachable(url: str, exc: BaseException) -> WorkerUnreachable:
    return WorkerUnreachable(
        f"worker {url} unreachable: {exc}", details={"worker": url, "cause": type(exc).__name__}
    )


class WorkerPool:
    """Pooled MCP clients keyed by worker URL. An async context manager."""

    def __init__(
        self, *, token: str | None = None, max_in_flight: int = 64, max_connections: int = 512
    ) -> None:
        self.token = token
        self.max_in_flight = max_in_flight
        self._endpoints: dict[str, _Endpoint] = {}
        # One SSL context for every client: building one per client is most of the cost
        # of a fresh connection, even for plain http:// endpoints.
        self._ssl = ssl.create_default_context()
        # The hot path (supervisor.wire) shares one aiohttp session across all workers; it
        # drops a dead keep-alive connection and dials a new one on the next call.
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:  # made on first use: it must be born inside the event loop
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=self._max_connections, ssl=self._ssl, enable_cleanup_closed=True
                ),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
                headers={"authorization": f"Bearer {self.token}"} if self.token else None,
                skip_auto_headers=("User-Agent",),
            )
        return self._session

    def http_factory(
        self,
        headers: dict[str, str] | None = None,
        timeout: httpx2.Timeout | None = None,
        auth: httpx2.Auth | None = None,
        **_: Any,
    ) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(
            headers=headers,
            auth=auth,
            verify=self._ssl,
            # Calls carry their own deadlines; the read timeout only guards dead sockets.
            timeout=httpx2.Timeout(30.0, read=3600.0),
            limits=httpx2.Limits(max_connections=100, max_keepalive_connections=100),
            event_hooks={"request": [_add_context_headers]},
        )

    async def __aenter__(self) -> WorkerPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        endpoints, self._endpoints = list(self._endpoints.values()), {}
        await asyncio.gather(*(e.close() for e in endpoints), return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    def _endpoint(self, url: str) -> _Endpoint:
        endpoint = self._endpoints.get(url)
        if endpoint is None:
            endpoint = self._endpoints[url] = _Endpoint(url, self)
        return endpoint

    def in_flight(self, url: str) -> int:
        endpoint = self._endpoints.get(url)
        return endpoint.in_flight if endpoint else 0

    def server_info(self, url: str) -> tuple[str, str] | None:
        """(name, version) the server announced, when its client is connected."""
        endpoint = self._endpoints.get(url)
        info = endpoint.client.server_info if endpoint and endpoint.client else None
        return (info.name, info.version) if info else None

    async def call(
        self,
        url: str,
        tool: str,
        arguments: dict[str, Any],
        *,
        timeout: float,
        meta: dict[str, Any] | None = None,
        on_progress: ProgressHandler | None = None,
        on_log: LogHandler | None = None,
        wrapped: bool = False,
    ) -> Any:
        """Call ``tool`` on the worker at ``url``; ``wrapped``: unwrap a ``{"result": x}``."""
        endpoint = self._endpoint(url)
        async with endpoint.limit:
            endpoint.in_flight += 1
            try:
                if not endpoint.legacy:
                    try:
                        return await self._call_lean(
                            url, tool, arguments, timeout, meta, on_progress, on_log, wrapped
                        )
                    except wire.LegacyServer as exc:
                        log.info("pool.legacy_server", url=url, reason=str(exc)[:200])
                        endpoint.legacy = True
                return await self._call_fastmcp(
                    endpoint, tool, arguments, timeout, meta, on_progress, on_log
                )
            finally:
                endpoint.in_flight -= 1

    async def _call_lean(
        self,
        url: str,
        tool: str,
        arguments: dict[str, Any],
        timeout: float,
        meta: dict[str, Any] | None,
        on_progress: ProgressHandler | None,
        on_log: LogHandler | None,
        wrapped: bool,
    ) -> Any:
        with _tracer.start_as_current_span(
            f"tools/call {tool}", kind=trace.SpanKind.CLIENT, attributes={"mcp.tool": tool}
        ):
            meta = dict(meta or {})
            propagate.inject(meta)
            try:
                raw = await wire.call_tool(
                    self.session,
                    url,
                    tool,
                    arguments,
                    timeout=timeout,
                    meta=meta,
                    headers=call_headers.get(),
                    on_progress=on_progress,
                    on_log=on_log,
                )
            except wire.ToolCallFailed as exc:
                raise _tool_error(url, tool, exc.text) from exc
        return wire.result_value(raw, wrapped=wrapped)

    async def _call_fastmcp(
        self,
        endpoint: _Endpoint,
        tool: str,
        arguments: dict[str, Any],
        timeout: float,
        meta: dict[str, Any] | None,
        on_progress: ProgressHandler | None,
        on_log: LogHandler | None,
    ) -> Any:
        url = endpoint.url
        token = _log_sink.set(on_log)
        try:
            client, generation = await endpoint.ensure()
            try:
                result = await client.call_tool(
                    tool,
                    arguments,
                    timeout=timeout,
                    progress_handler=on_progress,  # type: ignore[arg-type]  # same shape
                    meta=meta,
                )
            except ToolError as exc:
                raise _tool_error(url, tool, str(exc)) from exc
            except MCPError as exc:
                if _kills_client(exc):
                    await endpoint.discard(generation)
                raise _transport_error(url, tool, exc, timeout) from exc
            except httpx2.TransportError as exc:
                await endpoint.discard(generation)
                raise _http_error(url, tool, exc) from exc
            except (RuntimeError, OSError) as exc:
                await endpoint.discard(generation)
                raise WorkerDropped(
                    f"call to {tool} on {url} dropped: {exc}", details={"worker": url}
                ) from exc
        finally:
            _log_sink.reset(token)
        return _result_value(result)

    async def list_tools(self, url: str, *, timeout: float) -> list[mcp.types.Tool]:
        endpoint = self._endpoint(url)
        client, generation = await endpoint.ensure()
        try:
            async with asyncio.timeout(timeout):
                return list(await client.list_tools())
        except TimeoutError as exc:
            raise WorkerTimeout(f"tools/list on {url} timed out", details={"worker": url}) from exc
        except (MCPError, httpx2.TransportError, RuntimeError, OSError) as exc:
            await endpoint.discard(generation)
            raise _unreachable(url, exc) from exc


_JSON_TYPES = (dict, list, str, int, float, bool)


def _result_value(result: Any) -> Any:
    # ``data`` is the unwrapped value for primitives but a generated dataclass for objects;
    # ``structured_content`` is always plain JSON (primitives wrapped as {"result": ...}).
    data = getattr(result, "data", None)
    structured = getattr(result, "structured_content", None)
    if isinstance(data, _JSON_TYPES):
        return data
    if structured is not None:
        return structured
    texts = [c.text for c in getattr(result, "content", []) if isinstance(c, mcp.types.TextContent)]
    return "\n".join(texts) if texts else None


def _tool_error(url: str, tool: str, text: str) -> WorkerCallError:
    payload = decode_tool_error(text)
    details: dict[str, Any] = {"worker": url, "tool": tool}
    if payload.field:
        details["field"] = payload.field
    if payload.hint:
        details["hint"] = payload.hint
    if payload.code == "BUSY":
        return WorkerBusy(payload.message or "worker busy", details=details)
    return WorkerCallError(
        payload.message, code=payload.code, retryable=payload.retryable, details=details
    )


def _kills_client(exc: MCPError) -> bool:
    return "closed" in str(exc).lower() or exc.error.code not in (-32001, -32602, -32601)


def _transport_error(url: str, tool: str, exc: MCPError, timeout: float) -> WorkerCallError:
    details = {"worker": url, "tool": tool}
    if exc.error.code == -32001 or "timed out" in str(exc).lower():
        return WorkerTimeout(f"{tool} on {url} timed out after {timeout:g}s", details=details)
    if exc.error.code in (-32602, -32601):  # invalid params / unknown method: permanent
        return WorkerCallError(str(exc), code="INVALID_REQUEST", retryable=False, details=details)
    return WorkerDropped(f"call to {tool} on {url} dropped: {exc}", details=details)


def _http_error(url: str, tool: str, exc: httpx2.TransportError) -> WorkerCallError:
    if isinstance(exc, httpx2.ConnectError | httpx2.ConnectTimeout):
        return _unreachable(url, exc)  # never delivered: always safe to retry
    return WorkerDropped(f"call to {tool} on {url} dropped: {exc}", details={"worker": url})
