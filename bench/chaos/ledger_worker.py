"""The ledger worker: a kit worker whose tools write down every execution, for the chaos suite.

    python -m bench.chaos.ledger_worker --ledger /tmp/ledger.jsonl --port 8801 \\
        [--redis-url redis://127.0.0.1:6390/0 --advertise-url http://127.0.0.1:8801/mcp]

Any flag of ``python -m workers.<name>`` works (they go to the kit); ``--ledger`` (or the
environment variable ``CHAOS_LEDGER``) names the ledger file. With ``--redis-url`` the
replicas de-duplicate through Redis and, with ``--advertise-url``, register themselves, as
compose runs workers.

Two tools with one body, differing only in what they declare:

- ``ledger_idem`` (``idempotent=True``): a supervisor may run it again freely;
- ``ledger_once`` (not idempotent): it must never run twice for one job.

Both take ``ms`` (how long to work) and ``steps`` (progress reports spread over ``ms``).

The ledger is one JSON object per line, appended with ``O_APPEND`` and ``fsync``'d before the
tool goes on, so a ``kill -9`` a moment later cannot lose it and several replicas can share
one file. Each line has ``e`` (what happened), ``job`` and ``attempt`` (from the request
``_meta`` the supervisor sends: ``mcp-fleet/job-id``, ``mcp-fleet/attempt``), ``key`` (the
idempotency key), ``tool``, ``pid``, ``port`` and ``t`` (wall clock). ``e`` is one of:

- ``call``: a ``tools/call`` reached this worker (written before the kit's de-duplication,
  so a re-delivery that the kit answers from its stored result still shows here);
- ``start``: the tool's body began, i.e. the call really executes;
- ``complete``: the body finished its work and is about to return its result.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import mcp_types as mt
from fastmcp.server.middleware import CallNext, Middleware, MiddlewareContext
from fastmcp.tools.base import ToolResult
from pydantic import Field

from workers.kit import Context, ProgressReporter, Toolset, Worker, WorkerSettings, main
from workers.kit.context import CallInfo, read_call_info

__all__ = ["LEDGER_TOOLS", "Ledger", "build"]

LEDGER_TOOLS = ("ledger_idem", "ledger_once")
VERSION = "1.0.0"
_MAX_CONCURRENCY = 16


class Ledger:
    """Appends one fsync'd JSON line per record; safe across threads and processes."""

    def __init__(self, path: Path, port: int) -> None:
        self.path = path
        self.port = port
        self._lock = threading.Lock()

    def write(self, event: str, tool: str, info: CallInfo) -> None:
        record = {
            "e": event,
            "job": info.job_id,
            "attempt": info.attempt,
            "key": info.idempotency_key,
            "tool": tool,
            "pid": os.getpid(),
            "port": self.port,
            "t": time.time(),
        }
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line)  # one write of a short line: O_APPEND keeps it whole
                os.fsync(fd)
            finally:
                os.close(fd)


class _Deliveries(Middleware):
    """Outermost middleware: records every call of a ledger tool before the kit sees it."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    async def on_call_tool(
        self,
        context: MiddlewareContext[mt.CallToolRequestParams],
        call_next: CallNext[mt.CallToolRequestParams, ToolResult],
    ) -> ToolResult:
        name = context.message.name
        if name in LEDGER_TOOLS:
            self.ledger.write("call", name, read_call_info(context.fastmcp_context))
        return await call_next(context)


Millis = Annotated[int, Field(ge=0, le=300_000, description="How long to work, in ms.")]
Steps = Annotated[int, Field(ge=1, le=1000, description="Progress reports over that time.")]


def toolset(ledger: Ledger) -> Toolset:
    """The two ledger tools, writing to ``ledger``."""
    tools = Toolset()

    async def work(tool: str, ctx: Context, ms: int, steps: int) -> dict[str, Any]:
        info = read_call_info(ctx)
        ledger.write("start", tool, info)
        progress = ProgressReporter(ctx, total=steps)
        for i in range(1, steps + 1):
            await asyncio.sleep(ms / steps / 1000)
            await progress.step(message=f"{tool} step {i}/{steps}")
        ledger.write("complete", tool, info)
        return {"job": info.job_id, "attempt": info.attempt, "pid": os.getpid()}

    @tools.tool(idempotent=True, max_concurrency=_MAX_CONCURRENCY, estimated_duration_ms=500)
    async def ledger_idem(ctx: Context, ms: Millis = 500, steps: Steps = 5) -> dict[str, Any]:
        """Work for `ms` milliseconds reporting progress `steps` times, writing the start and
        the completion to the ledger. Safe to run again. Returns {"job", "attempt", "pid"}."""
        return await work("ledger_idem", ctx, ms, steps)

    @tools.tool(idempotent=False, max_concurrency=_MAX_CONCURRENCY, estimated_duration_ms=500)
    async def ledger_once(ctx: Context, ms: Millis = 500, steps: Steps = 5) -> dict[str, Any]:
        """Like ledger_idem, but declared not idempotent: a job must never start it twice.
        Returns {"job", "attempt", "pid"}."""
        return await work("ledger_once", ctx, ms, steps)

    return tools


def build(settings: WorkerSettings, ledger_path: Path) -> Worker:
    """The ledger worker (service ``ledger``) writing to ``ledger_path``."""
    ledger = Ledger(ledger_path, settings.port)
    worker = Worker(
        "ledger",
        tools=toolset(ledger),
        settings=settings,
        version=VERSION,
        instructions="Chaos-suite tools that record every execution in a ledger file.",
    )
    # First in the list is outermost: it sees the call before the kit's idempotency replay.
    worker.server.middleware.insert(0, _Deliveries(ledger))
    return worker


def run(argv: Sequence[str] | None = None) -> None:
    prog = "python -m bench.chaos.ledger_worker"
    parser = argparse.ArgumentParser(prog=prog, add_help=False)
    parser.add_argument("--ledger", type=Path, default=os.environ.get("CHAOS_LEDGER"))
    args, rest = parser.parse_known_args(argv)
    if args.ledger is None:
        parser.error("--ledger FILE (or CHAOS_LEDGER) is required")
    ledger_path: Path = args.ledger.resolve()
    main(lambda settings: build(settings, ledger_path), prog=prog, argv=rest)


if __name__ == "__main__":
    run()
