"""Ids as the CLI prints them: any unique prefix of 6+ characters works in every command that
takes an id; an ambiguous one is one line naming the candidates (exit 5)."""

from __future__ import annotations

import pytest

from supervisor.api import submission
from tests.cli.conftest import CliFleet


def test_a_printed_short_id_works_in_every_command(cli_fleet: CliFleet) -> None:
    job_id = cli_fleet.submit("noop", {})
    short = job_id[:12]
    status = cli_fleet.invoke("status", short, "--wait", "20")
    assert status.exit_code == 0, status.output
    assert job_id in status.output
    watch = cli_fleet.invoke("--json", "watch", job_id[:6])
    assert watch.exit_code == 0, watch.output
    assert watch.output.count(job_id) >= 2  # every event names the whole id
    cancel = cli_fleet.invoke("cancel", short)
    assert cancel.exit_code == 5 and "JOB_FINISHED" in cancel.output, cancel.output


def test_an_ambiguous_short_id_names_the_candidates(
    cli_fleet: CliFleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    minted = ["c0ffee" + "1" * 26, "c0ffee" + "2" * 26]
    queue = list(minted)
    fresh = submission.new_job_id
    monkeypatch.setattr(submission, "new_job_id", lambda: queue.pop(0) if queue else fresh())
    for _ in minted:
        cli_fleet.submit("noop", {})
    result = cli_fleet.invoke("status", "c0ffee")
    assert result.exit_code == 5, result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith("error: AMBIGUOUS_JOB_ID: 2 jobs start with 'c0ffee'"), line
    assert "c0ffee111111 (noop, " in line and "c0ffee222222 (noop, " in line
    assert cli_fleet.invoke("status", "c0ffee2").exit_code == 0
