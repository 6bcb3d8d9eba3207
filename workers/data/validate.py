"""``validate_records``: check every record against a JSON Schema (Draft 2020-12)."""

from __future__ import annotations

from typing import Any

import jsonschema
from pydantic import BaseModel, Field

from workers.data.limits import BATCH, check_records
from workers.kit import Context, ProgressReporter, invalid
from workers.kit.errors import field_path

__all__ = ["RecordError", "ValidationReport", "validate_records"]

MAX_SCHEMA_CHARS = 200_000


class RecordError(BaseModel):
    index: int = Field(description="Position of the record in `records`.")
    path: str = Field(description="Where in the call's input, e.g. records[3].age.")
    message: str
    validator: str = Field(description="The JSON Schema keyword that failed, e.g. 'type'.")


class ValidationReport(BaseModel):
    total: int
    valid: int
    invalid: int
    errors: list[RecordError] = Field(description="At most `max_errors` problems, in order.")
    truncated: bool = Field(description="True when more problems exist than were listed.")


async def validate_records(
    records: list[dict[str, Any]],
    schema: dict[str, Any],
    max_errors: int,
    ctx: Context | None,
) -> ValidationReport:
    check_records(records)
    if len(repr(schema)) > MAX_SCHEMA_CHARS:
        invalid("schema", f"is larger than {MAX_SCHEMA_CHARS} characters")
    validator_cls = jsonschema.validators.validator_for(schema, jsonschema.Draft202012Validator)
    try:
        validator_cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = field_path(["schema", *exc.absolute_path])
        invalid(where, f"is not a valid JSON Schema: {exc.message[:300]}", "Fix the schema.")
    validator = validator_cls(schema)
    errors: list[RecordError] = []
    bad = problems = 0
    progress = ProgressReporter(ctx, total=len(records))
    for start in range(0, len(records), BATCH):
        batch = records[start : start + BATCH]
        for offset, record in enumerate(batch):
            index = start + offset
            found = False
            for err in validator.iter_errors(record):
                found = True
                problems += 1
                if len(errors) >= max_errors:
                    continue
                errors.append(
                    RecordError(
                        index=index,
                        path=field_path(["records", index, *err.absolute_path]),
                        message=err.message[:500],
                        validator=str(err.validator),
                    )
                )
            bad += found
        await progress.step(len(batch), f"validated {start + len(batch)}/{len(records)}")
    return ValidationReport(
        total=len(records),
        valid=len(records) - bad,
        invalid=bad,
        errors=errors,
        truncated=problems > len(errors),
    )
