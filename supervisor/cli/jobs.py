"""Commands that talk to a running supervisor: submit, watch, jobs, status, cancel, ..."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from shared.names import WORKFLOW_CAPABILITY
from supervisor.cli.base import (
    CliError,
    Exit,
    JsonOpt,
    State,
    app,
    detached,
    die,
    exit_for_status,
    print_json,
    run_api,
    run_submission,
    state,
)
from supervisor.cli.hints import examples
from supervisor.cli.render import (
    capabilities_table,
    down_lines,
    fields_table,
    job_detail,
    jobs_table,
    print_table,
    workers_table,
)
from supervisor.cli.schema_input import example, fields, submit_commands, typed_input
from supervisor.client import ApiError, FleetApi

__all__ = ["parse_input", "parse_labels", "print_outcome"]


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
    from supervisor.cli.watch import Watch  # live progress: only the commands that follow

    watch = Watch(api, st.out, json_lines=as_json)
    final = (await watch.run([job_id]))[job_id]
    status = str(final.get("status"))
    if not as_json:
        print_outcome(st, final)
    return exit_for_status(status)


def print_outcome(st: State, job: dict[str, Any]) -> None:
    status = job.get("status")
    if status == "succeeded":
        result = job.get("result")
        st.out.print(json.dumps(result, indent=2, default=str), markup=False, highlight=False)
        return
    err = job.get("error") or {}
    reason = f"{err.get('code')}: {err.get('message')}" if err else str(status)
    st.err.print(f"job {job['id']} {status}: {reason}", markup=False, highlight=False)


async def _typed(api: FleetApi, capability: str, pairs: list[str]) -> dict[str, Any]:
    """``key=value`` arguments typed by the capability's schema, fetched from the catalog.
    Without it (a name the catalog lacks, a token that cannot read it) each value is JSON if
    it reads as JSON, else a string, and the supervisor's own answer is the check."""
    try:
        spec = _find(await api.capabilities(), capability)
    except ApiError as exc:  # a token that may submit but not read the catalog
        if exc.status != 403:
            raise
        spec = None
    if spec is None:
        return typed_input({}, pairs, capability)
    return typed_input(spec.get("input_schema") or {}, pairs, capability)


def _find(catalog: dict[str, dict[str, Any]], name: str) -> dict[str, Any] | None:
    """A capability by its public or its qualified (``service.tool``) name."""
    found = catalog.get(name)
    if found is None:
        found = next((c for c in catalog.values() if c.get("qualified_name") == name), None)
    return found


@app.command(
    epilog=examples(
        "fleet submit sleep seconds=3 --watch     # typed by the schema: 3 is a number",
        "fleet submit echo 'value=[1, 2]'         # JSON for arrays and objects",
        "fleet submit sleep --input '{\"seconds\": 3}'",
        "fleet submit echo --input @input.json       # or @- to read stdin",
        "id=$(fleet submit noop) && fleet status $id --wait 10",
    )
)
def submit(
    ctx: typer.Context,
    capability: Annotated[str, typer.Argument(help="Capability (tool) to run, e.g. sleep.")],
    fields: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="KEY=VALUE",
            help="Input fields, typed by the capability's schema (fleet capabilities NAME).",
            show_default=False,
        ),
    ] = None,
    input: Annotated[
        str | None, typer.Option("--input", "-i", help="JSON object, @file or @- for stdin.")
    ] = None,
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
        if fields and input is not None:
            raise CliError("give the input as KEY=VALUE arguments or as --input, not both")
        body: dict[str, Any] = {"capability": capability, "input": parse_input(input or "{}")}
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
        if fields:
            body["input"] = await _typed(api, capability, fields)
        job = await api.submit(body)
        submitted["id"] = job["id"]
        if not watch:
            print_json(job) if as_json else st.out.print(job["id"], markup=False)
            return Exit.OK
        if not as_json:
            st.err.print(f"submitted {job['id']}", markup=False, highlight=False)
        return await _follow(st, api, job["id"], as_json)

    run_submission(st, go, submitted, "job")


@app.command(
    "watch",
    epilog=examples(
        "fleet watch 504145ff60e7b1c2a8d4e6f0a1b2c3d4",
        "fleet watch $id --json | jq .type    # one event per line",
    ),
)
def watch_cmd(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(help="The job to follow.")],
    json_out: JsonOpt = False,
) -> None:
    """Live progress of a job until it ends; --json prints one event per line.

    A workflow is drawn as the tree of its steps. Reconnects and resumes a dropped stream with
    no gap and no duplicate. Ctrl-C detaches without cancelling the job.
    """
    st = state(ctx)
    as_json = st.wants_json(json_out)

    async def go(api: FleetApi) -> Exit:
        if not as_json:  # a workflow is drawn as the tree of its steps
            job = await api.job(job_id)
            if job.get("capability") == WORKFLOW_CAPABILITY:
                from supervisor.cli.workflow import follow_workflow

                return await follow_workflow(st, api, job, as_json)
        return await _follow(st, api, job_id, as_json)

    try:
        code = run_api(st, go)
    except KeyboardInterrupt:
        detached(st, job_id)
    raise typer.Exit(int(code))


@app.command(
    epilog=examples(
        "fleet jobs",
        "fleet jobs --status failed --capability sleep",
        "fleet jobs | cut -f1,3             # piped: tab-separated",
        "fleet --json jobs --limit 500",
    )
)
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
    print_table(st.out, jobs_table(page["jobs"]))
    if page.get("next_cursor"):
        st.err.print(f"more: fleet jobs --cursor {page['next_cursor']}", markup=False)


@app.command(
    epilog=examples(
        "fleet status $id",
        "fleet status $id --wait 30    # exit 0 succeeded, 1 failed, 6 still running",
    )
)
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
    """Show one job; a workflow with the tree of its steps, a job with children with them."""
    st = state(ctx)
    as_json = st.wants_json(json_out)
    related: dict[str, Any] = {}

    async def go(api: FleetApi) -> dict[str, Any]:
        job = await api.job(job_id, wait=wait)
        if as_json:
            return job
        if job.get("capability") == WORKFLOW_CAPABILITY:
            related["workflow"] = await api.workflow(job["id"])
        elif job.get("children"):
            related["children"] = await _children(api, job["children"])
        return job

    job = run_api(st, go)
    if as_json:
        print_json(job)
    else:
        st.out.print(job_detail(job))
        if "workflow" in related:
            from supervisor.cli.workflow import print_tree

            st.out.print()
            print_tree(st, related["workflow"])
        elif related.get("children"):
            shown, count = related["children"], len(job["children"])
            more = f" (the first {len(shown)})" if len(shown) < count else ""
            st.out.print(f"\nchildren: {count}{more}", markup=False)
            print_table(st.out, jobs_table(shown))
    if wait:
        raise typer.Exit(int(exit_for_status(job.get("status"))))


_CHILDREN_SHOWN = 20
"""``fleet status`` lists at most this many of a job's children (one request each)."""


async def _children(api: FleetApi, ids: list[str]) -> list[dict[str, Any]]:
    """The first children of a job, in submit order; one that is gone is left out."""
    import asyncio

    async def one(child_id: str) -> dict[str, Any] | None:
        try:
            return await api.job(child_id)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    found = await asyncio.gather(*(one(c) for c in ids[:_CHILDREN_SHOWN]))
    return [child for child in found if child is not None]


@app.command(
    epilog=examples(
        "fleet cancel $id",
    )
)
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
        print_table(st.out, render(items))


@app.command(
    epilog=examples(
        "fleet workers                    # health, load, and why a worker is down",
        "fleet workers | awk -F'\\t' '$3 != \"healthy\"'",
        "fleet --json workers",
    )
)
def workers(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Workers the supervisor knows: health, load, breaker, capabilities."""
    st = state(ctx)
    found = run_api(st, lambda api: api.workers())
    if st.wants_json(json_out):
        print_json({"workers": found})
    elif not found:
        st.err.print("no workers (start one: fleet worker echo)", markup=False)
    else:  # piped, the reasons are a column; on a terminal, lines that wrap under the table
        print_table(st.out, workers_table(found, why_column=not st.out.is_terminal))
        if st.out.is_terminal:
            for line in down_lines(found):
                st.out.print(line)


@app.command(
    epilog=examples(
        "fleet capabilities                 # the catalog: every capability, its workers",
        "fleet capabilities sleep           # its input fields, an example, how to submit it",
        "fleet capabilities sleep --json    # the spec, with the input schema and the example",
    )
)
def capabilities(
    ctx: typer.Context,
    name: Annotated[
        str | None, typer.Argument(help="One capability: its input schema and an example.")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """The merged capability catalog and which workers serve each; with NAME, its input."""
    if name is None:
        _show(ctx, json_out, "capabilities", lambda api: api.capabilities(),
              "no capabilities (no healthy workers yet)", capabilities_table)  # fmt: skip
        return
    st = state(ctx)
    catalog = run_api(st, lambda api: api.capabilities())
    spec = _find(catalog, name)
    if spec is None:
        known = ", ".join(catalog) or "none (no healthy workers yet)"
        die(f"no capability {name!r} in the catalog (known: {known})", Exit.API_ERROR, st.err)
    schema = spec.get("input_schema") or {}
    sample = example(schema)
    if st.wants_json(json_out):
        print_json({"name": name, **spec, "example": sample})
        return
    workers_ = spec.get("workers") or []
    healthy = sum(1 for w in workers_ if w.get("healthy"))
    about = [
        f"{name} ({spec.get('qualified_name', name)}), served by "
        f"{', '.join(w.get('name', '?') for w in workers_) or 'no worker'} "
        f"({healthy}/{len(workers_)} healthy); idempotent: "
        f"{'yes' if spec.get('idempotent') else 'no'}",
        (spec.get("description") or "").strip(),
        "",
        "input fields:" if schema.get("properties") else "input: no fields",
    ]
    st.out.print("\n".join(about), markup=False, highlight=False)
    if schema.get("properties"):
        print_table(st.out, fields_table(fields(schema)))
    st.out.print("\nexample input:", markup=False)
    st.out.print(json.dumps(sample, indent=2), markup=False, highlight=False)
    st.out.print("\nsubmit it:", markup=False)
    for line in submit_commands(name, sample):
        st.out.print(f"  {line}", markup=False, highlight=False)


@app.command(
    "dead-letters",
    epilog=examples(
        "fleet dead-letters",
        "fleet dead-letters --json | jq -r '.jobs[].id'",
    ),
)
def dead_letters(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 100,
    json_out: JsonOpt = False,
) -> None:
    """Failed jobs waiting for a look (re-drive one with fleet redrive JOB_ID)."""
    _show(ctx, json_out, "jobs", lambda api: api.dead_letters(limit), "no dead letters",
          lambda found: jobs_table(found, title="dead letters"))  # fmt: skip


@app.command(
    epilog=examples(
        "fleet redrive $id",
        "fleet redrive $id && fleet watch $id",
    )
)
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
