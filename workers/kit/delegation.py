"""Delegation: a tool hands work to other capabilities as child jobs of its own job.

    @tools.tool()
    async def keywords_by_chunk(text: str, ctx: Context) -> dict[str, Any]:
        async with Fleet.of(ctx) as fleet:
            one = await fleet.run("summarize", {"text": text})           # wait for one
            later = await fleet.submit("text_stats", {"text": text})     # a handle
            many = await fleet.map("extract_keywords", inputs, concurrency=8, progress=True)
            stats = await later
        ...

The handle submits through the supervisor's public HTTP API (:mod:`supervisor.client`), so a
child is a job like any other: queued, routed to any worker, retried, watched, listed. What
makes it a child is what the handle sends with it:

- ``parent_id``: the job id of the current call (``_meta["mcp-fleet/job-id"]``). The
  supervisor gives the child ``depth`` = the parent's + 1, lists it in the parent's
  ``children``, cancels it when the parent is cancelled, and refuses it past
  ``FLEET_MAX_DEPTH`` or ``FLEET_MAX_CHILDREN`` (:class:`DelegationLimit`). A call made
  outside a job (an MCP client calling the worker directly) submits top-level jobs.
- ``X-Correlation-ID``: the call's correlation id, so one id finds every log line of the tree.
- ``traceparent``: the context of the current span (the worker's span of this call, else the
  call's own ``traceparent``), so the children's spans are in the parent's trace.

The supervisor is the worker's ``supervisor_url`` (``FLEET_SUPERVISOR_URL``) when set, else
the URL the supervisor sent in the call's ``_meta["mcp-fleet/supervisor"]``; the handle
presents ``supervisor_token`` (``FLEET_SUPERVISOR_TOKEN``) when the supervisor wants one.

Children never outlive the ``async with`` block: leaving it in any way (a result, an error, a
cancelled call) cancels every child it submitted that has not ended. So a call the supervisor
cancels, or a worker that shuts down mid-call, leaves no orphan work behind, even before the
supervisor's own cascade reaches them.

Errors are :class:`DelegationError`, a structured ``ToolError``: a tool that lets one through
fails with its code, as any kit error does.

    DELEGATION_LIMIT   the supervisor's depth or children limit (details: limit, max, parent_id)
    CHILD_FAILED       a child ended failed or cancelled (``.child``: its Job, with its error)
    NO_SUPERVISOR      neither FLEET_SUPERVISOR_URL nor the call's _meta says where it is
    UNAVAILABLE        retryable: the supervisor did not answer
    <the API's code>   the supervisor refused the submission (UNKNOWN_CAPABILITY,
                       INVALID_INPUT …); retryable when it said 429 or 5xx
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import Coroutine, Generator, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx
from fastmcp import Context
from fastmcp.exceptions import ToolError
from opentelemetry import propagate

from shared.models import Job, JobStatus
from shared.protocol import META_SUPERVISOR_URL, encode_tool_error
from shared.settings import WorkerSettings

# The one import from workers into supervisor: the public client, which imports none of the
# server stack (an import-linter contract keeps it that way).
from supervisor.client import ApiError, AsyncFleetClient, Unreachable
from workers.kit.context import read_call_info
from workers.kit.progress import ProgressReporter

__all__ = [
    "CHILD_FAILED",
    "DELEGATION_LIMIT",
    "NO_SUPERVISOR",
    "Child",
    "ChildFailed",
    "DelegationError",
    "DelegationLimit",
    "Fleet",
    "configure",
]

DELEGATION_LIMIT = "DELEGATION_LIMIT"
CHILD_FAILED = "CHILD_FAILED"
NO_SUPERVISOR = "NO_SUPERVISOR"

_CANCEL_GRACE_S = 5.0
"""How long leaving the block may spend cancelling the children that are still running."""
_BACKGROUND: set[asyncio.Task[None]] = set()
"""Clean-ups running on their own (see :meth:`Fleet._detached`): held so none is collected."""
_RECONNECT_S = 30.0
"""How long waiting on a child rides out a supervisor that stopped answering (a restart)."""


# -- errors -----------------------------------------------------------------------------------


class DelegationError(ToolError):
    """A delegation failed; its text is the kit's structured error JSON, so a tool that does
    not catch it fails with ``code``. ``details`` holds what a program needs to react."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        hint: str | None = None,
        retryable: bool = False,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(encode_tool_error(code, message, hint=hint, retryable=retryable))
        self.code = code
        self.message = message
        self.retryable = retryable
        self.details = dict(details or {})


class DelegationLimit(DelegationError):
    """The supervisor refused a child: too deep (``limit == "depth"``) or too many children
    of one parent (``limit == "children"``); ``max`` is the limit in force."""

    def __init__(self, message: str, details: Mapping[str, Any]) -> None:
        super().__init__(
            DELEGATION_LIMIT,
            message,
            hint="Delegate less (fewer children, or do the work in this call), or raise "
            "FLEET_MAX_DEPTH / FLEET_MAX_CHILDREN on the supervisor.",
            details=details,
        )
        self.limit = str(details.get("limit") or "")
        self.max = details.get("max")
        self.parent_id = details.get("parent_id")


class ChildFailed(DelegationError):
    """A child job ended without a result; ``child`` is the ended job (``child.error``)."""

    def __init__(self, child: Job, index: int | None = None) -> None:
        err = child.error
        why = f"{err.code}: {err.message}" if err is not None else child.status.value
        where = f" (item {index})" if index is not None else ""
        super().__init__(
            CHILD_FAILED,
            f"child job {child.id} ({child.capability}){where} ended {child.status.value}: {why}",
            hint=f"See the child with: fleet status {child.id}",
            details={
                "child_id": child.id,
                "status": child.status.value,
                "error": err.model_dump() if err is not None else None,
                "index": index,
            },
        )
        self.child = child
        self.index = index


def _translate(exc: ApiError | Unreachable, what: str) -> DelegationError:
    if isinstance(exc, Unreachable):
        return DelegationError(
            "UNAVAILABLE", f"{what}: {exc}", retryable=True, hint="Retry once it answers."
        )
    if exc.code == DELEGATION_LIMIT:
        return DelegationLimit(f"{what}: {exc.message}", exc.details)
    retryable = exc.status == 429 or exc.status >= 500
    return DelegationError(
        exc.code, f"{what}: {exc.message}", retryable=retryable, details=exc.details
    )


# -- where the supervisor is --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Config:
    url: str | None
    token: str | None


_CONFIGS: weakref.WeakKeyDictionary[Any, _Config] = weakref.WeakKeyDictionary()


def configure(server: Any, settings: WorkerSettings) -> None:
    """Tell the handles of ``server``'s calls the worker's supervisor settings (a
    :class:`~workers.kit.Worker` does this for its own server)."""
    _CONFIGS[server] = _Config(settings.supervisor_url, settings.supervisor_token)


def _server_of(ctx: Context) -> Any:
    with contextlib.suppress(Exception):  # a Context outside a request has no server
        return ctx.fastmcp
    return None


def _meta_of(ctx: Context | None) -> Mapping[str, Any]:
    rc = ctx.request_context if ctx is not None else None
    meta = rc.meta if rc is not None else None
    if meta is None:
        return {}
    if isinstance(meta, Mapping):
        return meta
    dumped = meta.model_dump() if hasattr(meta, "model_dump") else {}
    return dumped if isinstance(dumped, dict) else {}


def _current_traceparent(fallback: str | None) -> str | None:
    """The current span's context (this call's span in the worker), else the call's own."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent") or fallback


# -- the handle ---------------------------------------------------------------------------------


class Child:
    """A submitted child job. ``await child`` is its result (or :class:`ChildFailed`)."""

    def __init__(self, fleet: Fleet, job: Job) -> None:
        self.fleet = fleet
        self.job = job
        """The child as last seen (on submission, then once it ended)."""

    @property
    def id(self) -> str:
        return self.job.id

    @property
    def ended(self) -> bool:
        return self.job.status.terminal

    async def wait(self, timeout: float | None = None) -> Job:
        """The child once it ended, or as it is after ``timeout`` seconds (None: no limit).

        A supervisor that stops answering (a restart, a rolling deploy) is waited out for up
        to 30 s before :class:`DelegationError` ``UNAVAILABLE``.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        down_since: float | None = None
        while not self.ended:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                self.job = await self.fleet.client.wait(self.id, timeout=left)
                down_since = None
            except Unreachable as exc:
                down_since = down_since or time.monotonic()
                if time.monotonic() - down_since > _RECONNECT_S:
                    raise _translate(exc, f"waiting for child job {self.id}") from exc
                await asyncio.sleep(0.5)
            except ApiError as exc:
                raise _translate(exc, f"waiting for child job {self.id}") from exc
            if left is not None and left <= 0:
                break
        if self.ended:
            self.fleet._forget(self)
        return self.job

    async def result(self) -> Any:
        """The child's result once it succeeded; :class:`ChildFailed` if it did not."""
        job = await self.wait()
        if job.status is not JobStatus.SUCCEEDED:
            raise ChildFailed(job)
        return job.result

    async def cancel(self) -> None:
        """Cancel the child unless it has ended (then this does nothing)."""
        if self.ended:
            return
        try:
            self.job = await self.fleet.client.cancel(self.id)
        except ApiError as exc:
            if exc.code != "JOB_FINISHED":
                raise _translate(exc, f"cancelling child job {self.id}") from exc
        except Unreachable as exc:
            raise _translate(exc, f"cancelling child job {self.id}") from exc
        self.fleet._forget(self)

    def __await__(self) -> Generator[Any, None, Any]:
        return self.result().__await__()

    def __repr__(self) -> str:
        return f"<Child {self.id} {self.job.capability} {self.job.status.value}>"


class Fleet:
    """The supervisor, as seen from inside a tool call: submit child jobs and wait for them.

    Use :meth:`of` in a tool, as an ``async with`` block (which closes its HTTP client and
    cancels the children still running when it is left)::

        async with Fleet.of(ctx) as fleet:
            keywords = await fleet.run("extract_keywords", {"text": text})

    The constructor is for programs that know all of it themselves (tests, scripts).
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        ctx: Context | None = None,
        parent_id: str | None = None,
        correlation_id: str | None = None,
        traceparent: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url
        self.ctx = ctx
        self.parent_id = parent_id
        self.correlation_id = correlation_id
        self.traceparent = traceparent
        self._token = token
        self._transport = transport
        self._client: AsyncFleetClient | None = None
        self._open: dict[str, Child] = {}
        self._cleanups: set[asyncio.Task[None]] = set()
        self._closed = False
        self.submitted: list[str] = []
        """The ids of every child submitted through this handle, in the order submitted."""

    @classmethod
    def of(cls, ctx: Context, *, url: str | None = None, token: str | None = None) -> Fleet:
        """The handle for the current call: its job is the parent, its correlation id and
        trace go with every child. ``url``/``token`` override the worker's settings."""
        info = read_call_info(ctx)
        server = _server_of(ctx)
        config = _CONFIGS.get(server) if server is not None else None
        found = url or (config.url if config else None) or _meta_of(ctx).get(META_SUPERVISOR_URL)
        if not found or not isinstance(found, str):
            raise DelegationError(
                NO_SUPERVISOR,
                "this call cannot delegate: no supervisor URL (the call did not come from a "
                "supervisor, and FLEET_SUPERVISOR_URL is not set on this worker)",
                hint="Set FLEET_SUPERVISOR_URL on the worker.",
            )
        return cls(
            found,
            token=token or (config.token if config else None),
            ctx=ctx,
            parent_id=info.job_id,
            correlation_id=info.correlation_id,
            traceparent=info.traceparent,
        )

    @property
    def client(self) -> AsyncFleetClient:
        """The HTTP client, made on first use."""
        if self._client is None:
            if self._closed:
                raise RuntimeError("this Fleet handle is closed (its async with block ended)")
            self._client = AsyncFleetClient(self.url, token=self._token, transport=self._transport)
        return self._client

    @property
    def open_children(self) -> list[Child]:
        """The children submitted through this handle not yet seen to end."""
        return list(self._open.values())

    async def __aenter__(self) -> Fleet:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Cancel the children still running, then close the HTTP client."""
        self._closed = True
        if self._client is not None:
            await self._detached(self._close())

    async def _close(self) -> None:
        try:
            await self._cancel_all(self.open_children)
            others = self._cleanups - {asyncio.current_task()}
            if others:  # a map's own clean-up, still using the client
                await asyncio.wait(others, timeout=_CANCEL_GRACE_S)
        finally:
            if self._client is not None:
                client, self._client = self._client, None
                await client.aclose()

    def _forget(self, child: Child) -> None:
        self._open.pop(child.id, None)

    async def _detached(self, cleanup: Coroutine[Any, Any, None]) -> None:
        """Run ``cleanup`` in a task of its own and wait for it. A cancelled call may be
        cancelled again and again while it unwinds (the MCP server's cancel scope is level
        triggered): the clean-up then goes on by itself instead of being cut mid-request."""
        task = asyncio.get_running_loop().create_task(cleanup)
        for held in (_BACKGROUND, self._cleanups):
            held.add(task)
            task.add_done_callback(held.discard)
        await asyncio.shield(task)

    async def _settle(self, children: Iterable[Child]) -> None:
        """Cancel those of ``children`` that have not ended (a map or run given up)."""
        pending = [c for c in children if not c.ended]
        if pending:
            await self._detached(self._cancel_all(pending))

    async def _cancel_all(self, children: Iterable[Child]) -> None:
        """Best effort and bounded (cancelling the parent job cancels them on the supervisor
        too)."""
        pending = [c for c in children if not c.ended]
        if not pending:
            return

        async def cancel(child: Child) -> None:
            with contextlib.suppress(DelegationError):
                await child.cancel()

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*(cancel(c) for c in pending)), timeout=_CANCEL_GRACE_S
            )

    # -- submitting ------------------------------------------------------------------------

    async def submit(
        self,
        capability: str,
        input: Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        timeout_s: float | None = None,
        max_attempts: int | None = None,
        worker: str | None = None,
        labels: dict[str, str] | None = None,
    ) -> Child:
        """Submit one child job and return its handle at once (``await`` it later)."""
        try:
            job = await self.client.submit(
                capability,
                dict(input or {}),
                idempotency_key=idempotency_key,
                correlation_id=self.correlation_id,
                timeout_s=timeout_s,
                max_attempts=max_attempts,
                worker=worker,
                labels=labels,
                parent_id=self.parent_id,
                traceparent=_current_traceparent(self.traceparent),
            )
        except (ApiError, Unreachable) as exc:
            raise _translate(exc, f"submitting a child job of {capability}") from exc
        child = Child(self, job)
        self.submitted.append(child.id)
        if not child.ended:
            self._open[child.id] = child
        return child

    async def run(
        self, capability: str, input: Mapping[str, Any] | None = None, **options: Any
    ) -> Any:
        """Submit one child job and wait for its result (:class:`ChildFailed` if it has none).
        ``options`` are :meth:`submit`'s."""
        child = await self.submit(capability, input, **options)
        try:
            return await child.result()
        finally:
            await self._settle([child])  # given up (cancelled, unreachable): not wanted

    async def map(
        self,
        capability: str,
        inputs: Iterable[Mapping[str, Any]],
        *,
        concurrency: int = 8,
        progress: bool | ProgressReporter = False,
        return_exceptions: bool = False,
        **options: Any,
    ) -> list[Any]:
        """Run ``capability`` once per input, at most ``concurrency`` children at a time;
        the results in input order.

        ``progress=True`` reports ``done/total`` through the call's Context as children end
        (so the parent job's progress bar counts them); a :class:`ProgressReporter` steps that
        one instead, for a tool whose bar also counts work of its own. The first child that
        fails cancels the others and raises :class:`ChildFailed` (``.index`` names the input);
        with ``return_exceptions=True`` its :class:`ChildFailed` takes its place in the list
        and the others go on.
        """
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        items = [dict(item) for item in inputs]
        total = len(items)
        reporter: ProgressReporter | None
        if isinstance(progress, ProgressReporter):
            reporter = progress
        else:
            reporter = ProgressReporter(self.ctx, total=total) if progress else None
        results: list[Any] = [None] * total
        mine: list[Child] = []
        slots = asyncio.Semaphore(concurrency)
        ended = 0

        async def one(index: int, item: dict[str, Any]) -> None:
            nonlocal ended
            async with slots:
                child = await self.submit(capability, item, **options)
                mine.append(child)
                try:
                    results[index] = await child.result()
                except ChildFailed as exc:
                    failure = ChildFailed(exc.child, index)
                    if not return_exceptions:
                        raise failure from None
                    results[index] = failure
            ended += 1
            if reporter is not None:
                await reporter.step(message=f"{capability} {ended}/{total}")

        try:
            async with asyncio.TaskGroup() as group:
                for index, item in enumerate(items):
                    group.create_task(one(index, item))
        except BaseExceptionGroup as group_error:
            await self._settle(mine)
            raise group_error.exceptions[0] from None
        except BaseException:
            await self._settle(mine)
            raise
        return results
