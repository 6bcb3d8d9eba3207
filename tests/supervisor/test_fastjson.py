"""The hot path's JSON: orjson's output where it can, json's where orjson refuses, and the
same values read back either way."""

from __future__ import annotations

import json
from typing import Any

import pytest

from supervisor.fastjson import dumps, dumps_bytes


@pytest.mark.parametrize(
    "value",
    [
        {"a": 1, "b": [1.5, None, True], "c": {"d": "é ✓ \u2028"}},
        {1: "int key", "x": -0.0},
        [10**30, {"n": -(10**40)}],  # past 64 bits: orjson refuses, json takes
        "plain",
        {"tiny": 1e-7, "big": 1.7e308},
    ],
)
def test_reads_back_as_the_standard_library_writes_it(value: Any) -> None:
    assert json.loads(dumps(value)) == json.loads(json.dumps(value))
    assert dumps_bytes(value) == dumps(value).encode()
    assert " " not in dumps({"a": [1, 2]})  # compact, as the store has always written


def test_unknown_types_go_through_default() -> None:
    class Thing:
        def __str__(self) -> str:
            return "thing"

    assert dumps({"t": Thing()}) == '{"t":"thing"}'
    assert dumps({"t": Thing()}, default=lambda _: 7) == '{"t":7}'
    both = dumps({"big": 10**30, "t": Thing()})  # the fallback takes default too
    assert both == '{"big":1000000000000000000000000000000,"t":"thing"}'
