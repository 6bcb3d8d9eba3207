"""DNS-rebinding protection for a worker: :mod:`shared.hosts` with the kit's JSON errors.

Every path is guarded, ``/health`` and ``/ready`` included: their callers (container health
checks on 127.0.0.1, supervisors using the worker's own URL, kubelets using the pod IP, which
is the address the connection arrives on) all send allowed hosts, and ``/health`` shows
internal state a rebinding page must not read. A refused ``Host`` gets **421**
``HOST_NOT_ALLOWED``, a refused ``Origin`` **403** ``ORIGIN_NOT_ALLOWED``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from starlette.types import ASGIApp, Scope, Send

from shared.hosts import LOOPBACK_HOSTS, LOOPBACK_ORIGINS, HostOriginGuard, Refusal, allowed_hosts
from shared.logs import get_logger
from shared.protocol import encode_tool_error
from workers.kit.errors import HOST_NOT_ALLOWED, ORIGIN_NOT_ALLOWED

__all__ = ["LOOPBACK_HOSTS", "LOOPBACK_ORIGINS", "HostOriginMiddleware", "allowed_hosts"]

_log = get_logger("workers.kit")


class HostOriginMiddleware(HostOriginGuard):
    """Pure ASGI: refuse a disallowed ``Host`` (421) or ``Origin`` (403) with a JSON error."""

    def __init__(self, app: ASGIApp, *, hosts: Sequence[str], origins: Sequence[str] = ()) -> None:
        super().__init__(app, hosts=hosts, origins=origins, refuse=_refuse)


async def _refuse(scope: Scope, send: Send, refusal: Refusal) -> None:
    if refusal.kind == "host":
        code, field = HOST_NOT_ALLOWED, "Host"
        hint = (
            "Call the worker by an allowed name, or add this one to FLEET_ALLOWED_HOSTS "
            "(--allowed-hosts)."
        )
    else:
        code, field = ORIGIN_NOT_ALLOWED, "Origin"
        hint = "Add the origin to FLEET_ALLOWED_ORIGINS (--allowed-origins)."
    message = f"{field} {refusal.value!r} is not allowed"
    _log.warning(
        "worker.request_refused", code=code, **{refusal.kind: refusal.value}, path=scope.get("path")
    )
    error = json.loads(encode_tool_error(code, message, field=field, hint=hint))
    body = json.dumps({"error": error}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": refusal.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
