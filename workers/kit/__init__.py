"""The worker kit: a production MCP worker in a few lines.

Declare tools on a :class:`Toolset`, build a :class:`Worker` from it at the entrypoint, and
the worker gets streamable HTTP at ``/mcp`` with progress, ``/health`` and ``/ready``,
``get_capabilities`` generated from the tools, correlation ids and trace context in every log
line, per-tool concurrency limits answering ``BUSY``, idempotency keys, structured
validation errors, cooperative cancellation, Redis self-registration and graceful shutdown.

Example — the whole of ``workers/examples_hello.py`` (run it with
``python -m workers.examples_hello --port 8710``)::

    from typing import Annotated

    from pydantic import Field

    from workers.kit import Context, ProgressReporter, Toolset, Worker, WorkerSettings, main

    tools = Toolset()


    @tools.tool(idempotent=True, read_only=True, estimated_duration_ms=5)
    async def greet(
        name: Annotated[str, Field(max_length=100, pattern=r"\\S")],
        ctx: Context,
        times: Annotated[int, Field(ge=1, le=10)] = 1,
    ) -> dict[str, str]:
        '''Greet someone. ... returns {"greeting": "..."}.'''
        progress = ProgressReporter(ctx, total=times)
        for _ in range(times):
            await progress.step(message=f"greeted {name}")
        return {"greeting": " ".join([f"Hello, {name.strip()}!"] * times)}


    def build(settings: WorkerSettings | None = None) -> Worker:
        return Worker("hello", tools=tools, settings=settings, version="1.0.0")


    if __name__ == "__main__":
        main(build, prog="python -m workers.examples_hello")

Error codes are in :mod:`workers.kit.errors`; meaning checks in :mod:`workers.kit.validation`.
"""

from fastmcp import Context

from shared.settings import WorkerSettings
from workers.kit.cli import main, parse_settings
from workers.kit.errors import (
    BUSY,
    IDEMPOTENCY_CONFLICT,
    INTERNAL,
    INVALID_INPUT,
    SHUTTING_DOWN,
    TOO_LARGE,
    UNAUTHORIZED,
    UNAVAILABLE,
    invalid,
    too_large,
    tool_error,
)
from workers.kit.progress import ProgressReporter
from workers.kit.server import MCP_PATH, Worker
from workers.kit.toolset import Toolset, ToolSpec
from workers.kit.validation import (
    check_range,
    check_size,
    check_url,
    normalize_text,
    safe_relative_path,
)

__all__ = [
    "BUSY",
    "IDEMPOTENCY_CONFLICT",
    "INTERNAL",
    "INVALID_INPUT",
    "MCP_PATH",
    "SHUTTING_DOWN",
    "TOO_LARGE",
    "UNAUTHORIZED",
    "UNAVAILABLE",
    "Context",
    "ProgressReporter",
    "ToolSpec",
    "Toolset",
    "Worker",
    "WorkerSettings",
    "check_range",
    "check_size",
    "check_url",
    "invalid",
    "main",
    "normalize_text",
    "parse_settings",
    "safe_relative_path",
    "too_large",
    "tool_error",
]
