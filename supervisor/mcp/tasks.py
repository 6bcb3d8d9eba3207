"""The MCP tasks extension (``io.modelcontextprotocol/tasks``, SEP-2663) over fleet jobs.

A host that opts in (its request's ``_meta`` declares the extension, 2026-07-28) and calls a
catalog tool gets the job as a task at once: the task id is the job id. ``tasks/get`` reads
the job (status, the latest progress as ``statusMessage``, the result or error inlined once
it ended); ``tasks/cancel`` cancels it. Fleet tasks never ask for input, so ``tasks/update``
is refused. A task is a job: it outlives the host's connection and the supervisor that took
it, and ``GET /v1/jobs/{id}`` shows it too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from fastmcp.exceptions import ToolError
from fastmcp.server.extensions import (
    MethodBinding,
    ServerExtension,
    read_client_extension_settings,
)
from fastmcp.utilities.tasks import TASKS_EXTENSION_ID
from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    MISSING_REQUIRED_CLIENT_CAPABILITY,
    RequestParams,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel, ConfigDict, Field

from shared import FleetError, JobFinished
from supervisor.api.auth import JOBS_READ, JOBS_WRITE
from supervisor.api.submission import cancel
from supervisor.mcp.catalog import CatalogTool
from supervisor.mcp.results import surfaced, task_detail, task_fields

if TYPE_CHECKING:
    import mcp_types
    from fastmcp import Context
    from fastmcp.server.extensions import ToolCallContinuation, ToolCallOutcome

    from supervisor.mcp.face import McpFace

__all__ = ["FleetTasks"]

POLL_MS = 1000
_VERSIONS = frozenset(MODERN_PROTOCOL_VERSIONS)


class TaskParams(RequestParams):
    model_config = ConfigDict(populate_by_name=True)

    task_id: str = Field(alias="taskId")


class UpdateParams(TaskParams):
    input_responses: dict[str, Any] = Field(default_factory=dict, alias="inputResponses")


class Wire(BaseModel):
    """A result already in its wire shape (camelCase keys)."""

    model_config = ConfigDict(extra="allow")


class FleetTasks(ServerExtension):
    identifier = TASKS_EXTENSION_ID

    def __init__(self, face: McpFace) -> None:
        self.face = face

    def settings(self) -> dict[str, Any]:
        return {}

    def methods(self) -> Sequence[MethodBinding]:
        return [
            MethodBinding("tasks/get", TaskParams, self._get, _VERSIONS),
            MethodBinding("tasks/cancel", TaskParams, self._cancel, _VERSIONS),
            MethodBinding("tasks/update", UpdateParams, self._update, _VERSIONS),
        ]

    @property
    def _ttl_s(self) -> float:
        return float(self.face.services.settings.retention_s)

    @surfaced(ToolError)
    async def intercept_tool_call(
        self,
        params: mcp_types.CallToolRequestParams,
        context: Context,
        call_next: ToolCallContinuation,
    ) -> ToolCallOutcome:
        """A catalog tool called by a host that asked for a task: submit, answer the task."""
        rc = context.request_context
        opted_in = (
            rc is not None
            and rc.protocol_version in MODERN_PROTOCOL_VERSIONS
            and context.client_extension_settings(TASKS_EXTENSION_ID) is not None
        )
        if not opted_in:
            return await call_next()
        tool = await context.fastmcp.get_tool(params.name)
        if not isinstance(tool, CatalogTool):
            return await call_next()
        submitted = await self.face.start(tool.capability, dict(params.arguments or {}))
        fields = task_fields(submitted.job, ttl_s=self._ttl_s, poll_ms=POLL_MS)
        return Wire(**{"resultType": "task", **fields})

    def _check(self, ctx: ServerRequestContext[Any, Any]) -> None:
        if read_client_extension_settings(ctx, TASKS_EXTENSION_ID) is None:
            raise MCPError(
                code=MISSING_REQUIRED_CLIENT_CAPABILITY,
                message=f"this request did not declare the tasks extension ({TASKS_EXTENSION_ID})",
                data={"requiredCapabilities": {"extensions": {TASKS_EXTENSION_ID: {}}}},
            )

    async def _job(self, task_id: str, scope: str) -> Any:
        try:
            who = await self.face.caller(scope)
        except FleetError as exc:
            raise MCPError(code=INVALID_REQUEST, message=f"{exc.code}: {exc.message}") from None
        try:
            return await self.face.job(task_id, who), who
        except FleetError as exc:
            # Another tenant's task is as absent as an unknown one.
            raise MCPError(code=INVALID_PARAMS, message=f"Task not found: {exc.message}") from None

    async def _get(self, ctx: ServerRequestContext[Any, Any], params: TaskParams) -> Wire:
        self._check(ctx)
        job, _ = await self._job(params.task_id, JOBS_READ)
        return Wire(**task_detail(job, ttl_s=self._ttl_s, poll_ms=POLL_MS))

    async def _cancel(self, ctx: ServerRequestContext[Any, Any], params: TaskParams) -> Wire:
        """Cancel the job; a task that already ended stays as it ended (acknowledged)."""
        self._check(ctx)
        job, who = await self._job(params.task_id, JOBS_WRITE)
        if not job.status.terminal:
            with contextlib.suppress(JobFinished):  # it ended meanwhile
                await cancel(self.face.services, who, job.id, wait=0)
        return Wire(**{"resultType": "complete"})

    async def _update(self, ctx: ServerRequestContext[Any, Any], params: UpdateParams) -> Wire:
        self._check(ctx)
        await self._job(params.task_id, JOBS_WRITE)
        raise MCPError(code=INVALID_PARAMS, message="fleet tasks never ask for input")
