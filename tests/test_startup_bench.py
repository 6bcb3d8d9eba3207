"""``./run bench startup --quick`` runs and prints every row (the numbers are the bench's job,
never asserted here: they depend on the machine and its load)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.processes import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

ROWS = (
    "fleet --help",
    "fleet --version",
    "fleet status ID",
    "import the client (FleetClient)",
    "floor: python + the CLI's libraries",
    "supervisor listening, memory://",
    "supervisor listening, redis://",
    "worker echo listening",
    "worker data listening",
    "worker text listening",
)


def test_quick_run_prints_every_row() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-m", "bench.startup", "--quick"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert "commit" in lines[0] and "load average" in lines[0]
    for row in ROWS:
        found = [line for line in lines if line.startswith(row)]
        assert found, f"no row {row!r} in:\n{done.stdout}"
        assert any(word in found[0] for word in ("PASS", "MISS", " - ", "n/a")), found[0]
    measured = tuple(row for row in ROWS if "version" not in row and "redis" not in row)
    for line in lines:
        if line.startswith(measured):  # these always run: a number, not a failure note
            assert " ms " in line and "exited" not in line, line
