"""What the API accepts from a client, and where each limit is drawn.

Every request gets a 2xx or a 4xx with the error body; nothing a client sends reaches the
store unless it passed these rules, so a refused request stores nothing.

Request body (``POST /v1/jobs``), read by :func:`parse_json_body`:

- UTF-8 JSON (RFC 8259); anything else, and the ``NaN``/``Infinity``/``-Infinity`` literals
  Python's ``json`` would accept, is 400 ``BAD_REQUEST``;
- no duplicate keys, no unpaired surrogate (``"\\ud83d"``) in any key or string, arrays and
  objects nested at most :data:`~shared.models.MAX_JSON_DEPTH` deep, no integer of magnitude
  over :data:`~shared.models.MAX_SAFE_INT` (2**53 - 1), no number that overflows a double:
  422 ``VALIDATION_ERROR`` naming the field. The size cap (``FLEET_MAX_BODY_BYTES``) is 413.

Elsewhere, a value that breaks its rule is 422 ``VALIDATION_ERROR`` (or 404 for an id):

- job ids in paths: :data:`JOB_ID_PATTERN`, minted by :func:`new_job_id`; any other shape is
  404 ``JOB_NOT_FOUND`` before the store is asked (``<id>:events`` is a Redis key, not a job);
- ``cursor``: :data:`CURSOR_PATTERN`, the plain decimal we hand out as ``next_cursor``;
- ``after`` and ``Last-Event-ID``: a decimal event number, 0 to :data:`MAX_EVENT_SEQ`;
- ``Idempotency-Key``: :data:`IDEMPOTENCY_KEY_PATTERN`; ``X-Correlation-ID``:
  :data:`CORRELATION_ID_PATTERN` (checked in :mod:`supervisor.api.middleware`).
"""

from __future__ import annotations

import json
import math
import os
import re
from typing import Any

from shared import BadRequest, ValidationFailed
from shared.models import MAX_IDEMPOTENCY_KEY, MAX_JSON_DEPTH, MAX_SAFE_INT

__all__ = [
    "CORRELATION_ID_PATTERN",
    "CURSOR_PATTERN",
    "IDEMPOTENCY_KEY_PATTERN",
    "JOB_ID_PATTERN",
    "LAST_EVENT_ID_PATTERN",
    "MAX_EVENT_SEQ",
    "MIN_JOB_ID_PREFIX",
    "is_job_id",
    "is_job_id_prefix",
    "new_job_id",
    "parse_json_body",
    "uuid4_hex",
]

JOB_ID_PATTERN = r"^[0-9a-f]{32}$"
"""A job id: 32 lowercase hex digits (a UUID4 without dashes; on a sharded store a UUIDv8
whose last four digits name its shard, :meth:`shared.keys.Keys.place`)."""
CURSOR_PATTERN = r"^[0-9]{1,16}(\.[0-9]{1,17})?$"
"""A listing cursor: the creation time of the last job of a page, as a plain decimal."""
MAX_EVENT_SEQ = 999_999_999_999_999
"""Highest event number ``after`` and ``Last-Event-ID`` may name (15 digits, exact in JSON)."""
LAST_EVENT_ID_PATTERN = r"^[0-9]{0,15}$"
"""``Last-Event-ID``: an event number; empty means none (an EventSource never sends that)."""
IDEMPOTENCY_KEY_PATTERN = rf"^[\x20-\x7e]{{0,{MAX_IDEMPOTENCY_KEY}}}$"
"""``Idempotency-Key`` header: printable ASCII (headers carry no other text safely); empty is
the same as absent."""
CORRELATION_ID_PATTERN = r"^[\x21-\x7e]{0,128}$"
"""``X-Correlation-ID``: up to 128 visible ASCII characters; empty or absent, one is generated."""

_JOB_ID = re.compile(JOB_ID_PATTERN)
MIN_JOB_ID_PREFIX = 6
"""The shortest id prefix that names a job (what the CLI prints is 12)."""
_JOB_ID_PREFIX = re.compile(rf"[0-9a-fA-F]{{{MIN_JOB_ID_PREFIX},31}}")
_MAX_INT_DIGITS = len(str(MAX_SAFE_INT)) + 1  # longer literals are refused unparsed
# Unpaired surrogates can only come from \u escapes in the UTF-8 text: skip the scan without one.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def new_job_id() -> str:
    """A fresh job id matching :data:`JOB_ID_PATTERN`: a random UUID4's 32 hex digits."""
    return uuid4_hex(os.urandom(16))


_UUID4_CLEAR = ~((0xC000 << 48) | (0xF000 << 64))
_UUID4_SET = (0x8000 << 48) | (4 << 76)


def uuid4_hex(raw: bytes) -> str:
    """``uuid.UUID(bytes=raw, version=4).hex`` (what ``uuid.uuid4().hex`` is, given
    ``os.urandom(16)``) without building the UUID object: a fifth of the cost.

    >>> import uuid
    >>> uuid4_hex(bytes(range(16))) == uuid.UUID(bytes=bytes(range(16)), version=4).hex
    True
    """
    value = int.from_bytes(raw, "big") & _UUID4_CLEAR | _UUID4_SET
    return f"{value:032x}"


def is_job_id(value: str) -> bool:
    return _JOB_ID.fullmatch(value) is not None  # fullmatch: `$` also matches before "\n"


def is_job_id_prefix(value: str) -> bool:
    """A short id: :data:`MIN_JOB_ID_PREFIX` to 31 hex digits (any case)."""
    return _JOB_ID_PREFIX.fullmatch(value) is not None


class _HugeInt:
    """Stands in for an integer literal too long to be in range (parsed lazily: never)."""

    __slots__ = ("literal",)

    def __init__(self, literal: str) -> None:
        self.literal = literal


class _NotJson(ValueError):
    pass


class _Duplicate(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _parse_int(literal: str) -> int | _HugeInt:
    return int(literal) if len(literal) <= _MAX_INT_DIGITS else _HugeInt(literal)


def _refuse_constant(name: str) -> Any:
    raise _NotJson(f"{name} is not a JSON number")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Duplicate(key)
            seen.add(key)
    return out


def parse_json_body(raw: bytes, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse a request body by the rules in the module docstring, or raise the error to send.

    >>> parse_json_body(b'{"a": [1, 2.5, "x"]}')
    {'a': [1, 2.5, 'x']}
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(
            f"request body is not UTF-8: byte {exc.start} is invalid",
            details={"field": "body", "position": exc.start},
        ) from exc
    try:
        data = json.loads(
            text,
            parse_int=_parse_int,
            parse_constant=_refuse_constant,
            object_pairs_hook=_no_duplicates,
        )
    except RecursionError as exc:  # nested far past the limit: refused like any deep body
        raise _too_deep("body", max_depth) from exc
    except _Duplicate as exc:
        key = _printable(exc.key)
        raise ValidationFailed(
            f"request body repeats the key {key!r} in one object",
            details={"field": "body", "key": key, "reason": "duplicate key"},
        ) from exc
    except ValueError as exc:  # JSONDecodeError and _NotJson
        raise BadRequest(
            f"request body is not valid JSON: {exc}", details={"field": "body"}
        ) from exc
    _check_tree(data, max_depth=max_depth, surrogates=_SURROGATE_ESCAPE.search(raw) is not None)
    return data


def _too_deep(field: str, limit: int) -> ValidationFailed:
    return ValidationFailed(
        f"{field}: nested deeper than {limit} levels of arrays and objects",
        details={"field": field, "limit": limit, "reason": "too deep"},
    )


def _check_tree(data: Any, *, max_depth: int, surrogates: bool) -> None:
    """Walk the parsed value without recursion: depth, strings, numbers."""
    # (value, depth, path); the path is a tuple so it is only rendered for an error
    stack: list[tuple[Any, int, tuple[str | int, ...]]] = [(data, 1, ())]
    while stack:
        value, depth, path = stack.pop()
        if isinstance(value, dict):
            if depth > max_depth:
                raise _too_deep(_render(path), max_depth)
            for key, item in value.items():
                if surrogates and _SURROGATE.search(key):
                    raise _bad_string(_render((*path, key)), "a key")
                if isinstance(item, dict | list):
                    stack.append((item, depth + 1, (*path, key)))
                elif item is not None:
                    _check_scalar(item, (*path, key), surrogates)
        elif isinstance(value, list):
            if depth > max_depth:
                raise _too_deep(_render(path), max_depth)
            for index, item in enumerate(value):
                if isinstance(item, dict | list):
                    stack.append((item, depth + 1, (*path, index)))
                elif item is not None:
                    _check_scalar(item, (*path, index), surrogates)
        else:
            _check_scalar(value, path, surrogates)


def _check_scalar(value: Any, path: tuple[str | int, ...], surrogates: bool) -> None:
    if isinstance(value, str):
        if surrogates and _SURROGATE.search(value):
            raise _bad_string(_render(path), "a string")
    elif isinstance(value, _HugeInt) or (
        type(value) is int and not -MAX_SAFE_INT <= value <= MAX_SAFE_INT
    ):
        field = _render(path)
        raise ValidationFailed(
            f"{field}: integer out of range (at most ±{MAX_SAFE_INT}, 2**53 - 1)",
            details={"field": field, "limit": MAX_SAFE_INT, "reason": "integer out of range"},
        )
    elif isinstance(value, float) and not math.isfinite(value):
        field = _render(path)
        raise ValidationFailed(
            f"{field}: number too large for a double",
            details={"field": field, "reason": "number out of range"},
        )


def _bad_string(field: str, what: str) -> ValidationFailed:
    return ValidationFailed(
        f"{field}: {what} holds an unpaired UTF-16 surrogate (\\ud800-\\udfff), "
        "which is not a Unicode character",
        details={"field": field, "reason": "unpaired surrogate"},
    )


def _render(path: tuple[str | int, ...]) -> str:
    """``("input", "a", 3)`` → ``input.a[3]``, as field names read elsewhere in errors."""
    out = "body" if not path or isinstance(path[0], int) else ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{_printable(part)}" if out else _printable(part)
    return out


def _printable(text: str) -> str:
    """``text`` with surrogates written as ``\\udXXX``: an error must name the bad key
    without carrying it (the answer could not be encoded)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
