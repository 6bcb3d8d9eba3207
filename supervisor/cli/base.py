"""The Typer app, its global options, exit codes and the one place errors become exit codes.

Exit codes (also in ``fleet --help``):

    0  ok: the command worked; a followed job succeeded
    1  the followed job failed
    2  bad input or usage: bad flags, bad JSON, the API refused the request (400/413/422)
    3  the followed job was cancelled
    4  the supervisor is unreachable
    5  any other API error (401/403, 404 unknown job, 409, 429, 5xx)
    6  the wait ended before the job did (``status --wait``): it is still queued or running
    70  an unexpected error in fleet itself: one line (``FLEET_DEBUG=1``: the traceback)
    130 interrupted: Ctrl-C (a watched job keeps running)
    141 the output's reader went away (``fleet jobs | head -1``), as for any program a closed
        pipe stops; nothing more is printed (a watched job keeps running)
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Annotated, Any, NamedTuple, NoReturn, Protocol, TypeVar

import typer
from typer.core import TyperGroup
from typer.main import get_command_from_info, get_command_name

from supervisor.cli.params import quicken

# Only what every command needs is imported here: `fleet --help` must not pay for pydantic,
# rich, httpx or the client (each is imported where it is first used).
if TYPE_CHECKING:
    from rich.console import Console

    from supervisor.client import ApiError, FleetApi

__all__ = [
    "EXIT_CODES_HELP",
    "EXTRAS",
    "CliError",
    "Endpoint",
    "Exit",
    "JsonOpt",
    "LazyCommand",
    "LazyGroup",
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
    INTERNAL = 70
    INTERRUPTED = 130
    PIPE_CLOSED = 141


EXIT_CODES_HELP = (
    "Exit codes: 0 ok/succeeded, 1 job failed, 2 bad input or usage, 3 job cancelled, "
    "4 supervisor unreachable, 5 other API error, 6 the wait ended before the job, "
    "70 an unexpected error in fleet (FLEET_DEBUG=1 shows the traceback), "
    "130 interrupted (Ctrl-C; a watched job keeps running), 141 the output's reader went away "
    "(| head)."
)


class CliError(Exception):
    """A user-facing failure: one line on stderr and an exit code, never a traceback."""

    def __init__(self, message: str, code: Exit = Exit.BAD_INPUT) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class Endpoint(Protocol):
    """The supervisor a command talks to: ``shared.ClientSettings`` or the quick read of it
    (:func:`endpoint`)."""

    @property
    def url(self) -> str: ...

    @property
    def token(self) -> str | None: ...


class _Endpoint(NamedTuple):
    url: str
    token: str | None


@dataclass
class State:
    """What every command gets from the global options."""

    settings: Endpoint
    json: bool
    out: Console
    err: Console

    def wants_json(self, local: bool) -> bool:
        return self.json or local


EXTRAS: dict[str, tuple[str, ...]] = {
    "supervisor": ("fastapi", "uvicorn", "redis", "burner_redis", "fastmcp", "structlog",
                   "aiohttp", "prometheus_client", "opentelemetry.sdk"),
    "worker": ("fastmcp", "uvicorn", "redis", "structlog", "jsonschema", "opentelemetry.sdk"),
}  # fmt: skip
"""Per package extra, modules it brings; a command that needs an extra checks they are there."""


class LazyCommand(NamedTuple):
    """One row of the command table (:data:`supervisor.cli.COMMANDS`)."""

    module: str
    """The module under ``supervisor.cli`` whose ``@app.command()`` defines it."""
    help: str
    """One line for ``fleet --help``, which lists commands without importing them."""
    needs: tuple[str, ...] = ()
    """Package extras it needs (``supervisor``, ``worker``); missing: a one-line hint, exit 2."""


class LazyGroup(TyperGroup):
    """The ``fleet`` group: a command's module is imported only when that command runs.

    ``fleet --help`` lists the table's names and one-line helps; ``fleet status`` imports
    ``supervisor.cli.jobs`` and nothing of the demo, the services or ``fleet top``. The
    pattern is click's "lazily loading subcommands", on the Typer group that typer builds.
    """

    @staticmethod
    def table() -> Mapping[str, LazyCommand]:
        from supervisor.cli import COMMANDS  # the package is loaded before any command runs

        return COMMANDS

    def list_commands(self, ctx: typer.Context) -> list[str]:  # type: ignore[override]
        table = self.table()
        return [*table, *(name for name in self.commands if name not in table)]

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            _pipe_closed()
        except Exception as exc:
            if (
                type(exc).__module__.split(".")[0] in ("typer", "click")
                or os.environ.get("FLEET_DEBUG")
                or ctx.invoked_subcommand == "supervisor"
            ):
                # typer's own exits and usage errors; a traceback asked for; or the service,
                # which ends as `python -m supervisor.server` does
                raise
            # A bug, or an answer no code path expected: one line, never a traceback.
            what = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            die(f"unexpected {what} (FLEET_DEBUG=1 shows the traceback)", Exit.INTERNAL)

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:  # type: ignore[override]
        quicken(self, ctx)  # the global options: no pydantic to read --url
        return super().parse_args(ctx, args)

    def get_command(self, ctx: typer.Context, cmd_name: str) -> Any:  # type: ignore[override]
        command = self._command(ctx, cmd_name)
        if command is not None:
            quicken(command, ctx)  # its values checked without pydantic (supervisor.cli.params)
        return command

    def _command(self, ctx: typer.Context, cmd_name: str) -> Any:
        if cmd_name in self.commands:  # built already (or by typer: its module was imported)
            return self.commands[cmd_name]
        entry = self.table().get(cmd_name)
        if entry is None:
            return None
        missing = [extra for extra in entry.needs if not _installed(extra)]
        if missing:
            return _needs_extras(cmd_name, missing)
        importlib.import_module(f"supervisor.cli.{entry.module}")
        for info in app.registered_commands:
            if info.callback is None:
                continue
            if (info.name or get_command_name(info.callback.__name__)) == cmd_name:
                command = get_command_from_info(
                    info,
                    pretty_exceptions_short=app.pretty_exceptions_short,
                    rich_markup_mode=app.rich_markup_mode,
                )
                self.commands[cmd_name] = command
                return command
        raise RuntimeError(f"supervisor.cli.{entry.module} defines no command {cmd_name!r}")

    def format_commands(self, ctx: typer.Context, formatter: Any) -> None:  # type: ignore[override]
        """The table's one-line helps: listing the commands imports none of them."""
        table = self.table()
        rows = []
        for name in self.list_commands(ctx):
            entry = table.get(name)
            rows.append((name, entry.help if entry else self.commands[name].get_short_help_str()))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _installed(extra: str) -> bool:
    """Whether the extra's modules are importable (found, not imported: that costs seconds)."""
    try:
        return all(importlib.util.find_spec(module) is not None for module in EXTRAS[extra])
    except ModuleNotFoundError:  # a dotted name whose parent package is missing
        return False


def _needs_extras(name: str, missing: list[str]) -> typer.core.TyperCommand:
    """A stand-in for a command whose extra is not installed: it says how to get it."""

    def hint() -> None:
        extras = ",".join(missing)
        die(f"fleet {name} needs the server parts: pip install 'mcp-fleet[{extras}]'",
            Exit.BAD_INPUT)  # fmt: skip

    return typer.core.TyperCommand(
        name,
        callback=hint,
        help=f"(needs: pip install 'mcp-fleet[{','.join(missing)}]')",
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
        add_help_option=False,
    )


app = typer.Typer(
    cls=LazyGroup,
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
    ctx.obj = State(
        settings=endpoint(url, token),
        json=json_out,
        out=_console(stderr=False),
        err=_console(stderr=True),
    )


_ENV = {"fleet_url": "FLEET_URL", "fleet_token": "FLEET_TOKEN"}


def endpoint(url: str | None = None, token: str | None = None) -> Endpoint:
    """The supervisor's URL and token: the flags, else ``FLEET_URL`` / ``FLEET_TOKEN``, as
    :class:`shared.ClientSettings` reads them.

    pydantic-settings costs ~35 ms of every call (and pydantic itself ~50), so the everyday case
    is read here: variables spelled in capitals, an ``http://`` or ``https://`` URL with a host,
    which ClientSettings would take as it is. Anything else (a URL to correct, a lower-case
    variable name) goes through ClientSettings, whose one-line errors users see (exit 2).
    """
    import os

    names = [name for name in os.environ if name.lower() in _ENV]
    given = url if url is not None else os.environ.get("FLEET_URL", "http://127.0.0.1:8700")
    scheme, _, rest = given.partition("://")
    if all(name == _ENV[name.lower()] for name in names) and scheme in ("http", "https"):
        value = f"{scheme}://{rest}"
        if rest.strip("/") and value == value.strip():
            return _Endpoint(value, token if token is not None else os.environ.get("FLEET_TOKEN"))
    return _client_settings(url, token)


def _client_settings(url: str | None, token: str | None) -> Endpoint:
    from pydantic import ValidationError

    from shared import ClientSettings

    overrides: dict[str, Any] = {"url": url, "token": token}
    try:
        return ClientSettings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:  # e.g. FLEET_URL=localhost:8700 (no scheme)
        die(f"bad settings: {exc.errors()[0]['msg']}", Exit.BAD_INPUT)


def _console(*, stderr: bool) -> Console:
    """Rich decides colours (only on a TTY, honouring NO_COLOR); off a TTY lines are wide and
    never wrapped, so logs and pipes get whole lines and tables keep their columns."""
    from rich.console import Console

    probe = Console(stderr=stderr)
    width = None if probe.is_terminal else _PIPE_WIDTH
    console = Console(stderr=stderr, highlight=False, soft_wrap=True, width=width)
    console.on_broken_pipe = _pipe_closed  # type: ignore[method-assign]  # rich's: exit 1
    return console


def _pipe_closed() -> NoReturn:
    """``fleet jobs | head -1``: the reader has what it wanted. Exit as a program that a closed
    pipe stops does (128 + SIGPIPE), not 1 ("the job failed"), with stdout on /dev/null so
    Python's last flush at exit has nowhere to fail."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    raise SystemExit(int(Exit.PIPE_CLOSED))


def state(ctx: typer.Context) -> State:
    obj = ctx.find_root().obj
    if not isinstance(obj, State):  # invoked without the callback (never via the CLI)
        obj = State(endpoint(), False, _console(stderr=False), _console(stderr=True))
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
        "succeeded": Exit.OK,
        "failed": Exit.FAILED,
        "cancelled": Exit.CANCELLED,
        "queued": Exit.STILL_RUNNING,
        "running": Exit.STILL_RUNNING,
    }.get(status or "", Exit.OK)


def api_error_exit(exc: ApiError) -> Exit:
    return Exit.BAD_INPUT if exc.status in (400, 413, 422) else Exit.API_ERROR


def detached(st: State, job_id: str, what: str = "job") -> NoReturn:
    """Ctrl-C while following a submitted job: say it runs on, and how to get back to it."""
    st.err.print(
        f"detached from {what} {job_id}; it keeps running "
        f"(follow it: fleet watch {job_id}; stop it: fleet cancel {job_id})",
        markup=False,
        highlight=False,
    )
    raise typer.Exit(int(Exit.INTERRUPTED))


def run_submission(
    st: State, work: Callable[[FleetApi], Awaitable[int]], submitted: dict[str, str], what: str
) -> NoReturn:
    """:func:`run_api` for a command that submits then follows: Ctrl-C before the submit is
    an interruption, after it a detach (the job runs on); exits with ``work``'s code."""
    try:
        code = run_api(st, work)
    except KeyboardInterrupt:
        if "id" not in submitted:
            raise typer.Exit(int(Exit.INTERRUPTED)) from None
        detached(st, submitted["id"], what)
    raise typer.Exit(int(code))


def run_api(st: State, work: Callable[[FleetApi], Awaitable[T]]) -> T:
    """Run ``work`` with an API client; translate every expected failure into an exit code.

    ``work`` gets the public client's ``raw`` layer: the API's bodies as dicts, which
    ``--json`` prints verbatim (the typed calls of :class:`AsyncFleetClient` sit on it).
    """
    import asyncio

    from supervisor.client import ApiError, FleetApi, Unreachable

    async def go() -> T:  # the raw layer alone: the typed one would import pydantic (~50 ms)
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
