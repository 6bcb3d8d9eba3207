"""The supervisor's MCP client: calls to workers over streamable HTTP, every protocol revision,
every answer classified.

- :mod:`.pool` — :class:`WorkerPool`, the connections keyed by worker URL (shared keep-alive
  session, in-flight bound, tracing) and :class:`CallResult`; it is the
  :class:`supervisor.types.WorkerCaller`.
- :mod:`.connection` — :class:`Connection`, one endpoint: requests, look-again after a refusal,
  the one re-send after a stale keep-alive connection, legacy cancellation.
- :mod:`.revisions` — which MCP revision an endpoint speaks (``server/discover`` probe, legacy
  ``initialize`` handshake and session) and how a request is framed for it.
- :mod:`.answers` — reading a JSON or event-stream answer down to our request's response;
  notifications and the server's own requests on the way.
- :mod:`.errors` — the one table from HTTP statuses, JSON-RPC error codes, transport
  exceptions and tool errors to :class:`shared.errors.WorkerCallError` classes.
- :mod:`.results` — a tool result's shape, its text and the job's value.

    async with WorkerPool(token=None) as pool:
        result = await pool.call("http://w:8701/mcp", "noop", {}, timeout=5)
        result.value, result.content
"""

from supervisor.calls.answers import LogHandler, ProgressHandler
from supervisor.calls.connection import Connection, ReuseConnector
from supervisor.calls.pool import CallResult, WorkerPool, call_headers
from supervisor.calls.results import result_value
from supervisor.calls.revisions import LEGACY_VERSIONS, MODERN_VERSION, ServerInfo

__all__ = [
    "LEGACY_VERSIONS",
    "MODERN_VERSION",
    "CallResult",
    "Connection",
    "LogHandler",
    "ProgressHandler",
    "ReuseConnector",
    "ServerInfo",
    "WorkerPool",
    "call_headers",
    "result_value",
]
