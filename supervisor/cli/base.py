"""The Typer app, its global options, exit codes and the one place errors become exit codes.

Exit codes (also in ``fleet --help``):

    0  ok: the command worked; a followed job succeeded
    1  the followed job failed
    2  bad input or usage: bad flags, bad JSON, the API refused the request (400/413/422)
    3  the followed job was cancelled
    4  the supervisor is unreachable
    5  any other API error (401/403, 404 unknown job, 409, 429, 5xx)
    6  the wait ended before the job did (``status --wait``): it is still queued or running
    130 interrupted: Ctrl-C (a watched job keeps running)
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console

from shared import ClientSettings, JobStatus
from supervisor.client import ApiError, FleetApi, Unreachable

__all__ = [
    "EXIT_CODES_HELP",
    "CliError",
    "Exit",
    "JsonOpt",
    "State",
    "app",
    "die",
    "exit_for_status",
    "print_json",
    "run_api",
    "state",
]

T = TypeVar("T")

_PIPE_WIDTH = 140


class Exit(IntEnum):
    OK = 0
    FAILED = 1
    BAD_INPUT = 2
    CANCELLED = 3
    UNREACHABLE = 4
    API_ERROR = 5
    STILL_RUNNING = 6
    INTERRUPTED = 130


EXIT_CODES_HELP = (
    "Exit codes: 0 ok/succeeded, 1 job failed, 2 bad input or usage, 3 job cancelled, "
    "4 supervisor unreachable, 5 other API error, 6 the wait ended before the job, "
    "130 interrupted (Ctrl-C; a watched job keeps running)."
)


class CliError(Exception):
    """A user-facing failure: one line on stderr and an exit code, never a traceback."""

    def __init__(self, message: str, code: Exit = Exit.BAD_INPUT) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass
class State:
    """What every command gets from the global options."""

    settings: ClientSettings
    json: bool
    out: Console
    err: Console

    def wants_json(self, local: bool) -> bool:
        return self.json or local


app = typer.Typer(
    name="fleet",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion SHELL
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="mcp-fleet: submit jobs to MCP workers, watch their progress, run the services.\n\n"
    + EXIT_CODES_HELP,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]


def _version(wanted: bool) -> None:
    if wanted:
        from importlib.metadata import version

        typer.echo(f"fleet (mcp-fleet) {version('mcp-fleet')}")
        raise typer.Exit(0)


@app.callback()
def main(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option(help="Supervisor URL [env FLEET_URL; default http://127.0.0.1:8700]."),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(help="API token, sent as 'Authorization: Bearer' [env FLEET_TOKEN]."),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="JSON output for scripts.")] = False,
    version: Annotated[
        bool,
        typer.Option("--version", is_eager=True, callback=_version, help="Print it and exit."),
    ] = False,
) -> None:
    """Global options go before the command: fleet --url URL jobs."""
    overrides: dict[str, Any] = {"url": url, "token": token}
    try:
        settings = ClientSettings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:  # e.g. a bad FLEET_LOG_LEVEL-style value in the env
        die(f"bad settings: {exc.errors()[0]['msg']}", Exit.BAD_INPUT)
    ctx.obj = State(
        settings=settings, json=json_out, out=_console(stderr=False), err=_console(stderr=True)
    )


def _console(*, stderr: bool) -> Console:
    """Rich decides colours (only on a TTY, honouring NO_COLOR); off a TTY lines are wide and
    never wrapped, so logs and pipes get whole lines and tables keep their columns."""
    probe = Console(stderr=stderr)
    width = None if probe.is_terminal else _PIPE_WIDTH
    return Console(stderr=stderr, highlight=False, soft_wrap=True, width=width)


def state(ctx: typer.Context) -> State:
    obj = ctx.find_root().obj
    if not isinstance(obj, State):  # invoked without the callback (never via the CLI)
        obj = State(ClientSettings(), False, _console(stderr=False), _console(stderr=True))
        ctx.find_root().obj = obj
    return obj


def die(message: str, code: Exit, err: Console | None = None) -> NoReturn:
    (err or _console(stderr=True)).print(f"error: {message}", markup=False, highlight=False)
    raise typer.Exit(int(code))


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, default=str) + "\n")
    sys.stdout.flush()


def exit_for_status(status: str | None) -> Exit:
    """A followed job's exit code; one not ended yet (a wait that ran out) is not a success."""
    return {
        JobStatus.SUCCEEDED.value: Exit.OK,
        JobStatus.FAILED.value: Exit.FAILED,
        JobStatus.CANCELLED.value: Exit.CANCELLED,
        JobStatus.QUEUED.value: Exit.STILL_RUNNING,
        JobStatus.RUNNING.value: Exit.STILL_RUNNING,
    }.get(status or "", Exit.OK)


def api_error_exit(exc: ApiError) -> Exit:
    return Exit.BAD_INPUT if exc.status in (400, 413, 422) else Exit.API_ERROR


def run_api(st: State, work: Callable[[FleetApi], Awaitable[T]]) -> T:
    """Run ``work`` with an API client; translate every expected failure into an exit code."""

    async def go() -> T:
        async with FleetApi(st.settings.url, token=st.settings.token) as api:
            return await work(api)

    try:
        return asyncio.run(go())
    except ApiError as exc:
        from supervisor.cli.hints import error_line

        die(error_line(exc), api_error_exit(exc), st.err)
    except Unreachable as exc:
        die(str(exc), Exit.UNREACHABLE, st.err)
    except CliError as exc:
        die(exc.message, exc.code, st.err)
