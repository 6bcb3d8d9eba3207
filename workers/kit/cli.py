"""``python -m workers.<name>``: flags over ``FLEET_*`` settings, logging, tracing, signals.

SIGTERM (or Ctrl+C) starts a graceful shutdown: the worker deregisters, stops taking calls,
lets in-flight calls finish within ``grace_s``, then cancels the rest. A second signal
cancels at once.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import ValidationError

from shared.logs import configure_logging
from shared.settings import WorkerSettings
from shared.telemetry import configure_tracing
from workers.kit.server import Worker

__all__ = ["main", "parse_settings"]

_FLAGS: dict[str, dict[str, Any]] = {
    "name": {"help": "service name (default: the worker's own)"},
    "host": {"help": "interface to bind (default 127.0.0.1)"},
    "port": {"type": int, "help": "port to bind (default 8701)"},
    "max_concurrency": {"type": int, "help": "default per-tool concurrency limit"},
    "redis_url": {"help": "Redis for shared idempotency and self-registration"},
    "advertise_url": {"help": "MCP URL supervisors should call (turns on registration)"},
    "worker_token": {"help": "require 'Authorization: Bearer <token>' on /mcp (prefer env)"},
    "allowed_hosts": {"help": "extra comma-separated Host names to accept (loopback always)"},
    "allowed_origins": {"help": "extra comma-separated browser origins to accept"},
    "key_prefix": {"help": "Redis key prefix (default 'fleet')"},
    "heartbeat_s": {"type": float, "help": "registration heartbeat interval"},
    "grace_s": {"type": float, "help": "seconds in-flight calls get on shutdown"},
    "log_format": {"choices": ["auto", "json", "console"]},
    "log_level": {"help": "DEBUG, INFO, WARNING, ERROR"},
}


def parse_settings(argv: Sequence[str] | None, *, prog: str) -> WorkerSettings:
    """Build settings once: ``FLEET_*`` environment, overridden by any flag given."""
    parser = argparse.ArgumentParser(prog=prog, description="Run an mcp-fleet worker.")
    for field, options in _FLAGS.items():
        parser.add_argument("--" + field.replace("_", "-"), dest=field, default=None, **options)
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if v is not None}
    try:
        return WorkerSettings(**overrides)
    except ValidationError as exc:
        parser.error(str(exc))


def main(
    build: Callable[[WorkerSettings], Worker], *, prog: str, argv: Sequence[str] | None = None
) -> None:
    """Entrypoint of every ``python -m workers.<name>``."""
    settings = parse_settings(argv, prog=prog)
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
