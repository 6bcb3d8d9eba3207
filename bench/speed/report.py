"""The run as tables for people (rich) and as one JSON document for the README and scripts."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["emits", "print_report", "write_json"]


def emits(row: dict[str, Any]) -> str:
    """How fast a progress row's worker reported: full speed, or paced at its rate."""
    rate = row.get("rate") or 0
    return f"{rate:,.0f}/s" if rate else "full speed"


_SYSTEM_COLUMNS = (
    ("p50_ms", "p50 ms", 2),
    ("p99_ms", "p99 ms", 2),
    ("jobs_s_inflight", "jobs/s @64", 0),
    ("jobs_s_burst", "jobs/s burst", 0),
    ("cpu_runner_ms", "runner CPU ms/job @64", 3),
    ("cpu_runner_burst_ms", "runner CPU ms/job burst", 3),
    ("cpu_worker_ms", "MCP worker CPU ms/job @64", 3),
    ("cpu_redis_ms", "redis CPU ms/job @64", 3),
)
_PROGRESS_COLUMNS = (
    ("events_s", "events/s", 0),
    ("emit_p50_ms", "emit→watcher p50", 2),
    ("emit_p99_ms", "p99", 2),
    ("append_p50_ms", "append→watcher p50", 2),
    ("append_p99_ms", "p99", 2),
    ("lost", "lost (worst)", 0),
    ("supervisor_cpu_pct", "supervisor CPU %", 0),
    ("client_cpu_pct", "watchers' CPU %", 0),
)
_IMPACT_COLUMNS = (
    ("job_p50_s", "job p50 s", 3),
    ("job_max_s", "job max s", 3),
    ("worker_p50_s", "worker's own p50 s", 3),
    ("batch_s", "batch s", 3),
    ("supervisor_cpu_pct", "supervisor CPU %", 0),
    ("client_cpu_pct", "watchers' CPU %", 0),
    ("lost", "events lost (worst)", 0),
)


def _cell(metric: dict[str, Any] | None, digits: int, worst: bool = False) -> str:
    if not metric or metric.get("median") is None:
        return "—"
    if worst:
        return f"{metric['max']:.{digits}f}"
    med, lo, hi = metric["median"], metric["min"], metric["max"]
    if any(isinstance(x, float) and math.isnan(x) for x in (med, lo, hi)):
        return "—"
    if len(metric["rounds"]) == 1:
        return f"{med:,.{digits}f}"
    return f"{med:,.{digits}f} ({lo:,.{digits}f}–{hi:,.{digits}f})"


def _value(row: dict[str, Any]) -> str:
    value = row["value"]
    if value is None:
        return "—"
    if row["unit"] == "×":
        return f"{value:.2f}×"
    if row["unit"] in ("/s", "", "MB"):
        return f"{value:,.0f}{' ' + row['unit'] if row['unit'] else ''}"
    return f"{value:.2f} {row['unit']}"


def print_report(result: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console(width=160)
    load = result["load"]
    console.print(
        f"[bold]mcp-fleet bench[/] {result['mode']}  {result['date']}  commit {result['commit']}"
        f"  cores {result['cores']}  rounds {result['counts']['rounds']}\n"
        f"load average at start {load['start']}, at end {load['end']}\n"
        f"floor: {result['floor']}\ncells: median (min–max) over rounds"
    )
    table = Table(title="Systems (no-op job; sequential p50/p99; throughput; CPU per job)")
    table.add_column("system")
    for _, title, _ in _SYSTEM_COLUMNS:
        table.add_column(title, justify="right")
    for row in result["systems"]:
        if row["unavailable"]:
            table.add_row(row["label"], f"unavailable: {row['unavailable']}")
            continue
        m = row["metrics"]
        table.add_row(row["label"], *(_cell(m.get(k), d) for k, _, d in _SYSTEM_COLUMNS))
    console.print(table)

    table = Table(title="Progress (ms from the worker's emit / the supervisor's append)")
    table.add_column("store")
    table.add_column("watchers", justify="right")
    table.add_column("worker emits", justify="right")
    for _, title, _ in _PROGRESS_COLUMNS:
        table.add_column(title, justify="right")
    for row in result["progress"]:
        head = [row["store"], str(row["watchers"]), emits(row)]
        if row["unavailable"]:
            table.add_row(*head, f"unavailable: {row['unavailable']}")
            continue
        cells = [_cell(row["metrics"].get(k), d, k == "lost") for k, _, d in _PROGRESS_COLUMNS]
        table.add_row(*head, *cells)
    console.print(table)

    table = Table(title="Curve (POST /v1/jobs?wait=, concurrent submitters)")
    for title in ("store", "submitters", "jobs/s", "p50 ms"):
        table.add_column(title, justify="right" if title != "store" else "left")
    for row in result["curve"]:
        m = row["metrics"]
        table.add_row(
            row["store"], str(row["submitters"]), _cell(m["jobs_s"], 0), _cell(m["p50_ms"], 2)
        )
    console.print(table)

    table = Table(title="Memory (supervisor RSS)")
    for title in ("store", "queued", "watchers", "RSS idle MB", "RSS loaded MB"):
        table.add_column(title, justify="right" if title != "store" else "left")
    for row in result["memory"]:
        if row.get("unavailable"):
            table.add_row(row["store"], f"unavailable: {row['unavailable']}")
            continue
        table.add_row(
            row["store"], f"{row['queued']:,}", f"{row['watchers']:,}",
            f"{row['rss_idle_mb']:.0f}", f"{row['rss_mb']:.0f}",
        )  # fmt: skip
    console.print(table)
    _print_impact(result, console)

    table = Table(title="Targets")
    for title in ("target", "value", "wanted", "verdict"):
        table.add_column(title)
    for row in result["targets"]:
        verdict = "[green]PASS[/]" if row["verdict"] == "PASS" else "[red]MISS[/]"
        value = row["reason"] if row["reason"] else _value(row)
        table.add_row(row["name"], value, row["target"], verdict)
    console.print(table)


def _print_impact(result: dict[str, Any], console: Console) -> None:
    impact = result.get("watchers_impact")
    if not impact:
        return
    table = Table(
        title=f"Watchers' impact on job durations ({impact['jobs']} jobs in flight, each "
        f"{impact['events']} progress events over {impact['seconds']:g} s; a job's duration: "
        "its finished_at − the release)",
        caption="the watchers run in a process of their own, on the same cores",
    )
    table.add_column("store")
    table.add_column("watchers", justify="right")
    for _, title, _ in _IMPACT_COLUMNS:
        table.add_column(title, justify="right")
    table.add_column("p50 ÷ none", justify="right")
    for row in impact["rows"]:
        if row["unavailable"]:
            table.add_row(row["store"], "", f"unavailable: {row['unavailable']}")
            continue
        for name, watchers in (("without", 0), ("with", impact["watchers"])):
            m = row[name]
            cells = [_cell(m.get(k), d, k == "lost") for k, _, d in _IMPACT_COLUMNS]
            ratio = _cell(row["ratio"], 2) if watchers else ""
            table.add_row(row["store"], f"{watchers:,}", *cells, ratio)
    console.print(table)


def _finite(value: Any) -> Any:
    """NaN and infinities become null, so the file is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def write_json(result: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(_finite(result), indent=2) + "\n")
