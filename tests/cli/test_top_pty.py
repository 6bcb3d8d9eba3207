"""``fleet top`` and ``fleet watch`` in a real pseudo-terminal, read as a person sees them.

A real supervisor (``redis://``, so jobs outlive it) and a real echo worker run as processes;
the CLI runs under ``pexpect`` at 80×24 (and narrower), and ``pyte`` keeps the screen the
terminal would show. A character drawn past the last column — a row that would wrap — is
counted by the screen itself, so "nothing is wider than the terminal" is measured, not assumed.
"""

from __future__ import annotations

import json
import re
import signal
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest
import redis

from shared.serving import free_port
from tests.cli.terminal import Term
from tests.helpers import wait_until_sync
from tests.processes import (
    ROOT,
    Proc,
    process_env,
    start_supervisor,
    stop,
    supervisor,
    worker,
)

pytestmark = pytest.mark.e2e

FAST = {
    "FLEET_PROBE_INTERVAL_S": "0.5",
    "FLEET_BACKOFF_INITIAL_S": "0.05",
    "FLEET_BACKOFF_MAX_S": "0.2",
    "FLEET_LEASE_S": "2",
}
SLEEP = {"seconds": 120, "steps": 240}


@dataclass
class PtyFleet:
    url: str
    port: str
    env: dict[str, str]
    supervisor: Proc
    http: httpx.Client

    def submit(self, capability: str, input: dict[str, object], **kw: object) -> str:
        r = self.http.post("/v1/jobs", json={"capability": capability, "input": input, **kw})
        assert r.status_code == 202, r.text
        return str(r.json()["id"])

    def job(self, job_id: str, wait: float = 0) -> dict[str, object]:
        r = self.http.get(f"/v1/jobs/{job_id}", params={"wait": wait} if wait else None)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def running(self, job_id: str) -> bool:
        job = self.job(job_id)
        return job["status"] == "running" and bool(job.get("progress"))

    def restart(self) -> None:
        self.supervisor = start_supervisor(port=self.port, **self.env).wait_healthy()


@pytest.fixture(scope="module")
def pty_fleet() -> Iterator[PtyFleet]:
    from tests.conftest import REDIS_URL, REQUIRE_REDIS, _redis_available

    if not _redis_available():  # as the redis_url fixture, for a whole module
        if REQUIRE_REDIS:
            pytest.fail(f"Redis required at {REDIS_URL} but unreachable")
        pytest.skip(f"no Redis at {REDIS_URL}")
    prefix = f"fleet-test-{uuid.uuid4().hex[:12]}"
    port = str(free_port())
    with worker("echo") as w:
        env = {**FAST, "FLEET_REDIS_URL": REDIS_URL, "FLEET_KEY_PREFIX": prefix}
        env["FLEET_WORKERS"] = w.url
        sup = start_supervisor(port=port, **env).wait_healthy()
        http = httpx.Client(base_url=sup.url, timeout=30)
        fleet = PtyFleet(sup.url, port, env, sup, http)
        try:
            wait_until_sync(
                lambda: any(x["healthy"] for x in http.get("/v1/workers").json()["workers"]),
                timeout=30,
                message="the echo worker healthy",
            )
            yield fleet
        finally:
            http.close()
            fleet.supervisor.stop()
            client = redis.Redis.from_url(REDIS_URL)
            keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
            if keys:
                client.delete(*keys)
            client.close()


@pytest.fixture(scope="module")
def busy(pty_fleet: PtyFleet) -> dict[str, list[str]]:
    """Three long jobs running and one failed (dead-lettered) with a known code."""
    running = [pty_fleet.submit("sleep", SLEEP) for _ in range(3)]
    failed = pty_fleet.submit("fail", {"code": "TOP_BOOM"}, max_attempts=1)
    assert pty_fleet.job(failed, wait=20)["status"] == "failed"
    for job_id in running:
        wait_until_sync(lambda j=job_id: pty_fleet.running(j), timeout=30, message="running")
    return {"running": running, "failed": [failed]}


def _row_of(text: str, job_id: str) -> str | None:
    return next((line for line in text.splitlines() if job_id[:12] in line), None)


def _slots_line(capability: str) -> Callable[[str], object]:
    """The capability's slots row: in flight/limit, queued, workers."""
    pattern = re.compile(rf"^\s+{capability}\s+\d+/\d+\s(.*\s)?\d+(\s+\d+/\d+)?$", re.M)
    return pattern.search


def _select(term: Term, job_id: str) -> None:
    """Move the selection (↓/j, ↑/k) until the job's row carries the marker."""
    for _ in range(20):
        row = _row_of(term.text, job_id)
        if row is not None and row.startswith(">"):
            return
        lines = term.text.splitlines()
        marked = next((i for i, line in enumerate(lines) if line.startswith(">")), None)
        target = next((i for i, line in enumerate(lines) if job_id[:12] in line), None)
        assert target is not None, term.text
        term.send("j" if marked is None or marked < target else "\x1b[A")
        term.wait_for(lambda text, before=marked: _marked(text) != before, timeout=10)
    raise AssertionError(f"could not select {job_id}:\n{term.text}")


def _marked(text: str) -> int | None:
    return next((i for i, line in enumerate(text.splitlines()) if line.startswith(">")), None)


def test_top_at_80x24_acts_and_rides_out_a_restart(
    pty_fleet: PtyFleet, busy: dict[str, list[str]]
) -> None:
    term = Term(["top", "--interval", "0.5"], pty_fleet.url)
    try:
        term.wait_for(_slots_line("sleep"))
        term.wait_for(busy["failed"][0][:12])
        screen = term.text
        assert "TOP_BOOM" in (_row_of(screen, busy["failed"][0]) or ""), screen
        assert re.search(r"^\s+sleep\s+3/4\s", screen, re.M), screen  # in flight / limit
        for job_id in busy["running"]:
            assert job_id[:12] in screen, screen
        assert screen.splitlines()[0].startswith("fleet top"), screen

        # Select the second running job and cancel it with the keys.
        victim = busy["running"][1]
        _select(term, victim)
        term.send("c")
        term.wait_for(f"cancel {victim[:12]}")
        term.send("y")
        term.wait_for(f"cancelled {victim[:12]}")
        assert pty_fleet.job(victim)["status"] == "cancelled"
        term.wait_for(lambda text: _row_of(text, victim) is None)  # gone from running jobs

        # `w` watches the selected job in the normal screen; Ctrl-C comes back to top.
        watched = busy["running"][0]
        _select(term, watched)
        term.send("w")
        term.wait_for(f"watching {watched}")
        term.wait_for("running on")
        term.send("\x03")
        term.wait_for(f"detached from {watched[:12]}")
        term.wait_for(_slots_line("sleep"))
        assert pty_fleet.job(watched)["status"] == "running"

        # The supervisor goes away: top says so and keeps going; it comes back: data again.
        pty_fleet.supervisor.stop()
        term.wait_for("reconnecting…", timeout=30)
        assert term.child.isalive()
        assert re.search(r"reconnecting… since \d\d:\d\d:\d\d .*attempt \d+", term.text)
        pty_fleet.restart()
        term.wait_for(lambda text: "reconnecting" not in text and "last 20s" in text, 60)
        term.wait_for(watched[:12], timeout=30)
        term.wait_for(_slots_line("sleep"))

        # `r` redrives the selected failed job: it runs again (and fails again, by design).
        failed = busy["failed"][0]
        first_run = pty_fleet.job(failed)["started_at"]
        _select(term, failed)
        term.send("r")
        term.wait_for(f"redriven {failed[:12]}")
        wait_until_sync(
            lambda: pty_fleet.job(failed)["started_at"] not in (None, first_run),
            timeout=20,
            message="the redriven job ran again",
        )

        assert not term.screen.overflows, term.screen.overflows
        term.send("q")
        assert term.exit_code() == 0
        assert term.left_clean()
    finally:
        term.close()


@pytest.mark.parametrize("columns", [60, 40])
def test_top_narrower_drops_columns_and_never_wraps(
    pty_fleet: PtyFleet, busy: dict[str, list[str]], columns: int
) -> None:
    term = Term(["top", "--interval", "0.5"], pty_fleet.url, columns=columns)
    try:
        term.wait_for(_slots_line("sleep"))
        term.wait_for(busy["failed"][0][:12])
        running = [j for j in busy["running"] if pty_fleet.job(j)["status"] == "running"]
        term.wait_for(running[0][:12])
        assert not term.screen.overflows, term.screen.overflows
        row = _row_of(term.text, running[0]) or ""
        assert re.search(r"\b\d+%", row), row  # the percentage stays whole when columns go
        term.send("q")
        assert term.exit_code() == 0
    finally:
        term.close()


def test_watch_ctrl_c_detaches_with_130_and_the_job_runs_on(pty_fleet: PtyFleet) -> None:
    job_id = pty_fleet.submit("sleep", SLEEP)
    term = Term(["watch", job_id], pty_fleet.url)
    try:
        term.wait_for("running on")
        term.wait_for(lambda text: re.search(r"\d+%", text))
        assert not term.screen.overflows, term.screen.overflows  # the live bar fits 80
        term.send("\x03")
        assert term.exit_code() == 130
        assert f"detached from job {job_id}" in term.text.replace("\n", ""), term.text
        assert pty_fleet.job(job_id)["status"] == "running"
    finally:
        term.close()
        pty_fleet.http.post(f"/v1/jobs/{job_id}/cancel")


def test_top_off_a_terminal_prints_one_snapshot(
    pty_fleet: PtyFleet, busy: dict[str, list[str]]
) -> None:
    """Piped (stdout not a terminal): one frame as text, exit 0, no screen control codes."""
    import subprocess

    env = process_env(FLEET_URL=pty_fleet.url, PYTHONPATH=str(ROOT))
    out = subprocess.run(
        [sys.executable, "-m", "supervisor", "top"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert out.returncode == 0, out.stderr
    assert "\x1b" not in out.stdout
    assert busy["failed"][0][:12] in out.stdout and "TOP_BOOM" in out.stdout
    assert re.search(r"^sleep\s+\d+/4\s", out.stdout, re.M), out.stdout


def test_top_exits_5_with_one_line_when_the_token_is_refused() -> None:
    """A refused token is not a blip: no "reconnecting…", one line, exit 5."""
    with supervisor(FLEET_API_TOKENS="s3cret", **FAST) as sup:
        term = Term(["--token", "wrong", "top"], sup.url)
        try:
            assert term.exit_code() == 5
            lines = term.logical_lines()  # an 80-column terminal wraps the long line
            assert len(lines) == 1 and lines[0].startswith("error: "), term.text
            assert "FLEET_TOKEN" in lines[0]
            assert "reconnecting" not in term.text
        finally:
            term.close()


def test_top_watch_comes_back_to_top_when_the_job_ends(pty_fleet: PtyFleet) -> None:
    job_id = pty_fleet.submit("sleep", {"seconds": 4, "steps": 8})
    wait_until_sync(lambda: pty_fleet.running(job_id), timeout=30, message="running")
    term = Term(["top", "--interval", "0.5"], pty_fleet.url)
    try:
        term.wait_for(job_id[:12])
        _select(term, job_id)
        term.send("\r")  # Enter watches, as w does
        term.wait_for(f"watching {job_id}")
        term.wait_for(f"watched {job_id[:12]} to its end: ok (exit 0)", timeout=30)
        term.wait_for(_slots_line("sleep"))
        assert pty_fleet.job(job_id)["status"] == "succeeded"
        term.send("q")
        assert term.exit_code() == 0
    finally:
        term.close()


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_top_leaves_the_terminal_as_it_found_it(pty_fleet: PtyFleet, how: str) -> None:
    term = Term(["top", "--interval", "0.5"], pty_fleet.url)
    try:
        term.wait_for(_slots_line("sleep"))
        assert not term.screen.on_normal  # it took the alternate screen
        if how == "ctrl-c":
            term.send("\x03")
        else:
            term.child.kill(signal.SIGTERM)
        assert term.exit_code() == 0
        assert term.left_clean(), (term.modes_after, term.screen.mode)
    finally:
        term.close()


def test_top_json_rides_out_a_restart_and_says_so_once_on_stderr(pty_fleet: PtyFleet) -> None:
    """``fleet --json top`` streams snapshots; a supervisor restart is one "reconnecting" line
    and one "reconnected" line on stderr, never a non-snapshot line on stdout, never an exit."""
    import queue
    import subprocess
    import threading

    env = process_env(FLEET_URL=pty_fleet.url, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "supervisor", "--json", "top", "--interval", "0.3"],
        env=env,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[tuple[str, str]] = queue.Queue()

    def pump(name: str, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            lines.put((name, line.rstrip("\n")))

    assert proc.stdout is not None and proc.stderr is not None
    for name, stream in (("out", proc.stdout), ("err", proc.stderr)):
        threading.Thread(target=pump, args=(name, stream), daemon=True).start()
    seen: list[tuple[str, str]] = []

    def next_line(want: str, contains: str = "", timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0 and proc.poll() is None, (proc.poll(), seen)
            try:
                name, line = lines.get(timeout=min(left, 1.0))
            except queue.Empty:
                continue
            seen.append((name, line))
            if name == want and contains in line:
                return line

    try:
        assert "workers" in json.loads(next_line("out"))
        pty_fleet.supervisor.stop()
        assert "unreachable" in next_line("err", "reconnecting to ")
        pty_fleet.restart()
        next_line("err", "reconnected to ")
        assert "workers" in json.loads(next_line("out"))
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 0
    finally:
        stop(proc)
        proc.stdout.close()
        proc.stderr.close()
    for name, line in seen:
        if name == "out":
            assert "workers" in json.loads(line)  # every stdout line is a snapshot
    errors = [line for name, line in seen if name == "err"]
    assert sum("reconnecting" in line for line in errors) <= 2, errors  # per change, not try
    assert not any("Traceback" in line for line in errors), errors


def test_top_lists_a_queued_job_and_cancels_it_with_the_keys(pty_fleet: PtyFleet) -> None:
    """Every sleep slot busy: the next job waits in the queue, and top shows it (marked
    "queued") after the running ones, selectable and cancellable with the keys."""
    limit = pty_fleet.http.get("/v1/queues").json()["slots"]["sleep"]["limit"]
    mine = [pty_fleet.submit("sleep", SLEEP) for _ in range(limit + 1)]  # one more than fits
    term = Term(["top", "--interval", "0.5"], pty_fleet.url)
    try:
        waiting = wait_until_sync(
            lambda: (
                next((j for j in mine if pty_fleet.job(j)["status"] == "queued"), None)
                if pty_fleet.http.get("/v1/queues").json()["slots"]["sleep"]["in_flight"] >= limit
                else None
            ),
            timeout=30,
            message="a sleep waiting for a slot",
        )
        term.wait_for(waiting[:12])
        row = _row_of(term.text, waiting) or ""
        assert "queued" in row, term.text
        _select(term, waiting)
        term.send("c")
        term.wait_for(f"cancel {waiting[:12]}")
        term.send("y")
        term.wait_for(f"cancelled {waiting[:12]}")
        assert pty_fleet.job(waiting)["status"] == "cancelled"
        term.wait_for(lambda text: _row_of(text, waiting) is None)
        assert not term.screen.overflows, term.screen.overflows
        term.send("q")
        assert term.exit_code() == 0
    finally:
        term.close()
        for job_id in mine:
            pty_fleet.http.post(f"/v1/jobs/{job_id}/cancel")
