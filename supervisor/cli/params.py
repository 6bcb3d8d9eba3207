"""Command-line values checked without pydantic, for typer versions that check them with it.

typer (0.29 and later) checks every parameter's value with a pydantic ``TypeAdapter`` built on
first use, so any command, even one whose parameters are all strings, would import pydantic
and build adapters (~70 ms of a ``fleet status`` of ~260 ms here) to pass ``"abc1234"``
through. :func:`quicken` gives each plain parameter a checker that handles the everyday
values itself: a string, a bool flag, a number written in digits within its bounds. Anything
else (another spelling, a value out of bounds, a list, a custom parser) goes to typer's own
adapter, so every error message stays typer's, word for word.

With a typer that checks values otherwise (no ``typer._coercion``), :func:`quicken` does nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

__all__ = ["quick_value", "quicken"]


_MISS = object()
"""Not a value this module decides: typer's adapter does."""
_INT = re.compile(r"-?[0-9]+")
_FLOAT = re.compile(r"-?[0-9]+(\.[0-9]+)?")


def quick_value(annotation: Any, info: Any, value: Any) -> Any:
    """``value`` checked as typer's adapter would check it, or ``_MISS`` when this cannot
    be sure (typer's adapter decides, and words any error)."""
    if annotation is str:
        return value if isinstance(value, str) else _MISS
    if annotation is bool:
        return value if isinstance(value, bool) else _MISS
    if annotation not in (int, float) or isinstance(value, bool):
        return _MISS
    if isinstance(value, str):
        if not (_INT if annotation is int else _FLOAT).fullmatch(value):
            return _MISS
        number: Any = annotation(value)
    elif isinstance(value, int) or (annotation is float and isinstance(value, float)):
        number = annotation(value)
    else:
        return _MISS
    low, high = getattr(info, "min", None), getattr(info, "max", None)
    if getattr(info, "clamp", False):
        if low is not None and number < low:
            return annotation(low)
        if high is not None and number > high:
            return annotation(high)
        return number
    if (low is not None and number < low) or (high is not None and number > high):
        return _MISS  # typer's adapter says which bound, in its words
    return number


try:
    from typer._coercion import RuntimeParam, TypeDescriptor, build_runtime_param

    @dataclass(frozen=True)
    class _QuickParam(RuntimeParam):
        """A parameter's checker: :func:`quick_value`, else typer's adapter (built then)."""

        descriptor: TypeDescriptor

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            quick = quick_value(self.annotation, self.parameter_info, value)
            if quick is not _MISS:
                return quick
            typer_own = build_runtime_param(self.descriptor)
            param._runtime_param = typer_own
            return typer_own._coerce_value(value, param=param, ctx=ctx)

except (ImportError, TypeError):  # a typer that checks values otherwise: nothing to speed up
    RuntimeParam = None  # type: ignore[assignment,misc]


def quicken(command: Any, ctx: Any) -> None:
    """Give ``command``'s plain parameters (one str, bool, int or float each, no custom
    parser, no file), its ``--help`` too, the quick checker; the others keep typer's."""
    if RuntimeParam is None:
        return
    try:
        _quicken(command, ctx)
    except (AttributeError, TypeError):  # a typer whose insides differ: its own checks stand
        return


def _quicken(command: Any, ctx: Any) -> None:
    for param in command.get_params(ctx):
        descriptor = getattr(param, "type_descriptor", None)
        if descriptor is None or getattr(param, "_runtime_param", _MISS) is not None:
            continue  # not typer's, or its checker is already built
        info = descriptor.parameter_info
        if (
            descriptor.annotation not in (str, bool, int, float)
            or descriptor.file_annotation is not None
            or getattr(info, "parser", None) is not None
            or param.nargs != 1
            or param.multiple
        ):
            continue
        param._runtime_param = _QuickParam(
            parameter_info=info, annotation=descriptor.annotation, descriptor=descriptor
        )
