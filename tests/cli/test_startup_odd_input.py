"""What a user may type that the CLI did not expect, answered in one line, never a traceback.

A URL where something other than the supervisor answers (a web page, a proxy's 200): every
command says so and exits 4, as for no answer at all. An id that is empty or looks like a
path (``a/b``, ``../../v1/workers``) is an unknown job (exit 5), never another route of the
API: ``fleet cancel ../../dead-letters/ID/redrive`` redrives nothing. A reader that closes the
pipe (``| head -1``) is exit 141 and silence. An answer no command expects (another JSON API at
the URL) is one line and exit 70; ``FLEET_DEBUG=1`` shows the traceback instead."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from typer.testing import CliRunner

from supervisor.cli import app
from tests.cli.conftest import CliFleet
from tests.processes import ROOT, process_env, stop


class _Page(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # the name http.server calls
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = b"<html><body>not a supervisor</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *_: object) -> None:
        pass


class _Quiet(ThreadingHTTPServer):
    def handle_error(self, *_: object) -> None:  # a client gone early: not this test's output
        pass


@pytest.fixture
def web_page() -> Iterator[str]:
    server = _Quiet(("127.0.0.1", 0), _Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.mark.parametrize(
    "args", [["status", "abcdef"], ["jobs"], ["workers"], ["top", "--once"], ["cancel", "abcdef"]]
)
def test_not_a_supervisor_is_one_line_and_exit_4(web_page: str, args: list[str]) -> None:
    result = CliRunner().invoke(app, ["--url", web_page, *args])
    assert result.exit_code == 4, (result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: supervisor unreachable at {web_page}: what answered")
    assert "not a fleet supervisor (200 text/html" in lines[0]
    assert "Traceback" not in result.output


@pytest.mark.parametrize("job_id", ["", " ", "a/b", "../../v1/workers", "..", "%2e%2e"])
def test_an_id_that_is_not_one_is_an_unknown_job(cli_fleet: CliFleet, job_id: str) -> None:
    for command in ("status", "cancel", "redrive", "watch"):
        result = cli_fleet.invoke(command, job_id)
        assert result.exit_code == 5, (command, result.output, result.exception)
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith(("error: JOB_NOT_FOUND", "error: NOT_FOUND")), line


def test_an_id_cannot_reach_another_route(cli_fleet: CliFleet) -> None:
    failed = cli_fleet.submit("fail", {"code": "ODD_ID"}, max_attempts=1)
    assert cli_fleet.job(failed, wait=10)["status"] == "failed"
    result = cli_fleet.invoke("cancel", f"../../dead-letters/{failed}/redrive")
    assert result.exit_code == 5, result.output
    job = cli_fleet.job(failed)
    assert job["status"] == "failed" and job["attempts"] == 1  # not redriven


@pytest.mark.parametrize("args", [["--json", "top", "--interval", "0.2"], ["--json", "watch"]])
def test_a_reader_that_goes_away_is_exit_141_and_silence(
    cli_fleet: CliFleet, args: list[str]
) -> None:
    """``fleet --json top | head -1``: not exit 1 ("the job failed"), not a traceback."""
    job_id = cli_fleet.submit("sleep", {"seconds": 30, "steps": 60})
    argv = [*args, job_id] if "watch" in args else args
    proc = subprocess.Popen(
        [sys.executable, "-m", "supervisor", "--url", cli_fleet.url, *argv],
        cwd=ROOT,
        env=process_env(PYTHONPATH=str(ROOT)),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.readline().startswith(b"{")
        proc.stdout.close()  # as `head -1` does once it has its line
        assert proc.wait(30) == 141
        assert proc.stderr.read() == b""
        proc.stderr.close()
    finally:
        stop(proc)
        cli_fleet.http.post(f"/v1/jobs/{job_id}/cancel")


class _OtherApi(BaseHTTPRequestHandler):
    """Some other JSON API: a 200 with a body no fleet command expects."""

    def do_GET(self) -> None:  # the name http.server calls
        body = b'{"hello": "world"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


def test_an_answer_no_command_expects_is_one_line_and_exit_70(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("FLEET_DEBUG", raising=False)
    server = _Quiet(("127.0.0.1", 0), _OtherApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        result = CliRunner().invoke(app, ["--url", url, "status", "abcdef"])
        assert result.exit_code == 70, (result.output, result.exception)
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith("error: unexpected KeyError: 'id' (FLEET_DEBUG=1 shows"), line
        monkeypatch.setenv("FLEET_DEBUG", "1")  # asked for: the exception itself
        result = CliRunner().invoke(app, ["--url", url, "status", "abcdef"])
        assert isinstance(result.exception, KeyError)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
