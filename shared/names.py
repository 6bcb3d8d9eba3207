"""The names the fleet's programs agree on: ``_meta`` keys, HTTP headers, reserved
capabilities. Plain strings, no imports: the CLI reads them without loading pydantic
(:mod:`shared.protocol` re-exports them beside the worker error's model)."""

CAPABILITIES_TOOL = "get_capabilities"

META_CORRELATION_ID = "mcp-fleet/correlation-id"
META_JOB_ID = "mcp-fleet/job-id"
META_ATTEMPT = "mcp-fleet/attempt"
META_IDEMPOTENCY_KEY = "mcp-fleet/idempotency-key"
META_TRACEPARENT = "traceparent"
META_TRACESTATE = "tracestate"
META_SUPERVISOR_URL = "mcp-fleet/supervisor"
"""The URL of the supervisor that made the call (its ``FLEET_PUBLIC_URL``, else the URL it
serves on): where a tool delegating work to the fleet submits it."""

WORKFLOW_CAPABILITY = "fleet:workflow"
"""The capability of a workflow job: run by the supervisor itself, never by a worker (no MCP
tool name has a colon in it)."""

HEADER_CORRELATION_ID = "X-Correlation-ID"
HEADER_JOB_ID = "X-Fleet-Job-ID"
HEADER_IDEMPOTENCY_KEY = "Idempotency-Key"
