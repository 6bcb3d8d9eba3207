"""Pure-ASGI middleware (cheaper per request than BaseHTTPMiddleware):

- correlation id: ``X-Correlation-ID`` honoured (if sane) or generated, bound into the log
  context, readable with :func:`correlation_id`, echoed on the response;
- request body limit: a declared or streamed body over the limit gets 413 before any route
  sees it.
"""

from __future__ import annotations

import contextvars
import json
import re
import uuid
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared import HEADER_CORRELATION_ID, PayloadTooLarge

__all__ = ["RequestContext", "correlation_id"]

_SANE = re.compile(r"^[A-Za-z0-9._:/-]{1,128}$")
_HEADER = HEADER_CORRELATION_ID.lower().encode()
_current: contextvars.ContextVar[str] = contextvars.ContextVar("fleet_correlation_id", default="")


def correlation_id() -> str:
    """The current request's correlation id (a fresh one outside a request)."""
    return _current.get() or uuid.uuid4().hex


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
                declared = int(value)
        cid = incoming if _SANE.match(incoming) else uuid.uuid4().hex
        limit = self.max_body_bytes
        if declared > limit:
            await _too_large(send, cid, limit)
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
        try:
            with structlog.contextvars.bound_contextvars(correlation_id=cid):
                await self.app(scope, limited_receive, send_with_id)
        except _TooLarge:
            if not started:
                await _too_large(send, cid, limit)
        finally:
            _current.reset(token)


async def _too_large(send: Send, cid: str, limit: int) -> None:
    error = PayloadTooLarge(f"request body exceeds {limit} bytes", details={"limit_bytes": limit})
    body = json.dumps(error.to_body()).encode()
    headers: list[Any] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (_HEADER, cid.encode()),
    ]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
