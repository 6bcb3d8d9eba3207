"""``profile_dataset``: per-field statistics in one streaming pass.

Per field: ``count`` (non-null values), ``nulls`` (missing or null), ``distinct``, the JSON
``types`` seen, numeric ``min``/``max``/``mean``/``stddev`` (sample standard deviation, by
Welford's method; booleans are not numbers here) and the ``top_values``.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any

from pydantic import BaseModel, Field

from workers.data.limits import BATCH, check_records, clean_field
from workers.kit import Context, ProgressReporter, check_size, too_large

__all__ = ["DatasetProfile", "FieldProfile", "TopValue", "profile_dataset"]

MAX_FIELDS = 1_000
MAX_DISTINCT = 100_000
"""Distinct values tracked per field; past it, ``distinct`` and ``top_values`` are lower bounds."""


class TopValue(BaseModel):
    value: Any
    count: int


class FieldProfile(BaseModel):
    count: int = Field(description="Records where the field holds a non-null value.")
    nulls: int = Field(description="Records where the field is missing or null.")
    distinct: int
    distinct_capped: bool = Field(description="True when `distinct` is a lower bound.")
    types: dict[str, int] = Field(description="JSON type name -> how many values had it.")
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    stddev: float | None = Field(default=None, description="Sample standard deviation.")
    top_values: list[TopValue]


class DatasetProfile(BaseModel):
    total_records: int
    fields: dict[str, FieldProfile]


def _type_name(v: Any) -> str:
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


class _Acc:
    __slots__ = ("capped", "count", "m2", "max", "mean", "min", "n", "samples", "top", "types")

    def __init__(self) -> None:
        self.count = 0
        self.types: Counter[str] = Counter()
        self.top: Counter[tuple[str, Any]] = Counter()
        self.samples: dict[tuple[str, Any], Any] = {}
        self.capped = False
        self.n = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.min = math.inf
        self.max = -math.inf

    def add(self, value: Any) -> None:
        self.count += 1
        kind = _type_name(value)
        self.types[kind] += 1
        if kind in ("integer", "number") and math.isfinite(value):
            self.n += 1
            delta = value - self.mean
            self.mean += delta / self.n
            self.m2 += delta * (value - self.mean)
            self.min = value if value < self.min else self.min
            self.max = value if value > self.max else self.max
        # Key by type too, so True and 1 (equal in Python) stay apart.
        key = (kind, json.dumps(value, sort_keys=True) if kind in ("array", "object") else value)
        if key in self.top:
            self.top[key] += 1
        elif len(self.top) < MAX_DISTINCT:
            self.top[key] = 1
            self.samples[key] = value
        else:
            self.capped = True

    def result(self, total: int, top_n: int) -> FieldProfile:
        numeric = self.n > 0
        return FieldProfile(
            count=self.count,
            nulls=total - self.count,
            distinct=len(self.top),
            distinct_capped=self.capped,
            types=dict(self.types),
            min=self.min if numeric else None,
            max=self.max if numeric else None,
            mean=self.mean if numeric else None,
            stddev=math.sqrt(self.m2 / (self.n - 1)) if self.n > 1 else None,
            top_values=[
                TopValue(value=self.samples[key], count=count)
                for key, count in self.top.most_common(top_n)
            ],
        )


async def profile_dataset(
    records: list[dict[str, Any]],
    fields: list[str] | None,
    top_n: int,
    ctx: Context | None,
) -> DatasetProfile:
    check_records(records)
    wanted: list[str] | None = None
    if fields is not None:
        check_size(fields, "fields", max_items=MAX_FIELDS, min_items=1)
        wanted = [clean_field(name, f"fields[{i}]") for i, name in enumerate(fields)]
    accs: dict[str, _Acc] = {name: _Acc() for name in wanted or ()}
    progress = ProgressReporter(ctx, total=len(records))
    for start in range(0, len(records), BATCH):
        batch = records[start : start + BATCH]
        for record in batch:
            names = wanted if wanted is not None else record.keys()
            for name in names:
                acc = accs.get(name)
                if acc is None:
                    if len(accs) >= MAX_FIELDS:
                        too_large(
                            "records",
                            f"have more than {MAX_FIELDS} distinct field names",
                            "Pass `fields` to profile only the fields you need.",
                        )
                    acc = accs[name] = _Acc()
                value = record.get(name)
                if value is not None:
                    acc.add(value)
        await progress.step(len(batch), f"profiled {start + len(batch)}/{len(records)}")
    return DatasetProfile(
        total_records=len(records),
        fields={name: acc.result(len(records), top_n) for name, acc in accs.items()},
    )
