"""The ``/mcp`` route: the fleet's MCP face, built at the first ``/mcp`` request.

FastMCP and the MCP server stack cost about a second of CPU to import, which the supervisor's
start, ``/healthz``, ``/readyz`` and the ``/v1`` API need not pay: the face is imported, built
and started when the first ``/mcp`` request arrives (the requests that come meanwhile wait for
the same start), then serves every later one directly. A face that fails to start is logged
once and answers each ``/mcp`` request with that failure (500).

    mount = McpMount(app, authenticator)
    app.router.routes.append(Route("/mcp", mount))
    async with mount.running(services): ...     # in the app's lifespan
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from starlette.types import Receive, Scope, Send

from shared import get_logger

if TYPE_CHECKING:
    from supervisor.api.auth import Authenticator
    from supervisor.mcp.face import McpFace
    from supervisor.services import Services

__all__ = ["McpMount"]

log = get_logger("fleet.supervisor")


class McpMount:
    """Pure ASGI: serves ``/mcp`` through the :class:`~supervisor.mcp.face.McpFace`, started
    on first use while :meth:`running`."""

    def __init__(self, app: Any, auth: Authenticator) -> None:
        self.app = app
        self.auth = auth
        self.face: McpFace | None = None
        self._services: Services | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._starting: asyncio.Future[McpFace] | None = None

    @contextlib.asynccontextmanager
    async def running(self, services: Services) -> AsyncIterator[None]:
        """Let ``/mcp`` start the face for the block (its catalog follows ``services``'
        registry); stop the face, if it started, at the end."""
        async with contextlib.AsyncExitStack() as stack:
            self._services, self._stack = services, stack
            try:
                yield
            finally:
                if self._starting is not None and not self._starting.done():
                    self._starting.cancel()
                    with contextlib.suppress(BaseException):
                        await self._starting
                self._services = self._stack = self._starting = None
                self.face = None

    async def _start(self) -> McpFace:
        if self._services is None or self._stack is None:
            raise RuntimeError("the MCP face runs only inside the app's lifespan")
        try:
            from supervisor.mcp.face import McpFace

            face = McpFace(self.app, self.auth)
            await self._stack.enter_async_context(face.lifespan())
        except Exception:
            log.exception("mcp.face_failed")
            raise
        self._services.registry.listeners.append(face.catalog_changed)
        self.face = face
        return face

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        face = self.face
        if face is None:
            if self._starting is None:  # one start, whoever asks first; the others wait on it
                self._starting = asyncio.ensure_future(self._start())
            face = await asyncio.shield(self._starting)
        await face(scope, receive, send)
