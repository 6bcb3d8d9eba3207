"""The numbers `fleet watch` shows come from the job's own times: a watcher that attaches late
(and so receives the events so far in one burst) shows the real time left and, once the job
ended, the time it really took. Checked on the screen of a real 80×24 pseudo-terminal."""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

import pexpect
import pyte

from supervisor.cli.render import duration
from supervisor.cli.watch import RunClock, rate
from tests.cli.conftest import CliFleet
from tests.helpers import wait_until_sync

ROOT = Path(__file__).resolve().parents[2]


def test_rates_read_as_rates() -> None:
    assert [rate(r) for r in (0.25, 3.25, 257.4, 25_688.0, 2.5e6)] == [
        "0.25/s",
        "3.2/s",
        "257/s",
        "25.7k/s",
        "2.5M/s",
    ]
    assert rate(None) == rate(0) == ""


def test_the_clock_reads_the_jobs_time_not_the_arrival_time() -> None:
    clock = RunClock()
    clock.restart(100.0)
    for i in range(1, 9):  # eight steps a second apart, all received "now" in one burst
        clock.sample(100.0 + i, float(i), 20.0)
    assert clock.rate == 1.0
    assert clock.left(now=108.0) == 12.0
    assert clock.left(now=111.0) == 9.0  # counts down between reports
    assert clock.elapsed(now=108.5) == 8.5
    assert clock.elapsed(now=90.0) == 8.0  # a clock behind the supervisor's: not less than told
    clock.finished = 120.0
    assert clock.took == 20.0


def test_the_rate_is_over_the_recent_window_and_restarts_with_a_retry() -> None:
    clock = RunClock()
    clock.restart(0.0)
    for i in range(1, 31):  # slow at first (1 step/s), then fast (5 steps/s)
        clock.sample(float(i) if i <= 20 else 20 + (i - 20) / 5, float(i), 100.0)
    assert clock.rate is not None and clock.rate > 1.5  # the recent pace dominates
    clock.sample(23.0, 1.0, 100.0)  # progress went back: a new attempt
    assert clock.rate is None and clock.left(now=23.0) is None


class Screen:
    """A real pseudo-terminal of ``cols``×``rows`` running ``argv``, read through a VT100
    emulator (the screen as a person sees it, not the raw escape stream)."""

    def __init__(self, argv: list[str], env: dict[str, str], cols: int = 80, rows: int = 24):
        self.screen = pyte.Screen(cols, rows)
        self.stream = pyte.ByteStream(self.screen)
        self.child = pexpect.spawn(
            argv[0], argv[1:], env=env, dimensions=(rows, cols), cwd=str(ROOT)
        )

    def pump(self) -> str:
        try:
            while True:
                self.stream.feed(self.child.read_nonblocking(65536, timeout=0.05))
        except (pexpect.TIMEOUT, pexpect.EOF):
            pass
        return "\n".join(self.screen.display)

    def wait_for(self, pattern: str, timeout: float = 30) -> re.Match[str]:
        def seen() -> re.Match[str] | None:
            return re.search(pattern, self.pump())

        found: re.Match[str] = wait_until_sync(
            seen, timeout=timeout, message=f"{pattern!r} on the screen"
        )
        return found

    def wait_exit(self, timeout: float = 30) -> int:
        """The exit status, once the program ended and its last output is on the screen."""

        def ended() -> bool:
            self.pump()
            return not self.child.isalive()

        wait_until_sync(ended, timeout=timeout, message="the program to end")
        self.pump()
        return int(self.child.exitstatus if self.child.exitstatus is not None else -1)


def _seconds(text: str) -> float:
    if m := re.fullmatch(r"(\d+)m(\d+)s", text):
        return int(m[1]) * 60 + int(m[2])
    return float(text.rstrip("s"))


def test_a_late_watcher_shows_the_real_time_left_and_taken(cli_fleet: CliFleet) -> None:
    job_id = cli_fleet.submit("sleep", {"seconds": 12, "steps": 24})
    job = cli_fleet.wait_running(job_id, min_progress=8)  # a third done before we attach
    env = {**os.environ, "FLEET_URL": cli_fleet.url, "TERM": "xterm", "COLUMNS": "80"}
    env["PYTHONPATH"] = str(ROOT)
    fleet = str(Path(sys.executable).with_name("fleet"))
    term = Screen([fleet, "watch", job_id[:12]], env)
    try:
        left = term.wait_for(r"~(\S+) left")
        started = float(job["started_at"])
        truth = 12.0 - (time.time() - started)
        shown = _seconds(left[1])
        # rich's own clock (the old bar) timed the burst of 8+ replayed reports: ~0 s left.
        assert abs(shown - truth) <= 2.5, (shown, truth, term.pump())
        assert term.wait_exit() == 0
        screen = term.pump()
        done = cli_fleet.job(job_id)
        took = duration(done["finished_at"] - done["started_at"])
        assert took in screen, (took, screen)  # the run's time, not the time watched
        assert all(len(line.rstrip()) <= 80 for line in term.screen.display)
    finally:
        term.child.close(force=True)
