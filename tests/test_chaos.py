"""The chaos suite's short version (``./run chaos --quick``): real processes, real faults.

One run of the harness (a subprocess, exactly what ``./run chaos --quick --json`` does) feeds
two tests. ``test_chaos_loses_nothing`` holds the counts that must already be 0: lost jobs,
event-log gaps and 5xx answers. ``test_chaos_never_twice`` holds double executions and events
after ``done``, which depend on fencing work landing in the supervisor: it stays a separate,
plain test so its state (pass or fail) is visible on its own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import run_harness

HARNESS_TIMEOUT_S = 300
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(HARNESS_TIMEOUT_S + 90)]

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = {
    "worker-kill",
    "supervisor-kill",
    "supervisor-pause",
    "redis-kill",
    "worker-cut",
    "supervisor-cut",
}
COUNTS = {"lost", "double_executions", "gaps", "events_after_done", "http_5xx"}


@pytest.fixture(scope="module")
def chaos() -> dict[str, Any]:
    run = run_harness(
        ["-m", "bench.chaos", "--quick", "--json"],
        what="the quick chaos suite",
        timeout=HARNESS_TIMEOUT_S,
        cwd=ROOT,
    )
    out = run.stdout
    assert run.returncode in (0, 1), f"harness failed ({run.returncode}):\n{run.stderr[-3000:]}"
    report: dict[str, Any] = json.loads(out)
    return report


def _table(report: dict[str, Any]) -> str:
    return "\n".join(
        f"{s['name']}: {s['counts']} examples={json.dumps(s['examples'])[:600]}"
        for s in report["scenarios"]
    )


def test_chaos_covers_every_scenario(chaos: dict[str, Any]) -> None:
    assert chaos["mode"] == "quick"
    assert set(chaos["counts_that_must_be_zero"]) == COUNTS
    assert {s["name"] for s in chaos["scenarios"]} == SCENARIOS
    for scenario in chaos["scenarios"]:
        assert scenario["error"] is None, scenario["notes"]
        assert scenario["rounds"] >= 1
        assert scenario["accepted"] > 0, scenario["name"]
        assert set(scenario["counts"]) == COUNTS
        assert all(isinstance(v, int) and v >= 0 for v in scenario["counts"].values())
        assert len(scenario["recovery_s"]) == scenario["rounds"]


def test_chaos_loses_nothing(chaos: dict[str, Any]) -> None:
    """No accepted job lost, no gap in an event log, no 5xx: never, under any fault."""
    bad = {
        s["name"]: {k: s["counts"][k] for k in ("lost", "gaps", "http_5xx") if s["counts"][k]}
        for s in chaos["scenarios"]
    }
    assert not any(bad.values()), f"{bad}\n{_table(chaos)}"


def test_chaos_never_twice(chaos: dict[str, Any]) -> None:
    """No job runs twice (the ledger) and no event follows ``done``: issue 8's fencing."""
    bad = {
        s["name"]: {
            k: s["counts"][k] for k in ("double_executions", "events_after_done") if s["counts"][k]
        }
        for s in chaos["scenarios"]
    }
    assert not any(bad.values()), f"{bad}\n{_table(chaos)}"
