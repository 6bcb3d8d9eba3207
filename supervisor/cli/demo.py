"""``fleet demo``: a whole fleet on this machine, a realistic batch, live progress, a summary.

It starts the example workers (``echo``, ``data``, ``text``) as child processes on free
ports, an embedded supervisor (memory store) in this process, submits the batch from
:mod:`supervisor.cli.batch` over real HTTP — including one invalid input (422), one job it
cancels while it runs and a workflow (:mod:`supervisor.cli.demo_flow`: split a text, keywords
per chunk, a summary; its steps drawn as a tree under the bars) — follows every job's event
stream, prints a summary and stops everything. Exit 0 when each job ended as expected.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from supervisor.cli.base import Exit, JsonOpt, app, print_json, state
from supervisor.cli.batch import CANCEL_JOB, INVALID_JOB, DemoJob, batch, dataset, sample_text
from supervisor.cli.demo_flow import flow_job
from supervisor.cli.hints import examples
from supervisor.cli.procs import reap, start_fleet
from supervisor.cli.render import STATUS_STYLE, duration, job_duration
from supervisor.cli.watch import Watch
from supervisor.cli.workflow_watch import FlowState
from supervisor.client import ApiError, FleetApi

__all__ = ["DemoReport", "run_demo"]


@dataclass
class Outcome:
    job: DemoJob
    id: str | None = None
    status: str = "?"
    body: dict[str, Any] | None = None
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.status == self.job.expect


@dataclass
class DemoReport:
    supervisor: str = ""
    workers: dict[str, str] = field(default_factory=dict)
    outcomes: list[Outcome] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return bool(self.outcomes) and all(o.ok for o in self.outcomes)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "seconds": round(self.seconds, 2),
            "supervisor": self.supervisor,
            "workers": self.workers,
            "jobs": [
                {
                    "label": o.job.label,
                    "capability": o.job.capability,
                    "id": o.id,
                    "status": o.status,
                    "expected": o.job.expect,
                    "ok": o.ok,
                    "worker": (o.body or {}).get("worker"),
                    "attempts": (o.body or {}).get("attempts"),
                    "note": o.note,
                    "error": (o.body or {}).get("error"),
                }
                for o in self.outcomes
            ],
        }


def _say(console: Console, quiet: bool, *parts: Any) -> None:
    if not quiet:
        console.print(*parts, highlight=False)


async def _cancel_when_running(api: FleetApi, outcome: Outcome) -> None:
    """Cancel the long job once it runs and has reported some progress."""
    assert outcome.id is not None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        job = await api.job(outcome.id)
        done = (job.get("progress") or {}).get("progress", 0)
        if job["status"] == "running" and done >= 3:
            break
        if job["status"] not in ("queued", "running"):
            return
        await asyncio.sleep(0.1)
    job = await api.cancel(outcome.id)
    total = (job.get("progress") or {}).get("total")
    outcome.note = f"cancelled while running, at step {done:g}/{total or 0:g}"


async def _submit(api: FleetApi, job: DemoJob) -> Outcome:
    body = await api.submit({"capability": job.capability, "input": job.input, **job.options})
    return Outcome(job, id=body["id"], status=body["status"], body=body)


async def _submit_flow(api: FleetApi, job: DemoJob) -> Outcome:
    body = await api.submit_workflow(job.input)
    return Outcome(job, id=body["id"], status=body["status"], body=body)


async def run_demo(console: Console, *, quiet: bool, spawned: set[int]) -> DemoReport:
    report = DemoReport()
    started = time.monotonic()
    records, text = dataset(), sample_text()
    with tempfile.TemporaryDirectory(prefix="fleet-demo-") as tmp:
        async with contextlib.AsyncExitStack() as stack:
            _say(console, quiet, Text("Starting workers echo, data, text and a supervisor…",
                                      style="bold"))  # fmt: skip
            url, children = await start_fleet(
                Path(tmp), spawned, stack, key_prefix=f"demo-{uuid.uuid4().hex[:8]}"
            )
            api = await stack.enter_async_context(FleetApi(url))
            report.supervisor = url
            report.workers = {name: c.url for name, c in children.items()}
            _say(console, quiet, f"supervisor {url} (memory store); workers "
                 + ", ".join(f"{n} {c.url}" for n, c in children.items()))  # fmt: skip

            invalid = Outcome(INVALID_JOB)
            try:
                await api.submit({"capability": INVALID_JOB.capability,
                                  "input": INVALID_JOB.input})  # fmt: skip
                invalid.status, invalid.note = "accepted", "the invalid input was accepted!"
            except ApiError as exc:
                invalid.status = "rejected" if exc.status == 422 else f"HTTP {exc.status}"
                invalid.note = f"{exc.status} {exc.one_line()}"
            _say(console, quiet, Text(f"invalid input → {invalid.note}", style="yellow"))

            outcomes = [await _submit(api, job) for job in batch(records, text)]
            flow = await _submit_flow(api, flow_job(text))
            long_job = await _submit(api, CANCEL_JOB)
            outcomes += [flow, long_job]
            _say(console, quiet, f"submitted {len(outcomes)} jobs, one a workflow "
                 f"({len(records)} records, {len(text)} characters of text)")  # fmt: skip

            # The workflow's steps, folded from its events as they pass: drawn under the bars.
            tree = FlowState(flow.body or {})
            watch = Watch(
                api,
                Console(quiet=True) if quiet else console,
                on_event=lambda event: tree.apply(event) if event["job_id"] == flow.id else None,
                extras=[tree],
            )
            for o in outcomes:
                assert o.id is not None
                watch.add(o.id, o.job.label)
            canceller = asyncio.create_task(_cancel_when_running(api, long_job))
            try:
                finals = await watch.run()
                await canceller
            finally:  # interrupted: the canceller must not outlive the supervisor
                canceller.cancel()
                await asyncio.gather(canceller, return_exceptions=True)
            if not watch.live:
                _say(console, quiet, tree)
            for o in outcomes:
                o.body = finals.get(o.id or "") or o.body
                o.status = (o.body or {}).get("status", o.status)
                if o.status == "succeeded" and not o.note:
                    with contextlib.suppress(Exception):
                        o.note = o.job.describe((o.body or {}).get("result"))
                elif o.status == "failed" and o.body and o.body.get("error"):
                    err = o.body["error"]
                    o.note = f"{err['code']} after {o.body.get('attempts')} attempts; dead-lettered"
            report.outcomes = [*outcomes, invalid]
            _say(console, quiet, Text("Stopping workers and supervisor…", style="dim"))
    report.seconds = time.monotonic() - started
    return report


def summary_table(report: DemoReport) -> Table:
    table = Table(title="demo summary", title_justify="left")
    table.add_column("JOB", no_wrap=True)
    table.add_column("WORKER", no_wrap=True)
    table.add_column("STATUS", no_wrap=True)
    table.add_column("TOOK", justify="right", no_wrap=True)
    table.add_column("TRIES", justify="right", no_wrap=True)
    table.add_column("RESULT", ratio=1)
    for o in report.outcomes:
        body = o.body or {}
        status = f"✓ {o.status}" if o.ok else f"✗ {o.status} (expected {o.job.expect})"
        table.add_row(
            f"{o.job.capability} ({o.job.label})" if o.job.label != o.job.capability else
            o.job.capability,
            str(body.get("worker") or "-").split("@")[0],
            Text(status, style=STATUS_STYLE.get(o.status, "yellow") if o.ok else "red"),
            duration(job_duration(body)) if body else "-",
            str(body.get("attempts", "-")) if body else "-",
            o.note,
        )  # fmt: skip
    return table


@app.command(epilog=examples("fleet demo", "fleet demo --quiet", "fleet demo --json | jq .ok"))
def demo(
    ctx: typer.Context,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No live progress; only the summary.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Run a whole fleet here: example workers, an embedded supervisor, a sample batch.

    Shows live progress and a summary, then stops everything. Exit 0 when every job ended
    as expected (one invalid input rejected, one job cancelled, one failing on purpose); one
    of them is a workflow, its steps drawn as a tree.
    """
    st = state(ctx)
    as_json = st.wants_json(json_out)
    spawned: set[int] = set()

    async def main() -> DemoReport:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
        return await run_demo(st.out, quiet=quiet or as_json, spawned=spawned)

    try:
        report = asyncio.run(main())
    except (KeyboardInterrupt, asyncio.CancelledError):
        reap(spawned)
        st.err.print("demo interrupted; every process it started is stopped", markup=False)
        raise typer.Exit(int(Exit.INTERRUPTED)) from None
    except (RuntimeError, ApiError, OSError) as exc:
        reap(spawned)
        st.err.print(f"error: demo could not run: {exc}", markup=False, highlight=False)
        raise typer.Exit(int(Exit.FAILED)) from None
    reap(spawned)
    if as_json:
        print_json(report.to_json())
    else:
        st.out.print(summary_table(report))
        verdict = "demo ok" if report.ok else "demo FAILED"
        st.out.print(
            Text(f"{verdict}: {sum(o.ok for o in report.outcomes)}/{len(report.outcomes)} jobs "
                 f"as expected in {report.seconds:.1f}s", style="green" if report.ok else "red")
        )  # fmt: skip
    raise typer.Exit(int(Exit.OK if report.ok else Exit.FAILED))
