"""The fleet as one MCP server at ``/mcp`` (:class:`~supervisor.mcp.face.McpFace`).

- :mod:`~supervisor.mcp.mount` — the ``/mcp`` route: the face, built at the first ``/mcp``
  request (FastMCP costs about a second to import, which the start need not pay)
- :mod:`~supervisor.mcp.face` — the server: the catalog as tools (a call is a job), fleet
  tools, resources, authentication
- :mod:`~supervisor.mcp.catalog` — the catalog as tools; session hosts told of changes
- :mod:`~supervisor.mcp.tasks` — the tasks extension over jobs
- :mod:`~supervisor.mcp.results` — a job as a tool result and as a task
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from supervisor.mcp.mount import McpMount

if TYPE_CHECKING:
    from supervisor.mcp.face import McpFace

__all__ = ["McpFace", "McpMount"]


def __getattr__(name: str) -> Any:
    # McpFace on demand: importing the package (for McpMount) must not import FastMCP.
    if name == "McpFace":
        from supervisor.mcp.face import McpFace

        return McpFace
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
