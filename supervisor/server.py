"""Running the supervisor process: its flags, the bind-safety rule and uvicorn."""

from __future__ import annotations

from collections.abc import Sequence

from shared import SupervisorSettings, configure_logging, configure_tracing
from shared.connections import ConnectionLimits
from shared.flags import parse_flags
from shared.hosts import InsecureBind
from shared.hosts import check_bind as _check_bind
from shared.serving import run
from supervisor.app import create_app

__all__ = ["FLAGS", "InsecureBind", "check_bind", "parse_settings", "serve"]

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


def parse_settings(
    argv: Sequence[str] | None, *, prog: str = "python -m supervisor.server"
) -> SupervisorSettings:
    """Build settings once: ``FLEET_*`` environment, overridden by any flag given."""
    return parse_flags(
        SupervisorSettings, FLAGS, argv, prog=prog,
        description="Run the supervisor (HTTP API, dispatcher, registry) until SIGTERM or Ctrl-C.",
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
    check_bind(settings)
    configure_logging(settings.log_format, settings.log_level)
    configure_tracing("mcp-fleet-supervisor")
    run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        limits=ConnectionLimits.of(settings),
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":  # `python -m supervisor.server`, the same as `fleet supervisor`
    serve(parse_settings(None))
