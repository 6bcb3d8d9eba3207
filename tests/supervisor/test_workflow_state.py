"""The steps' view folded from a workflow's step events (pure)."""

from __future__ import annotations

from shared import Event
from supervisor.workflows.state import StepState, fold, steps_view

SPEC = {
    "steps": {
        "split": {"capability": "chunk_text"},
        "each": {"capability": "extract_keywords", "map": "$.steps.split.result.chunks"},
        "merge": {"capability": "summarize"},
    }
}


def event(seq: int, type: str, **data: object) -> Event:
    return Event(seq=seq, type=type, job_id="w" * 32, correlation_id="c", ts=0.0, data=data)  # type: ignore[arg-type]


def test_the_last_event_of_a_step_is_its_state() -> None:
    states = fold(
        [
            event(1, "status", status="running"),
            event(2, "step", step="split", status="running", total=1, done=0, failed=0,
                  job_ids=["a"]),
            event(3, "progress", progress=0, total=2),
            event(4, "step", step="split", status="succeeded", total=1, done=1, failed=0),
            event(5, "step", step="each", status="running", total=3, done=0, failed=0),
            event(6, "step", step="each", status="running", total=3, done=2, failed=0,
                  job_ids=["b", "c"]),
            event(7, "step", step="each", status="failed", total=3, done=2, failed=1,
                  job_ids=["b", "c", "d"], error={"code": "BOOM", "message": "no"}),
        ]
    )  # fmt: skip
    assert states["split"] == StepState("succeeded", 1, 1, 0, ["a"], None)  # ids kept
    assert states["each"].status == "failed" and states["each"].job_ids == ["b", "c", "d"]
    assert states["each"].error == {"code": "BOOM", "message": "no"}
    assert "merge" not in states


def test_the_view_lists_every_step_in_spec_order() -> None:
    view = steps_view(SPEC, fold([{"step": "split", "status": "running", "total": 1}]))
    assert list(view) == ["split", "each", "merge"]
    assert view["split"]["status"] == "running"
    assert view["each"] == {
        "status": "pending",
        "capability": "extract_keywords",
        "map": True,
        "total": None,  # a map's items are not known before it starts
        "done": 0,
        "failed": 0,
        "job_ids": [],
        "error": None,
    }
    assert view["merge"]["total"] == 1 and view["merge"]["map"] is False


def test_an_event_of_no_step_is_ignored() -> None:
    assert fold([{"status": "running"}, {"step": 5, "status": "x"}]) == {}
