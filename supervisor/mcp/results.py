"""A job as the MCP answers a host sees: a tool result with the job in its ``_meta``, a task
(the ``io.modelcontextprotocol/tasks`` extension's wire shape); and the fleet's refusals as
MCP errors (:func:`surfaced`)."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

from fastmcp.tools.base import ToolResult
from mcp_types import INTERNAL_ERROR, CallToolResult, TextContent

from shared import FleetError, Job, JobStatus

__all__ = ["META_KEY", "job_meta", "surfaced", "task_detail", "task_fields", "tool_result"]

P = ParamSpec("P")
R = TypeVar("R")

META_KEY = "mcp-fleet/job"
"""Where a result's ``_meta`` names the job behind it."""


def job_meta(job: Job) -> dict[str, Any]:
    return {
        META_KEY: {
            "id": job.id,
            "correlation_id": job.correlation_id,
            "status": job.status.value,
            "attempts": job.attempts,
            "worker": job.worker,
        }
    }


def tool_result(job: Job) -> ToolResult:
    """The job's outcome as a tool result: the worker's content and structured result when it
    succeeded, an error result (``isError``) naming the code otherwise."""
    meta = job_meta(job)
    if job.status is JobStatus.SUCCEEDED:
        structured = job.result if isinstance(job.result, dict) else None
        if job.content:
            content: Any = job.content
        elif isinstance(job.result, str):
            content = [TextContent(type="text", text=job.result)]
        else:
            content = [TextContent(type="text", text=json.dumps(job.result))]
        return ToolResult(content=content, structured_content=structured, meta=meta)
    return ToolResult(content=[TextContent(type="text", text=_why(job))], meta=meta, is_error=True)


def _why(job: Job) -> str:
    if job.status is JobStatus.CANCELLED:
        return f"job {job.id} was cancelled"
    if job.error is None:
        return f"job {job.id} ended {job.status.value}"
    if job.error.code == "TOOL_ERROR":  # the worker's own words, as a direct call shows them
        return job.error.message
    return f"{job.error.code}: {job.error.message}"


def _task_status(job: Job) -> str:
    """A tool that ran and failed completed its task (its result says ``isError``, as the
    tasks extension reports a raised tool error); a job the fleet could not run failed."""
    if not job.status.terminal:
        return "working"
    if job.status is JobStatus.CANCELLED:
        return "cancelled"
    if job.status is JobStatus.SUCCEEDED or (job.error and job.error.code == "TOOL_ERROR"):
        return "completed"
    return "failed"


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def task_fields(job: Job, *, ttl_s: float, poll_ms: int) -> dict[str, Any]:
    """The flat task object of the tasks extension for ``job`` (its id is the task id), with
    the latest progress as its status message."""
    updated = job.finished_at or job.started_at or job.created_at
    status = _task_status(job)
    fields: dict[str, Any] = {
        "taskId": job.id,
        "status": status,
        "createdAt": _iso(job.created_at),
        "lastUpdatedAt": _iso(updated),
        "ttlMs": int(ttl_s * 1000),
        "pollIntervalMs": poll_ms,
    }
    message = None
    if job.progress is not None:
        total = f"/{job.progress.total:g}" if job.progress.total is not None else ""
        message = f"{job.progress.progress:g}{total}"
        if job.progress.message:
            message += f" {job.progress.message}"
    if status in ("failed", "cancelled"):
        message = _why(job)
    if message:
        fields["statusMessage"] = message
    return fields


def task_detail(job: Job, *, ttl_s: float, poll_ms: int) -> dict[str, Any]:
    """``tasks/get``'s answer: the task, with the tool result inlined once it completed, or
    a JSON-RPC-shaped error once it failed."""
    fields = task_fields(job, ttl_s=ttl_s, poll_ms=poll_ms)
    if fields["status"] == "completed":
        result = tool_result(job).to_mcp_result()
        assert isinstance(result, CallToolResult)  # a result with _meta is always whole
        fields["result"] = result.model_dump(by_alias=True, mode="json", exclude_none=True)
    elif fields["status"] == "failed":
        error = job.error
        fields["error"] = {
            "code": INTERNAL_ERROR,
            "message": _why(job),
            "data": {"job_id": job.id, **(error.model_dump() if error else {})},
        }
    return {"resultType": "complete", **fields}


def surfaced(
    kind: type[Exception],
) -> Callable[[Callable[P, Coroutine[Any, Any, R]]], Callable[P, Coroutine[Any, Any, R]]]:
    """Decorate a tool or resource function: the fleet's refusals (``FleetError``: a scope,
    an unknown job, a full queue) reach the host as ``kind`` with the code and message (other
    exceptions' text stays masked)."""

    def decorate(fn: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return await fn(*args, **kwargs)
            except FleetError as exc:
                raise kind(f"{exc.code}: {exc.message}") from None

        return wrapper

    return decorate
