"""Running the supervisor process: its flags, the bind-safety rule and uvicorn.

Start-up problems are one line on stderr and an exit code (:mod:`shared.startup`). The port
is bound before the application is imported, so a busy port is said at once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from shared import SupervisorSettings, configure_logging, configure_tracing
from shared.connections import ConnectionLimits
from shared.flags import parse_flags
from shared.hosts import InsecureBind
from shared.hosts import check_bind as _check_bind
from shared.serving import run
from shared.startup import EXIT_CODES_HELP, ExitCode, bind_socket, exit_on_startup_error

__all__ = ["AUTH_FIELDS", "FLAGS", "InsecureBind", "check_bind", "main", "parse_settings", "serve"]

FLAGS = (
    "host",
    "port",
    "redis_url",
    "workers",
    "api_tokens",
    "worker_token",
    "insecure",
    "allowed_hosts",
    "allowed_origins",
    "log_format",
    "log_level",
)
"""The settings the supervisor takes as flags; the rest are ``FLEET_*`` only."""

AUTH_FIELDS = (
    "",  # the model's own check: FLEET_JWKS_URL and FLEET_JWT_ISSUER go together
    "api_tokens",
    "token_tenants",
    "jwt_algorithms",
    "jwt_tenant_claim",
    "registration_secret",
    "worker_token",
    "worker_tokens",
)
"""Settings whose bad value is a token problem (exit 4) rather than a usage one (exit 2)."""


def parse_settings(
    argv: Sequence[str] | None, *, prog: str = "python -m supervisor.server"
) -> SupervisorSettings:
    """Build settings once: ``FLEET_*`` environment, overridden by any flag given."""
    return parse_flags(
        SupervisorSettings, FLAGS, argv, prog=prog,
        description="Run the supervisor (HTTP API, dispatcher, registry) until SIGTERM or Ctrl-C.",
        epilog=EXIT_CODES_HELP,
        exit_codes=dict.fromkeys(AUTH_FIELDS, int(ExitCode.AUTH_CONFIG)),
    )  # fmt: skip


def check_bind(settings: SupervisorSettings) -> None:
    """With no API tokens nor JWT issuer the supervisor only binds to loopback, unless told it
    is insecure."""
    _check_bind(
        settings.host,
        settings.port,
        missing="" if settings.auth_enabled else "API tokens",
        fix="FLEET_API_TOKENS=token1,token2 (clients send 'Authorization: Bearer <token>'), "
        "or FLEET_JWKS_URL and FLEET_JWT_ISSUER for JWTs",
        insecure=settings.insecure,
    )


def serve(settings: SupervisorSettings) -> None:
    """Check the bind, bind, then build the app and serve until SIGTERM or Ctrl-C; a problem
    on the way raises :class:`shared.startup.StartupError` (or the app's own exception)."""
    check_bind(settings)
    sock = bind_socket(settings.host, settings.port)
    if settings.port == 0:  # its URL (resource_url: workers delegate to it) names the port
        settings = settings.model_copy(update={"port": sock.getsockname()[1]})
    configure_logging(settings.log_format, settings.log_level)
    configure_tracing("mcp-fleet-supervisor")
    from supervisor.app import create_app  # after the bind: a busy port is said at once

    run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        sockets=[sock],
        limits=ConnectionLimits.of(settings),
        timeout_graceful_shutdown=10,
        log_config=None,  # uvicorn's records go through the one log format (shared.logs)
    )


def main(argv: Sequence[str] | None = None, *, prog: str = "python -m supervisor.server") -> None:
    """The whole process: settings, then :func:`serve`; start-up problems exit in one line."""
    settings = parse_settings(argv, prog=prog)  # bad flags: one line, exit 2 (or 4)
    debug = logging.getLevelNamesMapping().get(settings.log_level.upper()) == logging.DEBUG
    with exit_on_startup_error(prog, debug=debug):
        serve(settings)


if __name__ == "__main__":  # `python -m supervisor.server`, the same as `fleet supervisor`
    main()
