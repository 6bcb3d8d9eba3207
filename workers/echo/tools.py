"""The echo worker's tools: tiny, deterministic, and exactly what fleet tests and benches need."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from pydantic import Field

from workers.kit import Context, ProgressReporter, Toolset, tool_error

__all__ = ["tools"]

tools = Toolset()


@tools.tool(idempotent=True, read_only=True, estimated_duration_ms=1, max_concurrency=256)
async def noop() -> dict[str, bool]:
    """Do nothing and answer at once. Call it to measure round-trip overhead or check that the
    worker answers. Needs no arguments; returns {"ok": true}."""
    return {"ok": True}


@tools.tool(idempotent=True, read_only=True, estimated_duration_ms=1)
async def echo(value: Any) -> dict[str, Any]:
    """Return the value it is given, unchanged. Call it to test that arbitrary JSON survives a
    round trip. Needs `value` (any JSON); returns {"value": <the same value>}."""
    return {"value": value}


@tools.tool(idempotent=True, read_only=True, estimated_duration_ms=1000)
async def sleep(
    seconds: Annotated[float, Field(ge=0, le=300, description="How long to sleep, 0-300 s.")],
    ctx: Context,
    steps: Annotated[int, Field(ge=1, le=1000, description="Progress reports to send.")] = 10,
) -> dict[str, float]:
    """Sleep for `seconds`, reporting progress `steps` times; stops at once when cancelled.
    Call it to simulate a long job or to test timeouts and cancellation. Needs `seconds`
    (0-300) and optionally `steps` (1-1000, default 10); returns {"slept": seconds}."""
    progress = ProgressReporter(ctx, total=steps)
    for i in range(1, steps + 1):
        await asyncio.sleep(seconds / steps)
        await progress.step(message=f"slept {seconds * i / steps:.2f}/{seconds:g} s")
    return {"slept": seconds}


@tools.tool(estimated_duration_ms=1)
async def fail(
    code: Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9_]{0,63}$")] = "BOOM",
    message: Annotated[str, Field(max_length=2000)] = "failure requested by the caller",
    retryable: bool = False,
) -> dict[str, Any]:
    """Always fail with a structured error carrying `code`, `message` and `retryable`. Call it
    to test how errors and retries are handled. Needs nothing (defaults: code "BOOM",
    retryable false); never returns a result."""
    raise tool_error(
        code, message, hint="This tool always fails; that is its job.", retryable=retryable
    )


@tools.tool(idempotent=True, read_only=True, estimated_duration_ms=10)
async def progress(
    steps: Annotated[int, Field(ge=0, le=10_000, description="Progress reports to send.")],
    ctx: Context,
    delay_ms: Annotated[int, Field(ge=0, le=60_000, description="Pause between steps.")] = 0,
) -> dict[str, int]:
    """Report progress `steps` times (message "step i/steps"), pausing `delay_ms` between
    steps. Call it to test progress streaming. Needs `steps` (0-10000) and optionally
    `delay_ms` (0-60000); returns {"steps": steps}."""
    reporter = ProgressReporter(ctx, total=steps)
    for i in range(1, steps + 1):
        if delay_ms:
            await asyncio.sleep(delay_ms / 1000)
        await reporter.step(message=f"step {i}/{steps}")
    return {"steps": steps}
