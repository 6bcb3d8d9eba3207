"""The catalog as MCP tools: each capability a :class:`CatalogTool` whose call is a job
(:meth:`~supervisor.mcp.face.McpFace.call`), listed by the :class:`Catalog` provider; and the
session-based hosts told when that list changes (:class:`Sessions`)."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any

from fastmcp.exceptions import ToolError
from fastmcp.server.middleware import Middleware, MiddlewareContext
from fastmcp.server.providers import Provider
from fastmcp.tools.base import Tool, ToolResult
from fastmcp.utilities.versions import VersionSpec
from mcp_types import ToolAnnotations, ToolExecution, ToolListChangedNotification
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import Field, PrivateAttr

from shared import get_logger
from supervisor.mcp.results import surfaced

if TYPE_CHECKING:
    from supervisor.mcp.face import McpFace

__all__ = ["FLEET_TOOLS", "Catalog", "CatalogTool", "Sessions"]

log = get_logger("fleet.mcp")

FLEET_TOOLS = ("fleet_submit", "fleet_job", "fleet_cancel", "fleet_workers")
"""The face's own tools; a worker's tool of the same name is listed by its qualified name."""


class CatalogTool(Tool):
    """One capability of the catalog; its call is a job on a worker."""

    capability: Annotated[str, Field(exclude=True)]
    _face: McpFace = PrivateAttr()

    @surfaced(ToolError)
    async def run(self, arguments: dict[str, Any]) -> ToolResult:
        return await self._face.call(self.capability, arguments)


class Catalog(Provider):
    """The catalog's capabilities as tools. Built from the registry at most once a second
    (and at once when the names change), not per request: the list follows workers as they
    come and go, and a call finds its tool without building the whole catalog."""

    FRESH_S = 1.0

    def __init__(self, face: McpFace) -> None:
        super().__init__()
        self.face = face
        self._tools: dict[str, CatalogTool] = {}
        self._built = -math.inf

    def invalidate(self) -> None:
        self._built = -math.inf

    def _current(self) -> dict[str, CatalogTool]:
        services = self.face.services_or_none()
        if services is None:
            return {}
        if time.monotonic() - self._built > self.FRESH_S:
            tools = [self._tool(n, e) for n, e in services.registry.catalog().items()]
            self._tools = {tool.name: tool for tool in tools}
            self._built = time.monotonic()
        return self._tools

    async def _list_tools(self) -> Sequence[Tool]:
        return list(self._current().values())

    async def _get_tool(self, name: str, version: VersionSpec | None = None) -> Tool | None:
        return self._current().get(name)

    @staticmethod
    def _name(public: str, entry: dict[str, Any]) -> str:
        # A worker's tool named like a fleet tool is listed by its qualified name.
        return str(entry["qualified_name"]) if public in FLEET_TOOLS else public

    def _tool(self, public: str, entry: dict[str, Any]) -> CatalogTool:
        name = self._name(public, entry)
        tool = CatalogTool(
            name=name,
            capability=name,
            description=entry.get("description") or f"{entry['service']}: {entry['tool']}",
            parameters=entry.get("input_schema") or {"type": "object"},
            output_schema=entry.get("output_schema") or None,
            annotations=ToolAnnotations(
                idempotent_hint=bool(entry.get("idempotent")), open_world_hint=True
            ),
            # A host may run any call as a task (supervisor.mcp.tasks); none has to.
            execution=ToolExecution(task_support="optional"),
            meta={"mcp-fleet/service": entry["service"], "mcp-fleet/tool": entry["tool"]},
        )
        tool._face = self.face
        return tool


class Sessions(Middleware):
    """Remembers the session-based connections that listed the tools, to tell them when the
    catalog changes (2026-07-28 has no standing server-to-client channel to tell). A session
    that cannot be told any more is forgotten; at most ``MAX_SESSIONS``, oldest first."""

    MAX_SESSIONS = 10_000

    def __init__(self) -> None:
        self.open: dict[str, Any] = {}

    async def on_list_tools(self, context: MiddlewareContext[Any], call_next: Any) -> Any:
        ctx = context.fastmcp_context
        rc = ctx.request_context if ctx is not None else None
        legacy = rc is not None and rc.protocol_version not in MODERN_PROTOCOL_VERSIONS
        if ctx is not None and rc is not None and legacy:
            with contextlib.suppress(RuntimeError):
                self.open.pop(ctx.session_id, None)
                self.open[ctx.session_id] = rc.session
                while len(self.open) > self.MAX_SESSIONS:
                    self.open.pop(next(iter(self.open)))
        return await call_next(context)

    async def tools_changed(self) -> None:
        for session_id, session in list(self.open.items()):
            try:
                await session.send_notification(ToolListChangedNotification())
            except Exception as exc:  # closed: forget it
                self.open.pop(session_id, None)
                log.debug("mcp.list_changed_undelivered", error=repr(exc))
