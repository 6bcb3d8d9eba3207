"""Input limits of the data worker, shared by its tools."""

from __future__ import annotations

from typing import Any

from workers.kit import check_size, invalid, normalize_text

__all__ = ["BATCH", "MAX_FIELD_NAME", "MAX_RECORDS", "check_records", "clean_field"]

MAX_RECORDS = 200_000
"""Records per call; more answers TOO_LARGE (split the dataset and call per part)."""
BATCH = 5_000
"""Records per progress report (and per cancellation point)."""
MAX_FIELD_NAME = 200


def check_records(records: list[dict[str, Any]]) -> None:
    check_size(records, "records", max_items=MAX_RECORDS)


def clean_field(name: str, where: str) -> str:
    text = normalize_text(name, where, max_length=MAX_FIELD_NAME)
    if not text.strip():
        invalid(where, "field name must not be blank")
    return text
