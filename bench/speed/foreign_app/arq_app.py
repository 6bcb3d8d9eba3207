"""The arq side of the comparison (runs in its own venv, never imports the project).

Two tasks: ``noop`` and ``mcp_noop`` (the MCP tool ``noop`` at ``BENCH_MCP_URL`` through one
FastMCP client, opened when the worker starts). Redis: ``BENCH_REDIS_URL``; the worker polls
every 10 ms and runs up to 64 jobs at once.
"""

from __future__ import annotations

import os
from typing import Any

from arq.connections import RedisSettings


async def noop(ctx: dict[str, Any]) -> dict[str, bool]:
    return {"ok": True}


async def mcp_noop(ctx: dict[str, Any]) -> Any:
    result = await ctx["mcp"].call_tool("noop", {})
    return result.structured_content


async def startup(ctx: dict[str, Any]) -> None:
    from fastmcp import Client

    ctx["mcp"] = Client(os.environ["BENCH_MCP_URL"])
    await ctx["mcp"].__aenter__()


async def shutdown(ctx: dict[str, Any]) -> None:
    await ctx["mcp"].__aexit__(None, None, None)


class WorkerSettings:
    functions = [noop, mcp_noop]
    redis_settings = RedisSettings.from_dsn(os.environ["BENCH_REDIS_URL"])
    on_startup = startup
    on_shutdown = shutdown
    poll_delay = 0.01
    max_jobs = 64
    keep_result = 600
