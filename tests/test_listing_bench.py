"""The listing bench's short version (``python -m bench.listing --jobs 500``) runs end to end:
it fills a store through the scripts, lists by status through the real API and prints the
numbers with the target. Not a timing assertion: the numbers depend on the machine."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers import run_harness

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent


def test_the_listing_bench_lists_the_running_jobs_by_status() -> None:
    run = run_harness(
        ["-m", "bench.listing", "--jobs", "500", "--samples", "20"],
        what="the listing bench",
        timeout=300,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    running = re.search(
        r"status=running\s+p50 ([\d.]+) ms .*\((\d+) jobs\).*: (PASS|MISS)", run.stdout
    )
    assert running, run.stdout
    assert float(running[1]) > 0 and running[2] == "50"  # exactly the running ones
    assert re.search(r"first page\)\s+p50 [\d.]+ ms .*\(50 jobs\)", run.stdout), run.stdout
