"""A kit worker with the tools the progress, watchers' impact and memory measurements need.

- ``ticks(n, go, rate=0)``: waits until the file ``go`` exists (so every watcher is connected
  before the first event), then reports progress ``n`` times through the kit's reporter, each
  message the wall time it was sent at: as fast as it can, or ``rate`` events a second on a
  schedule from the go (a late step does not push the rest back).
- ``paced(n, seconds, go)``: once ``go`` exists, reports progress ``n`` times evenly over
  ``seconds`` (the last at the end): a job of known length that reports steadily.
- ``hold(go)``: at most one runs at once; it waits for ``go`` (which never comes), so every
  other ``hold`` job stays queued.

    python -m bench.speed.ticks_worker --port PORT
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Annotated

from pydantic import Field

from workers.kit import Context, ProgressReporter, Toolset, Worker, WorkerSettings, main

tools = Toolset()
_GO_WAIT_S = 120.0


async def _wait_for(go: str) -> None:
    deadline = time.monotonic() + _GO_WAIT_S
    path = Path(go)
    while not path.exists():  # noqa: ASYNC240 (one stat of a local file: microseconds)
        if time.monotonic() > deadline:
            raise TimeoutError(f"{go} never appeared")
        await asyncio.sleep(0.001)


@tools.tool(idempotent=True, read_only=True, estimated_duration_ms=100, max_concurrency=256)
async def ticks(
    n: Annotated[int, Field(ge=0, le=1_000_000)],
    go: str,
    ctx: Context,
    rate: Annotated[float, Field(ge=0, le=1_000_000)] = 0,
) -> dict[str, int]:
    """Report progress n times once the file `go` exists, as fast as possible or `rate` a
    second; each message is the send time."""
    await _wait_for(go)
    reporter = ProgressReporter(ctx, total=n)
    start = time.monotonic()
    for i in range(n):
        if rate:
            await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
        await reporter.step(message=repr(time.time()))
    return {"n": n}


@tools.tool(idempotent=True, read_only=True, estimated_duration_ms=2000, max_concurrency=256)
async def paced(
    n: Annotated[int, Field(ge=1, le=100_000)],
    seconds: Annotated[float, Field(gt=0, le=600)],
    go: str,
    ctx: Context,
) -> dict[str, float]:
    """Once the file `go` exists, report progress n times evenly over `seconds`; `took_s` is
    the time from the go to the last report, as this worker saw it."""
    await _wait_for(go)
    start = time.monotonic()
    reporter = ProgressReporter(ctx, total=n)
    for i in range(1, n + 1):
        # Each step on a schedule from the start, so a late step does not push the rest back:
        # the job lasts `seconds` unless this worker itself is starved.
        await asyncio.sleep(max(0.0, start + i * seconds / n - time.monotonic()))
        await reporter.step()
    return {"n": n, "took_s": time.monotonic() - start}


@tools.tool(idempotent=True, read_only=True, estimated_duration_ms=1000, max_concurrency=1)
async def hold(go: str) -> dict[str, bool]:
    """Wait for the file `go`; one at a time, so the rest queue."""
    await _wait_for(go)
    return {"ok": True}


def build(settings: WorkerSettings | None = None) -> Worker:
    return Worker("ticks", tools=tools, settings=settings, version="1.0.0")


if __name__ == "__main__":
    main(build, prog="python -m bench.speed.ticks_worker")
