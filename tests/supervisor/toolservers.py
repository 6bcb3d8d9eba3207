"""Small FastMCP servers the supervisor tests drive over HTTP.

``contract_server`` speaks our contract (it has ``get_capabilities``); ``foreign_server`` is a
plain MCP server that knows nothing of it. Both record what they saw so tests can assert on
the worker side (correlation ids, cancellations, calls).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from fastmcp import Context, FastMCP
from fastmcp.exceptions import ToolError
from mcp.types import ToolAnnotations

from shared import META_CORRELATION_ID, META_IDEMPOTENCY_KEY, encode_tool_error


@dataclass
class Seen:
    calls: list[dict[str, Any]] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    fail_next: int = 0


def _meta(ctx: Context) -> dict[str, Any]:
    meta = ctx.request_context.meta if ctx.request_context else None
    if meta is None:
        return {}
    return dict(meta.model_dump() if hasattr(meta, "model_dump") else meta)


def contract_server(
    name: str, seen: Seen, *, max_concurrency: int = 8, service: str = "toolbox"
) -> FastMCP:
    mcp = FastMCP(name)
    caps: dict[str, dict[str, Any]] = {}

    def register(fn: Any, *, idempotent: bool, schema: dict[str, Any]) -> None:
        mcp.tool(fn, annotations=ToolAnnotations(idempotentHint=idempotent))
        caps[fn.__name__] = {
            "description": fn.__doc__ or "",
            "input_schema": schema,
            "idempotent": idempotent,
            "max_concurrency": max_concurrency,
        }

    def record(ctx: Context, tool: str, **args: Any) -> dict[str, Any]:
        meta = _meta(ctx)
        entry = {"tool": tool, "meta": meta, "args": args, "worker": name}
        seen.calls.append(entry)
        try:
            from fastmcp.server.dependencies import get_http_headers

            seen.headers.append(dict(get_http_headers()))
        except Exception:
            pass
        return entry

    async def noop(ctx: Context) -> dict[str, Any]:
        """Do nothing."""
        record(ctx, "noop")
        return {"ok": True, "worker": name}

    async def steps(n: int, ctx: Context) -> dict[str, Any]:
        """Report n progress steps."""
        record(ctx, "steps", n=n)
        await ctx.info("starting", extra={"n": n})
        for i in range(n):
            await ctx.report_progress(i + 1, n, f"step {i + 1}/{n}")
        return {"steps": n, "worker": name}

    async def hold(ctx: Context) -> dict[str, Any]:
        """Block until the test releases it (or it is cancelled)."""
        entry = record(ctx, "hold")
        await ctx.report_progress(0, 1, "holding")
        seen.started.set()
        try:
            await seen.release.wait()
        except asyncio.CancelledError:
            seen.cancelled.append(str(entry["meta"].get(META_CORRELATION_ID)))
            raise
        return {"released": True, "worker": name}

    async def fail(code: str, ctx: Context, retryable: bool = False) -> dict[str, Any]:
        """Always fail with the given code (``retryable``: say it may be tried again)."""
        record(ctx, "fail", code=code)
        message = f"failed on purpose with {code}"
        raise ToolError(encode_tool_error(code, message, field="code", retryable=retryable))

    async def flaky(ctx: Context) -> dict[str, Any]:
        """Answer BUSY while fail_next > 0, then succeed."""
        record(ctx, "flaky")
        if seen.fail_next > 0:
            seen.fail_next -= 1
            raise ToolError(encode_tool_error("BUSY", "full", retryable=True))
        return {"ok": True, "worker": name, "key": _meta(ctx).get(META_IDEMPOTENCY_KEY)}

    register(noop, idempotent=True, schema={"type": "object", "properties": {}})
    steps_schema = {
        "type": "object",
        "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 1000}},
        "required": ["n"],
        "additionalProperties": False,
    }
    register(steps, idempotent=True, schema=steps_schema)
    register(hold, idempotent=False, schema={"type": "object", "properties": {}})
    fail_schema = {
        "type": "object",
        "properties": {"code": {"type": "string"}, "retryable": {"type": "boolean"}},
        "required": ["code"],
    }
    register(fail, idempotent=True, schema=fail_schema)
    register(flaky, idempotent=True, schema={"type": "object", "properties": {}})

    @mcp.tool
    def get_capabilities() -> dict[str, Any]:
        """Describe this worker."""
        return {
            "service_name": service,
            "version": "1.0",
            "capabilities": caps,
            "supported_features": ["progress", "cancellation"],
            "health_status": "healthy",
            "load": {"in_flight": 0, "max_concurrency": max_concurrency},
        }

    return mcp


def foreign_server(seen: Seen) -> FastMCP:
    mcp = FastMCP("foreign")

    @mcp.tool(annotations=ToolAnnotations(idempotentHint=True))
    async def shout(text: str, ctx: Context) -> str:
        """Upper-case the text."""
        seen.calls.append({"tool": "shout", "meta": _meta(ctx)})
        await ctx.report_progress(1, 1, "shouting")
        return text.upper()

    return mcp
