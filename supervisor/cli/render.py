"""Tables and one-line summaries for people. Scripts use ``--json`` and never see these."""

from __future__ import annotations

import io
import json
import time
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

__all__ = [
    "STATUS_STYLE",
    "ago",
    "capabilities_table",
    "down_lines",
    "duration",
    "fields_table",
    "job_detail",
    "jobs_table",
    "percent",
    "print_table",
    "progress_cell",
    "short_json",
    "status_text",
    "workers_table",
]

STATUS_STYLE = {
    "queued": "yellow",
    "running": "cyan",
    "succeeded": "green",
    "failed": "red",
    "cancelled": "magenta",
}


def status_text(status: str) -> Text:
    return Text(status, style=STATUS_STYLE.get(status, ""))


def ago(ts: float | None, now: float | None = None) -> str:
    if not ts:
        return "-"
    return duration((now or time.time()) - ts) + " ago"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def job_duration(job: dict[str, Any]) -> float | None:
    start = job.get("started_at")
    if not start:
        return None
    end = job.get("finished_at") or time.time()
    return float(end) - float(start)


def percent(progress: dict[str, Any] | None) -> float | None:
    if not progress or not progress.get("total"):
        return None
    return max(0.0, min(100.0, 100.0 * float(progress["progress"]) / float(progress["total"])))


def progress_cell(job: dict[str, Any], width: int = 20) -> RenderableType:
    p = job.get("progress")
    pct = percent(p)
    if job.get("status") == "succeeded":
        pct = 100.0
    if pct is None:
        return Text("-" if not p else f"{p['progress']:g}")
    bar = ProgressBar(total=100, completed=pct, width=width)
    return Group(bar, Text(f"{pct:3.0f}%"))


def short_json(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, default=str, separators=(",", ":"))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def print_table(console: Console, table: Table) -> None:
    """A table for a person on a terminal; piped, plain tab-separated text for ``cut``,
    ``awk`` and spreadsheets: one header line, one line per row, every cell whole."""
    if console.is_terminal:
        console.print(table)
        return
    columns = table.columns
    lines = ["\t".join(_plain(c.header) for c in columns)]
    for row in zip(*(c.cells for c in columns), strict=True):
        lines.append("\t".join(_plain(cell) for cell in row))
    console.file.write("\n".join(lines) + "\n")
    console.file.flush()


def _plain(cell: RenderableType) -> str:
    if isinstance(cell, Text):
        text = cell.plain
    elif isinstance(cell, str):
        text = cell
    else:  # a renderable (a progress bar …): what it shows, on one line
        scratch = Console(width=200, color_system=None, file=io.StringIO())
        scratch.print(cell)
        text = scratch.file.getvalue()  # type: ignore[attr-defined]
    return " ".join(part for part in text.replace("\t", " ").split("\n") if part.strip())


def jobs_table(jobs: list[dict[str, Any]], title: str | None = None) -> Table:
    table = Table(title=title, expand=False)
    table.add_column("ID", no_wrap=True, min_width=32)
    table.add_column("CAPABILITY", no_wrap=True)
    table.add_column("STATUS", no_wrap=True)
    table.add_column("PROGRESS", no_wrap=True)
    table.add_column("TRIES", justify="right")
    table.add_column("WORKER")
    table.add_column("AGE", no_wrap=True)
    table.add_column("TOOK", no_wrap=True)
    table.add_column("ERROR", max_width=60, overflow="ellipsis", no_wrap=True)
    for job in jobs:
        pct = percent(job.get("progress"))
        shown = "100%" if job["status"] == "succeeded" else f"{pct:.0f}%" if pct is not None else ""
        err = job.get("error") or {}
        table.add_row(
            job["id"],
            job["capability"],
            status_text(job["status"]),
            shown,
            str(job.get("attempts", 0)),
            job.get("worker") or "-",
            ago(job.get("created_at")),
            duration(job_duration(job)),
            f"{err['code']}: {err['message']}" if err else "",
        )
    return table


def job_detail(job: dict[str, Any]) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    p = job.get("progress") or {}
    pct = percent(p)
    progress = ""
    if p:
        total = p.get("total")
        progress = f"{p.get('progress'):g}/{total:g}" if total else f"{p.get('progress'):g}/?"
        progress += f" ({pct:.0f}%)" if pct is not None else ""
        progress += f"  {p['message']}" if p.get("message") else ""
    rows: list[tuple[str, RenderableType]] = [
        ("id", job["id"]),
        ("capability", job["capability"]),
        ("status", status_text(job["status"])),
        ("progress", progress or "-"),
        ("attempts", f"{job.get('attempts', 0)}/{job.get('max_attempts', '?')}"),
        ("worker", job.get("worker") or "-"),
        ("created", ago(job.get("created_at"))),
        ("took", duration(job_duration(job))),
        ("correlation id", job.get("correlation_id") or "-"),
    ]
    if job.get("parent_id"):
        rows.append(("parent", f"{job['parent_id']} (depth {job.get('depth', 1)})"))
    if job.get("children"):
        rows.append(("children", str(len(job["children"]))))
    if job.get("idempotency_key"):
        rows.append(("idempotency key", job["idempotency_key"]))
    if job.get("labels"):
        rows.append(("labels", ", ".join(f"{k}={v}" for k, v in job["labels"].items())))
    rows.append(("input", short_json(job.get("input"), 200)))
    if job.get("error"):
        err = job["error"]
        rows.append(("error", Text(f"{err['code']}: {err['message']}", style="red")))
    if job.get("result") is not None:
        rows.append(("result", short_json(job["result"], 400)))
    for key, value in rows:
        grid.add_row(key, value if not isinstance(value, str) else Text(value))
    return grid


def workers_table(workers: list[dict[str, Any]], *, why_column: bool = False) -> Table:
    """``why_column``: the reason a worker is down, as a last column (for a pipe: every cell
    whole); a terminal shows the reasons under the table instead (:func:`down_lines`)."""
    table = Table(title=None)
    table.add_column("NAME", overflow="fold")
    table.add_column("URL", overflow="fold")
    table.add_column("HEALTH", no_wrap=True, min_width=7)
    table.add_column("LOAD", justify="right", no_wrap=True)
    table.add_column("BREAKER", no_wrap=True, min_width=6)
    table.add_column("CAPABILITIES")
    table.add_column("SEEN", no_wrap=True)
    why = why_column and any(w.get("down_reason") for w in workers)
    if why:  # only when something is down
        table.add_column("WHY DOWN")
    for w in workers:
        health = w.get("health") or ("healthy" if w.get("healthy") else "down")
        style = "green" if w.get("healthy") else "red"
        cap = (w.get("reported_load") or {}).get("max_concurrency")
        load = f"{w.get('in_flight', 0)}/{cap}" if cap else str(w.get("in_flight", 0))
        breaker = w.get("breaker", "-")
        table.add_row(
            w.get("name", "?"),
            w.get("url", "?"),
            Text(health, style=style),
            load,
            Text(breaker, style="green" if breaker == "closed" else "yellow"),
            ", ".join(w.get("capabilities", [])),
            ago(w.get("last_seen")),
            *([_why_down(w)] if why else []),
        )
    return table


def down_lines(workers: list[dict[str, Any]]) -> list[Text]:
    """One line per worker that is down: its name, for how long, and why."""
    return [
        Text(f"✗ {w.get('name', '?')} {_why_down(w)}", style="red")
        for w in workers
        if w.get("down_reason")
    ]


def _why_down(worker: dict[str, Any]) -> str:
    reason = worker.get("down_reason")
    if not reason:
        return ""
    since = worker.get("down_since")
    return f"down for {duration(time.time() - since)}: {reason}" if since else f"down: {reason}"


def capabilities_table(caps: dict[str, dict[str, Any]]) -> Table:
    table = Table()
    table.add_column("CAPABILITY", no_wrap=True)
    table.add_column("WORKERS")
    table.add_column("IDEMPOTENT", no_wrap=True)
    table.add_column("EST.", justify="right", no_wrap=True)
    table.add_column("DESCRIPTION", max_width=90, overflow="ellipsis", no_wrap=True)
    for name, spec in caps.items():
        workers = spec.get("workers") or []
        healthy = sum(1 for w in workers if w.get("healthy"))
        names = ", ".join(sorted({w.get("name", "?") for w in workers}))
        est = spec.get("estimated_duration_ms")
        description = (spec.get("description") or "").strip().split(". ")[0].split("\n")[0]
        table.add_row(
            name,
            f"{names} ({healthy}/{len(workers)} healthy)",
            "yes" if spec.get("idempotent") else "no",
            f"{est} ms" if est is not None else "-",
            description,
        )
    return table


def fields_table(fields: list[Any]) -> Table:
    """A capability's input fields (:func:`supervisor.cli.schema_input.fields`)."""
    table = Table()
    table.add_column("FIELD", no_wrap=True)
    table.add_column("TYPE")
    table.add_column("REQUIRED", no_wrap=True)
    table.add_column("DEFAULT")
    table.add_column("RULES")
    table.add_column("DESCRIPTION")
    for f in fields:
        table.add_row(
            f.name,
            f.type,
            "yes" if f.required else "no",
            json.dumps(f.default) if f.has_default else "-",
            f.rules or "-",
            f.description,
        )
    return table
