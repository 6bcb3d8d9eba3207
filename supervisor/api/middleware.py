"""Pure-ASGI middleware (cheaper per request than BaseHTTPMiddleware):

- correlation id: ``X-Correlation-ID`` honoured, or generated when absent or empty, bound
  into the log context, readable with :func:`correlation_id`, echoed on the response; one
  that is not 1-128 visible ASCII characters (``CORRELATION_ID_PATTERN``) gets 422 at once;
- request body limit: a declared or streamed body over the limit gets 413 before any route
  sees it.
"""

from __future__ import annotations

import contextvars
import os
import re

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from structlog.contextvars import bind_contextvars, reset_contextvars

from shared import HEADER_CORRELATION_ID, FleetError, PayloadTooLarge, ValidationFailed
from supervisor.api.guards import send_error
from supervisor.api.limits import CORRELATION_ID_PATTERN, uuid4_hex

__all__ = ["RequestContext", "correlation_id", "traceparent_of"]

_SANE = re.compile(CORRELATION_ID_PATTERN)
_MAX_LENGTH_DIGITS = 18  # a longer Content-Length is over any limit (and int() could refuse it)
_HEADER = HEADER_CORRELATION_ID.lower().encode()
_current: contextvars.ContextVar[str] = contextvars.ContextVar("fleet_correlation_id", default="")


def correlation_id() -> str:
    """The current request's correlation id (a fresh one outside a request)."""
    return _current.get() or _new_id()


def _new_id() -> str:
    return uuid4_hex(os.urandom(16))  # uuid.uuid4().hex, for less


_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")


def traceparent_of(request: Request) -> str | None:
    """The request's W3C ``traceparent`` header when it is well formed (else None: a bad one
    is ignored, as the W3C spec asks, never refused)."""
    value = request.headers.get("traceparent", "").strip().lower()
    return value if _TRACEPARENT.match(value) and not value.startswith("ff") else None


class _TooLarge(Exception):
    pass


class RequestContext:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = ""
        declared = 0
        for name, value in scope["headers"]:
            if name == _HEADER:
                incoming = value.decode("latin-1").strip()
            elif name == b"content-length" and value.isdigit():
                declared = int(value) if len(value) <= _MAX_LENGTH_DIGITS else 1 << 62
        limit = self.max_body_bytes
        if incoming and not _SANE.fullmatch(incoming):
            error = ValidationFailed(
                f"{HEADER_CORRELATION_ID} must be 1-128 visible ASCII characters "
                "(letters, digits, punctuation; no spaces or control characters)",
                details={
                    "field": f"header.{HEADER_CORRELATION_ID}",  # as FastAPI names headers
                    "pattern": CORRELATION_ID_PATTERN,
                },
            )
            await _refuse(send, _new_id(), error)
            return
        cid = incoming or _new_id()
        if declared > limit:
            await _refuse(send, cid, _too_large(limit))
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge
            return message

        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                headers.append((_HEADER, cid.encode()))
                message = {**message, "headers": headers}
            await send(message)

        token = _current.set(cid)
        # bind/reset rather than structlog's bound_contextvars(), which copies the whole
        # context to read what it restores: a reset restores it exactly, for less.
        logged = bind_contextvars(correlation_id=cid)
        try:
            await self.app(scope, limited_receive, send_with_id)
        except _TooLarge:
            if not started:
                await _refuse(send, cid, _too_large(limit))
        finally:
            reset_contextvars(**logged)
            _current.reset(token)


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"request body exceeds {limit} bytes", details={"limit_bytes": limit})


async def _refuse(send: Send, cid: str, error: FleetError) -> None:
    await send_error(send, error, (_HEADER, cid.encode()))
