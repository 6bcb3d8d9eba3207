"""Child processes and an embedded supervisor for ``fleet demo`` and ``fleet dev``, each an
async context manager that leaves nothing behind: terminate, wait, kill on timeout — also when
cancelled (Ctrl-C). :func:`start_fleet` starts the whole local fleet both run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from shared.serving import free_port

__all__ = [
    "EXAMPLE_WORKERS",
    "ChildProcess",
    "child_env",
    "embedded_supervisor",
    "free_port",
    "reap",
    "start_fleet",
    "worker_process",
]

EXAMPLE_WORKERS = ("echo", "data", "text")
_STOP_TIMEOUT_S = 5.0
_START_DEADLINE_S = 30.0


def child_env() -> dict[str, str]:
    """The parent's environment without FLEET_* (a demo must not join a real fleet)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    env.update(
        FASTMCP_CHECK_FOR_UPDATES="off",
        FASTMCP_SHOW_SERVER_BANNER="false",
        PYTHONUNBUFFERED="1",
        FLEET_LOG_FORMAT="json",
        FLEET_LOG_LEVEL="WARNING",
    )
    return env


@dataclass
class ChildProcess:
    name: str
    url: str
    health_url: str
    process: asyncio.subprocess.Process
    log_path: Path

    def log_tail(self, lines: int = 8) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    async def wait_healthy(self, deadline: float) -> None:
        async with httpx.AsyncClient(timeout=1.0) as client:
            while True:
                if self.process.returncode is not None:
                    raise RuntimeError(
                        f"worker {self.name} exited with {self.process.returncode} while "
                        f"starting:\n{self.log_tail()}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(self.health_url)).status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"worker {self.name} not healthy at {self.health_url} in time:\n"
                        f"{self.log_tail()}"
                    )
                await asyncio.sleep(0.05)

    async def stop(self) -> None:
        proc = self.process
        if proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), _STOP_TIMEOUT_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


@contextlib.asynccontextmanager
async def worker_process(
    name: str, log_dir: Path, spawned: set[int]
) -> AsyncIterator[ChildProcess]:
    """``python -m workers.NAME`` on a free loopback port; stopped (and reaped) on exit.

    Its pid stays in ``spawned`` until it is reaped, for :func:`reap` to finish the job if
    the event loop was torn down first.
    """
    port = free_port()
    log_path = log_dir / f"worker-{name}.log"
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", f"workers.{name}", "--host", "127.0.0.1", "--port", str(port),
            # Headroom: the demo runs several long echo jobs at once, beside a retried one.
            "--max-concurrency", "8",
            stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=asyncio.subprocess.STDOUT,
            env=child_env(),
            start_new_session=True,  # Ctrl-C reaches the demo only; it stops the children
        )  # fmt: skip
    spawned.add(process.pid)
    child = ChildProcess(
        name,
        f"http://127.0.0.1:{port}/mcp",
        f"http://127.0.0.1:{port}/health",
        process,
        log_path,
    )
    try:
        yield child
    finally:
        # Shielded: a second Ctrl-C must not leave a child running.
        await asyncio.shield(child.stop())
        spawned.discard(process.pid)


def reap(spawned: set[int]) -> None:
    """Last resort, outside any event loop: kill and reap children that are still there."""
    for pid in list(spawned):
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        spawned.discard(pid)


@contextlib.asynccontextmanager
async def embedded_supervisor(settings: Any, port: int = 0) -> AsyncIterator[str]:
    """The supervisor app under uvicorn in this event loop, on ``port`` of the loopback (0: a
    free one); yields its URL."""
    from shared.connections import ConnectionLimits
    from shared.serving import serving
    from supervisor.app import create_app

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        sock.close()
        raise
    if settings.public_url is None:  # each call's _meta names it: where tools delegate to
        bound = sock.getsockname()[1]
        settings = settings.model_copy(update={"public_url": f"http://127.0.0.1:{bound}"})
    async with serving(
        create_app(settings),
        sockets=[sock],
        limits=ConnectionLimits.of(settings),
        log_config=None,
        log_level="error",
        timeout_graceful_shutdown=2,
    ) as running:
        yield running.url


async def start_fleet(
    log_dir: Path,
    spawned: set[int],
    stack: contextlib.AsyncExitStack,
    *,
    redis_url: str = "memory://",
    key_prefix: str | None = None,
    port: int = 0,
) -> tuple[str, dict[str, ChildProcess]]:
    """The example workers as child processes and an embedded supervisor that knows them, all
    healthy and registered; each stopped when ``stack`` closes. Returns the supervisor's URL
    and the workers by name."""
    from shared import SupervisorSettings, configure_logging

    children = {
        name: await stack.enter_async_context(worker_process(name, log_dir, spawned))
        for name in EXAMPLE_WORKERS
    }
    # The embedded supervisor logs only errors: the command's own output tells the story.
    configure_logging("console", "ERROR")
    settings = SupervisorSettings(
        redis_url=redis_url,
        workers=",".join(c.url for c in children.values()),
        probe_interval_s=0.5,
        backoff_initial_s=0.2,
        backoff_max_s=1.0,
        sse_keepalive_s=5,
    )
    if key_prefix:
        settings = settings.model_copy(update={"key_prefix": key_prefix})
    url = await stack.enter_async_context(embedded_supervisor(settings, port))
    deadline = time.monotonic() + _START_DEADLINE_S
    await asyncio.gather(*(c.wait_healthy(deadline) for c in children.values()))
    await _registered(url, len(children), deadline)
    return url, children


async def _registered(url: str, expected: int, deadline: float) -> None:
    """Until the supervisor sees ``expected`` healthy workers (its probes run every 0.5 s)."""
    async with httpx.AsyncClient(base_url=url, timeout=5.0) as client:
        while True:
            with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                workers = (await client.get("/v1/workers")).json()["workers"]
                if sum(1 for w in workers if w.get("healthy")) >= expected:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the supervisor at {url} does not see {expected} workers")
            await asyncio.sleep(0.1)
