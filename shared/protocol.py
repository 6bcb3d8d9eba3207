"""What travels on the wire between supervisor and workers, beside the MCP messages themselves.

- request ``_meta`` keys for correlation id, job id, attempt and idempotency key (W3C
  ``traceparent``/``tracestate`` ride in ``_meta`` too, under their own names);
- the HTTP headers that carry the same values;
- the encoding of a worker's structured error inside a ``ToolError`` text.

A worker error is a JSON object in the ``ToolError`` message, so both programs and LLMs can
read it::

    {"code": "BUSY", "message": "...", "field": null, "hint": "...", "retryable": true}
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict

from shared.names import (  # re-exported: the wire's names live in a module of their own
    CAPABILITIES_TOOL,
    HEADER_CORRELATION_ID,
    HEADER_IDEMPOTENCY_KEY,
    HEADER_JOB_ID,
    META_ATTEMPT,
    META_CORRELATION_ID,
    META_IDEMPOTENCY_KEY,
    META_JOB_ID,
    META_SUPERVISOR_URL,
    META_TRACEPARENT,
    META_TRACESTATE,
    WORKFLOW_CAPABILITY,
)

__all__ = [
    "CAPABILITIES_TOOL",
    "HEADER_CORRELATION_ID",
    "HEADER_IDEMPOTENCY_KEY",
    "HEADER_JOB_ID",
    "META_ATTEMPT",
    "META_CORRELATION_ID",
    "META_IDEMPOTENCY_KEY",
    "META_JOB_ID",
    "META_SUPERVISOR_URL",
    "META_TRACEPARENT",
    "META_TRACESTATE",
    "WORKFLOW_CAPABILITY",
    "ToolErrorPayload",
    "decode_tool_error",
    "encode_tool_error",
]


class ToolErrorPayload(BaseModel):
    """A worker's structured error, as carried in a ``ToolError`` message."""

    model_config = ConfigDict(extra="ignore", defer_build=True)  # built on first use

    code: str
    message: str
    field: str | None = None
    hint: str | None = None
    retryable: bool = False


def encode_tool_error(
    code: str,
    message: str,
    *,
    field: str | None = None,
    hint: str | None = None,
    retryable: bool = False,
) -> str:
    return json.dumps(
        {"code": code, "message": message, "field": field, "hint": hint, "retryable": retryable}
    )


def decode_tool_error(text: str) -> ToolErrorPayload:
    """Read a worker's error; text from a server that is not ours becomes ``TOOL_ERROR``."""
    try:
        data: Any = json.loads(text)
    except (ValueError, TypeError):
        data = None
    if isinstance(data, dict) and isinstance(data.get("code"), str):
        try:
            return ToolErrorPayload.model_validate({"message": "", **data})
        except ValueError:
            pass
    return ToolErrorPayload(code="TOOL_ERROR", message=str(text)[:2000])
