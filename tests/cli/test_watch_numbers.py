"""The numbers `fleet watch` shows come from the job's own times: a watcher that attaches late
(and so receives the events so far in one burst) shows the real time left and, once the job
ended, the time it really took. Checked on the screen of a real 80×24 pseudo-terminal."""

from __future__ import annotations

import re
import time

from supervisor.cli.render import duration
from supervisor.cli.watch import RunClock, rate
from tests.cli.conftest import CliFleet
from tests.cli.terminal import Term


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


def _seconds(text: str) -> float:
    if m := re.fullmatch(r"(\d+)m(\d+)s", text):
        return int(m[1]) * 60 + int(m[2])
    return float(text.rstrip("s"))


def test_a_late_watcher_shows_the_real_time_left_and_taken(cli_fleet: CliFleet) -> None:
    job_id = cli_fleet.submit("sleep", {"seconds": 12, "steps": 24})
    job = cli_fleet.wait_running(job_id, min_progress=8)  # a third done before we attach
    term = Term(["watch", job_id[:12]], cli_fleet.url)  # 80x24
    try:
        left = term.wait_for(lambda text: re.search(r"~(\S+) left", text))
        assert isinstance(left, re.Match)
        started = float(job["started_at"])
        truth = 12.0 - (time.time() - started)
        shown = _seconds(left[1])
        # rich's own clock (the old bar) timed the burst of 8+ replayed reports: ~0 s left.
        assert abs(shown - truth) <= 2.5, (shown, truth, term.text)
        assert term.exit_code(timeout=30) == 0
        screen = term.text
        done = cli_fleet.job(job_id)
        took = duration(done["finished_at"] - done["started_at"])
        assert took in screen, (took, screen)  # the run's time, not the time watched
        assert not term.screen.overflows  # nothing drawn past the 80th column
    finally:
        term.close()
