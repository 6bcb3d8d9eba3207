"""``./run bench parts``: every part is measured on real processes and the floor is their
sum (HTTP in + MCP call out + three Redis round trips), printed as the README shows it."""

from __future__ import annotations

import pytest

from bench.parts import ROUND_TRIPS, measure, print_report


async def test_parts_are_measured_and_summed(capsys: pytest.CaptureFixture[str]) -> None:
    report = await measure(rounds=1, n=200)
    parts = {name: s["median"] for name, s in report["parts"].items()}
    assert set(parts) == {"http_in", "mcp_out", "redis"}
    assert all(0 < ms < 50 for ms in parts.values()), parts
    floor = parts["http_in"] + parts["mcp_out"] + ROUND_TRIPS * parts["redis"]
    assert report["floor_ms"]["median"] == pytest.approx(floor)
    print_report(report)
    out = capsys.readouterr().out
    assert "MCP call out" in out and f"{ROUND_TRIPS} round trips" in out and report["commit"]
