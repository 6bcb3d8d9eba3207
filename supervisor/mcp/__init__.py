"""The fleet as one MCP server at ``/mcp`` (:class:`~supervisor.mcp.face.McpFace`).

- :mod:`~supervisor.mcp.face` — the server: the catalog as tools (a call is a job), fleet
  tools, resources, authentication
- :mod:`~supervisor.mcp.catalog` — the catalog as tools; session hosts told of changes
- :mod:`~supervisor.mcp.tasks` — the tasks extension over jobs
- :mod:`~supervisor.mcp.results` — a job as a tool result and as a task
"""

from supervisor.mcp.face import McpFace

__all__ = ["McpFace"]
