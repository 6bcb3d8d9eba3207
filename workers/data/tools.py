"""The data worker's tools. Descriptions are written for an LLM choosing a tool."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from workers.data import profile, transform, validate
from workers.data.limits import MAX_RECORDS
from workers.kit import Context, Toolset

__all__ = ["tools"]

tools = Toolset()

Records = Annotated[
    list[dict[str, Any]],
    Field(description=f"The dataset: a list of JSON objects (at most {MAX_RECORDS})."),
]


@tools.tool(idempotent=True, read_only=True, estimated_duration_ms=500, max_concurrency=2)
async def validate_records(
    records: Records,
    schema: Annotated[dict[str, Any], Field(description="A JSON Schema for ONE record.")],
    ctx: Context,
    max_errors: Annotated[int, Field(ge=1, le=10_000)] = 100,
) -> validate.ValidationReport:
    """Check every record against a JSON Schema (Draft 2020-12 unless `$schema` says
    otherwise). Call it before loading or transforming data to find bad records. Needs
    `records` and `schema` (describing a single record), optionally `max_errors` (default
    100). Returns counts of valid and invalid records and the first problems, each with the
    record index, its path (e.g. records[3].age), the message and the failing keyword.
    Errors: INVALID_INPUT with field "schema" when the schema itself is invalid; TOO_LARGE
    over the record limit."""
    return await validate.validate_records(records, schema, max_errors, ctx)


@tools.tool(idempotent=True, read_only=True, estimated_duration_ms=500, max_concurrency=2)
async def transform_records(
    records: Records,
    rules: Annotated[
        list[transform.Rule],
        Field(description="Rules applied in order to every record (1-100 rules)."),
    ],
    ctx: Context,
) -> transform.TransformResult:
    """Reshape records with declarative rules, applied in order to each record: rename
    ({"op":"rename","field":"a","to":"b"}), cast ({"op":"cast","field":"age","to":"int",
    "on_error":"fail|null|drop"}; to is int, float, str or bool), filter ({"op":"filter",
    "field":"age","cmp":"ge","value":18}; keeps matching records; cmp is eq, ne, gt, ge, lt,
    le, in, not_in, contains, exists or missing), derive ({"op":"derive","field":"total",
    "fn":"mul","args":[{"field":"qty"},{"value":2}]}; fn is add, sub, mul, div, concat,
    upper, lower, coalesce, length, round or abs; bad operands give null), drop
    ({"op":"drop","fields":[...]}) and select ({"op":"select","fields":[...]}). Call it to
    clean, filter or enrich a dataset; no code is evaluated. Needs `records` and `rules`.
    Returns the new records with total_in, total_out and dropped. Errors: INVALID_INPUT
    naming the bad rule field (e.g. rules[0].op); TRANSFORM_FAILED naming the record field
    a cast with on_error "fail" could not convert (e.g. records[12].age)."""
    return await transform.transform_records(records, rules, ctx)


@tools.tool(idempotent=True, read_only=True, estimated_duration_ms=500, max_concurrency=2)
async def profile_dataset(
    records: Records,
    ctx: Context,
    fields: Annotated[
        list[str] | None,
        Field(description="Only these fields (default: every field seen)."),
    ] = None,
    top_n: Annotated[int, Field(ge=0, le=100, description="Most common values to list.")] = 5,
) -> profile.DatasetProfile:
    """Summarise a dataset field by field: count of values, nulls (missing or null),
    distinct values, JSON types seen, numeric min, max, mean and sample standard deviation,
    and the `top_n` most common values. Call it to understand unfamiliar data or check
    data quality before using it. Needs `records`; optionally `fields` and `top_n` (default
    5). Returns {total_records, fields: {name: profile}}. Errors: TOO_LARGE over the record
    limit or past 1000 distinct field names (pass `fields`)."""
    return await profile.profile_dataset(records, fields, top_n, ctx)
