"""Serve ASGI apps over real HTTP inside the test process, on port-0 sockets."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

from shared.serving import loopback_socket, serving


def free_socket() -> socket.socket:
    return loopback_socket()


@contextlib.asynccontextmanager
async def serve_asgi(app: Any, *, lifespan: str = "on") -> AsyncIterator[str]:
    """Run ``app`` with uvicorn on a fresh loopback port; yields ``http://127.0.0.1:PORT``."""
    async with serving(app, sockets=[free_socket()], lifespan=lifespan) as running:
        yield running.url
