"""Meaning checks at the trust boundary: sizes, ranges, lengths, and strings made safe.

Pydantic checks the *shape* of arguments; these helpers check what the values *mean*, and
raise ``INVALID_INPUT`` / ``TOO_LARGE`` naming the field. Strings are normalised (Unicode
NFC, no NUL or control characters) **before** any path or URL check, so look-alike or
percent-encoded tricks are judged on what the string really is.

>>> normalize_text("cafe\\u0301", "name")
'café'
>>> safe_relative_path("reports/./2024/../q1.csv", "path")
'reports/q1.csv'
"""

from __future__ import annotations

import posixpath
import unicodedata
from collections.abc import Sized
from urllib.parse import unquote, urlsplit

from workers.kit.errors import invalid, too_large

__all__ = [
    "check_range",
    "check_size",
    "check_url",
    "normalize_text",
    "safe_relative_path",
]

_ALLOWED_CONTROL = {"\n", "\r", "\t"}


def normalize_text(value: str, field: str, *, max_length: int | None = None) -> str:
    """NFC-normalise ``value`` and refuse NUL and other control characters (not newlines/tabs)."""
    text = unicodedata.normalize("NFC", value)
    for index, char in enumerate(text):
        if unicodedata.category(char) == "Cc" and char not in _ALLOWED_CONTROL:
            invalid(
                field,
                f"contains control character U+{ord(char):04X} at offset {index}",
                "Remove control characters (NUL, escape codes) from the text.",
            )
    if max_length is not None and len(text) > max_length:
        too_large(
            field,
            f"is {len(text)} characters long; the limit is {max_length}",
            "Send less text, or split it and call the tool once per part.",
        )
    return text


def check_size(value: Sized, field: str, *, max_items: int, min_items: int = 0) -> None:
    """Refuse a collection that is too large (``TOO_LARGE``) or too small (``INVALID_INPUT``)."""
    size = len(value)
    if size > max_items:
        too_large(
            field,
            f"has {size} items; the limit is {max_items}",
            f"Split the input into batches of at most {max_items} and call once per batch.",
        )
    if size < min_items:
        invalid(field, f"has {size} items; at least {min_items} needed")


def check_range(
    value: float, field: str, *, low: float | None = None, high: float | None = None
) -> None:
    """Refuse a number outside ``[low, high]``."""
    if (low is not None and value < low) or (high is not None and value > high):
        invalid(field, f"is {value}; allowed range is [{low}, {high}]")


def safe_relative_path(value: str, field: str) -> str:
    """Normalise a relative path and refuse absolute paths and escapes from the root."""
    text = normalize_text(unquote(value), field, max_length=4096).replace("\\", "/")
    if not text or text.startswith("/") or (len(text) > 1 and text[1] == ":"):
        invalid(field, "must be a non-empty relative path", "Use a path like 'dir/file.csv'.")
    clean = posixpath.normpath(text)
    if clean == ".." or clean.startswith("../"):
        invalid(field, "escapes the allowed root", "Remove '..' segments.")
    return clean


def check_url(value: str, field: str, *, schemes: frozenset[str] = frozenset({"https"})) -> str:
    """Normalise a URL and require one of ``schemes`` and a host; no credentials in it."""
    text = normalize_text(value.strip(), field, max_length=8192)
    parts = urlsplit(text)
    if parts.scheme.lower() not in schemes:
        invalid(field, f"scheme must be one of {sorted(schemes)}", "Use e.g. https://host/path.")
    if not parts.hostname:
        invalid(field, "has no host")
    if parts.username or parts.password:
        invalid(field, "must not carry credentials", "Pass credentials separately.")
    return text
