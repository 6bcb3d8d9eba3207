"""A run's tables as Markdown, for the README: ``python -m bench.speed.markdown RUN.json``.

``RUN.json`` is what ``./run bench --json RUN.json`` wrote; the tables are the ones the run
printed (:mod:`bench.speed.report`), cell for cell.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench.speed.report import (
    _IMPACT_COLUMNS,
    _PROGRESS_COLUMNS,
    _SYSTEM_COLUMNS,
    _cell,
    _value,
    emits,
)

__all__ = ["markdown"]


def _table(head: Iterable[str], rows: Iterable[Iterable[str]]) -> list[str]:
    head = list(head)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


def markdown(result: dict[str, Any]) -> str:
    load = result["load"]
    out = [
        f"Run of {result['date']}, commit {result['commit']} ({result['mode']}, "
        f"{result['counts']['rounds']} rounds, {result['cores']} cores; load average "
        f"{load['start'][0]:.2f} at the start, {load['end'][0]:.2f} at the end). Cells: the "
        "median over rounds (min–max).",
        "",
    ]
    rows = []
    for row in result["systems"]:
        if row["unavailable"]:
            rows.append([row["label"], f"unavailable: {row['unavailable']}"])
        else:
            rows.append(
                [row["label"], *(_cell(row["metrics"].get(k), d) for k, _, d in _SYSTEM_COLUMNS)]
            )
    out += _table(["system", *(t for _, t, _ in _SYSTEM_COLUMNS)], rows)
    rows = []
    for row in result["progress"]:
        head = [f"`{row['store']}://`", str(row["watchers"]), emits(row)]
        if row["unavailable"]:
            rows.append([*head, f"unavailable: {row['unavailable']}"])
        else:
            m = row["metrics"]
            rows.append(
                [*head, *(_cell(m.get(k), d, k == "lost") for k, _, d in _PROGRESS_COLUMNS)]
            )
    out += _table(
        ["progress", "watchers", "worker emits", *(t for _, t, _ in _PROGRESS_COLUMNS)], rows
    )
    rows = [
        [f"`{r['store']}://`", str(r["submitters"]), _cell(r["metrics"]["jobs_s"], 0),
         _cell(r["metrics"]["p50_ms"], 2)]
        for r in result["curve"]
    ]  # fmt: skip
    out += _table(["curve (`?wait`)", "submitters", "jobs/s", "p50 ms"], rows)
    rows = [
        [f"`{r['store']}://`", f"{r['queued']:,}", f"{r['watchers']:,}",
         f"{r['rss_idle_mb']:.0f}", f"{r['rss_mb']:.0f}"]
        for r in result["memory"] if not r.get("unavailable")
    ]  # fmt: skip
    out += _table(["memory", "queued", "watchers", "RSS idle MB", "RSS loaded MB"], rows)
    impact = result.get("watchers_impact")
    if impact:
        rows = []
        for row in impact["rows"]:
            if row["unavailable"]:
                continue
            for name, watchers in (("without", 0), ("with", impact["watchers"])):
                m = row[name]
                ratio = _cell(row["ratio"], 2) if watchers else ""
                rows.append([f"`{row['store']}://`", f"{watchers:,}",
                             *(_cell(m.get(k), d, k == "lost") for k, _, d in _IMPACT_COLUMNS),
                             ratio])  # fmt: skip
        out += _table(
            ["watchers' impact", "watchers", *(t for _, t, _ in _IMPACT_COLUMNS), "p50 ÷ none"],
            rows,
        )
    rows = [
        [r["name"], r["reason"] or _value(r), r["target"], f"**{r['verdict']}**"]
        for r in result["targets"]
    ]
    out += _table(["target", "value", "wanted", "verdict"], rows)
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m bench.speed.markdown RUN.json", file=sys.stderr)
        return 2
    print(markdown(json.loads(Path(args[0]).read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
