"""Serve ASGI apps over real HTTP inside the test process, on port-0 sockets."""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.serving import loopback_socket, serving


def free_socket() -> socket.socket:
    return loopback_socket()


@contextlib.asynccontextmanager
async def serve_asgi(app: Any, *, lifespan: str = "on") -> AsyncIterator[str]:
    """Run ``app`` with uvicorn on a fresh loopback port; yields ``http://127.0.0.1:PORT``."""
    async with serving(app, sockets=[free_socket()], lifespan=lifespan) as running:
        yield running.url


@dataclass
class Recorder:
    """An ASGI wrapper that records each HTTP request: path, headers and JSON-RPC methods."""

    app: ASGIApp
    requests: list[dict[str, Any]] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        more = True
        while more:
            message = await receive()
            messages.append(message)
            more = message["type"] == "http.request" and message.get("more_body", False)
        body = b"".join(m.get("body", b"") for m in messages)
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        batch = parsed if isinstance(parsed, list) else [parsed]
        self.requests.append(
            {
                "path": scope["path"],
                "headers": {k.decode().lower(): v.decode() for k, v in scope["headers"]},
                "methods": [m.get("method") for m in batch if isinstance(m, dict)],
                "tools": [
                    (m.get("params") or {}).get("name")
                    for m in batch
                    if isinstance(m, dict) and m.get("method") == "tools/call"
                ],
            }
        )

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    @property
    def authorizations(self) -> list[str]:
        return [
            r["headers"]["authorization"] for r in self.requests if "authorization" in r["headers"]
        ]

    @property
    def tool_calls(self) -> list[str]:
        return [tool for r in self.requests for tool in r["tools"]]
