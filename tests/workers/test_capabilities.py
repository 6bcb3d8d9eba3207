"""``get_capabilities`` is generated from the registered tools; tools/list shows idempotency."""

from __future__ import annotations

from types import ModuleType

import pytest
from fastmcp import Client

from shared.models import CapabilitiesReport
from shared.protocol import CAPABILITIES_TOOL
from shared.settings import WorkerSettings
from workers import data, echo, text

EXPECTED = {
    "echo": {"noop", "echo", "sleep", "fail", "progress"},
    "data": {"validate_records", "transform_records", "profile_dataset"},
    "text": {"text_stats", "extract_keywords", "summarize", "chunk_text", "keywords_by_chunk"},
}


@pytest.mark.parametrize("module", [echo, data, text], ids=lambda m: m.__name__)
async def test_capabilities_match_the_registered_tools(module: ModuleType) -> None:
    worker = module.build(WorkerSettings(redis_url=None, max_concurrency=3))
    async with Client(worker.server) as client:
        tools = {t.name: t for t in await client.list_tools()}
        raw = (await client.call_tool(CAPABILITIES_TOOL, {})).structured_content
    report = CapabilitiesReport.model_validate(raw)
    name = module.__name__.split(".")[-1]
    assert report.service_name == name
    assert report.version == module.VERSION
    assert set(report.capabilities) == EXPECTED[name] == set(tools) - {CAPABILITIES_TOOL}
    assert CAPABILITIES_TOOL in tools and CAPABILITIES_TOOL not in report.capabilities
    for cap_name, cap in report.capabilities.items():
        tool = tools[cap_name]
        assert cap.description == tool.description and len(cap.description) > 80
        assert cap.input_schema == tool.input_schema
        assert cap.output_schema == tool.output_schema
        assert cap.estimated_duration_ms is not None
        spec = worker.runtime.specs[cap_name]
        assert cap.idempotent is spec.idempotent
        assert cap.max_concurrency == (spec.max_concurrency or 3)
        assert tool.annotations is not None
        assert tool.annotations.idempotent_hint is spec.idempotent
        assert tool.annotations.read_only_hint is spec.read_only
    assert report.health_status == "healthy"
    assert report.load.in_flight == 0
    assert report.load.max_concurrency == sum(
        c.max_concurrency for c in report.capabilities.values()
    )
    assert {"progress", "cancellation", "idempotency-key"} <= set(report.supported_features)
    assert set(raw["tool_load"]) == set(report.capabilities)  # type: ignore[index]


async def test_capabilities_report_live_load() -> None:
    import asyncio

    worker = echo.build(WorkerSettings(redis_url=None))
    started = asyncio.Event()

    async def on_progress(*_: object) -> None:
        started.set()

    async with Client(worker.server) as client:
        call = asyncio.create_task(
            client.call_tool("sleep", {"seconds": 10, "steps": 100}, progress_handler=on_progress)
        )
        await asyncio.wait_for(started.wait(), 5)
        raw = (await client.call_tool(CAPABILITIES_TOOL, {})).structured_content
        call.cancel()
        await asyncio.gather(call, return_exceptions=True)
    assert raw is not None
    assert raw["load"]["in_flight"] == 1
    assert raw["tool_load"]["sleep"]["in_flight"] == 1


def test_name_setting_overrides_the_default_only_when_given() -> None:
    assert echo.build(WorkerSettings()).name == "echo"
    assert echo.build(WorkerSettings(name="echo-2")).name == "echo-2"
