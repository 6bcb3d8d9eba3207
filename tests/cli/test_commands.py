"""The CLI against a real supervisor and worker over HTTP: output for people and scripts,
and exit codes that follow the outcome."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import httpx
import pytest
from rich.console import Console
from typer.testing import CliRunner

from supervisor.cli import app
from supervisor.cli.render import job_detail
from supervisor.client import FleetApi
from tests.cli.conftest import CliFleet

JOB_ID = re.compile(r"^[0-9a-f]{32}$")


def no_traceback(result: object) -> None:
    assert "Traceback" not in getattr(result, "output", "")
    assert getattr(result, "exception", None) is None or isinstance(
        result.exception,  # type: ignore[attr-defined]
        SystemExit,
    )


def test_submit_prints_only_the_job_id(cli_fleet: CliFleet) -> None:
    result = cli_fleet.invoke("submit", "echo", "--input", '{"value": {"a": 1}}', "--label", "k=v")
    assert result.exit_code == 0, result.output
    job_id = result.stdout.strip()
    assert JOB_ID.match(job_id)
    job = cli_fleet.job(job_id, wait=10)
    assert job["status"] == "succeeded" and job["labels"] == {"k": "v"}
    assert job["result"] == {"value": {"a": 1}}


def test_submit_json_and_options(cli_fleet: CliFleet) -> None:
    result = cli_fleet.invoke(
        "submit", "noop", "--json", "--idempotency-key", "cli-idem-1", "--timeout", "5",
        "--max-attempts", "2", "--worker", cli_fleet.worker_url,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    job = json.loads(result.stdout)
    assert job["idempotency_key"] == "cli-idem-1" and job["max_attempts"] == 2
    assert job["timeout_s"] == 5 and job["pinned_worker"] == cli_fleet.worker_url
    again = cli_fleet.invoke("--json", "submit", "noop", "--idempotency-key", "cli-idem-1",
                             "--timeout", "5", "--max-attempts", "2",
                             "--worker", cli_fleet.worker_url)  # fmt: skip
    assert json.loads(again.stdout)["id"] == job["id"]


def test_submit_input_from_file(cli_fleet: CliFleet, tmp_path: Path) -> None:
    path = tmp_path / "input.json"
    path.write_text('{"value": "from a file"}')
    result = cli_fleet.invoke("submit", "echo", "--input", f"@{path}", "--watch")
    assert result.exit_code == 0, result.output
    assert '"from a file"' in result.stdout
    stdin = cli_fleet.invoke("submit", "echo", "-i", "@-", "--watch", input='{"value": 7}')
    assert stdin.exit_code == 0 and '"value": 7' in stdin.stdout


def test_submit_watch_succeeded_shows_progress_and_result(cli_fleet: CliFleet) -> None:
    result = cli_fleet.invoke(
        "submit", "progress", "--input", '{"steps": 5, "delay_ms": 20}', "--watch"
    )
    assert result.exit_code == 0, result.output
    assert "running on echo" in result.stdout
    assert "100%  step 5/5" in result.stdout
    assert "succeeded in" in result.stdout
    assert '"steps": 5' in result.stdout  # the result, pretty-printed at the end
    assert result.stderr.startswith("submitted ")


def test_watch_failed_job_exits_1(cli_fleet: CliFleet) -> None:
    result = cli_fleet.invoke(
        "submit", "fail", "-i", '{"code": "NOPE", "message": "bad luck"}', "--watch"
    )
    assert result.exit_code == 1, result.output
    assert "failed: NOPE: bad luck" in result.stderr
    no_traceback(result)


def test_cancel_then_watch_exits_3(cli_fleet: CliFleet) -> None:
    job_id = cli_fleet.submit("sleep", {"seconds": 60, "steps": 120})
    cli_fleet.wait_running(job_id)
    cancelled = cli_fleet.invoke("cancel", job_id)
    assert cancelled.exit_code == 0, cancelled.output
    assert cancelled.stdout.strip() == f"cancelled {job_id}"
    watched = cli_fleet.invoke("watch", job_id)
    assert watched.exit_code == 3, watched.output
    assert "cancelled" in watched.stderr
    again = cli_fleet.invoke("cancel", job_id)  # 409: it already ended
    assert again.exit_code == 5
    assert again.stderr.startswith("error: JOB_FINISHED: ")


def test_watch_cancelled_while_watching_exits_3(cli_fleet: CliFleet) -> None:
    import threading

    job_id = cli_fleet.submit("sleep", {"seconds": 60, "steps": 120})

    def cancel_later() -> None:
        cli_fleet.wait_running(job_id, min_progress=1)
        cli_fleet.http.post(f"/v1/jobs/{job_id}/cancel")

    thread = threading.Thread(target=cancel_later)
    thread.start()
    result = cli_fleet.invoke("watch", job_id, "--json")
    thread.join()
    assert result.exit_code == 3, result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events[-1]["type"] == "done" and events[-1]["data"]["status"] == "cancelled"
    assert any(e["type"] == "progress" for e in events)


def test_watch_json_prints_every_event_once_in_order(cli_fleet: CliFleet) -> None:
    job_id = cli_fleet.submit("progress", {"steps": 8, "delay_ms": 5})
    result = cli_fleet.invoke("--json", "watch", job_id)
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert [e["type"] for e in events][:2] == ["status", "status"]
    assert sum(e["type"] == "progress" for e in events) == 8
    assert events[-1]["type"] == "done" and events[-1]["data"]["result"] == {"steps": 8}


def test_unreachable_supervisor_exits_4() -> None:
    for args in (["jobs"], ["watch", "abc"], ["submit", "noop"], ["top", "--once"]):
        result = CliRunner().invoke(app, ["--url", "http://127.0.0.1:1", *args])
        assert result.exit_code == 4, (args, result.output)
        assert result.stderr.startswith("error: supervisor unreachable at http://127.0.0.1:1")
        assert len(result.stderr.strip().splitlines()) == 1
        no_traceback(result)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["submit", "noop", "--input", "{not json"], "--input is not valid JSON"),
        (["submit", "noop", "--input", "[1, 2]"], "--input must be a JSON object"),
        (["submit", "noop", "--input", "@/nonexistent/x.json"], "cannot read /nonexistent"),
        (["submit", "noop", "--label", "novalue"], "--label must be key=value"),
    ],
)
def test_bad_input_exits_2_before_any_request(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["--url", "http://127.0.0.1:1", *args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    no_traceback(result)


def test_api_refusals_print_code_message_and_field(cli_fleet: CliFleet) -> None:
    unknown = cli_fleet.invoke("submit", "no_such_tool")
    assert unknown.exit_code == 2
    assert unknown.stderr.startswith("error: UNKNOWN_CAPABILITY: ")
    assert "(field: capability)" in unknown.stderr
    invalid = cli_fleet.invoke("submit", "sleep", "--input", '{"seconds": -1}')
    assert invalid.exit_code == 2
    assert invalid.stderr.startswith("error: INVALID_INPUT: input.seconds")
    missing = cli_fleet.invoke("status", "0" * 32)
    assert missing.exit_code == 5 and "JOB_NOT_FOUND" in missing.stderr
    for result in (unknown, invalid, missing):
        no_traceback(result)


def test_status_human_json_and_wait_outcome(cli_fleet: CliFleet) -> None:
    job_id = cli_fleet.submit("echo", {"value": "hi"}, labels={"team": "cli"})
    waited = cli_fleet.invoke("status", job_id, "--wait", "10")
    assert waited.exit_code == 0, waited.output
    for text in (job_id, "succeeded", "echo", "team=cli", '{"value":"hi"}'):
        assert text in waited.stdout
    as_json = cli_fleet.invoke("status", job_id, "--json")
    assert json.loads(as_json.stdout)["status"] == "succeeded"
    failed = cli_fleet.submit("fail", {}, max_attempts=1)
    assert cli_fleet.invoke("status", failed, "--wait", "10").exit_code == 1
    slow = cli_fleet.submit("sleep", {"seconds": 30})
    still = cli_fleet.invoke("status", slow, "--wait", "0.2")  # ends before the job: not 0
    assert still.exit_code == 6, still.output
    cli_fleet.invoke("cancel", slow)


def test_jobs_table_json_and_filters(cli_fleet: CliFleet) -> None:
    job_id = cli_fleet.submit("noop", {})
    cli_fleet.job(job_id, wait=10)
    table = cli_fleet.invoke("jobs", "--capability", "noop")
    assert table.exit_code == 0
    assert job_id in table.stdout and "succeeded" in table.stdout and "CAPABILITY" in table.stdout
    page = json.loads(cli_fleet.invoke("jobs", "--json", "--status", "succeeded").stdout)
    assert page["jobs"] and all(j["status"] == "succeeded" for j in page["jobs"])
    one = json.loads(cli_fleet.invoke("--json", "jobs", "--limit", "1").stdout)
    assert len(one["jobs"]) == 1 and one["next_cursor"]
    bad = cli_fleet.invoke("jobs", "--status", "sleeping")
    assert bad.exit_code == 2 and bad.stderr.startswith("error: VALIDATION_ERROR")


def test_workers_and_capabilities(cli_fleet: CliFleet) -> None:
    human = cli_fleet.invoke("workers")
    assert human.exit_code == 0
    assert cli_fleet.worker_url in human.stdout and "healthy" in human.stdout
    assert "closed" in human.stdout  # the breaker
    workers = json.loads(cli_fleet.invoke("workers", "--json").stdout)["workers"]
    assert workers[0]["name"].startswith("echo") and "sleep" in workers[0]["capabilities"]
    caps = cli_fleet.invoke("capabilities")
    assert caps.exit_code == 0 and "progress" in caps.stdout and "(1/1 healthy)" in caps.stdout
    catalog = json.loads(cli_fleet.invoke("--json", "capabilities").stdout)["capabilities"]
    assert catalog["sleep"]["input_schema"]["properties"]["seconds"]


def test_dead_letters_and_redrive(cli_fleet: CliFleet) -> None:
    job_id = cli_fleet.submit("fail", {"code": "DLQ_ME"}, max_attempts=1)
    assert cli_fleet.job(job_id, wait=10)["status"] == "failed"
    listed = cli_fleet.invoke("dead-letters")
    assert listed.exit_code == 0 and job_id in listed.stdout and "DLQ_ME" in listed.stdout
    as_json = json.loads(cli_fleet.invoke("dead-letters", "--json").stdout)
    assert job_id in [j["id"] for j in as_json["jobs"]]
    redriven = cli_fleet.invoke("redrive", job_id)
    assert redriven.exit_code == 0 and redriven.stdout.startswith(f"redriven {job_id}")
    unknown = cli_fleet.invoke("redrive", "0" * 32)
    assert unknown.exit_code == 5 and "not in the dead-letter list" in unknown.stderr


def test_top_once_human_and_json(cli_fleet: CliFleet) -> None:
    job_id = cli_fleet.submit("sleep", {"seconds": 30, "steps": 60})
    cli_fleet.wait_running(job_id, min_progress=1)
    try:
        frame = cli_fleet.invoke("top", "--once")
        assert frame.exit_code == 0, frame.output
        for text in ("workers", "queues", "running jobs", job_id[:12], "slept", "closed"):
            assert text in frame.stdout
        snap = json.loads(cli_fleet.invoke("top", "--once", "--json").stdout)
        assert {"workers", "queues", "running"} <= snap.keys()
        assert job_id in [j["id"] for j in snap["running"]]
    finally:
        cli_fleet.http.post(f"/v1/jobs/{job_id}/cancel")


async def test_token_is_sent_as_bearer() -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return httpx.Response(401, json={"error": {"code": "UNAUTHORIZED", "message": "no"}})

    transport = httpx.MockTransport(handler)
    async with FleetApi("http://fleet", token="s3cret", transport=transport) as api:
        with pytest.raises(Exception, match="UNAUTHORIZED: no"):
            await api.workers()
    assert seen == ["Bearer s3cret"]


def test_help_documents_exit_codes() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "4 supervisor unreachable" in result.stdout


def test_progress_reads_as_the_worker_counted() -> None:
    """``3/10``, not ``3/10.0``: progress numbers come over JSON as floats."""
    job = {"id": "a" * 32, "status": "running", "capability": "sleep",
           "progress": {"progress": 3.0, "total": 10.0, "message": "step 3"}}  # fmt: skip
    console = Console(width=120, file=io.StringIO(), record=True)
    console.print(job_detail(job))
    text = console.export_text()
    assert "3/10 (30%)  step 3" in text and "10.0" not in text
    job["progress"] = {"progress": 2.5, "total": None}
    console.print(job_detail(job))
    assert "2.5/?" in console.export_text()
