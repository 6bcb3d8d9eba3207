"""The worker kit: a production MCP worker in a few lines.

Declare tools on a :class:`Toolset`, build a :class:`Worker` from it at the entrypoint, and
the worker gets streamable HTTP at ``/mcp`` with progress, ``/health`` and ``/ready``,
``get_capabilities`` generated from the tools, correlation ids and trace context in every log
line, per-tool concurrency limits answering ``BUSY``, idempotency keys, structured
validation errors, cooperative cancellation, Redis self-registration and graceful shutdown.
A tool delegates work to other capabilities, as child jobs of its own, through
:class:`Fleet` (:mod:`workers.kit.delegation`).

Example (the full, tested version is ``examples/hello_worker.py``)::

    tools = Toolset()

    @tools.tool(idempotent=True, estimated_duration_ms=5)
    async def greet(name: str, ctx: Context) -> dict[str, str]:
        '''Greet someone; needs a name; returns {"greeting": "..."}.'''
        return {"greeting": f"Hello, {name}!"}

    main(lambda settings: Worker("hello", tools=tools, settings=settings))

Error codes are in :mod:`workers.kit.errors`; meaning checks in :mod:`workers.kit.validation`.
"""

from fastmcp import Context

from shared.settings import WorkerSettings
from workers.kit.cli import main, parse_settings
from workers.kit.delegation import (
    Child,
    ChildFailed,
    DelegationError,
    DelegationLimit,
    Fleet,
)
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
    "Child",
    "ChildFailed",
    "Context",
    "DelegationError",
    "DelegationLimit",
    "Fleet",
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
