"""``fleet supervisor`` and ``fleet worker NAME``: run the services with their own flags.

Both pass their arguments through: ``fleet supervisor ARGS`` parses ARGS exactly as
``python -m supervisor.server`` does (in this process) and ``fleet worker NAME ARGS`` runs
what ``python -m workers.NAME ARGS`` runs (in a process of its own: the supervisor package
never imports the workers'), so ``--help`` lists the real flags and nothing is declared twice.
Their usage lines and start-up errors name the command typed (``fleet worker echo: port 8701
on 127.0.0.1 is already in use: ...``), not the one it runs.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from supervisor.cli.base import Exit, app, die, state

__all__ = ["WORKERS"]

WORKERS = ("echo", "data", "text")
"""Example workers shipped in this distribution (``python -m workers.NAME``)."""

_PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}


@app.command(context_settings=_PASS_THROUGH, add_help_option=False)
def supervisor(ctx: typer.Context) -> None:
    """Run the supervisor (HTTP API, dispatcher, registry) until SIGTERM or Ctrl-C.

    Flags override FLEET_*; fleet supervisor --help lists them and the exit codes.
    """
    # Imported here: the service stack costs seconds to import; `fleet jobs` should not pay.
    from supervisor.server import main

    # Start-up problems are one line and an exit code of their own (fleet supervisor --help).
    main(ctx.args, prog="fleet supervisor")


@app.command(context_settings=_PASS_THROUGH, add_help_option=False)
def worker(
    ctx: typer.Context,
    name: Annotated[
        str | None, typer.Argument(metavar="NAME", help=f"One of: {', '.join(WORKERS)}.")
    ] = None,
) -> None:
    """Run an example worker, as python -m workers.NAME with the arguments that follow.

    Flags override FLEET_*; fleet worker NAME --help lists them and the exit codes.
    """
    st = state(ctx)
    if name in ("--help", "-h"):
        typer.echo(ctx.get_help())
        raise typer.Exit(0)
    if name not in WORKERS:
        what = f"unknown worker {name!r}" if name else "name a worker"
        die(f"{what}: choose one of {', '.join(WORKERS)}", Exit.BAD_INPUT, st.err)
    # What workers/NAME/__main__.py runs, under the name typed: its usage line and start-up
    # errors (one line, an exit code of their own) say "fleet worker NAME". NAME is one of
    # WORKERS, never free text.
    run = (
        f"from workers.{name} import build; from workers.kit import main; "
        f"main(build, prog={f'fleet worker {name}'!r})"
    )
    argv = [sys.executable, "-c", run, *ctx.args]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], argv)  # the worker handles its own signals and graceful drain
