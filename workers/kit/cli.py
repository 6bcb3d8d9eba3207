"""``python -m workers.<name>``: flags over ``FLEET_*`` settings, logging, tracing, signals.

SIGTERM (or Ctrl+C) starts a graceful shutdown: the worker deregisters, stops taking calls,
lets in-flight calls finish within ``grace_s``, then cancels the rest. A second signal
cancels at once.

Start-up problems are one line on stderr and an exit code (:mod:`shared.startup`); the port
is bound before the worker is built, so a busy port is said at once.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Callable, Sequence

from shared.flags import parse_flags
from shared.logs import configure_logging
from shared.settings import WorkerSettings
from shared.startup import EXIT_CODES_HELP, ExitCode, bind_socket, exit_on_startup_error
from shared.telemetry import configure_tracing
from workers.kit.server import Worker, check_worker_bind

__all__ = ["AUTH_FIELDS", "main", "parse_settings"]

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

AUTH_FIELDS = ("worker_token", "registration_secret")
"""Settings whose bad value is a token problem (exit 4) rather than a usage one (exit 2)."""


def parse_settings(argv: Sequence[str] | None, *, prog: str) -> WorkerSettings:
    """Build settings once: ``FLEET_*`` environment, overridden by any flag given."""
    return parse_flags(
        WorkerSettings, FLAGS, argv, prog=prog, description="Run an mcp-fleet worker.",
        epilog=EXIT_CODES_HELP,
        exit_codes=dict.fromkeys(AUTH_FIELDS, int(ExitCode.AUTH_CONFIG)),
    )  # fmt: skip


def main(
    build: Callable[[WorkerSettings], Worker], *, prog: str, argv: Sequence[str] | None = None
) -> None:
    """Entrypoint of every ``python -m workers.<name>``."""
    settings = parse_settings(argv, prog=prog)  # bad flags: one line, exit 2 (or 4)
    debug = logging.getLevelNamesMapping().get(settings.log_level.upper()) == logging.DEBUG
    with exit_on_startup_error(prog, debug=debug):
        _start(build, settings)


def _start(build: Callable[[WorkerSettings], Worker], settings: WorkerSettings) -> None:
    check_worker_bind(settings)
    sock = bind_socket(settings.host, settings.port)
    configure_logging(settings.log_format, settings.log_level)
    # FastMCP logs through its own rich console handler; send it to the root handler
    # instead, so a container's stderr stays one log format.
    library = logging.getLogger("fastmcp")
    library.handlers.clear()
    library.propagate = True
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    worker = build(settings)
    configure_tracing(worker.name)
    with _runner() as runner:
        runner.run(_run(worker, sock))


def _runner() -> asyncio.Runner:
    """On uvloop when it is installed (the worker extra brings it), as uvicorn runs the
    supervisor: the event loop is a good part of a no-op call's CPU."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - platforms without uvloop (Windows)
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)


async def _run(worker: Worker, sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    signals_seen = 0

    def on_signal() -> None:
        nonlocal signals_seen
        signals_seen += 1
        worker.request_shutdown(grace_s=0 if signals_seen > 1 else None)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    await worker.serve(sockets=[sock], settle=True)
