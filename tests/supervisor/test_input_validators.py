"""A capability's input validator is built once per schema, and found again per submission
without serialising the schema (supervisor.api.validation)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from supervisor.api import validation


def test_one_validator_per_schema_dict(monkeypatch: pytest.MonkeyPatch) -> None:
    dumped: list[Any] = []
    real = json.dumps

    def counting(value: Any, **kw: Any) -> str:
        dumped.append(value)
        return real(value, **kw)

    monkeypatch.setattr(validation.json, "dumps", counting)
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    first = validation._validator_of(schema)
    assert [validation._validator_of(schema) for _ in range(5)] == [first] * 5
    assert dumped == [schema]  # serialised once, for the shared cache's key
    twin = json.loads(real(schema))  # equal, another dict: the same validator, by its text
    assert validation._validator_of(twin) is first
    assert len(dumped) == 2
    assert first.is_valid({"n": 1}) and not first.is_valid({"n": "x"}) and not first.is_valid({})


def test_the_memory_is_capped() -> None:
    schemas = [{"type": "object", "maxProperties": i} for i in range(1200)]
    for schema in schemas:
        validation._validator_of(schema)
        assert len(validation._BY_OBJECT) <= 512
    assert validation._validator_of(schemas[-1]).is_valid({"a": 1})
    assert not validation._validator_of(schemas[0]).is_valid({"a": 1})
