"""An idle, healthy fleet never shows a worker as down (the short run of bench/health_soak.py;
`./run soak` runs it for 10 minutes at the default probe interval)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.processes import ROOT

pytestmark = pytest.mark.e2e


def test_idle_workers_do_not_flap() -> None:
    argv = ["bench/health_soak.py", "--seconds", "12", "--probe-interval", "0.3", "--json"]
    run = subprocess.run(
        [sys.executable, *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode in (0, 1), run.stderr
    result = json.loads(run.stdout)
    assert len(result) == 3
    assert all(row["probes"] >= 20 for row in result.values()), result  # it really probed
    assert {name: row["downs"] for name, row in result.items()} == dict.fromkeys(result, 0)
