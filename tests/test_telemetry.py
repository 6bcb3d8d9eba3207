"""A module's tracer follows the global provider: OpenTelemetry's own proxy tracer binds for
good to the first provider it sees, so a tracer made at import kept sending spans to the
first exporter of a process (a test's) after the provider changed."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util._once import Once

from shared import configure_tracing
from shared.telemetry import tracer


def _reset() -> None:
    trace._TRACER_PROVIDER_SET_ONCE = Once()  # type: ignore[attr-defined]
    trace._TRACER_PROVIDER = None  # type: ignore[attr-defined]


def test_a_module_tracer_follows_each_new_provider() -> None:
    made_at_import = tracer("test.module")
    first, second = InMemorySpanExporter(), InMemorySpanExporter()
    try:
        configure_tracing("one", exporter=first)
        with made_at_import.start_as_current_span("a"):
            pass
        _reset()
        with made_at_import.start_as_current_span("untraced"):
            pass
        configure_tracing("two", exporter=second)
        with made_at_import.start_as_current_span("b"):
            pass
    finally:
        _reset()
    assert [s.name for s in first.get_finished_spans()] == ["a"]
    assert [s.name for s in second.get_finished_spans()] == ["b"]
