"""The reference language: one test per rule of the grammar and of the walk (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from supervisor.workflows.refs import STAR, Ref, RefError, Scope, lookup, parse, refs_in, resolve

SCOPE = Scope(
    input={"text": "hi", "odd key": 1, "list": [10, 20, 30], "nested": {"a": [{"b": 1}]}},
    results={
        "split": {"chunks": [{"text": "a"}, {"text": "b"}]},
        "each": [{"keywords": ["x", "y"]}, {"keywords": ["z"]}],
    },
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$.input", Ref("$.input", "input")),
        ("$.input.text", Ref("$.input.text", "input", path=("text",))),
        ("$.input.list[0]", Ref("$.input.list[0]", "input", path=("list", 0))),
        ("$.input.list[-1]", Ref("$.input.list[-1]", "input", path=("list", -1))),
        ('$.input["odd key"]', Ref('$.input["odd key"]', "input", path=("odd key",))),
        ("$.input['a.b']", Ref("$.input['a.b']", "input", path=("a.b",))),
        ("$.item", Ref("$.item", "item")),
        ("$.item.text", Ref("$.item.text", "item", path=("text",))),
        ("$.index", Ref("$.index", "index")),
        (
            "$.steps.split.result.chunks",
            Ref("$.steps.split.result.chunks", "steps", "split", "result", ("chunks",)),
        ),
        (
            "$.steps.each.results[*].keywords",
            Ref("$.steps.each.results[*].keywords", "steps", "each", "results", (STAR, "keywords")),
        ),
        (
            "$.steps.my-step_2.result",
            Ref("$.steps.my-step_2.result", "steps", "my-step_2", "result"),
        ),
    ],
)
def test_parse(text: str, expected: Ref) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("$", "begins with $.input"),
        ("$.", "unexpected '.'"),
        ("$.nothing", "begins with $.input"),
        ("$.input.", "unexpected '.'"),
        ("$.input..x", "unexpected '..x'"),
        ("$.input[x]", "unexpected '[x]'"),
        ("$.input[1", "unexpected '[1'"),
        ("$.input.text()", "unexpected '()'"),
        ("$.input.__class__.x + 1", "unexpected ' + 1'"),
        ("$.index.x", "nothing follows"),
        ("$.steps", "followed by a step's name"),
        ("$.steps[0]", "followed by a step's name"),
        ("$.steps.a", ".result (a plain step) or .results"),
        ("$.steps.a.output", ".result (a plain step) or .results"),
        ("$input.text", "unexpected 'input.text'"),
        ("$." + "a" * 1000, "at most 1000 characters"),
    ],
)
def test_parse_refuses(text: str, reason: str) -> None:
    with pytest.raises(RefError) as caught:
        parse(text)
    assert reason in caught.value.reason


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("$.input.text", "hi"),
        ('$.input["odd key"]', 1),
        ("$.input.list[1]", 20),
        ("$.input.list[-1]", 30),
        ("$.input.nested.a[0].b", 1),
        ("$.steps.split.result.chunks[1].text", "b"),
        ("$.steps.split.result.chunks[*].text", ["a", "b"]),
        ("$.steps.each.results[*].keywords", [["x", "y"], ["z"]]),
        ("$.steps.each.results[*].keywords[*]", [["x", "y"], ["z"]]),
        ("$.steps.each.results[*].keywords[0]", ["x", "z"]),
        ("$.steps.each.results", [{"keywords": ["x", "y"]}, {"keywords": ["z"]}]),
    ],
)
def test_lookup(text: str, value: Any) -> None:
    assert lookup(parse(text), SCOPE) == value


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("$.input.missing", "$.input has no field 'missing'"),
        ("$.input.list[3]", "$.input.list has 3 elements: no [3]"),
        ("$.input.list[-4]", "has 3 elements"),
        ("$.input.text.x", "$.input.text is a string, not an object"),
        ("$.input.text[0]", "is a string, not a list"),
        ("$.input.text[*]", "[*] needs a list"),
        ("$.input.list.x", "is a list, not an object"),
        ("$.steps.other.result", "step 'other' has no result"),
        ("$.item", "only known in a map step"),
        ("$.index", "only known in a map step"),
        ("$.steps.split.result.chunks[*].nope", "$.steps.split.result.chunks[0] has no field"),
    ],
)
def test_lookup_refuses(text: str, reason: str) -> None:
    with pytest.raises(RefError) as caught:
        lookup(parse(text), SCOPE)
    assert reason in caught.value.reason
    assert caught.value.ref == text


def test_item_and_index_in_a_map() -> None:
    scope = Scope(input={}, item={"text": "t"}, index=3)
    assert resolve({"t": "$.item.text", "i": "$.index", "whole": "$.item"}, scope) == {
        "t": "t",
        "i": 3,
        "whole": {"text": "t"},
    }


def test_resolve_replaces_whole_strings_only_and_unescapes() -> None:
    template = {
        "a": "$.input.text",
        "b": "say $.input.text",  # not exactly a reference: a literal
        "c": "$$.input.text",  # escaped
        "d": "$$5 a month",
        "e": ["$.input.list[0]", 2, None, True, {"f": "$.input.list"}],
        "$.input.text": "keys are never references",
    }
    assert resolve(template, SCOPE) == {
        "a": "hi",
        "b": "say $.input.text",
        "c": "$.input.text",
        "d": "$5 a month",
        "e": [10, 2, None, True, {"f": [10, 20, 30]}],
        "$.input.text": "keys are never references",
    }
    assert template["a"] == "$.input.text"  # the template is left as it was


def test_refs_in_names_the_field() -> None:
    found = list(refs_in({"a": {"b": ["x", "$.item.y"]}, "c": "$.index", "d": "$$x"}))
    assert [(where, ref.text) for where, ref in found] == [("a.b[1]", "$.item.y"), ("c", "$.index")]
    with pytest.raises(RefError) as caught:
        list(refs_in({"a": [{"b": "$.inptu"}]}))
    assert caught.value.ref == "a[0].b"


def test_a_value_is_data_never_code() -> None:
    """A result that looks like a reference stays a string: references are resolved once,
    in the template, never in the data they read."""
    scope = Scope(input={"x": "$.input.y", "y": "secret"})
    assert resolve("$.input.x", scope) == "$.input.y"
