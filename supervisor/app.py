"""The supervisor application: one lifespan wires every long-lived part.

app = create_app(SupervisorSettings(redis_url="memory://", workers="http://127.0.0.1:8701/mcp"))
# uvicorn.run(app) — or `fleet supervisor`
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared import AdmissionRefused, FleetError, Keys, SupervisorSettings, get_logger
from supervisor.api import allowed_methods, router
from supervisor.dispatch import Dispatcher
from supervisor.loops import Loops
from supervisor.metrics import Metrics
from supervisor.middleware import RequestContext
from supervisor.pool import WorkerPool
from supervisor.registry import Registry
from supervisor.services import Services
from supervisor.store import open_store

__all__ = ["build_services", "create_app"]

log = get_logger("fleet.supervisor")

_HTTP_CODES = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 401: "UNAUTHORIZED", 403: "FORBIDDEN"}


@asynccontextmanager
async def build_services(
    settings: SupervisorSettings, *, run_loops: bool = True
) -> AsyncIterator[Services]:
    """Open store, pool, registry and dispatcher; start their loops; close all on exit."""
    async with AsyncExitStack() as stack:
        store = await stack.enter_async_context(
            open_store(
                settings.redis_url,
                Keys(settings.key_prefix),
                retention_s=settings.retention_s,
                idempotency_ttl_s=settings.idempotency_ttl_s,
            )
        )
        pool = await stack.enter_async_context(
            WorkerPool(token=settings.worker_token, max_in_flight=settings.client_max_in_flight)
        )
        registry = Registry(
            pool,
            store,
            static_urls=settings.worker_urls,
            probe_interval_s=settings.probe_interval_s,
            breaker_threshold=settings.breaker_threshold,
            breaker_reset_s=settings.breaker_reset_s,
            foreign_concurrency=settings.foreign_concurrency,
            down_after=settings.probe_failures_to_down,
        )
        stack.push_async_callback(registry.aclose)
        metrics = Metrics()
        dispatcher = Dispatcher(store, registry, pool, settings, metrics)
        stack.push_async_callback(dispatcher.stop)  # after the loops: held jobs stay pending
        loops = await stack.enter_async_context(Loops(metrics))
        services = Services(settings, store, pool, registry, dispatcher, metrics, loops)
        if run_loops:
            loops.start("registry", registry.run)
            if not store.embedded:  # other replicas' changes: there are none in-process
                loops.start("changes", store.listen_changes)
            loops.start("janitor", store.janitor)
            for name, loop in dispatcher.loops().items():
                loops.start(name, loop)
        log.info(
            "supervisor.started",
            store=settings.redis_url.split("@")[-1],
            static_workers=len(settings.worker_urls),
            consumer=store.consumer,
        )
        yield services


def create_app(settings: SupervisorSettings, *, run_loops: bool = True) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with build_services(settings, run_loops=run_loops) as services:
            app.state.services = services
            yield

    app = FastAPI(
        title="mcp-fleet supervisor",
        version="0.1.0",
        description="Submit jobs, watch their progress, inspect workers. "
        'Errors are {"error": {"code", "message", "details"}}.',
        lifespan=lifespan,
    )
    app.include_router(router)
    app.add_middleware(RequestContext, max_body_bytes=settings.max_body_bytes)

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

    return app
