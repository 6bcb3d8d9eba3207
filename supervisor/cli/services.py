"""``fleet supervisor`` and ``fleet worker NAME``: run the services. Flags override FLEET_*."""

from __future__ import annotations

import os
import sys
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from supervisor.cli.base import Exit, app, die, state

__all__ = ["WORKERS", "worker_argv"]

WORKERS = ("echo", "data", "text")
"""Example workers shipped in this distribution (``python -m workers.NAME``)."""


def _given(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


@app.command()
def supervisor(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Bind address [FLEET_HOST; 127.0.0.1].")] = None,
    port: Annotated[int | None, typer.Option(help="Port [FLEET_PORT; 8700].")] = None,
    redis_url: Annotated[
        str | None, typer.Option(help="memory:// or redis://... [FLEET_REDIS_URL].")
    ] = None,
    workers: Annotated[
        str | None, typer.Option(help="Comma-separated worker MCP URLs [FLEET_WORKERS].")
    ] = None,
    api_tokens: Annotated[
        str | None, typer.Option(help="Comma-separated API tokens [FLEET_API_TOKENS].")
    ] = None,
    worker_token: Annotated[
        str | None, typer.Option(help="Token sent to workers [FLEET_WORKER_TOKEN].")
    ] = None,
    insecure: Annotated[
        bool | None,
        typer.Option("--insecure/--secure", help="Allow a non-loopback bind with no tokens."),
    ] = None,
    log_format: Annotated[str | None, typer.Option(help="auto, json or console.")] = None,
    log_level: Annotated[str | None, typer.Option(help="DEBUG, INFO, WARNING, ERROR.")] = None,
) -> None:
    """Run the supervisor (HTTP API, dispatcher, registry) until SIGTERM or Ctrl-C."""
    from shared import SupervisorSettings

    st = state(ctx)
    overrides = _given(
        host=host,
        port=port,
        redis_url=redis_url,
        workers=workers,
        api_tokens=api_tokens,
        worker_token=worker_token,
        insecure=insecure,
        log_format=log_format,
        log_level=log_level,
    )
    try:
        settings = SupervisorSettings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        die(f"{'.'.join(map(str, first['loc']))}: {first['msg']}", Exit.BAD_INPUT, st.err)
    # Imported here: the service stack costs seconds to import; `fleet jobs` should not pay.
    from supervisor.server import InsecureBind, check_bind, serve

    try:
        check_bind(settings)
    except InsecureBind as exc:
        die(str(exc.code), Exit.BAD_INPUT, st.err)
    try:
        serve(settings)
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
    except OSError as exc:  # e.g. the port is taken
        die(f"cannot serve on {settings.host}:{settings.port}: {exc.strerror or exc}",
            Exit.BAD_INPUT, st.err)  # fmt: skip


def worker_argv(name: str, flags: dict[str, Any], extra: list[str]) -> list[str]:
    argv = [sys.executable, "-m", f"workers.{name}"]
    for key, value in flags.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    return argv + extra


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def worker(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help=f"One of: {', '.join(WORKERS)}.")],
    host: Annotated[str | None, typer.Option(help="Bind address [FLEET_HOST].")] = None,
    port: Annotated[int | None, typer.Option(help="Port [FLEET_PORT; 8701].")] = None,
    redis_url: Annotated[str | None, typer.Option(help="Redis for registration.")] = None,
    advertise_url: Annotated[
        str | None, typer.Option(help="MCP URL supervisors should call.")
    ] = None,
    worker_token: Annotated[str | None, typer.Option(help="Require this bearer token.")] = None,
    max_concurrency: Annotated[int | None, typer.Option(help="Per-tool limit.")] = None,
    key_prefix: Annotated[str | None, typer.Option(help="Redis key prefix.")] = None,
    log_format: Annotated[str | None, typer.Option(help="auto, json or console.")] = None,
    log_level: Annotated[str | None, typer.Option(help="DEBUG, INFO, WARNING, ERROR.")] = None,
) -> None:
    """Run an example worker (python -m workers.NAME); other flags are passed through."""
    st = state(ctx)
    if name not in WORKERS:
        die(f"unknown worker {name!r}: choose one of {', '.join(WORKERS)}", Exit.BAD_INPUT, st.err)
    flags = _given(
        host=host,
        port=port,
        redis_url=redis_url,
        advertise_url=advertise_url,
        worker_token=worker_token,
        max_concurrency=max_concurrency,
        key_prefix=key_prefix,
        log_format=log_format,
        log_level=log_level,
    )
    argv = worker_argv(name, flags, list(ctx.args))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], argv)  # the worker handles its own signals and graceful drain
