"""``POST /v1/jobs``, the hot route, called without FastAPI's per-request machinery (pure ASGI,
the innermost middleware).

FastAPI routes every request through three included routers, then solves the route's
dependency tree again for each one (``solve_dependencies``: the correlation header, the
authenticator, the scope check and its bearer scheme, the services, two parameters), which
cost more than the endpoint's own work. For a submission whose every parameter has the plain
shape a client sends, this layer does what FastAPI would, in its order, and calls the very
endpoint, :func:`supervisor.api.jobs.submit_job`:

1. ``X-Correlation-ID``: :class:`~supervisor.api.middleware.RequestContext` checked it already;
   it is checked here again against the same pattern, as the route's dependency does;
2. :func:`~supervisor.api.scopes.authenticate` (the principal on ``request.state``), then the
   ``jobs:write`` check of :func:`~supervisor.api.scopes.needs`;
3. ``Idempotency-Key`` (one, matching its pattern, or none) and ``?wait=`` (the whole query,
   a plain decimal within the route's bounds, or no query);

and answers every exception through the app's own handlers (an ``ExceptionMiddleware`` of the
handlers FastAPI gives its own). Anything else goes the usual way, through the route: another
path or method, a query or header of any other shape (so each refusal FastAPI words, a 422 for
a bad header or query, stays its own), a repeated ``Authorization``, ``Idempotency-Key`` or
``X-Correlation-ID``, a ``root_path``, FastAPI's native telemetry on the request, or a
dependency override on the app (a test's: the route honours it, this layer would not).

The route stays declared as before (``/openapi.json`` and the scope table read it); both ways
answer byte for byte alike (``tests/supervisor/test_direct_submit.py`` sends the hostile
corpus both ways). Measured with 64 submissions in flight (``POST /v1/jobs?wait=30``, a no-op
tool, the supervisor's CPU from ``/proc``): 3.22 -> 2.73 ms per job on memory://, 4.75 -> 4.08
on redis://.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from supervisor.api.auth import JOBS_WRITE
from supervisor.api.deps import services
from supervisor.api.jobs import MAX_WAIT_S, submit_job
from supervisor.api.limits import CORRELATION_ID_PATTERN, IDEMPOTENCY_KEY_PATTERN
from supervisor.api.scopes import authenticate, check

__all__ = ["DirectSubmit"]

PATH = "/v1/jobs"
_ARGS = "fleet.direct_submit"  # the scope key the parsed parameters travel under

# Bytes patterns over the raw values: the route's checks run on the latin-1 text of the same
# bytes (Starlette's header decoding), which these match exactly when those do.
_CORRELATION = re.compile(CORRELATION_ID_PATTERN.encode())
_IDEMPOTENCY = re.compile(IDEMPOTENCY_KEY_PATTERN.encode())
# The whole query: nothing, or ``wait=`` and a plain decimal (no sign, exponent, leading zero
# nor escape). Anything else is left to the route's own parsing.
_WAIT = re.compile(rb"wait=((?:0|[1-9][0-9]{0,5})(?:\.[0-9]{1,9})?)")


def direct_arguments(scope: Scope) -> tuple[str | None, float] | None:
    """The route's ``(idempotency_key, wait)`` when the request has the plain shape this layer
    takes (see the module doc), else None."""
    query = scope.get("query_string", b"")
    wait: float = 0  # the route's default, an int as FastAPI passes it
    if query:
        match = _WAIT.fullmatch(query)
        if match is None:
            return None
        wait = float(match.group(1))
        if wait > MAX_WAIT_S:
            return None
    idempotency_key: str | None = None
    authorization = correlation = False
    for name, value in scope["headers"]:
        if name == b"idempotency-key":
            if idempotency_key is not None or _IDEMPOTENCY.fullmatch(value) is None:
                return None
            idempotency_key = value.decode("latin-1")
        elif name == b"authorization":
            if authorization:
                return None
            authorization = True
        elif name == b"x-correlation-id":
            if correlation or _CORRELATION.fullmatch(value) is None:
                return None
            correlation = True
    return idempotency_key, wait


class DirectSubmit:
    """Pure ASGI: ``POST /v1/jobs`` of the plain shape answered here (see the module doc)."""

    def __init__(self, app: ASGIApp, *, fastapi: Any) -> None:
        self.app = app
        self.fastapi = fastapi
        # Built at the first request, as FastAPI builds its own middleware stack: by then
        # every handler is registered. The same handlers as FastAPI's ExceptionMiddleware.
        self.handled: ExceptionMiddleware | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != PATH
            or scope["method"] != "POST"
            or scope.get("root_path")
            or "fastapi.telemetry" in scope
            or self.fastapi.dependency_overrides
        ):
            await self.app(scope, receive, send)
            return
        arguments = direct_arguments(scope)
        if arguments is None:
            await self.app(scope, receive, send)
            return
        handled = self.handled
        if handled is None:
            handlers = {
                key: value
                for key, value in self.fastapi.exception_handlers.items()
                if key not in (500, Exception)  # those answer in ServerErrorMiddleware
            }
            handled = self.handled = ExceptionMiddleware(_submit, handlers=handlers)
        scope[_ARGS] = arguments
        await handled(scope, receive, send)


async def _submit(scope: Scope, receive: Receive, send: Send) -> None:
    idempotency_key, wait = scope[_ARGS]
    request = Request(scope, receive, send)
    await authenticate(request)
    check(request, JOBS_WRITE)
    svc = await services(request)
    response = await submit_job(request, svc, idempotency_key, wait)
    await response(scope, receive, send)
