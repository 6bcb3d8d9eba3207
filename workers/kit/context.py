"""Who is calling: correlation id, job id, attempt, idempotency key and trace context.

They come from the request ``_meta`` (works in memory and over HTTP) and, over HTTP, from
headers when ``_meta`` lacks them. :func:`call_scope` binds them into structlog's
contextvars so every line a tool logs carries them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from fastmcp import Context

from shared.logs import bind
from shared.protocol import (
    HEADER_CORRELATION_ID,
    HEADER_IDEMPOTENCY_KEY,
    HEADER_JOB_ID,
    META_ATTEMPT,
    META_CORRELATION_ID,
    META_IDEMPOTENCY_KEY,
    META_JOB_ID,
    META_TRACEPARENT,
)
from shared.telemetry import current_trace_id

__all__ = ["CallInfo", "call_scope", "read_call_info"]

_MAX_ID = 200


@dataclass(frozen=True, slots=True)
class CallInfo:
    correlation_id: str
    job_id: str | None = None
    attempt: int | None = None
    idempotency_key: str | None = None
    traceparent: str | None = None


def _clean(value: Any) -> str | None:
    """An id from the wire: a short printable string, or nothing."""
    if value is None:
        return None
    text = str(value).strip()
    if not text or len(text) > _MAX_ID or not text.isprintable():
        return None
    return text


def read_call_info(ctx: Context | None) -> CallInfo:
    """Read the caller's ids from ``_meta``, then headers; invent a correlation id if none."""
    meta: Mapping[str, Any] = {}
    headers: Mapping[str, str] = {}
    rc = ctx.request_context if ctx is not None else None
    if rc is not None:
        meta = rc.meta or {}
        if rc.request is not None:
            headers = rc.request.headers

    def pick(meta_key: str, header: str | None = None) -> str | None:
        found = _clean(meta.get(meta_key))
        if found is None and header is not None:
            found = _clean(headers.get(header))
        return found

    attempt_raw = pick(META_ATTEMPT)
    return CallInfo(
        correlation_id=pick(META_CORRELATION_ID, HEADER_CORRELATION_ID) or uuid.uuid4().hex,
        job_id=pick(META_JOB_ID, HEADER_JOB_ID),
        attempt=int(attempt_raw) if attempt_raw and attempt_raw.isdigit() else None,
        idempotency_key=pick(META_IDEMPOTENCY_KEY, HEADER_IDEMPOTENCY_KEY),
        traceparent=pick(META_TRACEPARENT, "traceparent"),
    )


@contextmanager
def call_scope(info: CallInfo, tool: str) -> Iterator[None]:
    """Bind the call's ids (and the trace id of the server span) into the log context."""
    with bind(
        correlation_id=info.correlation_id,
        job_id=info.job_id,
        attempt=info.attempt,
        tool=tool,
        trace_id=current_trace_id(),
    ):
        yield
