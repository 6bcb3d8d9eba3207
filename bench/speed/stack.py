"""The processes under test, started for one run and always stopped: a private Redis, the
kit's echo worker, a bare FastMCP worker, the ticks worker and one supervisor per store.

Every process is real (``python -m supervisor.server``, ``python -m workers.echo``, ...), on
loopback ports picked at start, logged to the run's work dir. Readiness is a condition with a
deadline (health answers, the supervisor lists the capabilities), never a fixed sleep. The
Redis is the bench's own (``--save '' --appendonly no``) so its CPU is this run's alone.
"""

from __future__ import annotations

import sys
from pathlib import Path

import httpx

from bench.chaos.procs import Proc, _env, free_port, redis_answers, redis_server, stop_all
from bench.chaos.waiting import wait_until

__all__ = ["START_S", "Stack", "supervisor_proc", "wait_answers", "wait_capabilities"]

START_S = 60.0
CAPABILITIES = {"noop", "ticks", "paced", "hold"}


async def wait_answers(proc: Proc, url: str, *, ok_below: int = 500) -> None:
    """Until ``url`` answers an HTTP status below ``ok_below`` (``proc`` must stay alive)."""

    async def up() -> bool:
        proc.check()
        try:
            async with httpx.AsyncClient(timeout=2) as client:
                return (await client.get(url)).status_code < ok_below
        except httpx.HTTPError:
            return False

    await wait_until(up, timeout=START_S, what=f"{proc.name} answering {url}")


async def wait_capabilities(proc: Proc, base: str, wanted: set[str]) -> None:
    """Until the supervisor at ``base`` offers every capability in ``wanted``."""

    async def sees() -> bool:
        proc.check()
        try:
            async with httpx.AsyncClient(timeout=2) as client:
                body = (await client.get(base + "/v1/capabilities")).json()
        except (httpx.HTTPError, ValueError):
            return False
        return wanted <= set(body.get("capabilities") or {})

    await wait_until(sees, timeout=START_S, what=f"{proc.name} offering {sorted(wanted)}")


def supervisor_proc(
    name: str,
    port: int,
    store: str,
    workers: list[str],
    log: Path,
    prefix: str = "bench",
    *,
    held_limits: bool = False,
) -> Proc:
    """``held_limits``: how many jobs it holds while they wait for a worker is the default
    (``FLEET_WAITING_LIMIT``), as a user's supervisor has; else unbounded, so throughput is
    never the limit's."""
    env = _env(
        {
            "FLEET_HOST": "127.0.0.1",
            "FLEET_PORT": str(port),
            "FLEET_REDIS_URL": store,
            "FLEET_WORKERS": ",".join(workers),
            "FLEET_KEY_PREFIX": prefix,
            "FLEET_LOG_LEVEL": "WARNING",
            "FLEET_QUEUE_LIMIT": "1000000",
            "FLEET_WAITING_LIMIT": "1000000",
            "FLEET_MAX_CONNECTIONS": "8192",  # 1,000 watchers and the submit lanes at once
        }
    )
    if held_limits:
        env.pop("FLEET_WAITING_LIMIT")
    return Proc(name, [sys.executable, "-m", "supervisor.server"], env, log)


class Stack:
    """Every long-lived process of a run; ``async with`` starts them and stops them all."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[Proc] = []
        binary = redis_server()
        if binary is None:
            raise RuntimeError("redis-server is not installed (the bench runs its own)")
        self.redis_port = free_port()
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}"
        self.redis = self._add(
            "redis",
            [binary, "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(workdir)],
            {},
        )  # fmt: skip
        self.echo_url, self.echo = self._worker("echo", "workers.echo")
        self.ticks_url, self.ticks = self._worker("ticks", "bench.speed.ticks_worker")
        bare_port = free_port()
        self.bare_url = f"http://127.0.0.1:{bare_port}/mcp"
        self.bare = self._add(
            "bare", [sys.executable, "-m", "bench.speed.bare_worker", str(bare_port)], {}
        )
        workers = [self.echo_url, self.ticks_url]
        self.base: dict[str, str] = {}
        self.supervisors: dict[str, Proc] = {}
        for store, url in (("memory", "memory://"), ("redis", self.redis_url + "/0")):
            port = free_port()
            self.base[store] = f"http://127.0.0.1:{port}"
            proc = supervisor_proc(f"supervisor-{store}", port, url, workers, self._log(store))
            self.supervisors[store] = proc
            self.procs.append(proc)

    def _log(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    def _add(self, name: str, args: list[str], extra: dict[str, str]) -> Proc:
        proc = Proc(name, args, _env(extra), self._log(name))
        self.procs.append(proc)
        return proc

    def _worker(self, name: str, module: str) -> tuple[str, Proc]:
        port = free_port()
        args = [sys.executable, "-m", module, "--host", "127.0.0.1", "--port", str(port)]
        return f"http://127.0.0.1:{port}/mcp", self._add(name, args, {})

    def redis_db(self, db: int) -> str:
        return f"{self.redis_url}/{db}"

    def pid(self, proc: Proc) -> int:
        assert proc.p is not None
        return proc.p.pid

    async def __aenter__(self) -> Stack:
        try:
            for proc in self.procs:
                proc.start()
            await self._wait_redis()
            await wait_answers(self.echo, self.echo_url.replace("/mcp", "/health"), ok_below=300)
            await wait_answers(self.ticks, self.ticks_url.replace("/mcp", "/health"), ok_below=300)
            await wait_answers(self.bare, self.bare_url)
            for store, proc in self.supervisors.items():
                await wait_capabilities(proc, self.base[store], CAPABILITIES)
        except BaseException:
            self.stop()
            raise
        return self

    async def _wait_redis(self) -> None:
        await redis_answers(self.redis, self.redis_url, timeout=START_S)

    async def __aexit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        stop_all(self.procs)
