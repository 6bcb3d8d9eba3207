"""Structured tool errors: one stable ``code`` per failure, the offending ``field`` and a hint.

Every error a worker sends is a :class:`fastmcp.exceptions.ToolError` whose text is the JSON
of :func:`shared.protocol.encode_tool_error`, so programs and LLMs read the same thing::

    {"code": "INVALID_INPUT", "message": "...", "field": "records[3].age",
     "hint": "...", "retryable": false}

Codes the kit itself sends (tools add their own, documented in their descriptions):

    BUSY                  retryable  the tool's concurrency limit is reached; try later/elsewhere
    SHUTTING_DOWN         retryable  the worker is draining; try another replica
    UNAVAILABLE           retryable  a dependency (Redis for idempotency) is unreachable, or the
                                     call lost its idempotency lock to a replica (after a stall)
    INVALID_INPUT                    the arguments fail the schema or a meaning check (``field``)
    TOO_LARGE                        an input exceeds a size limit (``field``)
    UNAUTHORIZED                     missing or wrong worker token (HTTP 401 before MCP)
    HOST_NOT_ALLOWED                 the ``Host`` header is not on the allowlist (HTTP 421)
    ORIGIN_NOT_ALLOWED               the ``Origin`` header is not on the allowlist (HTTP 403)
    IDEMPOTENCY_CONFLICT             the idempotency key was used with different arguments
    INTERNAL                         an unexpected failure; details are only in the worker log
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NoReturn

from fastmcp.exceptions import ToolError
from pydantic import ValidationError

from shared.protocol import encode_tool_error

__all__ = [
    "BUSY",
    "HOST_NOT_ALLOWED",
    "IDEMPOTENCY_CONFLICT",
    "INTERNAL",
    "INVALID_INPUT",
    "ORIGIN_NOT_ALLOWED",
    "SHUTTING_DOWN",
    "TOO_LARGE",
    "UNAUTHORIZED",
    "UNAVAILABLE",
    "field_path",
    "from_validation_error",
    "invalid",
    "too_large",
    "tool_error",
]

BUSY = "BUSY"
SHUTTING_DOWN = "SHUTTING_DOWN"
UNAVAILABLE = "UNAVAILABLE"
INVALID_INPUT = "INVALID_INPUT"
TOO_LARGE = "TOO_LARGE"
UNAUTHORIZED = "UNAUTHORIZED"
IDEMPOTENCY_CONFLICT = "IDEMPOTENCY_CONFLICT"
INTERNAL = "INTERNAL"
HOST_NOT_ALLOWED = "HOST_NOT_ALLOWED"
ORIGIN_NOT_ALLOWED = "ORIGIN_NOT_ALLOWED"


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
    """Raise ``INVALID_INPUT`` for ``field`` (a path such as ``rules[0].op``).

    The message reads after the field name: ``invalid("age", "must be positive")``.
    """
    raise tool_error(INVALID_INPUT, f"{field} {message}", field=field, hint=hint)


def too_large(field: str, message: str, hint: str | None = None) -> NoReturn:
    """Raise ``TOO_LARGE`` for ``field``; the message reads after the field name."""
    raise tool_error(TOO_LARGE, f"{field} {message}", field=field, hint=hint)


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


def from_validation_error(
    exc: ValidationError, arguments: dict[str, Any] | None = None
) -> ToolError:
    """Turn pydantic's argument error into ``INVALID_INPUT`` naming the first bad field.

    Pydantic puts union branch names and tags into locations (``rules[0].cast.to``); with
    the ``arguments`` at hand those are dropped, giving the path in the caller's own terms
    (``rules[0].to``). The offending *value* is never echoed back.
    """
    errors = exc.errors(include_url=False, include_input=False)
    if not errors:
        return tool_error(INVALID_INPUT, "invalid arguments")
    first = errors[0]
    parts = _input_path([p for p in first["loc"] if isinstance(p, int | str)], arguments)
    if first["type"] in ("union_tag_invalid", "union_tag_not_found"):
        # A tagged union refused the tag itself: name the tag field (e.g. ``rules[0].op``).
        parts.append(str(first.get("ctx", {}).get("discriminator", "")).strip("'\""))
    path = field_path([p for p in parts if p != ""])
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return tool_error(
        INVALID_INPUT,
        f"{path or 'arguments'}: {first['msg'][:300]}{more}",
        field=path or None,
        hint="Fix the named field to match the tool's input schema and call again.",
    )


def _input_path(loc: list[int | str], arguments: dict[str, Any] | None) -> list[int | str]:
    if arguments is None:
        return loc
    out: list[int | str] = []
    current: Any = arguments
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(part, int):
            out.append(part)
            current = current[part] if isinstance(current, list) and part < len(current) else None
        elif isinstance(current, dict) and part in current:
            out.append(part)
            current = current[part]
        elif last or not isinstance(current, dict):
            out.append(part)  # a missing required field, or past the input's shape
        # else: a union branch or tag name that is not a key of the input: leave it out
    return out
