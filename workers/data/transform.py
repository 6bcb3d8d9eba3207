"""``transform_records``: declarative rules applied to every record, in order.

Rules (``op`` selects the kind):

- ``{"op": "rename", "field": "a", "to": "b"}``
- ``{"op": "cast", "field": "age", "to": "int|float|str|bool", "on_error": "fail|null|drop"}``
- ``{"op": "filter", "field": "age", "cmp": "gt", "value": 18}`` keeps matching records;
  ``cmp`` ∈ eq ne gt ge lt le in not_in contains exists missing
- ``{"op": "derive", "field": "total", "fn": "mul", "args": [{"field": "qty"}, {"value": 2}]}``;
  ``fn`` ∈ add sub mul div concat upper lower coalesce length round abs
- ``{"op": "drop", "fields": ["tmp"]}`` and ``{"op": "select", "fields": ["id", "name"]}``

Nothing is evaluated as code. Input records are never modified; copies are returned.
"""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from workers.data.limits import BATCH, check_records, clean_field
from workers.kit import Context, ProgressReporter, check_size, tool_error

__all__ = ["TRANSFORM_FAILED", "Rule", "TransformResult", "transform_records"]

TRANSFORM_FAILED = "TRANSFORM_FAILED"
MAX_RULES = 100

_Name = Annotated[str, Field(min_length=1, max_length=200)]


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Rename(_Rule):
    op: Literal["rename"]
    field: _Name
    to: _Name


class Cast(_Rule):
    op: Literal["cast"]
    field: _Name
    to: Literal["int", "float", "str", "bool"]
    on_error: Literal["fail", "null", "drop"] = "fail"


class Filter(_Rule):
    op: Literal["filter"]
    field: _Name
    cmp: Literal[
        "eq", "ne", "gt", "ge", "lt", "le", "in", "not_in", "contains", "exists", "missing"
    ]  # fmt: skip
    value: Any = None

    @model_validator(mode="after")
    def _value_fits(self) -> Filter:
        if self.cmp in ("in", "not_in") and not isinstance(self.value, list):
            raise ValueError(f"cmp '{self.cmp}' needs a list in 'value'")
        return self


class FieldArg(_Rule):
    field: _Name


class ValueArg(_Rule):
    value: Any


_ARITY = {
    "add": (2, 10), "sub": (2, 2), "mul": (2, 10), "div": (2, 2), "concat": (1, 10),
    "upper": (1, 1), "lower": (1, 1), "coalesce": (1, 10), "length": (1, 1),
    "round": (1, 2), "abs": (1, 1),
}  # fmt: skip


class Derive(_Rule):
    op: Literal["derive"]
    field: _Name
    fn: Literal[
        "add", "sub", "mul", "div", "concat", "upper", "lower", "coalesce", "length", "round",
        "abs",
    ]  # fmt: skip
    args: list[FieldArg | ValueArg] = Field(min_length=1, max_length=10)

    @model_validator(mode="after")
    def _arity(self) -> Derive:
        low, high = _ARITY[self.fn]
        if not low <= len(self.args) <= high:
            raise ValueError(f"fn '{self.fn}' takes {low}-{high} args, got {len(self.args)}")
        return self


class Drop(_Rule):
    op: Literal["drop"]
    fields: list[_Name] = Field(min_length=1, max_length=1000)


class Select(_Rule):
    op: Literal["select"]
    fields: list[_Name] = Field(min_length=1, max_length=1000)


Rule = Annotated[Rename | Cast | Filter | Derive | Drop | Select, Field(discriminator="op")]


class TransformResult(BaseModel):
    records: list[dict[str, Any]]
    total_in: int
    total_out: int
    dropped: int = Field(description="Records removed by filter rules or cast on_error=drop.")


class _Drop(Exception):
    """This record leaves the output."""


class _CastFailed(Exception):
    pass


def _to_int(v: Any) -> int:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, str):
        text = v.strip()
        try:
            return int(text)
        except ValueError:
            number = float(text)
            if number.is_integer():
                return int(number)
    raise _CastFailed


def _to_float(v: Any) -> float:
    if isinstance(v, int | float | str) and not isinstance(v, bool):
        number = float(v)
        if math.isfinite(number):
            return number
    elif isinstance(v, bool):
        return float(v)
    raise _CastFailed


_TRUE = {"true", "t", "yes", "y", "1", "on"}
_FALSE = {"false", "f", "no", "n", "0", "off", ""}


def _to_bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, int | float):
        return v != 0
    if isinstance(v, str) and v.strip().lower() in _TRUE | _FALSE:
        return v.strip().lower() in _TRUE
    raise _CastFailed


def _to_str(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dict | list):
        return json.dumps(v, sort_keys=True)
    return str(v)


_CASTS: dict[str, Callable[[Any], Any]] = {
    "int": _to_int, "float": _to_float, "bool": _to_bool, "str": _to_str,
}  # fmt: skip

_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "gt": operator.gt, "ge": operator.ge, "lt": operator.lt, "le": operator.le,
}  # fmt: skip


def _matches(rule: Filter, record: dict[str, Any]) -> bool:
    present = rule.field in record and record[rule.field] is not None
    if rule.cmp == "exists":
        return present
    if rule.cmp == "missing":
        return not present
    value = record.get(rule.field)
    if rule.cmp == "eq":
        return bool(value == rule.value)
    if rule.cmp == "ne":
        return bool(value != rule.value)
    if rule.cmp == "in":
        return value in rule.value
    if rule.cmp == "not_in":
        return value not in rule.value
    if rule.cmp == "contains":
        try:
            return rule.value in value  # type: ignore[operator]  # checked by the except
        except TypeError:
            return False
    try:
        return _ORDER[rule.cmp](value, rule.value)
    except TypeError:  # e.g. "a" > 3 or None < 1: not a match
        return False


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _derive(rule: Derive, record: dict[str, Any]) -> Any:
    vals: list[Any] = [
        record.get(a.field) if isinstance(a, FieldArg) else a.value for a in rule.args
    ]
    fn = rule.fn
    if fn == "coalesce":
        return next((v for v in vals if v is not None), None)
    if fn == "concat":
        return "".join(_to_str(v) for v in vals if v is not None)
    if fn in ("upper", "lower"):
        return getattr(vals[0], fn)() if isinstance(vals[0], str) else None
    if fn == "length":
        return len(vals[0]) if isinstance(vals[0], str | list | dict) else None
    if not all(_is_number(v) for v in vals):
        return None
    if fn == "add":
        return sum(vals)
    if fn == "mul":
        return math.prod(vals)
    if fn == "sub":
        return vals[0] - vals[1]
    if fn == "div":
        return vals[0] / vals[1] if vals[1] != 0 else None
    if fn == "round":
        return round(vals[0], int(vals[1])) if len(vals) > 1 else round(vals[0])
    return abs(vals[0])  # abs


def _apply(rules: list[Rule], record: dict[str, Any], index: int) -> dict[str, Any]:
    out = dict(record)
    for number, rule in enumerate(rules):
        if isinstance(rule, Rename):
            if rule.field in out:
                out[rule.to] = out.pop(rule.field)
        elif isinstance(rule, Cast):
            value = out.get(rule.field)
            if value is None:
                continue
            try:
                out[rule.field] = _CASTS[rule.to](value)
            except (_CastFailed, ValueError, OverflowError):
                if rule.on_error == "null":
                    out[rule.field] = None
                elif rule.on_error == "drop":
                    raise _Drop from None
                else:
                    raise tool_error(
                        TRANSFORM_FAILED,
                        f"rules[{number}] cannot cast records[{index}].{rule.field} to {rule.to}",
                        field=f"records[{index}].{rule.field}",
                        hint="Fix the record, or set on_error to 'null' or 'drop' on the rule.",
                    ) from None
        elif isinstance(rule, Filter):
            if not _matches(rule, out):
                raise _Drop
        elif isinstance(rule, Derive):
            out[rule.field] = _derive(rule, out)
        elif isinstance(rule, Drop):
            for name in rule.fields:
                out.pop(name, None)
        else:
            out = {name: out[name] for name in rule.fields if name in out}
    return out


def _check_rules(rules: list[Rule]) -> None:
    check_size(rules, "rules", max_items=MAX_RULES, min_items=1)
    for i, rule in enumerate(rules):
        if isinstance(rule, Drop | Select):
            rule.fields = [
                clean_field(name, f"rules[{i}].fields[{j}]") for j, name in enumerate(rule.fields)
            ]
            continue
        rule.field = clean_field(rule.field, f"rules[{i}].field")
        if isinstance(rule, Rename):
            rule.to = clean_field(rule.to, f"rules[{i}].to")
        if isinstance(rule, Derive):
            for j, arg in enumerate(rule.args):
                if isinstance(arg, FieldArg):
                    arg.field = clean_field(arg.field, f"rules[{i}].args[{j}].field")


async def transform_records(
    records: list[dict[str, Any]], rules: list[Rule], ctx: Context | None
) -> TransformResult:
    check_records(records)
    _check_rules(rules)
    out: list[dict[str, Any]] = []
    progress = ProgressReporter(ctx, total=len(records))
    for start in range(0, len(records), BATCH):
        batch = records[start : start + BATCH]
        for offset, record in enumerate(batch):
            try:  # noqa: SIM105  # hot loop: suppress() would add a context manager per record
                out.append(_apply(rules, record, start + offset))
            except _Drop:
                pass
        await progress.step(len(batch), f"transformed {start + len(batch)}/{len(records)}")
    return TransformResult(
        records=out, total_in=len(records), total_out=len(out), dropped=len(records) - len(out)
    )
