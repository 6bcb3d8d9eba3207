"""What a request must be before any route sees it (pure ASGI, inside ``RequestContext``):

- **addressed to us**: ``Host`` and ``Origin`` on the allowlist of :mod:`shared.hosts`
  (loopback names, the bind host, the address the connection arrived on, and
  ``FLEET_ALLOWED_HOSTS`` / ``FLEET_ALLOWED_ORIGINS``), else 421 ``HOST_NOT_ALLOWED`` or 403
  ``ORIGIN_NOT_ALLOWED``. A browser page whose name was rebound to this machine sends its own
  name as ``Host`` and its own ``Origin``: both are refused before the token is even read.
  Every path is covered, probes included: a kubelet probes with the pod IP as ``Host``, and
  that is the address its connection arrives on, so it passes without an exemption;
- **JSON, when it has a body**: a ``POST``/``PUT``/``PATCH`` carrying a body whose
  ``Content-Type`` is not ``application/json`` (or ``application/*+json``), or that has none,
  gets 415 ``UNSUPPORTED_MEDIA_TYPE``. ``text/plain``, form and multipart bodies are what a
  cross-site page can send without a CORS preflight.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from starlette.types import ASGIApp, Receive, Scope, Send

from shared import FleetError, get_logger
from shared.errors import HostNotAllowed, OriginNotAllowed, UnsupportedMediaType
from shared.hosts import HostOriginGuard, Refusal
from supervisor.api.errors import answer

__all__ = ["HostOrigin", "JsonBodies", "send_error"]

log = get_logger("fleet.supervisor")

_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})
_ECHO = 100


async def send_error(send: Send, error: FleetError, *extra: tuple[bytes, bytes]) -> None:
    """Answer ``error`` by the one table (:func:`supervisor.api.errors.answer`)."""
    status, content, own = answer(error)
    body = json.dumps(content).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *extra,
        *((name.lower().encode(), value.encode("latin-1")) for name, value in own.items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _refuse(scope: Scope, send: Send, refusal: Refusal) -> None:
    error: FleetError
    if refusal.kind == "host":
        error = HostNotAllowed(
            f"Host {refusal.value!r} is not allowed: call the supervisor by an allowed name, "
            "or add this one to FLEET_ALLOWED_HOSTS (--allowed-hosts)",
            details={"field": "header.Host", "host": refusal.value},
        )
    else:
        error = OriginNotAllowed(
            f"Origin {refusal.value!r} is not allowed: add it to FLEET_ALLOWED_ORIGINS "
            "(--allowed-origins)",
            details={"field": "header.Origin", "origin": refusal.value},
        )
    log.warning(
        "api.request_refused",
        code=error.code,
        **{refusal.kind: refusal.value},
        path=str(scope.get("path", ""))[:_ECHO],
    )
    await send_error(send, error)


class HostOrigin(HostOriginGuard):
    """``Host``/``Origin`` allowlists (see the module doc) answered by the one error table."""

    def __init__(self, app: ASGIApp, *, hosts: Sequence[str], origins: Sequence[str] = ()) -> None:
        super().__init__(app, hosts=hosts, origins=origins, refuse=_refuse)


class JsonBodies:
    """415 for a ``POST``/``PUT``/``PATCH`` body that is not declared JSON."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _WITH_BODY:
            await self.app(scope, receive, send)
            return
        has_body, content_type = False, None
        for name, value in scope["headers"]:
            if name == b"content-length":
                has_body = has_body or value.strip() not in (b"", b"0")
            elif name == b"transfer-encoding":
                has_body = True
            elif name == b"content-type":
                content_type = value.decode("latin-1")
        if not has_body or is_json(content_type):
            await self.app(scope, receive, send)
            return
        shown = (content_type or "")[:_ECHO]
        await send_error(
            send,
            UnsupportedMediaType(
                f"the request body must be JSON (Content-Type: application/json), not {shown!r}"
                if content_type
                else "the request body has no Content-Type: send it as application/json",
                details={
                    "field": "header.Content-Type",
                    "content_type": shown or None,
                    "accepted": ["application/json", "application/*+json"],
                },
            ),
        )


def is_json(content_type: str | None) -> bool:
    """``application/json`` or ``application/<anything>+json``, any parameters.

    >>> [is_json(t) for t in ("application/json; charset=utf-8", "application/problem+json",
    ...                       "text/plain", "application/jsonx", None)]
    [True, True, False, False, False]
    """
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    kind, _, subtype = media.partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))
