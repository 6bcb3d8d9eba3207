"""The supervisor application: one lifespan wires every long-lived part.

app = create_app(SupervisorSettings(redis_url="memory://", workers="http://127.0.0.1:8701/mcp"))
# uvicorn.run(app) — or `fleet supervisor`
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from starlette.routing import Route

from shared import Keys, SupervisorSettings, get_logger
from shared.hosts import allowed_hosts
from shared.telemetry import tracing_requested
from supervisor.api import router
from supervisor.api.auth import Authenticator
from supervisor.api.direct import DirectSubmit
from supervisor.api.errors import add_handlers
from supervisor.api.guards import HostOrigin, JsonBodies
from supervisor.api.middleware import RequestContext
from supervisor.api.quotas import Watchers
from supervisor.calls import WorkerPool
from supervisor.discovery import Discovery
from supervisor.dispatch import Dispatcher
from supervisor.loops import Loops
from supervisor.mcp import McpMount
from supervisor.metrics import Metrics
from supervisor.registry import Registry
from supervisor.services import Services
from supervisor.store import open_store
from supervisor.trust import WorkerTrust
from supervisor.workflows.runner import WorkflowRunner

__all__ = ["build_services", "create_app"]

log = get_logger("fleet.supervisor")


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
                watch_connections=settings.watch_connections,
                shards=settings.shards,
            )
        )
        metrics = Metrics()
        trust = WorkerTrust.from_settings(settings, metrics)
        pool = await stack.enter_async_context(  # a token only for workers the trust admitted
            WorkerPool(credentials=trust.token_for, max_in_flight=settings.client_max_in_flight)
        )
        registry = Registry()
        discovery = Discovery(
            registry,
            pool,
            store,
            static_urls=settings.worker_urls,
            probe_interval_s=settings.probe_interval_s,
            breaker_threshold=settings.breaker_threshold,
            breaker_reset_s=settings.breaker_reset_s,
            foreign_concurrency=settings.foreign_concurrency,
            down_after=settings.probe_failures_to_down,
            trust=trust,
        )
        stack.push_async_callback(discovery.aclose)
        dispatcher = Dispatcher(store, registry, pool, settings, metrics)
        stack.push_async_callback(dispatcher.stop)  # after the loops: held jobs stay pending
        loops = await stack.enter_async_context(Loops(metrics))
        services = Services(settings, store, pool, registry, dispatcher, metrics, loops)
        dispatcher.runner.workflows = WorkflowRunner(services)  # workflow jobs run here
        if run_loops:
            loops.start("registry", discovery.run)
            if not store.embedded:  # other replicas' changes: there are none in-process
                loops.start("changes", store.listen_changes)
            loops.start("janitor", store.janitor)
            for name, loop in dispatcher.loops().items():
                loops.start(name, loop)
        log.info(
            "supervisor.started",
            store=settings.redis_url.split("@")[-1],
            static_workers=len(settings.worker_urls),
            signed_registrations=settings.registration_secret is not None,
            worker_allowlist=len(trust.allow.patterns),
            consumer=store.consumer,
        )
        yield services


_NO_FASTAPI_TELEMETRY: Any = {"tracing": False, "metrics": False, "logs": False}
"""FastAPI's ``telemetry`` setting (its ``TelemetryConfig``, not imported: a FastAPI from
before it keeps the argument in ``app.extra`` and has no per-request telemetry to turn off)."""


def create_app(
    settings: SupervisorSettings,
    *,
    run_loops: bool = True,
    auth: Authenticator | None = None,
) -> FastAPI:
    """The app; ``auth`` replaces the authenticator built from ``settings`` (tests)."""
    authenticator = auth or Authenticator(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with build_services(settings, run_loops=run_loops) as services:
            app.state.services = services
            try:
                async with face.running(services):  # the face starts at the first /mcp request
                    yield
            finally:
                await authenticator.aclose()

    # /docs and /redoc load their scripts and styles from the package's bundled copies,
    # served under /static-offline-docs, not from a CDN: they work offline and air-gapped.
    app = FastAPIOffline(
        title="mcp-fleet supervisor",
        version="0.1.0",
        description="Submit jobs, watch their progress, inspect workers. "
        'Errors are {"error": {"code", "message", "details"}}.',
        lifespan=lifespan,
        swagger_ui_parameters={"validatorUrl": None},  # Swagger UI's default is a remote service
        # FastAPI's own request telemetry asks OpenTelemetry for three providers on every
        # request (~60 µs of a job's CPU, reading os.environ each time): on only when this
        # supervisor exports traces.
        telemetry=None if tracing_requested() else _NO_FASTAPI_TELEMETRY,
    )
    app.state.auth = authenticator  # who is calling: static tokens, JWTs (api/scopes.py)
    app.state.watchers = Watchers(settings.tenant_max_watchers)  # open SSE streams per tenant
    app.include_router(router)
    face = McpMount(app, authenticator)  # the fleet as one MCP server (supervisor/mcp)
    app.router.routes.append(Route("/mcp", face))
    # add_middleware puts each in front of the last: RequestContext (correlation id, body
    # limit) runs first, so refusals of the guards carry the correlation id too. DirectSubmit,
    # innermost, answers POST /v1/jobs without FastAPI's per-request dependency solving.
    app.add_middleware(DirectSubmit, fastapi=app)
    app.add_middleware(JsonBodies)
    app.add_middleware(
        HostOrigin,
        hosts=allowed_hosts(settings.allowed_hosts, bind_host=settings.host),
        origins=settings.allowed_origins,
    )
    app.add_middleware(RequestContext, max_body_bytes=settings.max_body_bytes)

    add_handlers(app)
    return app
