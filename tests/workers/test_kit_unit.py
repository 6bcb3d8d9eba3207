"""Unit tests of the kit's small parts: errors, validation, slots, toolsets, public surface."""

from __future__ import annotations

import json

import pytest
from fastmcp.exceptions import ToolError
from pydantic import BaseModel, ValidationError

import workers.kit
from shared.protocol import decode_tool_error
from workers.kit import Toolset, check_size, check_url, normalize_text, safe_relative_path
from workers.kit.concurrency import Slots
from workers.kit.errors import field_path, from_validation_error
from workers.kit.registration import instance_id


def payload(exc: pytest.ExceptionInfo[ToolError]) -> dict[str, object]:
    data: dict[str, object] = json.loads(str(exc.value))
    return data


def test_public_surface_is_deliberate() -> None:
    assert sorted(workers.kit.__all__) == sorted(
        [
            "BUSY", "IDEMPOTENCY_CONFLICT", "INTERNAL", "INVALID_INPUT", "MCP_PATH",
            "SHUTTING_DOWN", "TOO_LARGE", "UNAUTHORIZED", "UNAVAILABLE", "Context",
            "ProgressReporter", "ToolSpec", "Toolset", "Worker", "WorkerSettings",
            "check_range", "check_size", "check_url", "invalid", "main", "normalize_text",
            "parse_settings", "safe_relative_path", "tool_error", "too_large",
            "Child", "ChildFailed", "DelegationError", "DelegationLimit", "Fleet",
        ]
    )  # fmt: skip
    for name in workers.kit.__all__:
        assert hasattr(workers.kit, name)


def test_field_path_renders_indexes_and_names() -> None:
    assert field_path(("records", 3, "age")) == "records[3].age"
    assert field_path(("rules", 0, "args", 1, "field")) == "rules[0].args[1].field"


def test_validation_error_drops_union_branch_names_when_input_is_known() -> None:
    class Inner(BaseModel):
        age: int

    class Outer(BaseModel):
        items: list[Inner]

    with pytest.raises(ValidationError) as caught:
        Outer.model_validate({"items": [{"age": 1}, {"age": "old"}]})
    err = decode_tool_error(str(from_validation_error(caught.value, {"items": [{}, {}]})))
    assert err.code == "INVALID_INPUT"
    assert err.field == "items[1].age"
    assert "old" not in err.message  # the value is never echoed


def test_normalize_text_refuses_control_characters_and_normalises() -> None:
    assert normalize_text("cafe\u0301", "f") == "caf\u00e9"
    with pytest.raises(ToolError) as caught:
        normalize_text("a\x00b", "name")
    assert payload(caught)["field"] == "name"
    with pytest.raises(ToolError) as caught:
        normalize_text("x" * 11, "name", max_length=10)
    assert payload(caught)["code"] == "TOO_LARGE"


def test_safe_relative_path_normalises_before_checking() -> None:
    assert safe_relative_path("a/./b/../c.csv", "p") == "a/c.csv"
    for bad in ("/etc/passwd", "../x", "a/../../x", "%2e%2e/x", "C:\\x", "..\\x"):
        with pytest.raises(ToolError) as caught:
            safe_relative_path(bad, "path")
        assert payload(caught)["code"] == "INVALID_INPUT", bad


def test_check_url_requires_scheme_host_and_no_credentials() -> None:
    assert check_url(" https://example.com/x ", "url") == "https://example.com/x"
    for bad in ("http://example.com", "https://", "https://u:p@example.com", "file:///etc"):
        with pytest.raises(ToolError):
            check_url(bad, "url")


def test_check_size_names_too_large() -> None:
    with pytest.raises(ToolError) as caught:
        check_size([1, 2, 3], "records", max_items=2)
    assert payload(caught)["code"] == "TOO_LARGE"
    assert payload(caught)["field"] == "records"


def test_slots_refuse_instead_of_waiting() -> None:
    slots = Slots(2)
    assert slots.try_acquire() and slots.try_acquire()
    assert not slots.try_acquire()
    slots.release()
    assert slots.try_acquire()


def test_toolset_refuses_duplicates_and_reads_docstrings() -> None:
    tools = Toolset()

    @tools.tool()
    async def one() -> int:
        """First line
        continues here.

        Second paragraph."""
        return 1

    assert next(iter(tools)).description == "First line continues here.\n\nSecond paragraph."
    with pytest.raises(ValueError):
        tools.tool(name="one")(one)


def test_instance_id_is_stable_per_url() -> None:
    a = instance_id("data", "http://w1:8701/mcp")
    assert a == instance_id("data", "http://w1:8701/mcp")
    assert a != instance_id("data", "http://w2:8701/mcp")
    assert a.startswith("data-") and len(a) == len("data-") + 10


def test_worker_process_runs_on_uvloop_as_uvicorn_runs_the_supervisor() -> None:
    """A worker's event loop is uvloop's when it is installed (the worker extra brings it):
    the bare FastMCP server the bench compares the kit with runs on it through uvicorn."""
    import asyncio

    import uvloop

    from workers.kit.cli import _runner

    async def loop_type() -> type:
        return type(asyncio.get_running_loop())

    with _runner() as runner:
        assert issubclass(runner.run(loop_type()), uvloop.Loop)
