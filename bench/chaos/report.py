"""The suite's output: a table for people, JSON for scripts, and the exit status."""

from __future__ import annotations

import datetime
import statistics
import subprocess
from dataclasses import asdict
from typing import Any

from bench.chaos.checks import COUNTS
from bench.chaos.config import Config
from bench.chaos.procs import ROOT
from bench.chaos.suite import ScenarioResult

__all__ = ["as_json", "exit_status", "revision", "table"]

_HEADERS = ("scenario", "faults", "jobs", "lost", "double", "gaps", "after-done", "5xx")


def revision() -> dict[str, Any]:
    """Now, the commit measured, and whether the work tree differed from it."""

    def git(*args: str) -> str:
        try:
            out = subprocess.run(
                ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return ""
        return out.stdout.strip()

    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git("rev-parse", "--short", "HEAD"),
        "dirty": bool(git("status", "--short")),
    }


def _recovery(values: list[float | None]) -> str:
    measured = [v for v in values if v is not None]
    if not values:
        return "-"
    text = f"{statistics.median(measured):.2f} / {max(measured):.2f}" if measured else "never"
    missing = len(values) - len(measured)
    return text + (f" ({missing} never)" if measured and missing else "")


def table(doc: dict[str, Any]) -> str:
    """The human form of :func:`as_json`'s document."""
    scenarios = doc["scenarios"]
    rows: list[tuple[str, ...]] = [(*_HEADERS, "recovery s (median / max)")]
    for r in scenarios:
        if r["error"]:
            rows.append((r["name"], str(r["rounds"]), "-", *("?" for _ in COUNTS), "error"))
            continue
        counts = [str(r["counts"].get(name, "?")) for name in COUNTS]
        rows.append(
            (r["name"], str(r["rounds"]), str(r["accepted"]), *counts, _recovery(r["recovery_s"]))
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        f"chaos suite, {doc['mode']}: {doc['date']}, commit {doc['commit']}"
        f"{' (+ uncommitted changes)' if doc['dirty'] else ''}, "
        f"lease {doc['config']['lease_s']:g}s, took {doc['duration_s']:.0f}s",
        "",
    ]
    for i, row in enumerate(rows):
        cells = [
            c.ljust(w) if j == 0 else c.rjust(w)
            for j, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append("")
    for r in scenarios:
        lines.extend(_details(r))
    return "\n".join(lines)


def _details(r: dict[str, Any]) -> list[str]:
    lines = [f"{r['name']} ({r['duration_s']:.0f}s): {r['title']}"]
    if r["error"]:
        lines.append(f"  ERROR {r['error']}")
    info = r["info"]
    if info:
        lines.append(f"  outcomes {info['outcomes']}")
        lines.append(
            f"  double by tool {info['double_executions_by_tool']}, "
            f"re-delivered jobs {info['redelivered_jobs']}, "
            f"attempts under-counted {info['attempts_undercounted']}, "
            f"runs over max_attempts {info['runs_over_max_attempts']}"
        )
        if info.get("completed_while_cut_off"):  # absent from runs saved before link cuts
            lines.append(
                f"  completed on a cut-off worker (answer lost, not counted as double) "
                f"{info['completed_while_cut_off']}"
            )
        lines.append(
            f"  refused submissions {info['refused_submissions'] or 0}, "
            f"outage 503s {info['outage_503']}, "
            f"transport errors {info['transport_errors'] or 0}, "
            f"never accepted {info['unanswered_submissions']}"
        )
        for key, values in info.items():
            if key.endswith("_s") and isinstance(values, list):
                lines.append(f"  {key.replace('_', ' ')}: {_recovery(values)}")
    for name, examples in r["examples"].items():
        for example in examples[:2]:
            lines.append(f"  e.g. {name}: {example}")
    for note in r["notes"]:
        lines.append("  note: " + note.strip().replace("\n", "\n        "))
    if r["workdir"]:
        lines.append(f"  logs kept in {r['workdir']}")
    return lines


def as_json(
    results: list[ScenarioResult], cfg: Config, took_s: float, measured: dict[str, Any]
) -> dict[str, Any]:
    """``measured`` is :func:`revision` plus ``date``, taken when the run started."""
    return {
        "suite": "chaos",
        **measured,
        "mode": cfg.mode,
        "config": cfg.as_dict(),
        "duration_s": round(took_s, 1),
        "counts_that_must_be_zero": list(COUNTS),
        "ok": exit_status(results) == 0,
        "scenarios": [{**asdict(r), "clean": r.clean} for r in results],
    }


def exit_status(results: list[ScenarioResult]) -> int:
    """0 when every count is 0; 1 when one is not; 2 when a scenario could not run."""
    if any(r.error for r in results):
        return 2
    return 0 if all(r.clean for r in results) else 1
