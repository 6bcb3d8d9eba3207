"""The workflow tree at every width, the fold of ``step`` events, and ``--input`` parsing,
without a supervisor.

The pseudo-terminal test (``test_workflow_pty.py``) watches the real screen at 80×24; these
sweep widths on a workflow made to be awkward (long names and capabilities, a map with
thousands of items, failures, long error messages).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from rich.cells import cell_len
from rich.console import Console

from supervisor.cli.base import CliError
from supervisor.cli.demo_flow import flow_spec
from supervisor.cli.workflow import parse_inputs, read_spec
from supervisor.cli.workflow_view import columns, tree
from supervisor.client import StepBoard, StepState, Workflow

MAP = "extract-keywords-from-every-chunk-of-the-text"
SPEC: dict[str, Any] = {
    "name": "keywords-of-a-rather-long-document-name",
    "input": {"text": "..."},
    "steps": {
        "split": {"capability": "chunk_text", "input": {"text": "$.input.text"}},
        MAP: {
            "capability": "a-very-long-service-name.extract_keywords_with_phrases",
            "map": "$.steps.split.result.chunks",
            "input": {"text": "$.item.text"},
        },
        "merge": {"capability": "summarize", "after": [MAP], "input": {"text": "$.input.text"}},
        "never": {"capability": "echo", "after": ["merge"], "input": {}},
    },
}  # fmt: skip


def _step(name: str, status: str, **data: Any) -> dict[str, Any]:
    return {"seq": 1, "type": "step", "ts": time.time(), "data": {"step": name, "status": status,
                                                                  **data}}  # fmt: skip


def _board() -> StepBoard:
    board = StepBoard.from_spec(SPEC)
    board.apply(_step("split", "running", total=1, done=0, failed=0))
    board.apply(_step("split", "succeeded", total=1, done=1, failed=0, job_ids=["a" * 32]))
    board.apply(_step(MAP, "running", total=12345, done=6789, failed=321))
    error = {"code": "WORKER_SAID_NO_WITH_A_LONG_CODE", "message": "m" * 200}
    board.apply(_step("merge", "failed", total=1, done=0, failed=1, error=error))
    board.apply(_step("never", "skipped"))
    return board


JOB: dict[str, Any] = {
    "id": "3f2a9c01d4e5" + "b" * 20,
    "status": "running",
    "capability": "fleet:workflow",
    "input": SPEC,
    "created_at": time.time() - 20,
    "started_at": time.time() - 12.5,
    "progress": {"progress": 6790, "total": 12348, "message": "each 6789/12345"},
}


def _lines(frame: Any, width: int) -> list[str]:
    console = Console(width=width, color_system=None, force_terminal=False, record=True)
    with console.capture() as out:
        console.print(frame)
    return out.get().splitlines()


@pytest.mark.parametrize("width", [*range(40, 201, 4), 201])
def test_the_tree_is_one_line_per_step_and_never_passes_the_width(width: int) -> None:
    board = _board()
    lines = _lines(tree(JOB, board, width), width)
    assert all(cell_len(line) <= width for line in lines), max(lines, key=cell_len)
    # The header, one line per step (never wrapped), then the failed step's reason.
    assert len(lines) == 1 + len(SPEC["steps"]) + 1, lines
    assert lines[1].startswith("├─ ✓ split") and lines[4].startswith("└─ - never")
    assert "6789/12345" in lines[2] and "321 failed" in lines[2]  # the map's items, summed
    assert "0/1" in lines[3] and lines[3][3] == "✗"
    assert "running" in lines[0] and "6790/12348" in lines[0]
    assert lines[5].lstrip().startswith("merge: WORKER_SAID_NO")


def test_at_80_columns_names_capabilities_and_bars_are_all_there() -> None:
    board = StepBoard.from_spec(SPEC)
    board.apply(_step("split", "succeeded", total=1, done=1, failed=0))
    board.apply(_step(MAP, "running", total=40, done=10, failed=0))
    lines = _lines(tree({**JOB, "progress": None}, board, 80), 80)
    assert "split" in lines[1] and "chunk_text" in lines[1] and "━" in lines[1]
    assert "10/40" in lines[2] and "━" in lines[2] and "─" in lines[2]
    assert "failed" not in lines[2]
    assert lines[2].count("━") < lines[1].count("━")  # a quarter, against a whole bar
    assert "  11/43  " in lines[0]  # no progress told yet: the steps' units, summed


def test_narrow_drops_the_bar_width_then_the_capability_and_keeps_the_count() -> None:
    board = _board()
    wide, narrow = columns(board.steps, 160), columns(board.steps, 50)
    assert wide.capability and wide.bar == 30
    assert narrow.capability == 0 and narrow.bar > 0 and narrow.count == len("6789/12345")
    lines = _lines(tree(JOB, board, 40), 40)
    assert "6789/12345" in lines[2]


def test_the_header_gives_way_from_the_word_workflow_to_the_id() -> None:
    short = {**JOB, "input": {**SPEC, "name": "kw"}}
    assert _lines(tree(short, _board(), 120), 120)[0].startswith("▸ workflow kw 3f2a9c01d4e5")
    at_40 = _lines(tree(short, _board(), 40), 40)[0]
    assert at_40.startswith("▸ kw ") and "running" in at_40
    unnamed = {**JOB, "input": {k: v for k, v in SPEC.items() if k != "name"}}
    assert "3f2a9c01d4e5" in _lines(tree(unnamed, _board(), 40), 40)[0]


def test_an_ended_workflow_says_its_result_or_its_error() -> None:
    board = StepBoard.from_spec(SPEC)
    for name in SPEC["steps"]:
        board.apply(_step(name, "succeeded", total=1, done=1, failed=0))
    done = {**JOB, "status": "succeeded", "finished_at": JOB["started_at"] + 3.25,
            "result": {"summary": "x" * 500}}  # fmt: skip
    lines = _lines(tree(done, board, 80), 80)
    assert lines[0].startswith("✓ keywords-of-a-rather-long-document-name  succeeded")
    assert lines[0].endswith("  3.2s")
    assert lines[-1].startswith('result: {"summary":"xxx') and lines[-1].endswith("…")
    failed = {**JOB, "status": "failed", "error": {"code": "STEP_FAILED", "message": "merge"}}
    assert _lines(tree(failed, board, 80), 80)[-1] == "failed: STEP_FAILED: merge"


def test_the_note_is_the_last_line() -> None:
    lines = _lines(tree(JOB, _board(), 60, note="reconnecting… (refused)"), 60)
    assert lines[-1] == "reconnecting… (refused)"


# -- the fold ---------------------------------------------------------------------------------


def test_the_board_starts_from_the_spec_in_its_order() -> None:
    board = StepBoard.from_spec(SPEC)
    assert list(board.steps) == list(SPEC["steps"])
    split, mapped = board.steps["split"], board.steps[MAP]
    assert (split.status, split.capability, split.map, split.total) == (
        "pending", "chunk_text", False, 1)  # fmt: skip
    assert mapped.map and mapped.total is None  # its count comes with its first event
    assert board.steps["merge"].after == [MAP]
    assert board.units() == (0, None)


def test_step_events_fold_into_each_step() -> None:
    board = StepBoard.from_spec(SPEC)
    assert board.apply({"type": "progress", "data": {"progress": 1}}) is None
    assert board.apply(_step(MAP, "running", total=100, done=0, failed=0)) == MAP
    board.apply(_step(MAP, "running", done=37, failed=2))  # total left out: kept
    step = board.steps[MAP]
    assert (step.status, step.total, step.done, step.failed) == ("running", 100, 37, 2)
    board.apply(_step(MAP, "failed", done=98, failed=2, job_ids=["c" * 32],
                      error={"code": "ITEM_FAILED", "message": "2 items failed"}))  # fmt: skip
    assert step.ended and step.job_ids == ["c" * 32]
    assert step.error is not None and step.error.code == "ITEM_FAILED"
    # A step the spec did not name is added at the end, not dropped.
    board.apply(_step("later", "running"))
    assert list(board.steps)[-1] == "later" and board.steps["later"].status == "running"


def test_a_succeeded_plain_step_counts_done_even_without_counts() -> None:
    board = StepBoard.from_spec(SPEC)
    board.apply(_step("split", "succeeded"))
    assert board.steps["split"].done == 1


def test_the_supervisors_fold_is_completed_from_the_spec() -> None:
    answer = Workflow.model_validate({
        "job": {**JOB, "correlation_id": "c"},
        "steps": {"split": {"status": "succeeded", "total": 1, "done": 1, "failed": 0,
                            "job_ids": [], "error": None, "map": False, "capability": ""}},
    })  # fmt: skip
    board = StepBoard.of(answer)
    assert board.steps["split"].capability == "chunk_text"  # from the spec
    assert board.steps["split"].status == "succeeded"
    assert board.steps[MAP].status == "pending"  # not in the answer: still shown
    assert isinstance(board.steps["merge"], StepState)


# -- fleet workflow run's input ---------------------------------------------------------------


def test_inputs_are_json_when_they_read_as_json_and_files_when_at(tmp_path: Path) -> None:
    text = tmp_path / "article.txt"
    text.write_text("Hello, fleet.\n", encoding="utf-8")
    more = tmp_path / "more.json"
    more.write_text('{"top_n": 5, "lang": "en"}', encoding="utf-8")
    got = parse_inputs(
        [f"text=@{text}", "max_chars=400", "flag=true", "name=plain words", f"@{more}"],
        {"max_chars": 1000, "keep": 1},
    )
    assert got == {"text": "Hello, fleet.\n", "max_chars": 400, "flag": True,
                   "name": "plain words", "top_n": 5, "lang": "en", "keep": 1}  # fmt: skip


@pytest.mark.parametrize(
    ("item", "says"),
    [
        ("novalue", "--input must be key=value"),
        ("=x", "--input must be key=value"),
        ("text=@/no/such/file", "cannot read --input text: /no/such/file"),
        ("@/no/such.json", "cannot read --input /no/such.json"),
    ],
)
def test_bad_inputs_are_one_line(item: str, says: str) -> None:
    with pytest.raises(CliError) as caught:
        parse_inputs([item])
    assert caught.value.message.startswith(says), caught.value.message


def test_a_spec_must_be_a_json_object(tmp_path: Path) -> None:
    bad = tmp_path / "flow.json"
    bad.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(CliError, match="must hold a JSON object"):
        read_spec(str(bad))
    bad.write_text("{nope", encoding="utf-8")
    with pytest.raises(CliError, match="is not valid JSON"):
        read_spec(str(bad))


def test_the_example_flow_is_the_demos_workflow() -> None:
    spec = read_spec(str(Path(__file__).resolve().parents[2] / "examples" / "flow.json"))
    capabilities = [step["capability"] for step in spec["steps"].values()]
    assert capabilities == ["chunk_text", "extract_keywords", "summarize"]
    assert spec == flow_spec()  # the text comes with --input text=@examples/article.txt
    assert flow_spec("some text")["input"] == {**spec["input"], "text": "some text"}
