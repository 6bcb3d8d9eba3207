"""Running an ASGI app under uvicorn: the one runner the supervisor, the workers, the demo and
the tests all use.

    async with serving(app, sockets=[loopback_socket()]) as running:
        print(running.url)          # http://127.0.0.1:PORT
    # leaving the block shuts uvicorn down gracefully and waits for it

    run(app, host="0.0.0.0", port=8700)   # a whole process: SIGTERM/SIGINT exit 0

Inside a running event loop uvicorn never installs signal handlers: the process that embeds
it owns them (a worker drains on SIGTERM, the demo owns Ctrl-C).

An app whose lifespan fails to start raises that failure out of :func:`serving` and
:func:`run` (uvicorn would log its traceback and exit 3): the entrypoint says it in one line
(:mod:`shared.startup`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from types import FrameType
from typing import Any

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from shared.connections import ConnectionLimits, guarded_protocol

__all__ = [
    "ConnectionLimits",
    "Running",
    "free_port",
    "loopback_socket",
    "run",
    "serving",
    "settle_heap",
]

START_TIMEOUT_S = 20.0


def loopback_socket(host: str = "127.0.0.1") -> socket.socket:
    """A TCP socket bound to a free port on ``host``, for :func:`serving` ``sockets=``."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    return sock


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on ``host`` right now, for a child process to bind (racy by nature: prefer
    passing :func:`loopback_socket` to an in-process server)."""
    with contextlib.closing(loopback_socket(host)) as sock:
        return int(sock.getsockname()[1])


class _Lifespan:
    """Pure ASGI: the app, with the exception its lifespan failed to start with kept in
    ``failure`` (and kept out of uvicorn's log, which would print its traceback)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.failure: BaseException | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def quiet(message: Any) -> None:
            if message["type"] == "lifespan.startup.failed":
                message = {**message, "message": ""}  # the traceback text: ours to show, or not
            await send(message)

        try:
            await self.app(scope, receive, quiet)
        except BaseException as exc:
            self.failure = exc
            raise


class _NotTheStartupFailure(logging.Filter):
    """uvicorn logs "Application startup failed" as well: the failure itself is reported."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Application startup failed")


_UVICORN_LOG = logging.getLogger("uvicorn.error")
_UVICORN_LOG.addFilter(_NotTheStartupFailure())


def _config(app: Any, *, limits: ConnectionLimits | None, **options: Any) -> uvicorn.Config:
    # Every server runs under the connection guard (cap, header size, header and body
    # deadlines): stock uvicorn enforces none of them (see shared.connections).
    options.setdefault("http", guarded_protocol(limits or ConnectionLimits()))
    options.setdefault("log_level", "warning")
    options.setdefault("access_log", False)
    options.setdefault("lifespan", "on")
    options.setdefault("ws", "none")
    return uvicorn.Config(_Lifespan(app), **options)


def _startup_failure(config: uvicorn.Config) -> BaseException | None:
    app = config.app
    return app.failure if isinstance(app, _Lifespan) else None


class _Server(uvicorn.Server):
    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        # uvicorn says a failed start with sys.exit(3), which out of a task ends the whole
        # event loop: stop this server instead; the caller raises why (_startup_failure).
        try:
            await super().startup(sockets=sockets)
        except SystemExit:
            self.should_exit = True


class _Embedded(_Server):
    """uvicorn without signal handling: the embedding process owns its signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class _Process(_Server):
    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            settle_heap()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # A SIGTERM/SIGINT is the normal way to stop a service: shut down gracefully and
        # exit 0 instead of re-raising the signal afterwards (uvicorn's default).
        super().handle_exit(sig, frame)
        self._captured_signals.clear()


@dataclass
class Running:
    """A server started by :func:`serving`: the uvicorn server, its task and its base URL."""

    server: uvicorn.Server
    task: asyncio.Task[None]
    url: str

    @property
    def app(self) -> Any:
        """The app as uvicorn loaded it (with its middleware stack built)."""
        return self.server.config.loaded_app


@contextlib.asynccontextmanager
async def serving(
    app: Any,
    *,
    sockets: list[socket.socket] | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    start_timeout_s: float = START_TIMEOUT_S,
    limits: ConnectionLimits | None = None,
    **options: Any,
) -> AsyncIterator[Running]:
    """Serve ``app`` in this event loop for the block, under ``limits`` (default: the
    settings' defaults); ``options`` go to ``uvicorn.Config``."""
    config = _config(app, limits=limits, host=host, port=port, **options)
    server = _Embedded(config)
    task = asyncio.create_task(server.serve(sockets=sockets))
    try:
        async with asyncio.timeout(start_timeout_s):
            while not server.started:  # uvicorn offers a flag, not an event, for "started"
                if task.done():
                    failure = _startup_failure(config)
                    if failure is not None:
                        raise failure
                    task.result()
                    raise RuntimeError("the HTTP server stopped while starting")
                await asyncio.sleep(0.005)
        yield Running(server, task, _base_url(server, sockets, host))
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            grace = (config.timeout_graceful_shutdown or 0) + 10.0  # uvicorn enforces its own
            await asyncio.shield(asyncio.wait({task}, timeout=grace))
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        for sock in sockets or ():
            sock.close()


def run(
    app: Any,
    *,
    host: str,
    port: int,
    sockets: list[socket.socket] | None = None,
    limits: ConnectionLimits | None = None,
    **options: Any,
) -> None:
    """Serve ``app`` as the whole process until SIGTERM or SIGINT, then exit 0; on
    ``sockets`` when given (bound already: :func:`shared.startup.bind_socket`). A lifespan
    that fails to start raises its exception here."""
    config = _config(app, limits=limits, host=host, port=port, **options)
    server = _Process(config)
    server.run(sockets=sockets)
    if not server.started:
        failure = _startup_failure(config)
        if failure is not None:
            raise failure
        raise RuntimeError("the HTTP server stopped while starting")


def settle_heap() -> None:
    """Once a service process has started: every object alive now (its modules, the app,
    routes, schemas, clients) is moved out of the cyclic collector's sight (:func:`gc.freeze`).

    The collector walked those few hundred thousand objects again at every full collection,
    which under load was about 15 % of the supervisor's CPU per job (measured at 64 jobs in
    flight, interleaved: 1.04-1.09 -> 0.91-0.96 ms on redis://, 1.03-1.07 -> 0.81-0.89 ms on
    memory://). The price: an object
    from start-up that later ends up in a reference cycle is never freed (a one-off, bounded
    by what start-up made). Whole processes only: an embedding process owns its heap."""
    # No gc.collect() first: a collection here finalises whatever start-up left in cycles,
    # and one worker start in CI failed with EBADF right after it (a collected socket object
    # closing an fd number the server had reused, as far as could be told). Freezing alone
    # finalises nothing; start-up's garbage stays, a one-off.
    gc.freeze()


def _base_url(server: uvicorn.Server, sockets: list[socket.socket] | None, host: str) -> str:
    bound = sockets or [s for srv in server.servers for s in (srv.sockets or [])]
    if bound:
        addr = bound[0].getsockname()
        host, port = addr[0], addr[1]
    else:
        port = server.config.port
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"
