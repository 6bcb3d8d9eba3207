"""A module's tracer follows the global provider: OpenTelemetry's own proxy tracer binds for
good to the first provider it sees, so a tracer made at import kept sending spans to the
first exporter of a process (a test's) after the provider changed."""

from __future__ import annotations

from opentelemetry import propagate, trace
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


def test_without_a_provider_a_trace_to_continue_is_still_propagated() -> None:
    """No provider: a span with nothing to continue is skipped (it could carry nothing), but
    one that continues a submitter's trace still makes it current, so calls propagate it."""
    _reset()
    made = tracer("test.untraced")
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with made.start_as_current_span("nothing") as span:
        assert not span.get_span_context().is_valid
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        assert "traceparent" not in carrier
    context = propagate.extract({"traceparent": parent})
    with made.start_as_current_span("continued", context=context):
        carrier = {}
        propagate.inject(carrier)
        assert carrier["traceparent"].split("-")[1] == "0af7651916cd43dd8448eb211c80319c"
        with made.start_as_current_span("inner"):  # inside a trace: not skipped either
            assert trace.get_current_span().get_span_context().trace_id == int(
                "0af7651916cd43dd8448eb211c80319c", 16
            )
