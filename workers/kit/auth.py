"""Worker token: with ``FLEET_WORKER_TOKEN`` set, MCP requests need ``Authorization: Bearer``.

A small ASGI middleware rather than FastMCP's ``auth=``: the check is a constant-time
comparison of one shared secret, and ``/health`` and ``/ready`` must stay open for probes.
"""

from __future__ import annotations

import hmac
import json

from starlette.types import ASGIApp, Receive, Scope, Send

from shared.protocol import encode_tool_error
from workers.kit.errors import UNAUTHORIZED

__all__ = ["BearerTokenMiddleware"]


class BearerTokenMiddleware:
    def __init__(
        self, app: ASGIApp, *, token: str, open_paths: frozenset[str] = frozenset()
    ) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()
        self.open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in self.open_paths:
            await self.app(scope, receive, send)
            return
        given = b""
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                given = value
                break
        if hmac.compare_digest(given, self.expected):
            await self.app(scope, receive, send)
            return
        body = json.dumps(
            {"error": json.loads(encode_tool_error(UNAUTHORIZED, "missing or wrong worker token"))}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"www-authenticate", b'Bearer realm="mcp-fleet-worker"'),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
