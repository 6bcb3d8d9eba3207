"""DNS-rebinding protection: every request's ``Host`` and ``Origin`` must be on an allowlist.

A web page on ``http://evil.example`` whose name later resolves to 127.0.0.1 (or to a
container address) would otherwise reach the worker from the victim's browser. The MCP
transport spec asks servers to validate ``Origin``; the MCP SDK and FastMCP also validate
``Host``. The decision is FastMCP's own guard (:class:`HostOriginGuardMiddleware`, strict
mode), used as a predicate: its refusals are plain text, ours are the kit's JSON errors.

Allowed ``Host`` values, any port: ``localhost``, ``127.0.0.1``, ``[::1]``, the address the
connection arrived on (so a pod or container IP works), the bind host when it is not a
wildcard, the host of ``advertise_url``, and ``allowed_hosts`` (``*`` globs allowed). Any
other gets **421** ``HOST_NOT_ALLOWED``, as the SDK answers. A request without ``Origin``
passes (programs send none); a loopback (any port) or same-origin ``Origin`` passes, as does
one in ``allowed_origins`` (``:*`` for any port); any other gets **403**
``ORIGIN_NOT_ALLOWED``, as the spec requires. ``allowed_hosts=*`` turns the ``Host`` check
off: only for a worker behind a proxy that checks ``Host`` itself.

>>> sorted(allowed_hosts(["api.internal"], advertise_url="http://w1:8701/mcp", bind_host="::"))
['127.0.0.1', '::1', 'api.internal', 'localhost', 'w1']
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit

from fastmcp.server.http import HostOriginGuardMiddleware
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.logs import get_logger
from shared.protocol import encode_tool_error
from workers.kit.errors import HOST_NOT_ALLOWED, ORIGIN_NOT_ALLOWED

__all__ = ["LOOPBACK_HOSTS", "LOOPBACK_ORIGINS", "HostOriginMiddleware", "allowed_hosts"]

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
LOOPBACK_ORIGINS = tuple(
    f"{scheme}://{host}:*"
    for scheme in ("http", "https")
    for host in ("localhost", "127.0.0.1", "[[]::1]")  # ``[[]`` is a literal ``[`` in a glob
)
"""A page served from this machine is no rebinding attacker: its origin passes, any port."""
_WILDCARD_BINDS = frozenset({"", "0.0.0.0", "::", "*"})
_log = get_logger("workers.kit")


def allowed_hosts(
    extra: Iterable[str], *, advertise_url: str | None = None, bind_host: str | None = None
) -> list[str]:
    """The ``Host`` names a worker answers to: loopback, bind host, advertised host, extras."""
    hosts = {*LOOPBACK_HOSTS, *(h.strip().lower() for h in extra if h.strip())}
    if advertise_url:
        name = urlsplit(advertise_url).hostname
        if name:
            hosts.add(name.lower())
    bind = (bind_host or "").strip().strip("[]").lower()
    if bind not in _WILDCARD_BINDS:
        hosts.add(bind)
    return sorted(hosts)


async def _accept(scope: Scope, receive: Receive, send: Send) -> None:
    """The guard's downstream app: reaching it means the request passed."""


class HostOriginMiddleware:
    """Pure ASGI: refuse a disallowed ``Host`` (421) or ``Origin`` (403) with a JSON error.

    It covers every path, ``/health`` and ``/ready`` included: their callers (container health
    checks on 127.0.0.1, supervisors using the worker's own URL, kubelets using the pod IP)
    all send allowed hosts, and ``/health`` shows internal state a rebinding page must not
    read.
    """

    def __init__(self, app: ASGIApp, *, hosts: Sequence[str], origins: Sequence[str] = ()) -> None:
        self.app = app
        self.hosts = tuple(hosts)
        self._guard = HostOriginGuardMiddleware(
            _accept,
            allowed_hosts=self.hosts,
            allowed_origins=(*LOOPBACK_ORIGINS, *origins),
            mode="strict",
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refused: list[int] = []

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                refused.append(int(message["status"]))

        # The guard only reads headers; on refusal it answers into ``capture`` and never
        # reads ``receive``, so the real request body is untouched for the app.
        await self._guard(scope, receive, capture)
        if not refused:
            await self.app(scope, receive, send)
            return
        await self._refuse(scope, send, refused[0])

    async def _refuse(self, scope: Scope, send: Send, status: int) -> None:
        headers = Headers(scope=scope)
        host, origin = headers.get("host", "")[:200], headers.get("origin", "")[:200]
        if status == 421:
            code, field, message = HOST_NOT_ALLOWED, "Host", f"Host {host!r} is not allowed"
            hint = (
                "Call the worker by an allowed name, or add this one to FLEET_ALLOWED_HOSTS "
                "(--allowed-hosts)."
            )
        else:
            code, field, message = ORIGIN_NOT_ALLOWED, "Origin", f"Origin {origin!r} is not allowed"
            hint = "Add the origin to FLEET_ALLOWED_ORIGINS (--allowed-origins)."
        _log.warning(
            "worker.request_refused", code=code, host=host, origin=origin, path=scope.get("path")
        )
        error = json.loads(encode_tool_error(code, message, field=field, hint=hint))
        body = json.dumps({"error": error}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
