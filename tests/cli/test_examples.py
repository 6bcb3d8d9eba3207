"""The programs in examples/ run as a user runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from examples.submit_and_watch import submit_and_watch
from tests.cli.conftest import CliFleet

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_submit_and_watch_prints_every_event_then_the_result(
    cli_fleet: CliFleet, capsys: pytest.CaptureFixture[str]
) -> None:
    job = cli_fleet.bg.run(submit_and_watch(cli_fleet.url, "progress", {"steps": 3}))
    assert job["status"] == "succeeded"
    lines = capsys.readouterr().out.splitlines()
    types = [line.split()[1] for line in lines]
    assert types.count("progress") == 3 and types[-1] == "done"
    assert [int(line.split()[0]) for line in lines] == sorted(int(x.split()[0]) for x in lines)


def test_the_hello_worker_runs_as_a_script() -> None:
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "hello_worker.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "python examples/hello_worker.py" in out.stdout and "--port" in out.stdout
