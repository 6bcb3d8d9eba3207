"""The event stream's response: Server-Sent Events written by the request's own task.

A stream costs one task and what its generator holds, nothing per event: sse-starlette's
response ran four tasks in an anyio task group per stream (its body, a ping timer, a
disconnect listener, an exit-signal listener), about 12 KB of every open stream's ~70 KB.
The generator (:func:`supervisor.api.jobs.job_events`) already wakes every second when idle
(:meth:`supervisor.store.events.EventLog.follow`), so it writes the keep-alive comment and
looks at its client itself (:class:`Keepalive`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from shared import StoreUnavailable, get_logger

__all__ = ["EventStream", "Keepalive"]

log = get_logger("fleet.api")

PING = b": ping\r\n\r\n"
"""A comment line: every SSE reader skips it; proxies see the connection is alive."""


class EventStream(Response):
    """``text/event-stream`` from an async generator of ready-made frames."""

    def __init__(
        self, body: AsyncGenerator[bytes, None], status_code: int = 200, *, headers: dict[str, str]
    ) -> None:
        # As starlette's StreamingResponse sets itself up: no body, so no Content-Length.
        # (FastAPI's OpenAPI reads the default of ``status_code``.)
        # The media type is the instance's, not the class's: FastAPI documents a route's
        # error answers in its response class's media type, and those are JSON.
        self.media_type = "text/event-stream"
        self.body_iterator = body
        self.status_code = status_code
        self.background = None
        self.init_headers(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = {"type": "http.response.start", "status": self.status_code}
        await send({**start, "headers": self.raw_headers})
        try:
            try:
                async for chunk in self.body_iterator:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            except StoreUnavailable as exc:  # the status is sent: end the stream cleanly, and
                log.warning("sse.store_unavailable", error=exc.message)  # the reader resumes
            except Exception:  # the same for anything else, said loudly
                log.exception("sse.stream_failed")
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:  # the client went away mid-write (a server speaking ASGI 2.4 says so)
            pass
        finally:
            await self.body_iterator.aclose()


class Keepalive:
    """When a stream should write a ping, and look whether its client is still there:
    ``every_s`` after its last write, and at most once a second while events flow."""

    def __init__(self, request: Request, every_s: float) -> None:
        self.request = request
        self.every_s = every_s
        self.wrote = self.looked = time.monotonic()

    def sent(self) -> None:
        self.wrote = time.monotonic()

    def ping_due(self) -> bool:
        if time.monotonic() - self.wrote < self.every_s:
            return False
        self.sent()
        return True

    async def gone(self, *, idle: bool) -> bool:
        """Whether the client disconnected (asked of the server: idle, or once a second)."""
        now = time.monotonic()
        if not idle and now - self.looked < 1.0:
            return False
        self.looked = now
        return await self.request.is_disconnected()
