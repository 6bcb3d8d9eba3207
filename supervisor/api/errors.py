"""How errors leave the API: the exception handlers, each answering with the error body."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match, Route
from starlette.types import Scope

from shared import AdmissionRefused, FleetError, get_logger

__all__ = ["add_handlers", "allowed_methods"]

log = get_logger("fleet.supervisor")

_HTTP_CODES = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 401: "UNAUTHORIZED", 403: "FORBIDDEN"}


def allowed_methods(routes: Iterable[BaseRoute], scope: Scope) -> str:
    """The ``Allow`` header of a 405: the methods of every route at the request's path
    (Starlette names only the first route's, so ``GET /v1/jobs`` would hide ``POST``)."""
    methods: set[str] = set()
    for route in routes:
        if isinstance(route, Route) and route.methods:  # APIRoute is a Route
            match, _ = route.matches({**scope, "method": ""})
            if match is not Match.NONE:
                methods |= route.methods
    return ", ".join(sorted(methods))


def add_handlers(app: FastAPI) -> None:
    """Register the API's exception handlers on ``app``."""

    @app.exception_handler(FleetError)
    async def fleet_error(_: Request, exc: FleetError) -> JSONResponse:
        headers = {}
        if isinstance(exc, AdmissionRefused):
            headers["Retry-After"] = str(exc.retry_after)
        if exc.status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        return JSONResponse(exc.to_body(), status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()
        ]
        if any(e.get("type") == "json_invalid" for e in exc.errors()):
            body: dict[str, Any] = {"code": "BAD_REQUEST", "message": "request body is not JSON"}
            return JSONResponse({"error": {**body, "details": {"errors": errors}}}, 400)
        first = errors[0] if errors else {"field": "", "message": "invalid request"}
        return JSONResponse(
            {
                "error": {
                    "code": "VALIDATION_ERROR",
                    "message": f"{first['field']}: {first['message']}",
                    "details": {"field": first["field"], "errors": errors},
                }
            },
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, f"HTTP_{exc.status_code}")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # every method of the path, not only the first route's
            headers["Allow"] = allowed_methods(request.app.routes, request.scope)
        return JSONResponse(
            {"error": {"code": code, "message": str(exc.detail), "details": {}}},
            status_code=exc.status_code,
            headers=headers,
        )

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("api.unexpected")
        return JSONResponse(
            {"error": {"code": "INTERNAL", "message": "internal error", "details": {}}}, 500
        )
