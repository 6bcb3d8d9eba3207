"""Placeholder until the CLI lands: ``fleet supervisor`` only."""

from __future__ import annotations

import typer

from shared import SupervisorSettings
from supervisor.server import serve

app = typer.Typer(no_args_is_help=True)


@app.command()
def supervisor(host: str = "127.0.0.1", port: int = 8700) -> None:
    """Run the supervisor."""
    serve(SupervisorSettings(host=host, port=port))


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo("0.1.0")
