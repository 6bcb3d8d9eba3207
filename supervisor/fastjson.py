"""Compact JSON for the hot path: orjson where it can, the standard library where it cannot.

orjson encodes a job's fields, an event's data and a worker call's body several times faster
than ``json.dumps``; its output is the same compact JSON (UTF-8 rather than ``\\u`` escapes,
which every reader takes alike). What it refuses — an integer past 64 bits, which a job's
input may hold — goes to ``json.dumps``, so nothing a client sent is lost or changed.

Decoding stays with ``json.loads``: orjson reads an integer past 64 bits as a float, which
would change a stored input or result.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import orjson

__all__ = ["dumps", "dumps_bytes"]

_OPTIONS = orjson.OPT_NON_STR_KEYS  # {1: ...} as json.dumps writes it: {"1": ...}


def dumps_bytes(value: Any, default: Callable[[Any], Any] = str) -> bytes:
    """``value`` as compact JSON; ``default`` makes JSON of what JSON has no type for."""
    try:
        return orjson.dumps(value, default=default, option=_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError: an integer past 64 bits, a NaN key...
        return json.dumps(value, separators=(",", ":"), default=default).encode()


def dumps(value: Any, default: Callable[[Any], Any] = str) -> str:
    return dumps_bytes(value, default).decode()
