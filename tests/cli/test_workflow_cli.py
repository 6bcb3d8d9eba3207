"""``fleet workflow run/show``, and ``fleet status``/``fleet watch`` on a workflow and on a job
with children, against the CLI package's real fleet (a supervisor and an echo worker over
HTTP, ``tests/cli/conftest.py``)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tests.cli.conftest import CliFleet
from tests.helpers import ECHO_FLOW


def _flow(tmp_path: Path, spec: dict[str, Any] | None = None) -> str:
    path = tmp_path / "flow.json"
    path.write_text(json.dumps(spec or ECHO_FLOW), encoding="utf-8")
    return str(path)


def test_status_lists_a_jobs_children_and_a_child_names_its_parent(cli_fleet: CliFleet) -> None:
    parent = cli_fleet.submit("sleep", {"seconds": 30, "steps": 30})
    children = [cli_fleet.submit("noop", {}, parent_id=parent) for _ in range(3)]
    try:
        for child in children:
            cli_fleet.job(child, wait=20)
        out = cli_fleet.invoke("status", parent)
        assert out.exit_code == 0, out.output
        assert "children: 3\n" in out.output
        rows = [line for line in out.output.splitlines() if line.split("\t")[0] in children]
        assert [row.split("\t")[0] for row in rows] == children  # in submit order
        assert all(row.split("\t")[1:3] == ["noop", "succeeded"] for row in rows), rows
        child = cli_fleet.invoke("status", children[0])
        assert re.search(rf"^parent +{parent} \(depth 1\)", child.output, re.M), child.output
        as_json = json.loads(cli_fleet.invoke("status", parent, "--json").output)
        assert as_json["children"] == children
    finally:
        cli_fleet.http.post(f"/v1/jobs/{parent}/cancel")


def test_run_waits_and_prints_the_tree(cli_fleet: CliFleet, tmp_path: Path) -> None:
    out = cli_fleet.invoke("workflow", "run", _flow(tmp_path), "--wait", "30")
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[0].startswith("✓ workflow echoes ") and "  succeeded  7/7" in lines[0]
    assert lines[1].startswith("├─ ✓ first  echo") and lines[1].endswith(" 1/1")
    assert lines[2].startswith("├─ ✓ each   echo") and lines[2].endswith(" 5/5")
    assert lines[3].startswith("└─ ✓ last   noop")
    assert lines[4] == 'result: {"echoed":["a","b","c","d","e"],"last":{"ok":true}}'


def test_run_prints_the_id_and_show_draws_it(cli_fleet: CliFleet, tmp_path: Path) -> None:
    out = cli_fleet.invoke("workflow", "run", _flow(tmp_path), "--input", 'items=["x"]')
    assert out.exit_code == 0, out.output
    job_id = out.output.strip()
    assert len(job_id) == 32
    shown = cli_fleet.invoke("workflow", "show", job_id[:12], "--wait", "30")
    assert shown.exit_code == 0, shown.output
    assert "├─ ✓ each   echo" in shown.output and "1/1" in shown.output
    answer = json.loads(cli_fleet.invoke("workflow", "show", job_id, "--json").output)
    assert answer["job"]["input"]["input"] == {"items": ["x"]}  # --input replaced the item list
    assert {n: s["status"] for n, s in answer["steps"].items()} == dict.fromkeys(
        ("first", "each", "last"), "succeeded"
    )
    status = cli_fleet.invoke("status", job_id)  # fleet status draws the tree under the job
    assert re.search(r"^capability +fleet:workflow", status.output, re.M), status.output
    assert "└─ ✓ last   noop" in status.output


def test_watch_json_prints_every_event_with_the_steps(cli_fleet: CliFleet, tmp_path: Path) -> None:
    out = cli_fleet.invoke("workflow", "run", _flow(tmp_path), "--watch", "--json")
    assert out.exit_code == 0, out.output
    events = [json.loads(line) for line in out.output.splitlines()]
    assert events[-1]["type"] == "done" and events[-1]["data"]["status"] == "succeeded"
    steps = [e["data"] for e in events if e["type"] == "step"]
    assert {s["step"] for s in steps} == {"first", "each", "last"}
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)


def test_fleet_watch_on_a_workflow_says_each_step_then_draws_it(
    cli_fleet: CliFleet, tmp_path: Path
) -> None:
    job_id = cli_fleet.invoke("workflow", "run", _flow(tmp_path)).output.strip()
    out = cli_fleet.invoke("watch", job_id)
    assert out.exit_code == 0, out.output
    lines = out.stdout.splitlines()
    assert "first  succeeded  1/1" in lines and "each  succeeded  5/5" in lines
    top = next(i for i, line in enumerate(lines) if line.startswith("✓ workflow echoes"))
    assert lines[top + 3].startswith("└─ ✓ last")
    # Then the result whole, as fleet submit --watch prints it.
    assert json.loads("\n".join(lines[top + 4 :])) == {
        "echoed": list("abcde"),
        "last": {"ok": True},
    }


def test_a_failed_step_fails_the_workflow_with_exit_1(cli_fleet: CliFleet, tmp_path: Path) -> None:
    spec = {
        "steps": {
            "ok": {"capability": "noop"},
            "boom": {"capability": "fail", "after": ["ok"], "max_attempts": 1,
                     "input": {"code": "BOOM", "message": "on purpose"}},
            "never": {"capability": "noop", "after": ["boom"]},
        }
    }  # fmt: skip
    out = cli_fleet.invoke("workflow", "run", _flow(tmp_path, spec), "--wait", "30")
    assert out.exit_code == 1, out.output
    lines = out.stdout.splitlines()  # (stderr has the worker's own log of the failure)
    assert lines[0].startswith("✗ workflow ") and "failed" in lines[0]
    assert lines[2].startswith("├─ ✗ boom ") and "BOOM" in out.output
    assert lines[3][3] in "-■"  # the step after it never ran: skipped or cancelled


def test_an_invalid_spec_is_one_line_and_exit_2(cli_fleet: CliFleet, tmp_path: Path) -> None:
    spec = {"steps": {"a": {"capability": "noop", "after": ["b"]}}}
    out = cli_fleet.invoke("workflow", "run", _flow(tmp_path, spec))
    assert out.exit_code == 2, out.output
    assert out.output.startswith("error: INVALID_WORKFLOW: ") and "'a'" in out.output
    assert "after[0]" in out.output and "(field: " not in out.output  # said once
    assert len(out.output.strip().splitlines()) == 1
    missing = cli_fleet.invoke("workflow", "run", str(tmp_path / "nope.json"))
    assert missing.exit_code == 2 and "cannot read the workflow" in missing.output


def test_an_idempotency_key_submits_once(cli_fleet: CliFleet, tmp_path: Path) -> None:
    path = _flow(tmp_path)
    first = cli_fleet.invoke("workflow", "run", path, "--idempotency-key", "wf-once")
    again = cli_fleet.invoke("workflow", "run", path, "--idempotency-key", "wf-once")
    assert first.exit_code == again.exit_code == 0
    assert first.output == again.output


def test_show_refuses_a_job_that_is_no_workflow(cli_fleet: CliFleet) -> None:
    job_id = cli_fleet.submit("noop", {})
    out = cli_fleet.invoke("workflow", "show", job_id)
    assert out.exit_code == 5 and out.output.startswith("error: JOB_NOT_FOUND: "), out.output


def test_watching_a_workflow_rides_out_a_dropped_stream(
    cli_fleet: CliFleet, tmp_path: Path
) -> None:
    """The stream cut inside its 4th event: resumed after the 3rd (Last-Event-ID), every step
    told once, the tree and result whole."""
    from typer.testing import CliRunner

    from supervisor.cli import app
    from tests.cli.test_watch_resume import CUT_INSIDE_EVENT, _with_proxy

    url, proxy, stack = _with_proxy(cli_fleet)
    try:
        out = CliRunner().invoke(app, ["--url", url, "workflow", "run", _flow(tmp_path), "--watch"])
    finally:
        cli_fleet.bg.run(stack.aclose())
    assert out.exit_code == 0, out.output
    assert proxy.cuts == 1 and proxy.last_event_ids() == [None, str(CUT_INSIDE_EVENT - 1)]
    lines = out.stdout.splitlines()
    assert any(f"resuming after event {CUT_INSIDE_EVENT - 1}" in line for line in lines), lines
    for step in ("first", "each", "last"):
        assert [line.split()[:2] for line in lines].count([step, "succeeded"]) == 1, lines
    assert any(line.startswith("├─ ✓ each   echo") and line.endswith("5/5") for line in lines)
