"""The fleet as one MCP server at ``/mcp``: every capability of the catalog is a tool whose
call is a durable job, plus tools, resources and tasks to manage jobs.

Built with FastMCP (streamable HTTP: 2026-07-28 and the session revisions on one URL) and
served by the supervisor's own app, behind its guards (body limit, ``Host``/``Origin``):

    face = McpFace(app, authenticator)   # in create_app
    app.router.routes.append(Route("/mcp", face))
    async with face.lifespan(): ...      # in the app's lifespan

- A catalog tool's call submits a job (the same path as ``POST /v1/jobs``: validation,
  limits, tenancy), relays the worker's progress as ``notifications/progress`` to the call's
  progress token, and answers the job's outcome with the job in ``_meta["mcp-fleet/job"]``.
  Cancelling the call (``notifications/cancelled``, or closing its stream on 2026-07-28)
  cancels the job. ``_meta["mcp-fleet/idempotency_key"]`` on the call makes a repeated call
  (a host reconnecting after a drop) follow the first job instead of starting another.
- Fleet tools: ``fleet_submit``, ``fleet_workflow``, ``fleet_job``, ``fleet_cancel``,
  ``fleet_workers``.
- Resources: ``fleet://catalog``, ``fleet://jobs/{id}``, ``fleet://jobs/{id}/events``.
- Tasks: :mod:`supervisor.mcp.tasks`.
- Auth: the REST API's bearer tokens and JWTs; connecting needs ``jobs:read``, anything that
  starts or cancels a job ``jobs:write``; a tenant sees only its jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import anyio
from fastapi import FastAPI
from fastmcp import Context, FastMCP
from fastmcp.exceptions import ResourceError, ToolError
from fastmcp.server.dependencies import get_context, get_http_request
from fastmcp.tools.base import ToolResult
from mcp_types import ToolAnnotations
from pydantic import Field, ValidationError
from starlette.datastructures import Headers
from starlette.types import Receive, Scope, Send

from shared import HEADER_CORRELATION_ID, FleetError, Job, JobSubmit, get_logger
from shared.errors import InsufficientScope, ValidationFailed
from supervisor.api.auth import JOBS_READ, JOBS_WRITE, Authenticator, Principal, principal_of
from supervisor.api.guards import send_error
from supervisor.api.submission import Submitted, cancel, resolve_job_id, seen_by, submit
from supervisor.api.validation import validation_details
from supervisor.mcp.catalog import Catalog, Sessions
from supervisor.mcp.results import surfaced, tool_result
from supervisor.mcp.tasks import FleetTasks
from supervisor.services import Services
from supervisor.workflows.runner import read_steps
from supervisor.workflows.state import steps_view
from supervisor.workflows.submission import submit_workflow

__all__ = ["IDEMPOTENCY_META", "McpFace"]

log = get_logger("fleet.mcp")

IDEMPOTENCY_META = "mcp-fleet/idempotency_key"
MAX_WAIT_S = 60.0
EVENTS_PER_READ = 1000

INSTRUCTIONS = (
    "mcp-fleet: every tool but the fleet_* ones runs on a worker of the fleet as a durable "
    "job (retried, failed over, cancellable); its result's _meta['mcp-fleet/job'] names the "
    "job. fleet_submit starts a job without waiting, fleet_workflow a workflow of steps "
    "(each run as child jobs), fleet_job reads it (optionally waiting for its end), "
    "fleet_cancel stops it, fleet_workers lists the workers. The resources "
    "fleet://jobs/{id} and fleet://jobs/{id}/events hold a job and its event log."
)


class McpFace:
    """The MCP server of the fleet, and the ASGI app that authenticates its requests."""

    def __init__(self, app: FastAPI, auth: Authenticator) -> None:
        self.app = app
        self.auth = auth
        self.sessions = Sessions()
        self.catalog = Catalog(self)
        self.mcp = FastMCP(
            "mcp-fleet",
            instructions=INSTRUCTIONS,
            providers=[self.catalog],
            middleware=[self.sessions],
            mask_error_details=True,
        )
        self._fleet_tools()
        self._resources()
        self.tasks = FleetTasks(self)
        self.mcp.add_extension(self.tasks)
        # Host/Origin are checked by the supervisor's own guard, with its allowlist.
        self.http = self.mcp.http_app(path="/mcp", host_origin_protection=False)
        self._notify: asyncio.Task[None] | None = None

    # -- the ASGI app ----------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Authenticate (401/403 as the REST API answers them), then serve MCP."""
        if scope["type"] == "http":
            try:
                who = await self.auth.authenticate(Headers(scope=scope).get("authorization"))
                require(who, JOBS_READ, self.auth)
            except FleetError as exc:
                await send_error(send, exc)
                return
            scope.setdefault("state", {})["principal"] = who  # request.state.principal
        await self.http(scope, receive, send)

    @contextlib.asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        """Run the MCP server's own lifespan (its session manager) for the block. It runs in a
        task of its own: its task group must end in the task that began it, and an app's
        lifespan may be ended from another task than the one that started it (test fixtures,
        embedding apps)."""
        started, stop = asyncio.Event(), asyncio.Event()

        async def run() -> None:
            async with self.http.router.lifespan_context(self.http):
                started.set()
                await stop.wait()

        task = asyncio.create_task(run(), name="mcp-face")
        waiting = asyncio.create_task(started.wait())
        await asyncio.wait([task, waiting], return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        if task.done():
            task.result()  # it failed to start: raise why
        try:
            yield
        finally:
            stop.set()
            await task

    # -- who and what ------------------------------------------------------------------------------

    def services_or_none(self) -> Services | None:
        return getattr(self.app.state, "services", None)

    @property
    def services(self) -> Services:
        services = self.services_or_none()
        if services is None:
            raise ToolError("the supervisor is starting")
        return services

    async def caller(self, scope: str = JOBS_READ) -> Principal:
        """The principal of the current request (set by :meth:`__call__`), with ``scope``."""
        try:
            who = principal_of(get_http_request())
        except RuntimeError:  # in memory, no HTTP: open only when the API is open
            who = await self.auth.authenticate(None)
        require(who, scope, self.auth)
        return who

    def catalog_changed(self) -> None:
        """Tell session-based hosts that the tool list changed (once per burst of changes)."""
        self.catalog.invalidate()
        if self._notify is None or self._notify.done():
            self._notify = asyncio.get_running_loop().create_task(self.sessions.tools_changed())

    # -- a call is a job -------------------------------------------------------------------------

    async def call(self, capability: str, arguments: dict[str, Any]) -> ToolResult:
        """Run the capability as a job and answer its outcome. With a progress token the
        job's events are followed and relayed; without one the call waits for the job's end
        alone (one read, then woken by the write that ends it)."""
        ctx = get_context()
        submitted = await self.start(capability, arguments, idempotency_key=_idempotency(ctx))
        job = submitted.job
        try:
            if _meta(ctx).get("progressToken") is not None and not job.status.terminal:
                job = await self._relay(ctx, job)
            while not job.status.terminal:
                job = await self.services.store.wait_ended(job.id, MAX_WAIT_S)
        except BaseException:  # the host cancelled (or went away): so is the job
            with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                await self._cancel_quietly(job.id)
            raise
        return tool_result(job)

    async def start(self, capability: str, arguments: dict[str, Any], **fields: Any) -> Submitted:
        """Submit a job as the REST API does (its refusals raise ``FleetError``)."""
        who = await self.caller(JOBS_WRITE)
        try:
            body = JobSubmit(capability=capability, input=arguments, **fields)
        except ValidationError as exc:
            errors = validation_details(exc.errors())
            raise ValidationFailed(
                f"invalid job: {errors[0]['field']}: {errors[0]['message']}",
                details={"errors": errors},
            ) from None
        return await submit(self.services, who, body, correlation_id=_correlation_id())

    async def _relay(self, ctx: Context, job: Job) -> Job:
        """The worker's progress to the host, as it comes; the job once it ended."""
        store = self.services.store
        async with contextlib.aclosing(store.follow(job.id)) as batches:
            async for events in batches:
                for event in events:
                    if event.type == "progress":
                        data = event.data
                        await ctx.report_progress(
                            float(data.get("progress") or 0),
                            data.get("total"),
                            data.get("message"),
                        )
                    elif event.type == "done":
                        return await store.get(job.id)
        return await store.get(job.id)  # pragma: no cover - follow() never ends by itself

    async def _cancel_quietly(self, job_id: str) -> None:
        try:
            await cancel(self.services, await self.caller(JOBS_WRITE), job_id, wait=0)
        except FleetError as exc:  # it ended meanwhile, or the store is away: logged
            log.info("mcp.cancel_not_needed", job_id=job_id, reason=exc.code)

    async def job(self, job_id: str, who: Principal) -> Job:
        """The job ``job_id`` names (a whole id or a unique short one) if ``who`` sees it."""
        job_id = await resolve_job_id(self.services, who, job_id)
        return seen_by(who, await self.services.store.get(job_id))

    # -- fleet tools and resources -------------------------------------------------------------

    def _fleet_tools(self) -> None:
        mcp = self.mcp

        @mcp.tool(annotations=ToolAnnotations(open_world_hint=True))
        @surfaced(ToolError)
        async def fleet_submit(
            capability: Annotated[str, Field(description="A capability of the catalog.")],
            input: Annotated[
                dict[str, Any] | None, Field(description="The capability's arguments.")
            ] = None,
            idempotency_key: Annotated[
                str | None, Field(description="The same key answers the same job.")
            ] = None,
            timeout_s: Annotated[float | None, Field(gt=0, le=86_400)] = None,
            max_attempts: Annotated[int | None, Field(ge=1, le=20)] = None,
        ) -> dict[str, Any]:
            """Start a job and return at once with its id; read it with fleet_job."""
            submitted = await self.start(
                capability,
                input or {},
                idempotency_key=idempotency_key,
                timeout_s=timeout_s,
                max_attempts=max_attempts,
            )
            return {**_view(submitted.job), "replayed": not submitted.created}

        @mcp.tool(annotations=ToolAnnotations(open_world_hint=True))
        @surfaced(ToolError)
        async def fleet_workflow(
            steps: Annotated[
                dict[str, dict[str, Any]],
                Field(
                    description="Step name → {capability, input, after?, map?, concurrency?, "
                    "max_attempts?, timeout_s?, idempotency_key?}. Input strings may be "
                    "references: $.input.x, $.steps.NAME.result.x, $.steps.NAME.results[*].x "
                    "(a map step's), $.item / $.index (in a map step); $$ for a literal $."
                ),
            ],
            input: Annotated[
                dict[str, Any] | None, Field(description="The workflow's input ($.input).")
            ] = None,
            output: Annotated[
                Any,
                Field(
                    description="The result: a template with references (default: "
                    "the last step's result)."
                ),
            ] = None,
            on_failure: Annotated[
                Literal["fail_fast", "continue"],
                Field(
                    description="fail_fast stops all at the first failed step; continue "
                    "runs what does not depend on it."
                ),
            ] = "fail_fast",
            name: Annotated[str | None, Field(max_length=200)] = None,
            idempotency_key: Annotated[
                str | None, Field(description="The same key answers the same workflow.")
            ] = None,
            wait_s: Annotated[
                float, Field(ge=0, le=MAX_WAIT_S, description="Wait up to this for its end.")
            ] = 0,
        ) -> dict[str, Any]:
            """Start a workflow: steps that run capabilities as durable child jobs, in the
            order their dependencies give, a map step once per item of a list. Returns its job
            and each step's state; with wait_s, once it ended. Read it again with fleet_job."""
            who = await self.caller(JOBS_WRITE)
            given = {"steps": steps, "input": input, "output": output, "name": name,
                     "idempotency_key": idempotency_key}  # fmt: skip
            data = {k: v for k, v in given.items() if v is not None}
            submitted = await submit_workflow(
                self.services,
                who,
                {**data, "on_failure": on_failure},
                correlation_id=_correlation_id(),
                wait=wait_s,
            )
            job = submitted.job
            states = await read_steps(self.services, job.id)
            return {
                **_view(job),
                "steps": steps_view(job.input, states),
                "replayed": not submitted.created,
            }

        @mcp.tool(annotations=ToolAnnotations(read_only_hint=True))
        @surfaced(ToolError)
        async def fleet_job(
            job_id: Annotated[str, Field(description="The id fleet_submit returned.")],
            wait_s: Annotated[
                float, Field(ge=0, le=MAX_WAIT_S, description="Wait up to this for its end.")
            ] = 0,
        ) -> dict[str, Any]:
            """A job: status, progress, result or error; with wait_s, once it ended."""
            who = await self.caller(JOBS_READ)
            job = await self.job(job_id, who)
            if wait_s and not job.status.terminal:
                job = await self.services.store.wait_ended(job.id, wait_s)
            return _view(job)

        @mcp.tool(annotations=ToolAnnotations(destructive_hint=True, idempotent_hint=True))
        @surfaced(ToolError)
        async def fleet_cancel(
            job_id: Annotated[str, Field(description="The job to cancel.")],
        ) -> dict[str, Any]:
            """Cancel a queued or running job; the job as it ended (or still stopping)."""
            who = await self.caller(JOBS_WRITE)
            job = await self.job(job_id, who)
            return _view(await cancel(self.services, who, job.id))

        @mcp.tool(annotations=ToolAnnotations(read_only_hint=True))
        @surfaced(ToolError)
        async def fleet_workers() -> dict[str, Any]:
            """The workers of the fleet: health, load and the capabilities each serves."""
            await self.caller(JOBS_READ)
            svc = self.services
            return {
                "workers": [
                    w.view(svc.pool.in_flight(w.url)) for w in svc.registry.workers.values()
                ]
            }

    def _resources(self) -> None:
        mcp = self.mcp

        @mcp.resource("fleet://catalog", mime_type="application/json")
        @surfaced(ResourceError)
        async def catalog() -> str:
            """The capabilities of the fleet, with their schemas and workers."""
            await self.caller(JOBS_READ)
            return json.dumps(self.services.registry.catalog())

        @mcp.resource("fleet://jobs/{job_id}", mime_type="application/json")
        @surfaced(ResourceError)
        async def job_record(job_id: str) -> str:
            """A job's record: status, progress, result or error."""
            who = await self.caller(JOBS_READ)
            job: Job = await self.job(job_id, who)
            return job.model_dump_json()

        @mcp.resource("fleet://jobs/{job_id}/events", mime_type="application/json")
        @surfaced(ResourceError)
        async def job_events(job_id: str) -> str:
            """A job's event log (its first 1,000 events): status, progress, log, done."""
            who = await self.caller(JOBS_READ)
            job = await self.job(job_id, who)
            events = await self.services.store.events(job.id, count=EVENTS_PER_READ)
            return "[" + ",".join(e.wire() for e in events) + "]"


def require(who: Principal, scope: str, auth: Authenticator) -> None:
    if not who.allows(scope):
        raise InsufficientScope(
            f"this needs the scope {scope!r}; the token has "
            f"{' '.join(sorted(who.scopes)) or 'none'}",
            scope=scope,
            resource_metadata=auth.resource_metadata,
        )


def _view(job: Job) -> dict[str, Any]:
    return job.model_dump(mode="json", exclude_none=True)


def _meta(ctx: Context) -> dict[str, Any]:
    """The call's raw ``_meta`` (wire keys: ``progressToken``, ours)."""
    rc = ctx.request_context
    meta = rc.meta if rc is not None else None
    return meta if isinstance(meta, dict) else {}


def _idempotency(ctx: Context) -> str | None:
    found = _meta(ctx).get(IDEMPOTENCY_META)
    return str(found) if found is not None else None


def _correlation_id() -> str:
    """The request's ``X-Correlation-ID`` (checked by the app's middleware), or a new one. Read
    from the request that carried the call: a session's calls run outside that request."""
    with contextlib.suppress(RuntimeError):
        given = get_http_request().headers.get(HEADER_CORRELATION_ID)
        if given:
            return given
    return uuid.uuid4().hex
