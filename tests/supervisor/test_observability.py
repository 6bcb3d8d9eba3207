"""Metrics, one trace per job across supervisor and worker, correlation ids in logs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.helpers import wait_until
from tests.supervisor.conftest import Fleet, start_fleet


async def test_metrics_after_jobs(fleet: Fleet) -> None:
    ok = await fleet.submit("noop")
    bad = await fleet.submit("fail", {"code": "X"})
    await fleet.wait(ok["id"])
    await fleet.wait(bad["id"])
    text = (await fleet.api.get("/metrics")).text
    assert 'fleet_jobs_total{capability="noop",status="succeeded"} 1.0' in text
    assert 'fleet_jobs_total{capability="fail",status="failed"} 1.0' in text
    assert 'fleet_job_attempts_total{capability="fail",outcome="X"} 1.0' in text
    assert "fleet_dispatch_latency_seconds_bucket" in text
    assert 'fleet_queue_depth{capability="noop"} 0.0' in text
    assert "fleet_worker_healthy{" in text and "fleet_worker_breaker_state{" in text


@pytest.fixture
async def traced_fleet(spans: InMemorySpanExporter) -> AsyncIterator[Fleet]:
    async with AsyncExitStack() as stack:
        yield await start_fleet(stack, workers=1)


async def test_one_trace_per_job(traced_fleet: Fleet, spans: InMemorySpanExporter) -> None:
    spans.clear()
    job = await traced_fleet.submit("steps", {"n": 2})
    await traced_fleet.wait(job["id"])

    def job_span() -> object:
        return next(
            (
                s
                for s in spans.get_finished_spans()
                if (s.attributes or {}).get("job_id") == job["id"]
            ),
            None,
        )

    root = await wait_until(job_span, message="job span")
    trace_id = root.context.trace_id  # type: ignore[attr-defined]
    in_trace = [s for s in spans.get_finished_spans() if s.context.trace_id == trace_id]
    kinds = {s.kind.name for s in in_trace}
    # the supervisor's job span, FastMCP's client span and the worker's server span
    assert "SERVER" in kinds and "CLIENT" in kinds, [(s.name, s.kind.name) for s in in_trace]
    server = [s for s in in_trace if s.kind.name == "SERVER"]
    assert any("steps" in s.name for s in server)
