"""``fleet top``'s frame at every size, its rates and its key parsing, without a terminal.

The pseudo-terminal tests (``test_top_pty.py``) watch the real screen at 80, 60 and 40
columns; these sweep every width and height on a fleet made to be awkward (long names, many
rows, long messages), which a real fleet in a test cannot be cheaply.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from rich.cells import cell_len
from rich.console import Console

from supervisor.cli.top_data import Rates, describe
from supervisor.cli.top_keys import parse
from supervisor.cli.top_view import JOB_COLUMNS, Link, View, layout, render, selectable
from supervisor.client import ApiError, Unreachable


def _job(i: int, status: str = "running", **kw: Any) -> dict[str, Any]:
    now = time.time()
    return {
        "id": f"{i:04d}" + "ab" * 14,
        "status": status,
        "capability": "a-rather-long-capability-name" if i % 2 else "sleep",
        "attempts": 1,
        "worker": "echo-service-with-a-long-name@10.0.0.1:8701",
        "progress": {"progress": i, "total": 40, "message": "step " + "x" * 90},
        "created_at": now - 60,
        "started_at": now - 30,
        "finished_at": now - 1 if status == "failed" else None,
        "error": {"code": "WORKER_SAID_NO_WITH_A_LONG_CODE", "message": "m" * 120}
        if status == "failed"
        else None,
        **kw,
    }


SNAP: dict[str, Any] = {
    "at": time.time(),
    "url": "http://supervisor.example.internal:8700",
    "workers": [
        {
            "name": f"echo-{i}@10.0.0.{i}:8701",
            "healthy": i != 2,
            "health": "healthy" if i != 2 else "down",
            "in_flight": 3,
            "reported_load": {"max_concurrency": 16},
            "breaker": "closed" if i != 2 else "open",
            "last_seen": time.time() - 2,
            "error": None if i != 2 else "connection refused " * 5,
        }
        for i in range(5)
    ],
    "queues": {"sleep": 12},
    "slots": {
        f"capability-{i}": dict(queued=i, in_flight=i % 5, limit=4, workers=5, healthy_workers=4)
        for i in range(9)
    },
    "by_status": {"queued": 12, "running": 30, "succeeded": 100, "failed": 3, "cancelled": 0},
    "running": [_job(i) for i in range(30)],
    "queued": [_job(200 + i, "queued", started_at=None, progress=None) for i in range(5)],
    "failures": [_job(100 + i, "failed") for i in range(4)],
}


def _lines(frame: Any, width: int) -> list[str]:
    console = Console(width=width, color_system=None, force_terminal=False, record=True)
    with console.capture() as out:
        console.print(frame)
    return out.get().splitlines()


@pytest.mark.parametrize("width", [*range(20, 130, 7), 150, 200])
@pytest.mark.parametrize("height", [6, 12, 24, 50])
def test_the_frame_never_passes_the_width_nor_the_height(width: int, height: int) -> None:
    rates = {"submitted": 1234.5, "succeeded": 12.25, "failed": 0.5}
    view = View(selected=SNAP["running"][25]["id"])
    lines = _lines(render(SNAP, view, width, height, rates), width)
    assert len(lines) <= height
    assert all(cell_len(line) <= width for line in lines), max(lines, key=cell_len)
    assert lines[0].startswith("fleet top")


def test_at_80x24_the_selected_job_is_in_sight_and_percentages_are_whole() -> None:
    selected = SNAP["running"][25]
    lines = _lines(render(SNAP, View(selected=selected["id"]), 80, 24, None), 80)
    chosen = [line for line in lines if line.startswith(">")]
    assert len(chosen) == 1 and selected["id"][:12] in chosen[0], lines
    assert " 62%" in chosen[0]  # 25/40, three digits of room: never cut to one
    assert any("queues +3" in line for line in lines)  # 9 capabilities, 6 shown
    assert any("WORKER_SAID_NO" in line for line in lines)
    assert lines[-1].startswith("↑↓/jk select")


def test_narrow_drops_the_worker_first_then_the_message_and_keeps_id_and_percent() -> None:
    def headers(width: int) -> list[str]:
        return [col.header for col, _ in layout(JOB_COLUMNS, width)]

    assert "WORKER" in headers(150) and "MESSAGE" in headers(150)
    assert "WORKER" not in headers(78) and "MESSAGE" in headers(78)
    assert "MESSAGE" not in headers(58) and "DONE" in headers(58)
    assert headers(38)[0] == "" and "DONE" in headers(38)  # the id column and the percent
    assert sum(w for _, w in layout(JOB_COLUMNS, 30)) + len(layout(JOB_COLUMNS, 30)) - 1 <= 30


def test_reconnecting_replaces_the_rates_line_and_says_since_when() -> None:
    link = Link(down_since=time.time() - 12, attempts=7, reason="unreachable: refused")
    lines = _lines(render(SNAP, View(link=link), 80, 24, None), 80)
    assert lines[1].startswith("reconnecting… since ")
    assert "attempt 7: unreachable: refused" in lines[1]


def test_selectable_jobs_are_running_then_queued_then_failed() -> None:
    ids = [j["id"] for j in selectable(SNAP)]
    assert ids[:30] == [j["id"] for j in SNAP["running"]]
    assert ids[30:35] == [j["id"] for j in SNAP["queued"]]
    assert ids[35:] == [j["id"] for j in SNAP["failures"]]


def test_a_queued_job_is_listed_after_the_running_ones_and_can_be_selected() -> None:
    queued = SNAP["queued"][2]
    snap = {**SNAP, "running": SNAP["running"][:3]}
    lines = _lines(render(snap, View(selected=queued["id"]), 80, 24, None), 80)
    chosen = [line for line in lines if line.startswith(">")]
    assert len(chosen) == 1 and queued["id"][:12] in chosen[0], lines
    assert "queued" in chosen[0] and "%" not in chosen[0]
    assert re.search(r"\b\d+m\d\ds\b", chosen[0])  # waiting since created (a minute ago)
    rows = [line for line in lines if any(j["id"][:12] in line for j in snap["running"])]
    assert lines.index(rows[-1]) < lines.index(chosen[0])  # after the running ones


def test_rates_over_the_window_from_counts() -> None:
    rates = Rates(window=20)
    assert rates.now() is None
    rates.add(0.0, {"queued": 5, "running": 0, "succeeded": 0, "failed": 0})
    rates.add(5.0, {"queued": 0, "running": 5, "succeeded": 10, "failed": 1})
    assert rates.now() == {"submitted": 2.2, "succeeded": 2.0, "failed": 0.2}
    rates.add(30.0, {"queued": 0, "running": 0, "succeeded": 16, "failed": 0})
    # The window keeps the newest sample older than 20 s (t=5) as its start; a count that
    # shrank (a redrive, the janitor) is no negative rate.
    assert rates.now() == {"submitted": 0.0, "succeeded": 0.24, "failed": 0.0}
    rates.add(31.0, None)  # a supervisor that does not count: ignored
    assert rates.now() is not None


def test_keys_parse_arrows_letters_and_unknown_sequences() -> None:
    assert parse("jk\x1b[A\x1b[Bq") == ["j", "k", "up", "down", "q"]
    assert parse("\x1bOA\x1bOB\r") == ["up", "down", "enter"]
    assert parse("\x1b[1;5Cw") == ["w"]  # Ctrl-→ is not ours: skipped whole
    assert parse("\x1b") == ["esc"]


def test_describe_keeps_the_reason() -> None:
    down = Unreachable("supervisor unreachable at http://x:1: All connection attempts failed")
    assert describe(down) == "unreachable: All connection attempts failed"
    assert describe(ApiError(503, "STORE_UNAVAILABLE", "redis down", {})) == (
        "STORE_UNAVAILABLE: redis down"
    )


def test_a_supervisor_without_slots_or_counts_still_renders() -> None:
    """An older supervisor answers /v1/queues with depths only: top shows those, no rates."""
    old = {k: v for k, v in SNAP.items() if k not in ("slots", "by_status", "failures")}
    lines = _lines(render(old, View(), 80, 24, Rates().now()), 80)
    assert any(line.split()[:2] == ["sleep", "0/0"] for line in lines), lines
    assert lines[1].startswith("rates: measuring")


def test_before_the_first_answer_it_says_connecting_not_empty() -> None:
    lines = _lines(render({"url": "http://fleet:8700"}, View(), 80, 24), 80)
    assert lines[:2] == ["fleet top  http://fleet:8700", "connecting to http://fleet:8700…"]
    assert len(lines) == 3  # and the keys
    link = Link(down_since=time.time(), attempts=1, reason="unreachable: refused")
    lines = _lines(render({"url": "http://fleet:8700"}, View(link=link), 80, 24), 80)
    assert lines[1].startswith("reconnecting… since")
