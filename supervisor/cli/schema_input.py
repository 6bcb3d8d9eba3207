"""A capability's input schema, for people: its fields, an example input built from it, and
``key=value`` arguments typed by it (``fleet submit sleep seconds=3``).

The supervisor validates every input against the schema anyway; this is the friendly front,
so a mistake is one line naming the field and the type it wants, before anything is sent.

    fields(schema)                          # [Field(name="seconds", type="number", ...), ...]
    example(schema)                         # {"seconds": 1, "steps": 10}
    typed_input(schema, ["seconds=3"])      # {"seconds": 3}
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from typing import Any

from supervisor.cli.base import CliError

__all__ = ["Field", "example", "fields", "submit_commands", "typed_input"]

_NO_DEFAULT = object()
_CONSTRAINTS = (
    ("minimum", ">="),
    ("exclusiveMinimum", ">"),
    ("maximum", "<="),
    ("exclusiveMaximum", "<"),
    ("minLength", "min length"),
    ("maxLength", "max length"),
    ("minItems", "min items"),
    ("maxItems", "max items"),
    ("pattern", "pattern"),
)


@dataclass
class Field:
    name: str
    type: str
    required: bool
    default: Any
    description: str
    rules: str
    """Its constraints in short (``>= 0, <= 300``), or ``""``."""

    @property
    def has_default(self) -> bool:
        return self.default is not _NO_DEFAULT


def _deref(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """A local ``$ref`` (``#/$defs/Record``) replaced by what it points at."""
    ref = schema.get("$ref")
    if not isinstance(ref, str) or not ref.startswith("#/"):
        return schema
    target: Any = root
    for part in ref[2:].split("/"):
        target = target.get(part, {}) if isinstance(target, dict) else {}
    return {**(target if isinstance(target, dict) else {}), **{k: v for k, v in schema.items()
                                                                 if k != "$ref"}}  # fmt: skip


def _options(schema: dict[str, Any], root: dict[str, Any]) -> list[dict[str, Any]]:
    """The alternatives a value may take: ``anyOf``/``oneOf`` branches, or the schema."""
    schema = _deref(schema, root)
    branches = schema.get("anyOf") or schema.get("oneOf")
    if isinstance(branches, list) and branches:
        return [_deref(b, root) for b in branches if isinstance(b, dict)]
    return [schema]


def _types(schema: dict[str, Any], root: dict[str, Any]) -> list[str]:
    """The JSON types a value may have, in the schema's order; ``[]`` for any."""
    out: list[str] = []
    for option in _options(schema, root):
        kind = option.get("type")
        kinds = kind if isinstance(kind, list) else [kind] if isinstance(kind, str) else []
        if not kinds and "enum" in option:
            kinds = sorted({_json_type(v) for v in option["enum"]})
        if not kinds and "const" in option:
            kinds = [_json_type(option["const"])]
        if not kinds:
            return []  # one branch takes anything: so does the field
        out += [k for k in kinds if k not in out]
    return out


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _type_name(schema: dict[str, Any], root: dict[str, Any]) -> str:
    parts = []
    for option in _options(schema, root):
        kinds = _types(option, root)
        if "enum" in option:
            parts.append(" | ".join(json.dumps(v) for v in option["enum"]))
        elif kinds == ["array"] and isinstance(option.get("items"), dict):
            inner = _types(option["items"], root)
            parts.append(f"array of {'/'.join(inner)}" if inner else "array")
        else:
            parts.append("/".join(kinds) if kinds else "any JSON")
    return " or ".join(dict.fromkeys(parts)) or "any JSON"


def _rules(schema: dict[str, Any], root: dict[str, Any]) -> str:
    found = []
    for option in _options(schema, root):
        for key, label in _CONSTRAINTS:
            if key in option:
                found.append(f"{label} {option[key]}")
    return ", ".join(found)


def _properties(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    props = _deref(schema, schema).get("properties")
    return {str(k): v for k, v in props.items() if isinstance(v, dict)} if props else {}


def fields(schema: dict[str, Any]) -> list[Field]:
    """The top-level fields of an object schema, required ones first."""
    required = set(schema.get("required") or [])
    out = []
    for name, prop in _properties(schema).items():
        prop = _deref(prop, schema)
        out.append(
            Field(
                name=name,
                type=_type_name(prop, schema),
                required=name in required,
                default=prop.get("default", _NO_DEFAULT),
                description=str(prop.get("description") or prop.get("title") or ""),
                rules=_rules(prop, schema),
            )
        )
    return sorted(out, key=lambda f: not f.required)


def _sample(schema: dict[str, Any], root: dict[str, Any], depth: int = 0) -> Any:
    """A value valid for ``schema`` where that can be told: its default, an example, an enum
    value, or a value of its type within its bounds."""
    schema = _deref(schema, root)
    for key in ("default", "const"):
        if key in schema:
            return schema[key]
    if isinstance(schema.get("examples"), list) and schema["examples"]:
        return schema["examples"][0]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    options = _options(schema, root)
    if len(options) > 1:  # the first branch that is not null
        useful = [o for o in options if _types(o, root) != ["null"]] or options
        return _sample(useful[0], root, depth)
    kinds = _types(schema, root)
    kind = kinds[0] if kinds else "string"
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0) + (kind == "integer"))
        high = schema.get("maximum", schema.get("exclusiveMaximum"))
        value = max(low, 1) if high is None else min(max(low, 1), high)
        return int(value) if kind == "integer" else value
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    if kind == "array":
        items = schema.get("items")
        items = items if isinstance(items, dict) else {}
        count = max(1, int(schema.get("minItems", 1)))
        return [] if depth > 3 else [_sample(items, root, depth + 1) for _ in range(count)]
    if kind == "object":
        return {} if depth > 3 else _object_sample(schema, root, depth + 1)
    length = int(schema.get("minLength", 0))
    text = "example"
    return text if len(text) >= length else text + "x" * (length - len(text))


def _object_sample(schema: dict[str, Any], root: dict[str, Any], depth: int) -> dict[str, Any]:
    required = set(schema.get("required") or [])
    props = schema.get("properties") or {}
    return {
        name: _sample(prop, root, depth)
        for name, prop in props.items()
        if name in required or (isinstance(prop, dict) and "default" in prop)
    }


def example(schema: dict[str, Any]) -> dict[str, Any]:
    """An input for the capability: every required field, and the optional ones with a
    default (at it), so the example also shows what can be set."""
    return _object_sample(_deref(schema, schema), schema, 0)


def _argument(name: str, value: Any) -> str:
    return shlex.quote(f"{name}={value if isinstance(value, str) else json.dumps(value)}")


def submit_commands(capability: str, value: dict[str, Any]) -> list[str]:
    """The ways to submit ``value``: as typed ``key=value`` arguments and as ``--input``."""
    pairs = " ".join(_argument(k, v) for k, v in value.items())
    as_json = shlex.quote(json.dumps(value))
    return [
        f"fleet submit {capability} {pairs}".rstrip(),
        f"fleet submit {capability} --input {as_json}",
    ]


def _convert(raw: str, kinds: list[str]) -> Any:
    """``raw`` as the first of ``kinds`` it reads as; raises ValueError if none."""
    for kind in kinds or ["json"]:
        try:
            if kind == "null" and raw == "null":
                return None
            if kind == "boolean" and raw.lower() in ("true", "false"):
                return raw.lower() == "true"
            if kind == "integer":
                return int(raw)
            if kind == "number":
                number = float(raw)
                return int(number) if number.is_integer() and "." not in raw else number
            if kind in ("array", "object"):
                value = json.loads(raw)
                if _json_type(value) == kind:
                    return value
            if kind == "string":
                return raw
            if kind == "json":  # a field of any type: JSON if it reads as JSON, else text
                try:
                    return json.loads(raw)
                except ValueError:
                    return raw
        except ValueError:
            continue
    raise ValueError(raw)


def typed_input(schema: dict[str, Any], pairs: list[str], capability: str) -> dict[str, Any]:
    """``key=value`` arguments as an input object, each value typed by the field's schema:
    numbers, booleans, null; JSON for arrays and objects; strings as they are."""
    props = _properties(schema)
    extra = _deref(schema, schema).get("additionalProperties")
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise CliError(f"arguments after the capability are key=value, got {pair!r}")
        if key in out:
            raise CliError(f"field {key!r} is given twice")
        prop = props.get(key)
        if prop is None:
            if props and extra in (None, False):
                known = ", ".join(props) or "none"
                raise CliError(f"{capability} has no field {key!r} (fields: {known})")
            prop = extra if isinstance(extra, dict) else {}
        kinds = _types(prop, schema)
        try:
            out[key] = _convert(raw, kinds)
        except ValueError:
            raise CliError(
                f"field {key!r} of {capability} takes {_type_name(prop, schema)}, got {raw!r}"
            ) from None
    return out
