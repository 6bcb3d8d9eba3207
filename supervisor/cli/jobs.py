"""Commands that talk to a running supervisor: submit, watch, jobs, status, cancel, ..."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from supervisor.cli.base import (
    CliError,
    Exit,
    JsonOpt,
    State,
    app,
    exit_for_status,
    print_json,
    run_api,
    state,
)
from supervisor.cli.render import (
    capabilities_table,
    job_detail,
    jobs_table,
    workers_table,
)
from supervisor.cli.watch import Watch
from supervisor.client import FleetApi

__all__ = ["parse_input", "parse_labels"]


def parse_input(raw: str) -> dict[str, Any]:
    """``--input``: a JSON object, ``@file`` or ``@-`` (stdin)."""
    source = "--input"
    if raw.startswith("@"):
        name = raw[1:]
        source = "stdin" if name == "-" else name
        try:
            raw = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
        except OSError as exc:
            raise CliError(f"cannot read {source}: {exc.strerror or exc}") from exc
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise CliError(f"{source} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise CliError(f"{source} must be a JSON object, got {type(value).__name__}")
    return value


def parse_labels(items: list[str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CliError(f"--label must be key=value, got {item!r}")
        labels[key.strip()] = value
    return labels


async def _follow(st: State, api: FleetApi, job_id: str, as_json: bool) -> Exit:
    """Follow one job to its end and print the outcome; the exit code follows it."""
    watch = Watch(api, st.out, json_lines=as_json)
    final = (await watch.run([job_id]))[job_id]
    status = str(final.get("status"))
    if not as_json:
        _print_outcome(st, final)
    return exit_for_status(status)


def _print_outcome(st: State, job: dict[str, Any]) -> None:
    status = job.get("status")
    if status == "succeeded":
        result = job.get("result")
        st.out.print(json.dumps(result, indent=2, default=str), markup=False, highlight=False)
        return
    err = job.get("error") or {}
    reason = f"{err.get('code')}: {err.get('message')}" if err else str(status)
    st.err.print(f"job {job['id']} {status}: {reason}", markup=False, highlight=False)


def _detached(st: State, job_id: str) -> None:
    st.err.print(
        f"detached from job {job_id}; it keeps running "
        f"(follow it: fleet watch {job_id}; stop it: fleet cancel {job_id})",
        markup=False,
        highlight=False,
    )
    raise typer.Exit(int(Exit.INTERRUPTED))


@app.command()
def submit(
    ctx: typer.Context,
    capability: Annotated[str, typer.Argument(help="Capability (tool) to run, e.g. sleep.")],
    input: Annotated[
        str, typer.Option("--input", "-i", help="JSON object, @file or @- for stdin.")
    ] = "{}",
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Follow it to the end.")] = False,
    idempotency_key: Annotated[str | None, typer.Option(help="Submit at most once.")] = None,
    timeout: Annotated[float | None, typer.Option(help="Per-attempt timeout, seconds.")] = None,
    max_attempts: Annotated[int | None, typer.Option(help="Attempts before failing.")] = None,
    worker: Annotated[str | None, typer.Option(help="Pin to a worker (name or URL).")] = None,
    label: Annotated[list[str] | None, typer.Option(help="key=value; repeatable.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Submit a job and print its id; with --watch, follow it and exit with its outcome."""
    st = state(ctx)
    as_json = st.wants_json(json_out)
    try:
        body: dict[str, Any] = {"capability": capability, "input": parse_input(input)}
        labels = parse_labels(label or [])
    except CliError as exc:
        st.err.print(f"error: {exc.message}", markup=False, highlight=False)
        raise typer.Exit(int(exc.code)) from None
    extra = {
        "idempotency_key": idempotency_key,
        "timeout_s": timeout,
        "max_attempts": max_attempts,
        "worker": worker,
        "labels": labels or None,
    }
    body.update({k: v for k, v in extra.items() if v is not None})
    submitted: dict[str, str] = {}

    async def go(api: FleetApi) -> Exit:
        job = await api.submit(body)
        submitted["id"] = job["id"]
        if not watch:
            print_json(job) if as_json else st.out.print(job["id"], markup=False)
            return Exit.OK
        if not as_json:
            st.err.print(f"submitted {job['id']}", markup=False, highlight=False)
        return await _follow(st, api, job["id"], as_json)

    try:
        code = run_api(st, go)
    except KeyboardInterrupt:
        if "id" not in submitted:
            raise typer.Exit(int(Exit.INTERRUPTED)) from None
        _detached(st, submitted["id"])
    raise typer.Exit(int(code))


@app.command("watch")
def watch_cmd(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(help="The job to follow.")],
    json_out: JsonOpt = False,
) -> None:
    """Live progress of a job until it ends; --json prints one event per line.

    Reconnects and resumes a dropped stream with no gap and no duplicate. Ctrl-C detaches
    without cancelling the job.
    """
    st = state(ctx)
    as_json = st.wants_json(json_out)
    try:
        code = run_api(st, lambda api: _follow(st, api, job_id, as_json))
    except KeyboardInterrupt:
        _detached(st, job_id)
    raise typer.Exit(int(code))


@app.command()
def jobs(
    ctx: typer.Context,
    status: Annotated[
        str | None, typer.Option(help="queued, running, succeeded, failed or cancelled.")
    ] = None,
    capability: Annotated[str | None, typer.Option(help="Only this capability.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="At most this many.")] = 50,
    cursor: Annotated[str | None, typer.Option(help="next_cursor of a previous page.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """List jobs, newest first."""
    st = state(ctx)
    page = run_api(
        st, lambda api: api.jobs(status=status, capability=capability, limit=limit, cursor=cursor)
    )
    if st.wants_json(json_out):
        print_json(page)
        return
    if not page["jobs"]:
        st.err.print("no jobs", markup=False)
        return
    st.out.print(jobs_table(page["jobs"]))
    if page.get("next_cursor"):
        st.err.print(f"more: fleet jobs --cursor {page['next_cursor']}", markup=False)


@app.command()
def status(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(help="The job.")],
    wait: Annotated[
        float,
        typer.Option(min=0, max=60, help="Wait up to S seconds for the job to end; then exit "
                     "with its outcome (0 succeeded, 1 failed, 3 cancelled, 6 not ended yet)."),
    ] = 0,
    json_out: JsonOpt = False,
) -> None:  # fmt: skip
    """Show one job."""
    st = state(ctx)
    job = run_api(st, lambda api: api.job(job_id, wait=wait))
    if st.wants_json(json_out):
        print_json(job)
    else:
        st.out.print(job_detail(job))
    if wait:
        raise typer.Exit(int(exit_for_status(job.get("status"))))


@app.command()
def cancel(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(help="The job to cancel.")],
    json_out: JsonOpt = False,
) -> None:
    """Cancel a queued or running job (409, exit 5, if it already ended)."""
    st = state(ctx)
    job = run_api(st, lambda api: api.cancel(job_id))
    if st.wants_json(json_out):
        print_json(job)
    elif job.get("status") == "cancelled":
        st.out.print(f"cancelled {job_id}", markup=False)
    else:
        st.out.print(f"cancelling {job_id} (still {job.get('status')})", markup=False)


def _show(
    ctx: typer.Context,
    json_out: bool,
    key: str,
    fetch: Callable[[Any], Any],
    empty: str,
    render: Callable[[Any], Any],
) -> None:
    """A listing: ``{key: items}`` as JSON, a note on stderr when empty, else a table."""
    st = state(ctx)
    items = run_api(st, fetch)
    if st.wants_json(json_out):
        print_json({key: items})
    elif not items:
        st.err.print(empty, markup=False)
    else:
        st.out.print(render(items))


@app.command()
def workers(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Workers the supervisor knows: health, load, breaker, capabilities."""
    _show(ctx, json_out, "workers", lambda api: api.workers(),
          "no workers (start one: fleet worker echo)", workers_table)  # fmt: skip


@app.command()
def capabilities(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """The merged capability catalog and which workers serve each."""
    _show(ctx, json_out, "capabilities", lambda api: api.capabilities(),
          "no capabilities (no healthy workers yet)", capabilities_table)  # fmt: skip


@app.command("dead-letters")
def dead_letters(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 100,
    json_out: JsonOpt = False,
) -> None:
    """Failed jobs waiting for a look (re-drive one with fleet redrive JOB_ID)."""
    _show(ctx, json_out, "jobs", lambda api: api.dead_letters(limit), "no dead letters",
          lambda found: jobs_table(found, title="dead letters"))  # fmt: skip


@app.command()
def redrive(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(help="A dead-lettered job.")],
    json_out: JsonOpt = False,
) -> None:
    """Queue a dead-lettered job again with a fresh attempt budget."""
    st = state(ctx)
    job = run_api(st, lambda api: api.redrive(job_id))
    if st.wants_json(json_out):
        print_json(job)
    else:
        st.out.print(f"redriven {job_id}: {job.get('status')}", markup=False)
