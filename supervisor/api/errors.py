"""How errors leave the API: :data:`RULES`, the one table from error to answer, and the
exception handlers that apply it.

Every answer that is not a success is ``{"error": {"code", "message", "details"}}`` with the
status and code of a :mod:`shared.errors` class (whose tree says which code has which status).
:data:`RULES` adds, per class, the headers its answer carries and what it means, which
``/openapi.json`` prints (:func:`supervisor.api.openapi.errors`). What FastAPI and Starlette
raise themselves becomes one of those errors first:

    RequestValidationError, body not JSON   BadRequest        400 BAD_REQUEST
    RequestValidationError                  ValidationFailed  422 VALIDATION_ERROR
    HTTPException of a ``routing`` status   that rule's class 401, 403, 404 NOT_FOUND, 405
    HTTPException of any other status       HttpError         HTTP_<status>
    ClientDisconnect (the client left)      nothing is sent; logged at info
    any other exception (logged)            FleetError        500 INTERNAL
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import BaseRoute, Match
from starlette.types import Scope

from shared import (
    AdmissionRefused,
    BadRequest,
    FleetError,
    Forbidden,
    IdempotencyConflict,
    InvalidInput,
    JobFinished,
    JobNotFound,
    PayloadTooLarge,
    StoreUnavailable,
    Unauthorized,
    UnknownCapability,
    ValidationFailed,
    get_logger,
)
from shared.errors import (
    DelegationLimit,
    HostNotAllowed,
    InsufficientScope,
    InvalidToken,
    KeysUnavailable,
    NoHealthyWorker,
    NotFound,
    OriginNotAllowed,
    RateLimited,
    UnsupportedMediaType,
)
from supervisor.api.validation import validation_details

__all__ = [
    "RULES",
    "Header",
    "HttpError",
    "MethodNotAllowed",
    "Rule",
    "add_handlers",
    "answer",
    "rule_for",
]

log = get_logger("fleet.supervisor")


class MethodNotAllowed(FleetError):
    """No route at the path takes the request's method; ``allow`` names the methods that do."""

    code = "METHOD_NOT_ALLOWED"
    status = 405

    def __init__(self, message: str, *, allow: str) -> None:
        super().__init__(message)
        self.allow = allow


class HttpError(FleetError):
    """An HTTP error Starlette raised with a status no rule is for: code ``HTTP_<status>``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status  # type: ignore[misc]  # per instance, as Starlette said
        self.code = f"HTTP_{status}"  # type: ignore[misc]


class Header(NamedTuple):
    """A header an error's answer carries: its value for that error, its ``/openapi.json``."""

    name: str
    value: Callable[[Any], str]
    doc: dict[str, Any]


class Rule(NamedTuple):
    """How one error class leaves the API, besides the status and code the class holds."""

    meaning: str
    headers: tuple[Header, ...] = ()
    routing: bool = False
    """Starlette's own HTTPException of the class's status (no route, wrong method) is it."""


_RETRY_AFTER = Header(
    "Retry-After",
    lambda error: str(error.retry_after),
    {
        "description": "Seconds to wait before submitting again.",
        "schema": {"type": "integer", "minimum": 1},
    },
)
_QUOTABLE = re.compile(r"[^\x20-\x21\x23-\x5b\x5d-\x7e]")  # RFC 6750 §3: no " nor \


def challenge(error: FleetError) -> str:
    """The ``WWW-Authenticate`` value of a 401 or 403 (RFC 6750 §3, RFC 9728 §5.1).

    >>> challenge(InsufficientScope("no", scope="admin", resource_metadata="http://s/m"))
    'Bearer error="insufficient_scope", scope="admin", resource_metadata="http://s/m"'
    """
    params: list[tuple[str, str]] = []
    if isinstance(error, InvalidToken):
        params += [("error", "invalid_token"), ("error_description", error.message)]
    elif isinstance(error, InsufficientScope):
        params += [("error", "insufficient_scope"), ("scope", error.scope)]
    metadata = getattr(error, "resource_metadata", None)
    if metadata:
        params.append(("resource_metadata", metadata))
    quoted = ", ".join(f'{name}="{_QUOTABLE.sub("?", value)}"' for name, value in params)
    return f"Bearer {quoted}" if quoted else "Bearer"


_BEARER = Header(
    "WWW-Authenticate",
    challenge,
    {
        "description": "`Bearer`, with `error`, `scope` and `resource_metadata` as RFC 6750 "
        "and RFC 9728 say.",
        "schema": {"type": "string"},
    },
)
_ALLOW = Header(  # every method of the path, not only the first route's
    "Allow",
    lambda error: error.allow,
    {"description": "The methods the path takes.", "schema": {"type": "string"}},
)

RULES: dict[type[FleetError], Rule] = {
    BadRequest: Rule("The body is not UTF-8 JSON, or uses NaN/Infinity."),
    Unauthorized: Rule(
        "No bearer token; only when the supervisor has API tokens or a JWT issuer.",
        (_BEARER,),
        routing=True,
    ),
    InvalidToken: Rule(
        "A bearer token that is not accepted: not an API token, or a JWT that is expired, "
        "for another audience or issuer, badly signed, or signed by an unknown key; "
        "`details.reason` says which.",
        (_BEARER,),
    ),
    Forbidden: Rule("Not allowed.", routing=True),
    InsufficientScope: Rule(
        "The token lacks the scope this route needs; `details.required_scope` names it.",
        (_BEARER,),
    ),
    OriginNotAllowed: Rule(
        "The `Origin` header (a browser page) is not on the allowlist; FLEET_ALLOWED_ORIGINS."
    ),
    HostNotAllowed: Rule(
        "The `Host` header is not a name of this supervisor (DNS rebinding); FLEET_ALLOWED_HOSTS."
    ),
    NotFound: Rule("No route at this path.", routing=True),
    JobNotFound: Rule("No such job; any id not shaped like one we mint is unknown too."),
    MethodNotAllowed: Rule("The path does not take this method.", (_ALLOW,), routing=True),
    IdempotencyConflict: Rule("The Idempotency-Key was used before with another body."),
    JobFinished: Rule("The job already ended (or, to redrive, did not fail)."),
    PayloadTooLarge: Rule("The request body is over the size limit."),
    UnsupportedMediaType: Rule(
        "A POST, PUT or PATCH body whose `Content-Type` is not `application/json` "
        "(or `application/*+json`); `details.content_type` names it."
    ),
    ValidationFailed: Rule(
        "A field, parameter or header breaks its rule; `details.field` names it."
    ),
    UnknownCapability: Rule("No known worker serves the capability; the message names those."),
    InvalidInput: Rule("The input does not match the capability's input schema."),
    DelegationLimit: Rule(
        "A child job (`parent_id`) past a limit: `details.limit` is `depth` (FLEET_MAX_DEPTH) "
        "or `children` (FLEET_MAX_CHILDREN), `details.max` the limit."
    ),
    AdmissionRefused: Rule(
        "The capability's queue is full; `Retry-After` says when to retry.", (_RETRY_AFTER,)
    ),
    RateLimited: Rule(
        "The caller's tenant (or the caller, without one) is over a limit: `details.limit` "
        "is `submit_rate` (FLEET_RATE_SUBMIT_PER_S) or `in_flight` "
        "(FLEET_TENANT_MAX_INFLIGHT); `Retry-After` says when to retry.",
        (_RETRY_AFTER,),
    ),
    StoreUnavailable: Rule("The store is unreachable."),
    NoHealthyWorker: Rule(
        "The capability is not in the catalog, but a worker that might serve it is down and "
        "was never heard from; the message and `details.workers` say which and why. "
        "(A capability a worker served before it went down is accepted and waits for it.)"
    ),
    KeysUnavailable: Rule("The JWT issuer's key set (FLEET_JWKS_URL) could not be fetched."),
    FleetError: Rule("An unexpected failure; the supervisor logs it."),
}
"""Error class → its rule; a class without one follows its nearest ancestor's."""

_ROUTING = {error.status: error for error, rule in RULES.items() if rule.routing}


def rule_for(error: type[FleetError]) -> Rule:
    return next(RULES[cls] for cls in error.__mro__ if cls in RULES)


def answer(error: FleetError) -> tuple[int, dict[str, Any], dict[str, str]]:
    """The status, body and headers ``error`` leaves the API with."""
    headers = {header.name: header.value(error) for header in rule_for(type(error)).headers}
    return error.status, error.to_body(), headers


def _respond(error: FleetError, headers: dict[str, str] | None = None) -> JSONResponse:
    status, body, own = answer(error)
    return JSONResponse(body, status_code=status, headers={**(headers or {}), **own})


_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def allowed_methods(routes: Iterable[BaseRoute], scope: Scope) -> str:
    """The ``Allow`` header of a 405: the methods of every route at the request's path
    (Starlette names only the first route's, so ``GET /v1/jobs`` would hide ``POST``). Each
    method is tried through the routes' own matching, since an included router is one route
    that holds the others."""
    routes = list(routes)
    return ", ".join(
        method
        for method in _METHODS
        if any(route.matches({**scope, "method": method})[0] is Match.FULL for route in routes)
    )


def _from_request(exc: RequestValidationError) -> FleetError:
    errors = validation_details(exc.errors())
    if any(e.get("type") == "json_invalid" for e in exc.errors()):
        return BadRequest("request body is not JSON", details={"errors": errors})
    first = errors[0] if errors else {"field": "", "message": "invalid request"}
    return ValidationFailed(
        f"{first['field']}: {first['message']}",
        details={"field": first["field"], "errors": errors},
    )


def _from_http(request: Request, exc: StarletteHTTPException) -> FleetError:
    error = _ROUTING.get(exc.status_code)
    if error is MethodNotAllowed:
        return MethodNotAllowed(
            str(exc.detail), allow=allowed_methods(request.app.routes, request.scope)
        )
    if error is None:
        return HttpError(exc.status_code, str(exc.detail))
    return error(str(exc.detail))


def add_handlers(app: FastAPI) -> None:
    """Register the handlers that answer every exception by :data:`RULES`."""

    @app.exception_handler(FleetError)
    async def fleet_error(_: Request, exc: FleetError) -> JSONResponse:
        return _respond(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _respond(_from_request(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _respond(_from_http(request, exc), dict(exc.headers or {}))

    @app.exception_handler(ClientDisconnect)
    async def client_gone(request: Request, _: ClientDisconnect) -> Response:
        # The client went away while sending its body (or its body stalled past
        # FLEET_BODY_TIMEOUT_S and the server cut it): nobody is left to answer.
        log.info("api.client_disconnected", path=request.url.path[:100])
        return Response(status_code=400)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("api.unexpected")
        return _respond(FleetError("internal error"))
