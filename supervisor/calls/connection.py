"""One MCP endpoint over streamable HTTP: its requests, each one POST, and their re-sends.

A :class:`Connection` learns the endpoint's revision once (:mod:`.revisions`) and remembers
it. A request refused later at the protocol level (an HTTP 4xx or ``-32022``) makes the
connection look again once (a restart or an upgrade), and a legacy session the server forgot
(404) is re-established once; both re-sends are safe because a refused request never reached
a tool. A POST that fails on a *reused* keep-alive connection before any byte of the answer
arrived (the server closed it while idle) is re-sent once on a fresh connection. A legacy
``tools/call`` that is abandoned (timeout, cancellation, a dropped answer) is followed by
``notifications/cancelled``; a modern server cancels when the response stream closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import weakref
from collections.abc import Callable
from typing import Any

import aiohttp

from shared import WorkerCallError, WorkerDropped, get_logger
from supervisor.calls import answers, errors, results, revisions
from supervisor.calls.answers import LogHandler, ProgressHandler
from supervisor.calls.revisions import ServerInfo
from supervisor.fastjson import dumps_bytes

__all__ = ["Connection", "ReuseConnector"]

log = get_logger("fleet.wire")


_RIDES: contextvars.ContextVar[list[bool] | None] = contextvars.ContextVar(
    "fleet_rides", default=None
)
"""Set around one POST: :class:`ReuseConnector` appends whether it rode a used connection."""


class ReuseConnector(aiohttp.TCPConnector):
    """A connector that tells a request whether it rode a keep-alive connection used before
    (what the one re-send after a stale connection needs to know). It replaces an aiohttp
    ``TraceConfig``, which made every request await eight trace signals (the client's CPU
    per call 0.203 -> 0.187 ms, measured)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._used: weakref.WeakSet[Any] = weakref.WeakSet()

    async def connect(self, req: Any, traces: Any, timeout: Any) -> Any:
        conn = await super().connect(req, traces, timeout)
        proto = conn.protocol
        if proto is not None:
            used = proto in self._used
            rides = _RIDES.get()
            if rides is not None:
                rides.append(used)
            if not used:  # WeakSet.add makes a new weak reference each call
                self._used.add(proto)
        return conn


class Connection:
    """One MCP endpoint.

    ``http`` is the shared keep-alive session (its connector a :class:`ReuseConnector`);
    ``fresh`` gives a session that opens a new connection per request, for the one re-send
    after a stale keep-alive connection.
    """

    def __init__(
        self,
        url: str,
        http: Callable[[], aiohttp.ClientSession],
        fresh: Callable[[], aiohttp.ClientSession],
        *,
        connect_timeout: float = 10.0,
        token: Callable[[], str | None] | None = None,
    ) -> None:
        self.url = url
        self._http = http
        self._fresh = fresh
        self._token = token
        self.connect_timeout = connect_timeout
        self.info: ServerInfo | None = None
        self._session_id: str | None = None
        self._lock = asyncio.Lock()
        self._generation = 0
        self._background: set[asyncio.Task[Any]] = set()

    # -- public --------------------------------------------------------------------------

    async def connect(self) -> ServerInfo:
        """Learn (or recall) the revision; for a legacy server, hold an initialized session."""
        if self.info is not None:
            return self.info
        async with self._lock:
            if self.info is None:
                self.forget()
                self.info, self._session_id = await revisions.detect(self, self.connect_timeout)
                log.info(
                    "wire.connected",
                    url=self.url,
                    dialect=self.info.dialect,
                    protocol=self.info.protocol,
                    server=self.info.name,
                    stateful=self.info.stateful,
                )
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
        on_progress: ProgressHandler | None = None,
        on_log: LogHandler | None = None,
    ) -> dict[str, Any]:
        """Call one tool; returns the JSON-RPC ``result`` (a tool's error is raised)."""
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
            raise errors.timed_out(self.url, "tools/call", tool=name, timeout=timeout) from exc
        results.check(result, self.url)
        if result.get("isError"):
            text = results.texts(result) or "the tool reported an error"
            raise errors.tool_error(self.url, name, text)
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
                        raise errors.bad(self.url, "tools/list answered without a tools list")
                    tools.extend(t for t in page if isinstance(t, dict) and t.get("name"))
                    cursor = result.get("nextCursor")
                    if not cursor:
                        break
        except TimeoutError as exc:
            raise errors.timed_out(self.url, "tools/list") from exc
        return tools

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        if self._session_id and self.info is not None:
            headers = self._auth(revisions.headers(self.info, self._session_id))
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    async with self._http().delete(self.url, headers=headers):
                        pass
        self._session_id = None

    def _auth(self, headers: dict[str, str]) -> dict[str, str]:
        """``headers`` plus the bearer token, asked for on every request: a worker that is no
        longer trusted stops getting it at once (:class:`supervisor.trust.WorkerTrust`)."""
        token = self._token() if self._token is not None else None
        return {**headers, "authorization": f"Bearer {token}"} if token else headers

    async def post(self, body: dict[str, Any], headers: dict[str, str]) -> aiohttp.ClientResponse:
        """POST once; once more on a fresh connection if a reused one died before answering."""
        content = dumps_bytes(body)
        headers = self._auth(
            {
                "accept": "application/json, text/event-stream",
                "content-type": "application/json",
                **headers,
            }
        )
        for fresh in (False, True):
            rides: list[bool] = []
            session = self._fresh() if fresh else self._http()
            token = _RIDES.set(rides)
            try:
                return await session.post(self.url, data=content, headers=headers)
            except aiohttp.ClientError as exc:
                reused = bool(rides) and rides[-1]
                if not fresh and reused and errors.closed_before_answering(exc):
                    log.debug("wire.stale_connection", url=self.url, error=repr(exc))
                    continue
                raise errors.transport_error(self.url, "resend" if fresh else "send", exc) from exc
            finally:
                _RIDES.reset(token)
        raise AssertionError("unreachable")  # pragma: no cover

    # -- requests ------------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        params: dict[str, Any],
        *,
        meta: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        on_progress: ProgressHandler | None = None,
        on_log: LogHandler | None = None,
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
            except errors.Rejected as exc:
                if looked_again:
                    raise errors.refused(self.url, exc) from exc
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
        on_progress: ProgressHandler | None,
        on_log: LogHandler | None,
        tool: str | None,
    ) -> dict[str, Any]:
        request = revisions.frame(
            info,
            self._session_id,
            method,
            params,
            meta=meta,
            progress=on_progress is not None,
            tool=tool,
        )
        sent = False
        try:
            response = await self.post(request.body, {**request.headers, **(headers or {})})
            sent = True
            async with response:
                return await answers.read(
                    response,
                    request.id,
                    self.url,
                    on_progress=on_progress,
                    on_log=on_log,
                    reply=self._background_post,
                )
        except BaseException as exc:
            aborted = not isinstance(exc, WorkerCallError) or isinstance(exc, WorkerDropped)
            if sent and aborted and info.dialect == "legacy" and method == "tools/call":
                self._cancel_later(info, request.id)  # stop the tool: timeout, cancel, drop
            raise

    # -- messages sent in the background -------------------------------------------------

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
        headers = revisions.headers(info, self._session_id)

        async def post() -> None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    response = await self.post(message, headers)
                    response.release()

        task = asyncio.get_running_loop().create_task(post())
        self._background.add(task)
        task.add_done_callback(self._background.discard)
