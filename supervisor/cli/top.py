"""``fleet top``: workers, queue depths and running jobs, redrawn every second."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

import typer
from rich.console import Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from supervisor.cli.base import Exit, JsonOpt, app, print_json, run_api, state
from supervisor.cli.render import ago, duration, job_duration, progress_cell, workers_table
from supervisor.client import FleetApi

__all__ = ["Snapshot", "render_frame", "snapshot"]

Snapshot = dict[str, Any]


async def snapshot(api: FleetApi, limit: int = 20) -> Snapshot:
    workers, queues, running = await asyncio.gather(
        api.workers(), api.queues(), api.jobs(status="running", limit=limit)
    )
    return {
        "at": time.time(),
        "url": api.url,
        "workers": workers,
        "queues": queues.get("queues", {}),
        "held_by_this_supervisor": queues.get("held_by_this_supervisor"),
        "running": running["jobs"],
    }


def _queues_table(queues: dict[str, int]) -> Table:
    table = Table(title="queues", title_justify="left")
    table.add_column("CAPABILITY", no_wrap=True)
    table.add_column("QUEUED", justify="right")
    for capability, depth in sorted(queues.items(), key=lambda kv: (-kv[1], kv[0])):
        table.add_row(capability, Text(str(depth), style="yellow" if depth else "dim"))
    if not queues:
        table.add_row(Text("(empty)", style="dim"), "0")
    return table


def _running_table(jobs: list[dict[str, Any]]) -> Table:
    table = Table(title="running jobs", title_justify="left")
    table.add_column("ID", no_wrap=True)
    table.add_column("CAPABILITY", no_wrap=True)
    table.add_column("WORKER", no_wrap=True)
    table.add_column("PROGRESS", no_wrap=True, min_width=22)
    table.add_column("MESSAGE")
    table.add_column("TRY", justify="right")
    table.add_column("RUNNING", no_wrap=True)
    for job in jobs:
        message = (job.get("progress") or {}).get("message") or ""
        table.add_row(
            job["id"][:12],
            job["capability"],
            job.get("worker") or "-",
            progress_cell(job),
            message[:40],
            str(job.get("attempts", 0)),
            duration(job_duration(job)),
        )
    if not jobs:
        table.add_row(Text("(none)", style="dim"), "", "", "", "", "", "")
    return table


def render_frame(snap: Snapshot) -> RenderableType:
    workers = snap["workers"]
    healthy = sum(1 for w in workers if w.get("healthy"))
    queued = sum(snap["queues"].values())
    header = Text.assemble(
        ("fleet top", "bold"),
        f"  {snap['url']}   workers {healthy}/{len(workers)} healthy   ",
        f"queued {queued}   running {len(snap['running'])}   ",
        (f"updated {ago(snap['at'])}", "dim"),
    )
    workers_view = workers_table(workers)
    workers_view.title, workers_view.title_justify = "workers", "left"
    queues, running = _queues_table(snap["queues"]), _running_table(snap["running"])
    return Group(header, workers_view, queues, running)


@app.command()
def top(
    ctx: typer.Context,
    interval: Annotated[float, typer.Option(min=0.2, help="Seconds between frames.")] = 1.0,
    once: Annotated[bool, typer.Option("--once", help="Render one frame and exit.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Live dashboard: workers (health, load, breaker), queue depths, running jobs.

    --json prints one snapshot per line every interval (with --once, a single one).
    """
    st = state(ctx)
    as_json = st.wants_json(json_out)

    async def go(api: FleetApi) -> None:
        if once:
            snap = await snapshot(api)
            print_json(snap) if as_json else st.out.print(render_frame(snap))
            return
        if as_json:
            while True:
                print_json(await snapshot(api))
                await asyncio.sleep(interval)
        with Live(console=st.out, auto_refresh=False, screen=False, transient=False) as live:
            while True:
                live.update(render_frame(await snapshot(api)), refresh=True)
                await asyncio.sleep(interval)

    try:
        run_api(st, go)
    except KeyboardInterrupt:
        raise typer.Exit(int(Exit.OK)) from None
