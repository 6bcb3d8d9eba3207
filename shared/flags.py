"""Command-line flags for a settings class: one argparse parser built from its fields.

    settings = parse_flags(WorkerSettings, ["host", "port"], argv, prog="python -m workers.echo")

Each named field becomes ``--field-name``; its help is the field's description followed by
``[FLEET_FIELD_NAME; default]``. A ``Literal`` field offers its values as choices and a bool
field is ``--x/--no-x``. A flag that is given overrides the environment. The settings class
validates flags and ``FLEET_*`` alike; bad input exits 2 (or the code ``exit_codes`` names for
its field) with one line that names the flag (or the variable) it came from.
"""

from __future__ import annotations

import argparse
import types
from collections.abc import Mapping, Sequence
from typing import Any, Literal, NoReturn, TypeVar, Union, get_args, get_origin

from pydantic import ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

__all__ = ["flag_name", "parse_flags", "settings_parser"]

S = TypeVar("S", bound=BaseSettings)

_METAVAR = {int: "INT", float: "NUM", list: "A,B"}


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def _env_name(cls: type[BaseSettings], field: str) -> str:
    return (str(cls.model_config.get("env_prefix") or "") + field).upper()


def _unwrap_optional(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        args = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _help(cls: type[BaseSettings], field: str, info: FieldInfo) -> str:
    text = (info.description or "").replace("``", "").replace("%", "%%")
    default = info.get_default(call_default_factory=True)
    if isinstance(default, bool):
        default = str(default).lower()
    shown = f"; {default}" if default not in (None, "", []) else ""
    return f"{text} [{_env_name(cls, field)}{shown}]".strip()


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors in one line: the usage is what ``--help`` is for."""

    def error(self, message: str) -> NoReturn:
        self.fail(message, 2)

    def fail(self, message: str, code: int) -> NoReturn:
        self.exit(code, f"{self.prog}: error: {message} (see --help)\n")


def settings_parser(
    cls: type[BaseSettings],
    fields: Sequence[str],
    *,
    prog: str,
    description: str | None = None,
    epilog: str | None = None,
) -> argparse.ArgumentParser:
    """An argparse parser with one flag per named field of ``cls``; every flag defaults to None
    (not given)."""
    parser = _Parser(prog=prog, description=description, epilog=epilog)
    _add_flags(parser, cls, fields)
    return parser


def _add_flags(
    parser: argparse.ArgumentParser, cls: type[BaseSettings], fields: Sequence[str]
) -> None:
    for field in fields:
        info = cls.model_fields[field]
        kind = _unwrap_optional(info.annotation)
        options: dict[str, Any] = {"dest": field, "default": None, "help": _help(cls, field, info)}
        if kind is bool:
            options["action"] = argparse.BooleanOptionalAction
        elif get_origin(kind) is Literal:
            options["choices"] = [str(value) for value in get_args(kind)]
        else:
            options["metavar"] = _METAVAR.get(get_origin(kind) or kind, "TEXT")
        parser.add_argument(flag_name(field), **options)


def parse_flags(
    cls: type[S],
    fields: Sequence[str],
    argv: Sequence[str] | None,
    *,
    prog: str,
    description: str | None = None,
    epilog: str | None = None,
    exit_codes: Mapping[str, int] | None = None,
) -> S:
    """The settings: ``FLEET_*`` from the environment, overridden by each flag given.

    Values reach the settings class as the strings typed, so it is the one validator. Bad
    input exits 2 (``argparse``'s usage error), in one line naming its flag or environment
    variable; ``exit_codes`` gives some fields another code (``""``: a check of the whole
    model), the highest of the failing fields' wins.
    """
    parser = _Parser(prog=prog, description=description, epilog=epilog)
    _add_flags(parser, cls, fields)
    given = {k: v for k, v in vars(parser.parse_args(argv)).items() if v is not None}
    try:
        return cls(**given)
    except ValidationError as exc:
        problems, code = [], 2
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else ""
            message = str(error["msg"]).removeprefix("Value error, ")
            code = max(code, (exit_codes or {}).get(field, 2))
            if not field:  # a check of the whole model: its message names the variables
                problems.append(message)
                continue
            source = f"argument {flag_name(field)}" if field in given else _env_name(cls, field)
            problems.append(f"{source}: {message}")
        parser.fail("; ".join(problems), code)
