"""``python -m workers.<name>``: flags over ``FLEET_*`` settings, logging, tracing, signals.

SIGTERM (or Ctrl+C) starts a graceful shutdown: the worker deregisters, stops taking calls,
lets in-flight calls finish within ``grace_s``, then cancels the rest. A second signal
cancels at once.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Sequence

from shared.flags import parse_flags
from shared.logs import configure_logging
from shared.settings import WorkerSettings
from shared.telemetry import configure_tracing
from workers.kit.server import Worker, check_worker_bind

__all__ = ["main", "parse_settings"]

FLAGS = (
    "name",
    "host",
    "port",
    "max_concurrency",
    "redis_url",
    "advertise_url",
    "worker_token",
    "insecure",
    "allowed_hosts",
    "allowed_origins",
    "key_prefix",
    "heartbeat_s",
    "grace_s",
    "log_format",
    "log_level",
)
"""The settings a worker takes as flags; the rest are ``FLEET_*`` only."""


def parse_settings(argv: Sequence[str] | None, *, prog: str) -> WorkerSettings:
    """Build settings once: ``FLEET_*`` environment, overridden by any flag given."""
    return parse_flags(
        WorkerSettings, FLAGS, argv, prog=prog, description="Run an mcp-fleet worker."
    )


def main(
    build: Callable[[WorkerSettings], Worker], *, prog: str, argv: Sequence[str] | None = None
) -> None:
    """Entrypoint of every ``python -m workers.<name>``."""
    settings = parse_settings(argv, prog=prog)
    check_worker_bind(settings)  # a refusal exits 1 with its one-line message
    configure_logging(settings.log_format, settings.log_level)
    # FastMCP logs through its own rich console handler; send it to the root handler
    # instead, so a container's stderr stays one log format.
    library = logging.getLogger("fastmcp")
    library.handlers.clear()
    library.propagate = True
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    worker = build(settings)
    configure_tracing(worker.name)
    asyncio.run(_run(worker))


async def _run(worker: Worker) -> None:
    loop = asyncio.get_running_loop()
    signals_seen = 0

    def on_signal() -> None:
        nonlocal signals_seen
        signals_seen += 1
        worker.request_shutdown(grace_s=0 if signals_seen > 1 else None)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    await worker.serve()
