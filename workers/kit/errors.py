"""Structured tool errors: one stable ``code`` per failure, the offending ``field`` and a hint.

Every error a worker sends is a :class:`fastmcp.exceptions.ToolError` whose text is the JSON
of :func:`shared.protocol.encode_tool_error`, so programs and LLMs read the same thing::

    {"code": "INVALID_INPUT", "message": "...", "field": "records[3].age",
     "hint": "...", "retryable": false}

Codes the kit itself sends (tools add their own, documented in their descriptions):

    BUSY                  retryable  the tool's concurrency limit is reached; try later/elsewhere
    SHUTTING_DOWN         retryable  the worker is draining; try another replica
    UNAVAILABLE           retryable  a dependency (Redis for idempotency) is unreachable
    INVALID_INPUT                    the arguments fail the schema or a meaning check (``field``)
    TOO_LARGE                        an input exceeds a size limit (``field``)
    UNAUTHORIZED                     missing or wrong worker token (HTTP 401 before MCP)
    IDEMPOTENCY_CONFLICT             the idempotency key was used with different arguments
    INTERNAL                         an unexpected failure; details are only in the worker log
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NoReturn

from fastmcp.exceptions import ToolError
from pydantic import ValidationError

from shared.protocol import ToolErrorPayload, decode_tool_error, encode_tool_error

__all__ = [
    "BUSY",
    "IDEMPOTENCY_CONFLICT",
    "INTERNAL",
    "INVALID_INPUT",
    "SHUTTING_DOWN",
    "TOO_LARGE",
    "UNAUTHORIZED",
    "UNAVAILABLE",
    "field_path",
    "from_validation_error",
    "invalid",
    "tool_error",
    "too_large",
]

BUSY = "BUSY"
SHUTTING_DOWN = "SHUTTING_DOWN"
UNAVAILABLE = "UNAVAILABLE"
INVALID_INPUT = "INVALID_INPUT"
TOO_LARGE = "TOO_LARGE"
UNAUTHORIZED = "UNAUTHORIZED"
IDEMPOTENCY_CONFLICT = "IDEMPOTENCY_CONFLICT"
INTERNAL = "INTERNAL"


def tool_error(
    code: str,
    message: str,
    *,
    field: str | None = None,
    hint: str | None = None,
    retryable: bool = False,
) -> ToolError:
    """Build (not raise) a structured ``ToolError``.

    >>> str(tool_error("BUSY", "full", retryable=True))[:16]
    '{"code": "BUSY",'
    """
    return ToolError(encode_tool_error(code, message, field=field, hint=hint, retryable=retryable))


def invalid(field: str, message: str, hint: str | None = None) -> NoReturn:
    """Raise ``INVALID_INPUT`` for ``field`` (a path such as ``rules[0].op``)."""
    raise tool_error(INVALID_INPUT, message, field=field, hint=hint)


def too_large(field: str, message: str, hint: str | None = None) -> NoReturn:
    """Raise ``TOO_LARGE`` for ``field``."""
    raise tool_error(TOO_LARGE, message, field=field, hint=hint)


def field_path(loc: Sequence[int | str]) -> str:
    """Render a pydantic location as a readable path.

    >>> field_path(("records", 3, "age"))
    'records[3].age'
    """
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def from_validation_error(exc: ValidationError) -> ToolError:
    """Turn pydantic's argument error into ``INVALID_INPUT`` naming the first bad field.

    The offending *value* is never echoed back: it may be large or sensitive.
    """
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    if not errors:
        return tool_error(INVALID_INPUT, "invalid arguments")
    first = errors[0]
    # Pydantic adds the union/tagged branch names to loc; keep them: they say which shape failed.
    path = field_path([p for p in first["loc"] if isinstance(p, int | str)])
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return tool_error(
        INVALID_INPUT,
        f"{path or 'arguments'}: {first['msg']}{more}",
        field=path or None,
        hint="Fix the named field to match the tool's input schema and call again.",
    )


def payload_of(exc: BaseException) -> ToolErrorPayload:
    """Read the structured payload of an error the kit or a tool raised."""
    return decode_tool_error(str(exc))


def describe(exc: BaseException) -> dict[str, Any]:
    payload = payload_of(exc)
    return {"code": payload.code, "retryable": payload.retryable}
