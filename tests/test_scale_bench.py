"""The scale bench's short version (``python -m bench.scale --quick``) runs end to end: every
configuration of supervisors and workers has its jobs/s and the CPU per job of each group, and
the capacity on paper is printed and written. Not a timing assertion: the numbers depend on
the machine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.scale import CLUSTER, CONFIGS, GROUPS, PAPER_SUPERVISORS, QUICK
from tests.helpers import run_harness

HARNESS_TIMEOUT_S = 300
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(HARNESS_TIMEOUT_S + 60)]

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any]]:
    out = tmp_path_factory.mktemp("scale") / "scale.json"
    run = run_harness(
        ["-m", "bench.scale", "--quick", "--json", str(out)],
        what="the quick scale bench",
        timeout=HARNESS_TIMEOUT_S,
        cwd=ROOT,
    )
    assert run.returncode == 0, f"scale bench failed ({run.returncode}):\n{run.stderr[-3000:]}"
    return run.stdout, json.loads(out.read_text())


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def test_header(report: tuple[str, dict[str, Any]]) -> None:
    _, result = report
    assert result["mode"] == "quick" and result["counts"]["jobs"] == QUICK.jobs
    assert result["commit"] and result["date"]
    assert len(result["load"]["start"]) == len(result["load"]["end"]) == 3


def test_every_configuration_has_its_numbers(report: tuple[str, dict[str, Any]]) -> None:
    _, result = report
    rows = {row["key"]: row for row in result["configs"]}
    assert set(rows) == {f"{s}x{w}" for s, w in CONFIGS} | {"{}x{}-cluster".format(*CLUSTER)}
    for key, row in rows.items():
        assert row["unavailable"] is None, (key, row["unavailable"])
        metrics = row["metrics"]
        assert _positive(metrics["jobs_s"]["median"]), key
        for group in GROUPS:
            assert _positive(metrics[f"cpu_{group}_ms"]["median"]), (key, group)
        assert _positive(metrics["supervisor_core"]["median"]), key
        assert len(metrics["jobs_s"]["rounds"]) == QUICK.rounds, key


def test_the_capacity_on_paper(report: tuple[str, dict[str, Any]]) -> None:
    stdout, result = report
    assert "Capacity on paper" in stdout and "linear scaling" in stdout
    paper = result["capacity"]
    counts = [row["supervisors"] for row in paper["rows"]]
    assert set(PAPER_SUPERVISORS) <= set(counts) and counts == sorted(counts)
    # the row where one Redis caps the deployment, wherever that falls
    assert paper["rows"][-1]["limited_by"] == "redis", paper["rows"]
    for row in paper["rows"]:
        assert _positive(row["jobs_s"]) and row["jobs_s"] <= paper["redis_ceiling_jobs_s"]
        assert row["limited_by"] in ("supervisors", "redis")
    rates = [row["jobs_s"] for row in paper["rows"]]
    assert rates == sorted(rates)  # more supervisors never carry fewer jobs on paper
    assert _positive(paper["redis_ceiling_jobs_s"])


def test_the_cluster_spreads_the_work_over_its_masters(
    report: tuple[str, dict[str, Any]],
) -> None:
    stdout, result = report
    cluster = result["cluster"]
    assert "-master cluster" in stdout and "busiest master" in stdout
    assert _positive(cluster["redis_ms_per_job"]) and _positive(cluster["ceiling_jobs_s"])
    # 64 shards over 3 masters: no master does all of it (one slot would be 100 %)
    assert cluster["busiest_share"] < 0.75, cluster
