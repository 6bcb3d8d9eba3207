"""The :class:`Worker`: a FastMCP server with the kit's behaviour, served over HTTP.

>>> from workers.kit import Toolset, Worker, WorkerSettings
>>> tools = Toolset()
>>> @tools.tool(idempotent=True)
... async def ping() -> dict[str, bool]:
...     '''Check the worker answers. Needs nothing; returns {"ok": true}.'''
...     return {"ok": True}
>>> worker = Worker("hello", tools=tools, settings=WorkerSettings(_env_file=None))
>>> worker.name
'hello'

In memory: ``async with fastmcp.Client(worker.server) as c: ...``. Over HTTP:
``await worker.serve(host=..., port=...)`` runs until :meth:`Worker.request_shutdown` (or
cancellation); ``async with worker.serving(sockets=[sock]) as url: ...`` for tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

import redis.asyncio as aioredis
from fastmcp import FastMCP
from mcp_types import ToolAnnotations
from starlette.applications import Starlette
from starlette.middleware import Middleware as AsgiMiddleware

from shared.connections import ConnectionLimits
from shared.hosts import check_bind
from shared.keys import Keys
from shared.logs import get_logger
from shared.models import CapabilitiesReport
from shared.protocol import CAPABILITIES_TOOL
from shared.redis_urls import redis_client, store_prefix
from shared.serving import Running, settle_heap
from shared.serving import serving as serve_http
from shared.settings import WorkerSettings
from workers.kit.auth import BearerTokenMiddleware
from workers.kit.capabilities import CAPABILITIES_DESCRIPTION, CapabilityCatalog
from workers.kit.concurrency import LoadTracker
from workers.kit.delegation import configure as configure_delegation
from workers.kit.health import HealthMonitor
from workers.kit.hosts import HostOriginMiddleware, allowed_hosts
from workers.kit.idempotency import LOCK_TTL_S, MemoryIdempotency, RedisIdempotency
from workers.kit.middleware import KitMiddleware, Runtime
from workers.kit.registration import registered
from workers.kit.toolset import Toolset

__all__ = ["DEFAULT_MAX_REQUEST_BYTES", "KEEP_ALIVE_S", "MCP_PATH", "Worker", "check_worker_bind"]

MCP_PATH = "/mcp"
DEFAULT_MAX_REQUEST_BYTES = 64 * 1024 * 1024
"""The MCP SDK refuses request bodies over 4 MiB (HTTP 413); 100,000 records need more."""
KEEP_ALIVE_S = 75
"""Seconds an idle HTTP connection stays open (uvicorn's default is 5).

Supervisors probe every 5 s and keep their connections alive between probes; had the worker
also closed idle connections after 5 s, a probe could be sent on a connection the worker is
closing at that instant and fail. 75 s, the common load-balancer figure, outlasts any probe
period and client keep-alive expiry (httpx: 5 s), so the client always closes first.
"""
_OPEN_PATHS = frozenset({"/health", "/ready"})
_log = get_logger("workers.kit")


def check_worker_bind(settings: WorkerSettings, host: str | None = None) -> None:
    """Without ``worker_token`` a worker binds only to loopback, unless told it is insecure
    (:class:`shared.hosts.InsecureBind`, a one-line exit message)."""
    check_bind(
        host or settings.host,
        settings.port,
        missing="" if settings.worker_token else "a worker token",
        fix="FLEET_WORKER_TOKEN=<secret> (--worker-token) here and on the supervisors",
        insecure=settings.insecure,
    )


class Worker:
    """A production MCP worker built from one or more :class:`Toolset`.

    ``name`` is the default service name; ``settings.name`` wins when it is set (``--name`` or
    ``FLEET_NAME``).
    """

    def __init__(
        self,
        name: str,
        *,
        tools: Toolset | Iterable[Toolset],
        settings: WorkerSettings | None = None,
        version: str = "0.1.0",
        instructions: str | None = None,
        features: Sequence[str] = (),
        lock_ttl_s: float = LOCK_TTL_S,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    ) -> None:
        self.settings = settings if settings is not None else WorkerSettings()
        self.name = self.settings.name or name
        self.version = version
        self.keys = Keys(store_prefix(self.settings.redis_url, self.settings.key_prefix))
        self.url: str | None = None
        self._lock_ttl_s = lock_ttl_s
        self.max_request_bytes = max_request_bytes
        toolsets = [tools] if isinstance(tools, Toolset) else list(tools)
        specs = [spec for ts in toolsets for spec in ts]
        tracker = LoadTracker(
            {s.name: s.max_concurrency or self.settings.max_concurrency for s in specs}
        )
        self.runtime = Runtime(
            service=self.name,
            specs={s.name: s for s in specs},
            tracker=tracker,
            idempotency=MemoryIdempotency(
                self.settings.idempotency_ttl_s,
                max_bytes=self.settings.idempotency_cache_bytes,
                max_result_bytes=self.settings.idempotency_max_result_bytes,
            ),
        )
        self.health = HealthMonitor(self.runtime, redis_configured=bool(self.settings.redis_url))
        self.server: FastMCP[Any] = FastMCP(
            self.name,
            instructions=instructions,
            version=version,
            middleware=[KitMiddleware(self.runtime)],
            lifespan=self._lifespan,
            on_duplicate="error",
            # Unexpected exceptions must not leak internals to callers; ToolErrors still pass.
            mask_error_details=True,
            # Lax on purpose: arguments arrive as parsed JSON and pydantic validates them in
            # Python mode, where strict mode would refuse the JSON form of enums, dates and
            # UUIDs. Coercing "10" to 10 is harmless: every meaning check runs after it.
            strict_input_validation=False,
        )
        for spec in specs:
            self.server.tool(
                spec.fn,
                name=spec.name,
                description=spec.description,
                annotations=ToolAnnotations(
                    idempotent_hint=spec.idempotent, read_only_hint=spec.read_only
                ),
            )
        self.catalog = CapabilityCatalog(
            self.server,
            service=self.name,
            version=version,
            specs=specs,
            tracker=tracker,
            health_status=self.health.health_status,
            features=features,
        )

        async def get_capabilities() -> CapabilitiesReport:
            return await self.catalog.report()

        self.server.tool(
            get_capabilities,
            name=CAPABILITIES_TOOL,
            description=CAPABILITIES_DESCRIPTION,
            annotations=ToolAnnotations(idempotent_hint=True, read_only_hint=True),
        )
        configure_delegation(self.server, self.settings)  # Fleet.of(ctx) finds the supervisor
        self.server.custom_route("/health", methods=["GET"])(self.health.health_endpoint)
        self.server.custom_route("/ready", methods=["GET"])(self.health.ready_endpoint)
        self._redis: aioredis.Redis | None = None
        self._stop: asyncio.Event | None = None
        self._started: asyncio.Event | None = None
        self._grace_s = self.settings.grace_s

    # -- lifecycle -----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _lifespan(self, server: FastMCP[Any]) -> AsyncIterator[dict[str, Any]]:
        """Resources every transport needs (in memory and HTTP): the Redis client."""
        async with contextlib.AsyncExitStack() as stack:
            url = self.settings.redis_url
            if url:
                client = redis_client(  # redis:// or redis+cluster://
                    url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=30
                )
                stack.push_async_callback(client.aclose)
                self._redis = self.health.redis = client
                memory = self.runtime.idempotency
                self.runtime.idempotency = RedisIdempotency(
                    client,
                    self.keys,
                    self.name,
                    ttl_s=self.settings.idempotency_ttl_s,
                    lock_ttl_s=self._lock_ttl_s,
                    max_result_bytes=self.settings.idempotency_max_result_bytes,
                )

                def restore() -> None:
                    self._redis = self.health.redis = None
                    self.runtime.idempotency = memory

                stack.callback(restore)
            yield {}

    def http_app(self, *, bind_host: str | None = None) -> Starlette:
        """The ASGI app: MCP at ``/mcp`` (streaming responses), ``/health``, ``/ready``.

        Every path checks ``Host`` and ``Origin`` first (:mod:`workers.kit.hosts`);
        ``bind_host`` (default ``settings.host``) is allowed when it is not a wildcard.
        """
        hosts = allowed_hosts(
            self.settings.allowed_hosts,
            advertise_url=self.settings.advertise_url,
            bind_host=self.settings.host if bind_host is None else bind_host,
        )
        middleware = [
            AsgiMiddleware(HostOriginMiddleware, hosts=hosts, origins=self.settings.allowed_origins)
        ]
        if self.settings.worker_token:
            middleware.append(
                AsgiMiddleware(
                    BearerTokenMiddleware,
                    token=self.settings.worker_token,
                    open_paths=_OPEN_PATHS,
                )
            )
        # Never json_response=True: it drops progress and cancellation. FastMCP's own
        # Host/Origin guard stays off (FASTMCP_HTTP_HOST_ORIGIN_PROTECTION must not add a
        # second allowlist with plain-text refusals): HostOriginMiddleware runs it for us.
        return self.server.http_app(
            path=MCP_PATH,
            transport="http",
            json_response=False,
            middleware=middleware,
            host_origin_protection=False,
        )

    def request_shutdown(self, *, grace_s: float | None = None) -> None:
        """Begin a graceful shutdown (what SIGTERM does). ``grace_s=0`` cancels calls now."""
        if grace_s is not None:
            self._grace_s = grace_s
        if self._stop is not None:
            if self._stop.is_set() and grace_s == 0:
                self.runtime.shutdown_cancel = True
                self.runtime.tracker.cancel_all()
            self._stop.set()

    async def serve(
        self,
        *,
        host: str | None = None,
        port: int | None = None,
        sockets: list[socket.socket] | None = None,
        settle: bool = False,
    ) -> None:
        """Serve over HTTP until :meth:`request_shutdown`, then drain; or until cancelled.

        Binding ``host`` (not given ``sockets``) follows the bind rule of
        :func:`check_worker_bind`. ``settle``: this is the whole process; once started, its
        heap is settled (:func:`shared.serving.settle_heap`).
        """
        if sockets is None:
            check_worker_bind(self.settings, host)
        self._stop, self._started = asyncio.Event(), asyncio.Event()
        self.runtime.draining = self.runtime.shutdown_cancel = False
        self._grace_s = self.settings.grace_s
        bind = host or self.settings.host
        try:
            async with serve_http(
                self.http_app(bind_host=bind),
                sockets=sockets,
                host=bind,
                port=self.settings.port if port is None else port,
                limits=ConnectionLimits.of(self.settings),
                log_config=None,
                timeout_graceful_shutdown=3,
                timeout_keep_alive=KEEP_ALIVE_S,
            ) as running:
                if settle:
                    settle_heap()
                try:
                    await self._serve_until_stopped(running)
                except asyncio.CancelledError:  # cancel the calls before uvicorn waits on them
                    self.runtime.draining = self.runtime.shutdown_cancel = True
                    self.runtime.tracker.cancel_all()
                    raise
        finally:
            self.url = None
            _log.info("worker.stopped", service=self.name)

    async def _serve_until_stopped(self, running: Running) -> None:
        _raise_body_limit(running.app, self.max_request_bytes)
        self.url = running.url + MCP_PATH
        _log.info("worker.started", url=self.url, service=self.name, version=self.version)
        assert self._started is not None and self._stop is not None
        self._started.set()
        async with contextlib.AsyncExitStack() as stack:
            advertise = self.settings.advertise_url
            if self._redis is not None and advertise:
                await stack.enter_async_context(
                    registered(
                        self._redis,
                        self.keys,
                        name=self.name,
                        url=advertise,
                        version=self.version,
                        heartbeat_s=self.settings.heartbeat_s,
                        state=self.health.registration,
                        secret=self.settings.registration_secret,
                    )
                )
            stop = asyncio.create_task(self._stop.wait())
            try:
                await asyncio.wait({running.task, stop}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop.cancel()
            # Leaving the stack deregisters first, so supervisors stop routing here.
        await self._drain()

    async def _drain(self) -> None:
        tracker = self.runtime.tracker
        self.runtime.draining = True
        _log.info("worker.draining", in_flight=tracker.in_flight, grace_s=self._grace_s)
        deadline = asyncio.get_running_loop().time() + self._grace_s
        while not await tracker.wait_idle(0.05):
            if asyncio.get_running_loop().time() >= deadline or self.runtime.shutdown_cancel:
                self.runtime.shutdown_cancel = True
                cancelled = list(tracker.cancel_all())
                _log.warning("worker.cancelling_calls", calls=len(cancelled))
                await tracker.wait_idle(5.0)
                break

    @contextlib.asynccontextmanager
    async def serving(
        self,
        *,
        host: str | None = None,
        port: int | None = None,
        sockets: list[socket.socket] | None = None,
    ) -> AsyncIterator[str]:
        """Serve in the background for the block; yields the MCP URL; drains on exit."""
        self._started = None
        task = asyncio.create_task(self.serve(host=host, port=port, sockets=sockets))
        while self._started is None or not self._started.is_set():
            if task.done():
                task.result()
                raise RuntimeError("worker stopped before it started")
            await asyncio.sleep(0.01)
        assert self.url is not None
        try:
            yield self.url
        finally:
            self.request_shutdown()
            await task


def _raise_body_limit(app: Any, limit: int) -> None:
    """Lift the SDK's 4 MiB request-body cap on ``/mcp`` to ``limit``.

    FastMCP 4.1 builds the SDK session manager inside its lifespan and exposes no option for
    the cap, so it is set on the manager's body-limit middleware once the app has started.
    Pinned to fastmcp<4.2; if the internals move, the SDK default stays and we say so.
    """
    seen: set[int] = set()
    stack = [app]
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        manager = getattr(node, "session_manager", None)
        limiter = getattr(manager, "asgi_app", None)
        if limiter is not None and hasattr(limiter, "max_body_size"):
            limiter.max_body_size = limit
            return
        stack.extend([getattr(node, "app", None), getattr(node, "middleware_stack", None)])
        stack.extend(getattr(r, "app", None) for r in getattr(node, "routes", []) or [])
        stack.extend(getattr(r, "endpoint", None) for r in getattr(node, "routes", []) or [])
    _log.warning("worker.body_limit_unchanged", wanted=limit)
