"""A workflow's checks at submit (pure): every refusal names the step, the field and why."""

from __future__ import annotations

from typing import Any

import pytest

from shared.errors import InvalidWorkflow
from supervisor.workflows.spec import MAX_STEPS, parse_spec, plan

KEYWORDS: dict[str, Any] = {
    "name": "keywords",
    "input": {"text": "..."},
    "steps": {
        "split": {"capability": "chunk_text", "input": {"text": "$.input.text", "max_chars": 400}},
        "each": {
            "capability": "extract_keywords",
            "map": "$.steps.split.result.chunks",
            "concurrency": 8,
            "input": {"text": "$.item.text"},
        },
        "merge": {
            "capability": "summarize",
            "after": ["each"],
            "input": {"text": "$.steps.each.results[*].keywords"},
        },
    },
    "output": "$.steps.merge.result",
    "on_failure": "fail_fast",
}


def refused(data: dict[str, Any]) -> dict[str, Any]:
    with pytest.raises(InvalidWorkflow) as caught:
        plan(parse_spec(data))
    error = caught.value
    assert error.status == 422 and error.code == "INVALID_WORKFLOW"
    assert error.details["reason"] in error.message
    return error.details


def with_steps(**steps: Any) -> dict[str, Any]:
    return {"steps": steps}


def test_the_contract_example_plans() -> None:
    planned = plan(parse_spec(KEYWORDS))
    assert planned.order == ("split", "each", "merge")
    assert planned.needs == {
        "split": frozenset(),
        "each": frozenset({"split"}),
        "merge": frozenset({"each"}),
    }
    assert planned.sinks == ("merge",)


def test_fan_out_and_fan_in_order() -> None:
    planned = plan(
        parse_spec(
            with_steps(
                a={"capability": "noop"},
                b={"capability": "noop", "after": ["a"]},
                c={"capability": "noop", "after": ["a"]},
                d={
                    "capability": "echo",
                    "input": {"value": ["$.steps.b.result", "$.steps.c.result"]},
                },
            )
        )
    )
    assert planned.order.index("a") < planned.order.index("b") < planned.order.index("d")
    assert planned.order.index("c") < planned.order.index("d")
    assert planned.needs["d"] == {"b", "c"}
    assert planned.sinks == ("d",)


def test_a_cycle_is_named() -> None:
    details = refused(
        with_steps(
            a={"capability": "noop", "after": ["c"]},
            b={"capability": "noop", "input": {"x": "$.steps.a.result"}},
            c={"capability": "noop", "after": ["b"]},
        )
    )
    assert details["field"] == "after"
    cycle = details["cycle"]
    assert set(cycle) == {"a", "b", "c"} and cycle[0] == cycle[-1]
    assert details["step"] == cycle[0]


def test_a_step_that_needs_itself_is_a_cycle() -> None:
    details = refused(with_steps(a={"capability": "noop", "input": {"x": "$.steps.a.result"}}))
    assert details["step"] == "a" and details["cycle"] == ["a", "a"]


@pytest.mark.parametrize(
    ("steps", "step", "field", "reason"),
    [
        ({"a": {"capability": "noop", "after": ["nope"]}}, "a", "after[0]", "no step named 'nope'"),
        (
            {"a": {"capability": "noop", "input": {"x": {"y": ["$.steps.nope.result"]}}}},
            "a",
            "input.x.y[0]",
            "no step named 'nope'",
        ),
        (
            {"a": {"capability": "noop", "input": {"x": "$.item"}}},
            "a",
            "input.x",
            "$.item and $.index are for map steps",
        ),
        (
            {"a": {"capability": "noop", "map": "$.input.l", "input": {"x": "$.steps.a.results"}}},
            "a",
            "after",
            "cycle",
        ),
        ({"a": {"capability": "noop", "map": "items"}}, "a", "map", "map is a reference"),
        ({"a": {"capability": "noop", "map": "$.item"}}, "a", "map", "are for map steps"),
        ({"a": {"capability": "noop", "concurrency": 2}}, "a", "concurrency", "for map steps"),
        (
            {"a": {"capability": "noop", "input": {"x": "$.inptu.x"}}},
            "a",
            "input.x",
            "a reference begins with",
        ),
        (
            {"a": {"capability": "noop", "map": "$.input.l"},
             "b": {"capability": "noop", "input": {"x": "$.steps.a.result"}}},
            "b",
            "input.x",
            "'a' is a map step: read .results",
        ),
        (
            {"a": {"capability": "noop"},
             "b": {"capability": "noop", "input": {"x": "$.steps.a.results"}}},
            "b",
            "input.x",
            "'a' is not a map step: read .result",
        ),
        (
            {"a": {"capability": "noop", "map": "$.input.l", "idempotency_key": "same-for-all"}},
            "a",
            "idempotency_key",
            "must tell its items apart",
        ),
        (
            {"a": {"capability": "noop", "idempotency_key": "$.steps.zz.result"}},
            "a",
            "idempotency_key",
            "no step named 'zz'",
        ),
        ({"bad name!": {"capability": "noop"}}, "bad name!", "name", "a step's name"),
    ],
)  # fmt: skip
def test_bad_steps_are_named(steps: dict[str, Any], step: str, field: str, reason: str) -> None:
    details = refused({"input": {"l": [1]}, "steps": steps})
    assert (details["step"], details["field"]) == (step, field)
    assert reason in details["reason"]


@pytest.mark.parametrize(
    ("data", "field", "reason"),
    [
        ({"steps": {}}, "steps", "at least one step"),
        (
            {"steps": {f"s{i}": {"capability": "noop"} for i in range(MAX_STEPS + 1)}},
            "steps",
            f"at most {MAX_STEPS} steps",
        ),
        ({"steps": {"a": {"capability": "noop"}}, "output": "$.item"}, "output", "map steps"),
        (
            {"steps": {"a": {"capability": "noop"}}, "output": {"x": "$.steps.b.result"}},
            "output.x",
            "no step named 'b'",
        ),
        (
            {"steps": {"a": {"capability": "noop"}}, "input": {"x": "$.steps.a.result"}},
            "input.x",
            "cannot read steps",
        ),
    ],
)
def test_bad_workflows_are_named(data: dict[str, Any], field: str, reason: str) -> None:
    details = refused(data)
    assert details["step"] is None and details["field"] == field
    assert reason in details["reason"]


@pytest.mark.parametrize(
    ("data", "step", "field"),
    [
        ([1, 2], None, "body"),
        ({}, None, "steps"),
        ({"steps": {"a": {"capability": "noop"}}, "stesp": {}}, None, "stesp"),
        ({"steps": {"a": {"capability": "noop", "inptu": {}}}}, "a", "inptu"),
        ({"steps": {"a": {"capability": "noop", "max_attempts": "3"}}}, "a", "max_attempts"),
        ({"steps": {"a": {"capability": "noop", "concurrency": 0, "map": "$.input"}}}, "a",
         "concurrency"),
        ({"steps": {"a": {"capability": "no pe"}}}, "a", "capability"),
        ({"steps": {"a": {"capability": "noop"}}, "on_failure": "ignore"}, None, "on_failure"),
        ({"steps": {"a": 5}}, "a", "step"),
    ],
)  # fmt: skip
def test_shape_errors_are_named(data: Any, step: str | None, field: str) -> None:
    details = refused(data)
    assert (details["step"], details["field"]) == (step, field)


def test_escapes_and_map_item_keys_pass() -> None:
    planned = plan(
        parse_spec(
            with_steps(
                a={
                    "capability": "echo",
                    "map": "$.input.items",
                    "idempotency_key": "$.item.id",
                    "input": {"value": "$$.not.a.ref", "i": "$.index"},
                }
            )
        )
    )
    assert planned.needs == {"a": frozenset()}
