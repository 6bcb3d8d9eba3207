"""The pool of worker connections: one :class:`supervisor.calls.Connection` per endpoint.

- Every endpoint shares one keep-alive ``aiohttp`` session (and one ``ssl.SSLContext``); a
  second session that never reuses a connection serves the one re-send after a stale
  keep-alive connection.
- In-flight calls per endpoint are bounded (``max_in_flight``).
- Correlation id, job id and trace context ride in the request ``_meta`` and as HTTP headers
  (:data:`call_headers`).
- Failures arrive classified (:mod:`supervisor.calls.errors`); a tool's own error becomes
  :class:`shared.errors.ToolFailed` with the worker's code.

    async with WorkerPool(token=None) as pool:
        result = await pool.call("http://w:8701/mcp", "noop", {}, timeout=5)
        result.value, result.content

Credentials: ``token`` is presented to every endpoint; ``credentials`` (a function of the URL,
:meth:`supervisor.trust.WorkerTrust.token_for` in the service) replaces it, asked on every
request, so an endpoint gets a token only while it is trusted.
"""

from __future__ import annotations

import asyncio
import contextvars
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from opentelemetry import propagate, trace

from shared import tracer
from supervisor.calls.answers import LogHandler, ProgressHandler
from supervisor.calls.connection import Connection, ReuseConnector
from supervisor.calls.results import result_value
from supervisor.calls.revisions import ServerInfo

__all__ = ["CallResult", "WorkerPool", "call_headers"]

_tracer = tracer("mcp-fleet.pool")

call_headers: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "fleet_call_headers", default=None
)
"""Headers added to every call made from this context (correlation id, trace)."""


@dataclass(frozen=True)
class CallResult:
    """A tool's answer: ``value`` for ``job.result``, ``content`` for ``job.content``."""

    value: Any
    content: list[dict[str, Any]] | None = None


class _Endpoint:
    def __init__(self, connection: Connection, max_in_flight: int) -> None:
        self.connection = connection
        self.limit = asyncio.Semaphore(max_in_flight)
        self.in_flight = 0


class WorkerPool:
    """Connections keyed by worker URL. An async context manager."""

    def __init__(
        self,
        *,
        token: str | None = None,
        credentials: Callable[[str], str | None] | None = None,
        max_in_flight: int = 64,
        max_connections: int = 512,
        connect_timeout: float = 10.0,
    ) -> None:
        self.token = token
        self.credentials = credentials
        self.max_in_flight = max_in_flight
        self.connect_timeout = connect_timeout
        self._endpoints: dict[str, _Endpoint] = {}
        self._ssl = ssl.create_default_context()
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._fresh: aiohttp.ClientSession | None = None

    def _make_session(self, *, reuse: bool) -> aiohttp.ClientSession:
        connector = ReuseConnector(
            limit=self._max_connections if reuse else 64,
            ssl=self._ssl,
            force_close=not reuse,
            # Drop idle connections before a server's keep-alive ends (5 s is the default of
            # uvicorn and Node): a request then never meets a connection the server is closing.
            # (Our workers keep 75 s; the one re-send in Connection.post covers servers that
            # keep less.)
            keepalive_timeout=4.0 if reuse else None,
        )
        return aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            skip_auto_headers=("User-Agent",),
        )

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:  # made on first use: it must be born inside the event loop
            self._session = self._make_session(reuse=True)
        return self._session

    def fresh_session(self) -> aiohttp.ClientSession:
        if self._fresh is None:
            self._fresh = self._make_session(reuse=False)
        return self._fresh

    async def __aenter__(self) -> WorkerPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        endpoints, self._endpoints = list(self._endpoints.values()), {}
        await asyncio.gather(*(e.connection.close() for e in endpoints), return_exceptions=True)
        for session in (self._session, self._fresh):
            if session is not None:
                await session.close()

    def _endpoint(self, url: str) -> _Endpoint:
        endpoint = self._endpoints.get(url)
        if endpoint is None:
            connection = Connection(
                url,
                self.session,
                self.fresh_session,
                connect_timeout=self.connect_timeout,
                token=self._token_of(url),
            )
            endpoint = self._endpoints[url] = _Endpoint(connection, self.max_in_flight)
        return endpoint

    def _token_of(self, url: str) -> Callable[[], str | None]:
        credentials, token = self.credentials, self.token
        if credentials is not None:
            return lambda: credentials(url)
        return lambda: token

    def in_flight(self, url: str) -> int:
        endpoint = self._endpoints.get(url)
        return endpoint.in_flight if endpoint else 0

    async def connect(self, url: str) -> ServerInfo:
        return await self._endpoint(url).connection.connect()

    async def drop(self, url: str) -> None:
        """Forget a departed worker's connection (its session is closed politely)."""
        endpoint = self._endpoints.pop(url, None)
        if endpoint is not None:
            await endpoint.connection.close()

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
    ) -> CallResult:
        """Call ``tool`` on the worker at ``url``; ``wrapped``: unwrap a ``{"result": x}``."""
        endpoint = self._endpoint(url)
        async with endpoint.limit:
            endpoint.in_flight += 1
            try:
                with _tracer.start_as_current_span(
                    f"tools/call {tool}",
                    kind=trace.SpanKind.CLIENT,
                    attributes={"mcp.tool": tool},
                ):
                    meta = dict(meta or {})
                    propagate.inject(meta)
                    raw = await endpoint.connection.call_tool(
                        tool,
                        arguments,
                        timeout=timeout,
                        meta=meta,
                        headers=call_headers.get(),
                        on_progress=on_progress,
                        on_log=on_log,
                    )
            finally:
                endpoint.in_flight -= 1
        value, content = result_value(raw, wrapped=wrapped)
        return CallResult(value, content)

    async def list_tools(self, url: str, *, timeout: float) -> list[dict[str, Any]]:
        return await self._endpoint(url).connection.list_tools(timeout=timeout)
