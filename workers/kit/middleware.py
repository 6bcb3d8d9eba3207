"""The one FastMCP middleware that gives every tool call the kit's behaviour.

For a declared tool, in this order:

1. read correlation id / job id / idempotency key / trace context and bind them into logs;
2. refuse at once while draining (``SHUTTING_DOWN``, retryable);
3. with an idempotency key: replay a stored success, or wait for a running duplicate;
4. take a concurrency slot or answer ``BUSY`` (retryable) at once — never queue;
5. run the tool in its own task (so a draining worker can cancel it and still answer),
   turning pydantic argument errors into ``INVALID_INPUT`` naming the field and any
   unexpected exception into a masked ``INTERNAL``;
6. log one summary line: tool, correlation id, duration_ms, outcome, code.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import mcp_types as mt
from fastmcp.exceptions import ToolError
from fastmcp.exceptions import ValidationError as ArgumentsError
from fastmcp.server.middleware import CallNext, Middleware, MiddlewareContext
from fastmcp.tools.base import ToolResult
from opentelemetry import trace
from pydantic import ValidationError

from shared.logs import get_logger
from shared.protocol import decode_tool_error, encode_tool_error
from shared.telemetry import labels
from workers.kit.concurrency import LoadTracker
from workers.kit.context import CallInfo, call_scope, read_call_info
from workers.kit.errors import BUSY, INTERNAL, SHUTTING_DOWN, from_validation_error, tool_error
from workers.kit.idempotency import IdempotencyStore, args_digest, run_once
from workers.kit.toolset import ToolSpec

__all__ = ["KitMiddleware", "Runtime"]

_log = get_logger("workers.kit.call")


@dataclass
class Runtime:
    """The mutable state of one running worker, shared by middleware, health and server."""

    service: str
    specs: dict[str, ToolSpec]
    tracker: LoadTracker
    idempotency: IdempotencyStore
    draining: bool = False
    shutdown_cancel: bool = False
    """Set when the grace period is over and the remaining calls are being cancelled."""


class KitMiddleware(Middleware):
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    async def on_call_tool(
        self,
        context: MiddlewareContext[mt.CallToolRequestParams],
        call_next: CallNext[mt.CallToolRequestParams, ToolResult],
    ) -> ToolResult:
        name = context.message.name
        info = read_call_info(context.fastmcp_context)
        with call_scope(info, name):
            span = trace.get_current_span()
            if span.is_recording():  # no attributes to build for a span nobody records
                span.set_attributes(
                    labels(
                        **{
                            "fleet.correlation_id": info.correlation_id,
                            "fleet.job_id": info.job_id,
                            "fleet.attempt": info.attempt,
                        }
                    )
                )
            spec = self.rt.specs.get(name)
            if spec is None:  # get_capabilities, or a name FastMCP will answer "unknown"
                return await call_next(context)
            started = time.perf_counter()
            outcome, code = "ok", None
            try:
                result, replayed = await self._call(spec, info, context, call_next)
                if replayed:
                    outcome = "replayed"
                return result
            except ToolError as exc:
                outcome, code = "error", decode_tool_error(str(exc)).code
                raise
            except asyncio.CancelledError:
                outcome = "cancelled"
                raise
            finally:
                _log.info(
                    "tool.call",
                    duration_ms=round((time.perf_counter() - started) * 1000, 2),
                    outcome=outcome,
                    code=code,
                )

    async def _call(
        self,
        spec: ToolSpec,
        info: CallInfo,
        context: MiddlewareContext[mt.CallToolRequestParams],
        call_next: CallNext[mt.CallToolRequestParams, ToolResult],
    ) -> tuple[ToolResult, bool]:
        if self.rt.draining:
            raise tool_error(
                SHUTTING_DOWN,
                "this worker is shutting down and takes no new calls",
                hint="Retry on another replica.",
                retryable=True,
            )

        async def run() -> ToolResult:
            return await self._run_in_slot(spec, context, call_next)

        if info.idempotency_key is None:
            return await run(), False
        digest = args_digest(spec.name, context.message.arguments or {})
        return await run_once(self.rt.idempotency, info.idempotency_key, digest, run)

    async def _run_in_slot(
        self,
        spec: ToolSpec,
        context: MiddlewareContext[mt.CallToolRequestParams],
        call_next: CallNext[mt.CallToolRequestParams, ToolResult],
    ) -> ToolResult:
        slots = self.rt.tracker.slots[spec.name]
        if not slots.try_acquire():
            raise tool_error(
                BUSY,
                f"{spec.name} is already running {slots.limit} call(s), its limit",
                hint="Retry after a short backoff, or call another replica.",
                retryable=True,
            )
        task: asyncio.Task[ToolResult] = asyncio.create_task(self._body(context, call_next))
        self.rt.tracker.track(task)

        def done(t: asyncio.Task[ToolResult]) -> None:
            slots.release()
            self.rt.tracker.untrack(t)

        task.add_done_callback(done)
        try:
            # Cancelling this (the caller went away) cancels the awaited task too.
            return await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            caller_cancelled = current is not None and current.cancelling() > 0
            if task.cancelled() and self.rt.shutdown_cancel and not caller_cancelled:
                raise tool_error(
                    SHUTTING_DOWN,
                    "the call was stopped because the worker shut down before it finished",
                    hint="Retry on another replica.",
                    retryable=True,
                ) from None
            raise

    @staticmethod
    async def _body(
        context: MiddlewareContext[mt.CallToolRequestParams],
        call_next: CallNext[mt.CallToolRequestParams, ToolResult],
    ) -> ToolResult:
        try:
            return await call_next(context)
        except ArgumentsError as exc:
            if isinstance(exc.__cause__, ValidationError):
                raise from_validation_error(exc.__cause__, context.message.arguments) from None
            raise tool_error("INVALID_INPUT", str(exc)) from None
        except ToolError as exc:
            raise _structured(exc) from exc.__cause__


def _structured(exc: ToolError) -> ToolError:
    """Make every ToolError structured; an unexpected exception stays masked as INTERNAL."""
    text = str(exc)
    if decode_tool_error(text).code != "TOOL_ERROR":
        return exc
    cause: Any = exc.__cause__
    if cause is not None:
        _log.error("tool.crashed", error_type=type(cause).__name__, exc_info=cause)
        return tool_error(
            INTERNAL,
            "the tool failed unexpectedly; details are in the worker log under this "
            "call's correlation id",
            retryable=False,
        )
    return ToolError(encode_tool_error("TOOL_ERROR", text))
