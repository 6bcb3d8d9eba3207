"""The speed bench's short version (``./run bench --quick``) runs end to end and reports every
row and every target: each with a number, or an explicit "unavailable" reason. Not a timing
assertion: the numbers depend on the machine.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.speed.config import QUICK
from bench.speed.measure import METRICS
from bench.speed.targets import TARGETS
from bench.speed.watchers import METRICS as IMPACT
from tests.helpers import run_harness

HARNESS_TIMEOUT_S = 600  # the first run also builds the Celery and arq venvs
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(HARNESS_TIMEOUT_S + 60)]

ROOT = Path(__file__).resolve().parent.parent
SYSTEMS = {
    "floor-kit", "floor-bare", "fastmcp",
    "fleet-memory-wait", "fleet-memory-sse", "fleet-redis-wait", "fleet-redis-sse",
    "fleet-memory-mcp", "fleet-redis-mcp",
    "celery-bare", "celery-mcp", "arq-bare", "arq-mcp",
}  # fmt: skip
PROGRESS = {
    "events_s", "emit_p50_ms", "emit_p99_ms", "append_p50_ms", "append_p99_ms", "lost",
    "supervisor_cpu_pct", "client_cpu_pct",
}  # fmt: skip


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    run = run_harness(
        ["-m", "bench.speed", "--quick", "--json", str(out)],
        what="the quick bench",
        timeout=HARNESS_TIMEOUT_S,
        cwd=ROOT,
    )
    stdout = run.stdout
    assert run.returncode == 0, f"bench failed ({run.returncode}):\n{run.stderr[-3000:]}"
    assert "Targets" in stdout
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def test_header(report: dict[str, Any]) -> None:
    assert report["mode"] == "quick"
    assert report["commit"] and report["date"]
    assert len(report["load"]["start"]) == len(report["load"]["end"]) == 3


def test_every_system_row(report: dict[str, Any]) -> None:
    rows = {row["key"]: row for row in report["systems"]}
    assert set(rows) == SYSTEMS
    for key, row in rows.items():
        if row["unavailable"]:
            assert isinstance(row["unavailable"], str), key
            continue
        for metric in METRICS[:4]:
            assert _number(row["metrics"][metric]["median"]), (key, metric)
        assert all(_number(m["median"]) for m in row["metrics"].values()), key
    for key in ("floor-kit", "fleet-memory-wait", "fleet-redis-wait"):
        assert not rows[key]["unavailable"], rows[key]["unavailable"]


def test_every_progress_curve_and_memory_row(report: dict[str, Any]) -> None:
    progress = {(p["store"], p["watchers"], p["rate"]): p for p in report["progress"]}
    full = {(s, w, 0) for s in ("memory", "redis") for w in QUICK.watchers}
    paced = {(s, w, QUICK.progress_rate) for s in ("memory", "redis") for w in QUICK.watchers}
    assert set(progress) == full | {(s, w, r) for s, w, r in paced if w}
    for key, row in progress.items():
        assert row["unavailable"] or set(row["metrics"]) == PROGRESS, key
    curve = {(c["store"], c["submitters"]) for c in report["curve"]}
    assert curve == {(s, n) for s in ("memory", "redis") for n in QUICK.curve}
    assert all(_number(c["metrics"]["jobs_s"]["median"]) for c in report["curve"])
    assert {m["store"] for m in report["memory"]} == {"memory", "redis"}
    for row in report["memory"]:
        assert row.get("unavailable") or _number(row["rss_mb"]), row


def test_watchers_impact_section(report: dict[str, Any]) -> None:
    impact = report["watchers_impact"]
    assert (impact["jobs"], impact["watchers"]) == (QUICK.impact_jobs, QUICK.impact_watchers)
    rows = {row["store"]: row for row in impact["rows"]}
    assert set(rows) == {"memory", "redis"}
    for store, row in rows.items():
        assert not row["unavailable"], (store, row["unavailable"])
        for name in ("without", "with"):
            metrics = row[name]
            assert set(metrics) == set(IMPACT), (store, name)
            assert all(_number(m["median"]) for m in metrics.values()), (store, name)
            # every job of the batch succeeded, and no watcher missed an event
            assert metrics["jobs"]["min"] == QUICK.impact_jobs, (store, name)
            assert metrics["lost"]["max"] == 0, (store, name)
            assert metrics["job_p50_s"]["min"] >= QUICK.impact_seconds, (store, name)
        assert _number(row["ratio"]["median"]) and row["ratio"]["median"] > 0, store
    names = {t["key"]: t["name"] for t in report["targets"]}
    assert f"quick run: {QUICK.impact_watchers}" in names["watchers_impact_redis"]


def test_cpu_per_job_is_the_in_flight_phases(report: dict[str, Any]) -> None:
    """Issue 10 defines CPU per job over the jobs at 64 in flight; the burst's is its own."""
    rows = {row["key"]: row for row in report["systems"]}
    metrics = rows["fleet-redis-wait"]["metrics"]
    for group in ("runner", "worker", "redis"):
        assert _number(metrics[f"cpu_{group}_ms"]["median"]), group
        assert _number(metrics[f"cpu_{group}_burst_ms"]["median"]), group
    target = next(t for t in report["targets"] if t["key"] == "supervisor_cpu_redis")
    assert target["value"] == metrics["cpu_runner_ms"]["median"]


def test_the_latency_targets_read_the_paced_rows(report: dict[str, Any]) -> None:
    """Full speed gives the events/s; the append→watcher p50 is read at the paced rate."""
    targets = {t["key"]: t for t in report["targets"]}
    for store in ("memory", "redis"):
        for watchers in (1, 100):
            rows = {
                p["rate"]: p
                for p in report["progress"]
                if (p["store"], p["watchers"]) == (store, watchers)
            }
            latency = targets[f"progress_p50_{store}_{watchers}"]
            assert f"{QUICK.progress_rate:,.0f} events/s" in latency["name"]
            if not rows[QUICK.progress_rate]["unavailable"]:
                paced = rows[QUICK.progress_rate]["metrics"]["append_p50_ms"]["median"]
                assert latency["value"] == paced
            if not rows[0]["unavailable"]:
                full = rows[0]["metrics"]["events_s"]["median"]
                assert targets[f"progress_rate_{store}_{watchers}"]["value"] == full


def test_every_target_has_a_verdict(report: dict[str, Any]) -> None:
    assert [t["key"] for t in report["targets"]] == [t.key for t in TARGETS]
    for target in report["targets"]:
        assert target["verdict"] in ("PASS", "MISS")
        if target["value"] is None:
            assert target["verdict"] == "MISS"
            assert target["reason"].startswith("unavailable: "), target
        else:
            assert _number(target["value"]), target


def test_markdown_holds_every_row_of_the_run(report: dict[str, Any]) -> None:
    """What the README's speed section is made from: every system, progress row and target
    of the run, in a Markdown table, with the run's date and commit."""
    from bench.speed.markdown import markdown

    text = markdown(report)
    assert report["commit"] in text and report["date"] in text
    lines = text.splitlines()
    for row in report["systems"]:
        assert any(line.startswith(f"| {row['label']} |") for line in lines), row["label"]
    for target in report["targets"]:
        assert any(
            line.startswith(f"| {target['name']} |") and f"**{target['verdict']}**" in line
            for line in lines
        ), target["name"]
    progress = [line for line in lines if line.startswith("| `") and "://` |" in line]
    assert len(progress) >= len(report["progress"]) + len(report["curve"])
