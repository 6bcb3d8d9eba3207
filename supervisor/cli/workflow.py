"""``fleet workflow run FILE`` and ``fleet workflow show ID``: workflows from the terminal.

A workflow is a job whose steps run as child jobs (the spec: ``POST /v1/workflows``). ``run``
submits a spec file, its input given or overridden with ``--input``; ``--watch`` draws the
tree of its steps live (:mod:`supervisor.cli.workflow_watch`). ``show`` draws the tree once.
``fleet status`` and ``fleet watch`` draw it too when the job they are given is a workflow.

``fleet workflow`` is one command of the lazy table (:data:`supervisor.cli.COMMANDS`) that
hands its arguments to the small group below, so ``fleet --help`` stays import-free.
"""

from __future__ import annotations

import json
import sys
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
    run_submission,
    state,
)
from supervisor.cli.hints import examples
from supervisor.client import FleetApi, StepBoard

__all__ = ["follow_workflow", "parse_inputs", "print_tree", "read_spec"]

workflows = typer.Typer(
    name="workflow",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Workflows: steps over capabilities, each step's work run as child jobs.",
    epilog=examples(
        "fleet workflow run examples/flow.json --input text=@examples/article.txt --watch",
        "fleet workflow show $id          # its steps as a tree",
        "fleet workflow run --help        # the spec file, --input, --wait",
    ),
)


def _read(source: str, what: str) -> str:
    """A file's text, or stdin's for ``-``; a one-line error when it cannot be read."""
    try:
        return sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot read {what} {source}: {exc.strerror or exc}") from exc


def read_spec(source: str) -> dict[str, Any]:
    """The workflow spec in ``source`` (a JSON file, ``-`` for stdin), a JSON object."""
    name = "stdin" if source == "-" else source
    try:
        spec = json.loads(_read(source, "the workflow"))
    except ValueError as exc:
        raise CliError(f"{name} is not valid JSON: {exc}") from exc
    if not isinstance(spec, dict):
        raise CliError(f"{name} must hold a JSON object (a workflow), got {type(spec).__name__}")
    return spec


def parse_inputs(items: list[str], base: dict[str, Any] | None = None) -> dict[str, Any]:
    """``--input`` items over the spec's own input: ``@file.json`` (an object, merged in),
    ``key=@file`` (the file's text), ``key=@-`` (stdin's), ``key=value`` (JSON when it
    reads as JSON — ``3``, ``true``, ``[1, 2]`` — else the text as written)."""
    out = dict(base or {})
    for item in items:
        if item.startswith("@"):
            try:
                value = json.loads(_read(item[1:], "--input"))
            except ValueError as exc:
                raise CliError(f"--input {item} is not valid JSON: {exc}") from exc
            if not isinstance(value, dict):
                raise CliError(f"--input {item} must hold a JSON object")
            out.update(value)
            continue
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise CliError(f"--input must be key=value, key=@file or @file.json, got {item!r}")
        if raw.startswith("@"):
            out[key.strip()] = _read(raw[1:], f"--input {key.strip()}:")
            continue
        try:
            out[key.strip()] = json.loads(raw)
        except ValueError:
            out[key.strip()] = raw
    return out


def print_tree(st: State, workflow: dict[str, Any]) -> None:
    """The tree of a workflow once (``GET /v1/workflows/{id}``'s answer). Its steps go
    through the same fold as the live view's events, which takes what it understands and
    never fails on the rest."""
    from supervisor.cli.workflow_view import tree

    job = workflow.get("job") or {}
    board = StepBoard.from_spec(job.get("input"))
    for name, step in (workflow.get("steps") or {}).items():
        if isinstance(step, dict):
            board.apply({"type": "step", "data": {**step, "step": name}})
    st.out.print(tree(job, board, st.out.width))


async def follow_workflow(st: State, api: FleetApi, job: dict[str, Any], as_json: bool) -> Exit:
    """Follow a workflow job to its end (the tree live, lines, or JSON events), then print its
    result whole (as ``fleet submit --watch`` does); the exit code follows its outcome."""
    from supervisor.cli.jobs import print_outcome
    from supervisor.cli.workflow_watch import FlowWatch

    final = await FlowWatch(api, st.out, job, json_lines=as_json).run()
    if not as_json:
        print_outcome(st, final)
    return exit_for_status(str(final.get("status")))


@workflows.command(
    "run",
    epilog=examples(
        "fleet workflow run examples/flow.json --input text=@examples/article.txt --watch",
        "fleet workflow run flow.json --input @inputs.json --wait 60",
        "fleet workflow run flow.json --input max_chars=400    # JSON when it reads as JSON",
        "id=$(fleet workflow run flow.json) && fleet workflow show $id",
    ),
)
def run(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(help="The workflow spec, a JSON file (- for stdin).")],
    input: Annotated[
        list[str] | None,
        typer.Option(
            "--input", "-i", help="key=value, key=@file (its text) or @file.json; repeatable."
        ),
    ] = None,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Draw its steps live.")] = False,
    wait: Annotated[
        float,
        typer.Option(min=0, max=60, help="Wait up to S seconds for it to end; then exit with "
                     "its outcome (0 succeeded, 1 failed, 3 cancelled, 6 not ended yet)."),
    ] = 0,
    idempotency_key: Annotated[str | None, typer.Option(help="Submit at most once.")] = None,
    json_out: JsonOpt = False,
) -> None:  # fmt: skip
    """Submit a workflow, print its id; --watch draws its steps live.

    The spec file holds the steps (capability, input, after, map), an optional name, input
    and output; --input sets or replaces fields of its input. Ctrl-C while watching detaches
    without cancelling it.
    """
    st = state(ctx)
    as_json = st.wants_json(json_out)
    try:
        spec = read_spec(file)
        base = spec.get("input") if isinstance(spec.get("input"), dict) else {}
        if input:
            spec["input"] = parse_inputs(input, base)
    except CliError as exc:
        st.err.print(f"error: {exc.message}", markup=False, highlight=False)
        raise typer.Exit(int(exc.code)) from None
    submitted: dict[str, str] = {}

    async def go(api: FleetApi) -> Exit:
        if idempotency_key is not None:
            spec["idempotency_key"] = idempotency_key
        job = await api.submit_workflow(spec, wait=0 if watch else wait)
        submitted["id"] = job["id"]
        if watch:
            if not as_json:
                st.err.print(f"submitted workflow {job['id']}", markup=False, highlight=False)
            return await follow_workflow(st, api, job, as_json)
        if not wait:
            print_json(job) if as_json else st.out.print(job["id"], markup=False)
            return Exit.OK
        if as_json:
            print_json(job)
        else:
            print_tree(st, await api.workflow(job["id"]))
        return exit_for_status(job.get("status"))

    run_submission(st, go, submitted, "workflow")


@workflows.command(
    "show",
    epilog=examples(
        "fleet workflow show 3f2a9c01d4e5",
        "fleet workflow show $id --wait 30    # exit 0 succeeded, 1 failed, 6 still running",
        "fleet workflow show $id --json | jq '.steps | map_values(.status)'",
    ),
)
def show(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(help="The workflow's job id (or a short one).")],
    wait: Annotated[
        float,
        typer.Option(min=0, max=60, help="Wait up to S seconds for it to end; then exit with "
                     "its outcome (0 succeeded, 1 failed, 3 cancelled, 6 not ended yet)."),
    ] = 0,
    json_out: JsonOpt = False,
) -> None:  # fmt: skip
    """A workflow's steps as a tree: status, capability, items done/failed.

    With --json, the supervisor's answer: the job and each step's state.
    """
    st = state(ctx)
    found = run_api(st, lambda api: api.workflow(job_id, wait=wait))
    if st.wants_json(json_out):
        print_json(found)
    else:
        print_tree(st, found)
    if wait:
        raise typer.Exit(int(exit_for_status(found["job"].get("status"))))


@app.command(
    "workflow",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    add_help_option=False,
)
def workflow(ctx: typer.Context) -> None:
    """Workflows: run a spec file (fleet workflow run FILE), show one as a tree."""
    group = typer.main.get_group(workflows)
    with group.make_context("workflow", list(ctx.args), parent=ctx.parent) as sub:
        group.invoke(sub)
