"""Real processes for the chaos suite: a private Redis, ledger workers and supervisors.

A :class:`Fleet` owns one scenario's processes, on ports fixed when it starts (so a restarted
process comes back at the same address): one ``redis-server`` of its own (AOF, ``appendfsync
always``, in the fleet's work dir; never the shared Redis), ledger worker replicas that
de-duplicate through that Redis and register themselves as compose runs them, and supervisor
replicas (``python -m supervisor.server``). Leaving the fleet stops and reaps every process it
started, paused ones included.

All on loopback, or, given a :class:`~bench.chaos.netns.Network`, each process on a host of
its own (a network namespace) so that a link can be cut. Off loopback the bind rules apply:
the supervisors take an API token (which the fleet's clients send) and supervisors and
workers share a worker token.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import redis.asyncio as aioredis

from bench.chaos.netns import Host, Network
from bench.chaos.waiting import wait_until
from shared.serving import free_port

__all__ = [
    "KEY_PREFIX",
    "ROOT",
    "Fleet",
    "Proc",
    "Service",
    "free_port",
    "redis_server",
    "stop_all",
]

ROOT = Path(__file__).resolve().parents[2]
KEY_PREFIX = "chaos"
_START_S = 40.0
"""How long a process may take to become healthy (imports alone take ~1.5 s on 2 cores)."""
_API_TOKEN = "chaos-api-token"
_WORKER_TOKEN = "chaos-worker-token"


def redis_server() -> str | None:
    return shutil.which("redis-server")


def _env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLEET_", "OTEL_"))}
    env.update(
        FASTMCP_CHECK_FOR_UPDATES="off",
        FASTMCP_SHOW_SERVER_BANNER="false",
        PYTHONUNBUFFERED="1",
        OTEL_TRACES_EXPORTER="none",
        FLEET_LOG_FORMAT="json",
    )
    env.update(extra)
    return env


class Proc:
    """One OS process, its log appended to a file; every incarnation is reaped."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.args = args
        self.env = env
        self.log = log
        self.p: subprocess.Popen[bytes] | None = None
        self.paused = False
        self.incarnation = 0

    def start(self) -> Proc:
        if self.alive:
            raise RuntimeError(f"{self.name} is already running")
        with open(self.log, "ab") as out:
            out.write(f"--- start #{self.incarnation + 1} at {time.time():.3f}\n".encode())
            out.flush()
            self.p = subprocess.Popen(
                self.args,
                env=self.env,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.incarnation += 1
        self.paused = False
        return self

    @property
    def alive(self) -> bool:
        return self.p is not None and self.p.poll() is None

    def check(self) -> None:
        """Raise with the log's tail if the process has exited."""
        if self.p is not None and self.p.poll() is not None:
            tail = self.log.read_text(errors="replace").splitlines()[-15:]
            raise RuntimeError(f"{self.name} exited with {self.p.returncode}:\n" + "\n".join(tail))

    def kill9(self) -> None:
        if self.p is not None and self.p.poll() is None:
            self.p.send_signal(signal.SIGKILL)
            self.p.wait(10)
        self.paused = False

    def pause(self) -> None:
        if self.p is not None and self.p.poll() is None:
            self.p.send_signal(signal.SIGSTOP)
            self.paused = True

    def resume(self) -> None:
        if self.p is not None and self.p.poll() is None:
            self.p.send_signal(signal.SIGCONT)
        self.paused = False

    def terminate(self) -> None:
        """Ask it to stop (SIGCONT first when paused); :meth:`stop` waits for it."""
        if self.p is not None and self.p.poll() is None:
            if self.paused:
                self.resume()
            self.p.terminate()

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after ``grace_s``; always reaped."""
        if self.p is None:
            return
        self.terminate()
        try:
            self.p.wait(grace_s)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait(10)
        self.paused = False


def stop_all(procs: list[Proc]) -> None:
    """Stop several processes at once (SIGTERM to all, then wait for each)."""
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.stop()


class Service:
    """A process at a fixed address and port (loopback, or its ``host``), restartable there."""

    def __init__(self, proc: Proc, port: int, health: str, host: Host | None = None) -> None:
        self.proc = proc
        self.port = port
        self.host = host
        self.url = f"http://{host.ip if host else '127.0.0.1'}:{port}"
        self.health = self.url + health

    @property
    def name(self) -> str:
        return self.proc.name


class Fleet:
    """Redis, ``workers`` ledger workers and ``supervisors`` supervisors, in ``workdir``."""

    def __init__(
        self,
        workdir: Path,
        *,
        workers: int,
        supervisors: int,
        supervisor_env: Mapping[str, str],
        network: Network | None = None,
    ) -> None:
        self.workdir = workdir
        self.logs = workdir / "logs"
        self.ledger = workdir / "ledger.jsonl"
        self.network = network
        self.headers = {"authorization": f"Bearer {_API_TOKEN}"} if network else {}
        """What every request to a supervisor carries."""
        # Ports stay distinct across hosts too: the ledger tells workers apart by port.
        self.redis_port = free_port()
        self._redis_host = self._host("redis")
        address = self._redis_host.ip if self._redis_host else "127.0.0.1"
        self.redis_url = f"redis://{address}:{self.redis_port}/0"
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(3.0, connect=1.0), headers=self.headers)
        self.redis = self._redis_proc()
        self.workers = [self._worker(i) for i in range(workers)]
        self.supervisors = [self._supervisor(i, supervisor_env) for i in range(supervisors)]
        self.rotation: set[str] = {s.url for s in self.supervisors}
        """Supervisor URLs the load generator sends to (a paused one is taken out)."""

    # -- building ----------------------------------------------------------------------------

    def _host(self, name: str) -> Host | None:
        return self.network.add_host(name) if self.network else None

    def _redis_proc(self) -> Proc:
        binary = redis_server()
        if binary is None:
            raise RuntimeError("redis-server is not installed (the chaos suite runs its own)")
        data = self.workdir / "redis"
        data.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        host = self._redis_host
        args = [
            binary,
            "--port", str(self.redis_port),
            "--bind", host.ip if host else "127.0.0.1",
            "--save", "",
            "--appendonly", "yes",
            "--appendfsync", "always",
            "--dir", str(data),
        ]  # fmt: skip
        if host:  # a client from another host, without a password: the test network's own
            args += ["--protected-mode", "no"]
        return Proc("redis", _inside(host, args), dict(os.environ), self.logs / "redis.log")

    def _worker(self, i: int) -> Service:
        name, port = f"worker-{i + 1}", free_port()
        host = self._host(name)
        address = host.ip if host else "127.0.0.1"
        args = [
            sys.executable, "-m", "bench.chaos.ledger_worker",
            "--ledger", str(self.ledger), "--host", address, "--port", str(port),
        ]  # fmt: skip
        extra = {"FLEET_WORKER_TOKEN": _WORKER_TOKEN} if host else {}
        env = _env(
            {
                "FLEET_REDIS_URL": self.redis_url,
                "FLEET_ADVERTISE_URL": f"http://{address}:{port}/mcp",
                "FLEET_KEY_PREFIX": KEY_PREFIX,
                **extra,
            }
        )
        proc = Proc(name, _inside(host, args), env, self.logs / f"{name}.log")
        return Service(proc, port, "/health", host)

    def _supervisor(self, i: int, extra: Mapping[str, str]) -> Service:
        letter, port = "ABCD"[i], free_port()
        host = self._host(f"supervisor-{letter.lower()}")
        tokens = (
            {"FLEET_API_TOKENS": f"chaos={_API_TOKEN}", "FLEET_WORKER_TOKEN": _WORKER_TOKEN}
            if host
            else {}
        )
        env = _env(
            {
                "FLEET_HOST": host.ip if host else "127.0.0.1",
                "FLEET_PORT": str(port),
                "FLEET_REDIS_URL": self.redis_url,
                "FLEET_KEY_PREFIX": KEY_PREFIX,
                **tokens,
                **extra,
            }
        )
        proc = Proc(
            f"supervisor-{letter}",
            _inside(host, [sys.executable, "-m", "supervisor.server"]),
            env,
            self.logs / f"supervisor-{letter}.log",
        )
        return Service(proc, port, "/healthz", host)

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Fleet:
        try:
            await self.start_redis()
            for service in [*self.workers, *self.supervisors]:
                service.proc.start()
            for service in [*self.workers, *self.supervisors]:
                await self.wait_healthy(service)
            for sup in self.supervisors:
                await self.wait_sees_workers(sup)
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        try:
            self.stop_supervisors()
            stop_all([w.proc for w in self.workers])
            self.redis.stop()
        finally:
            await self.http.aclose()

    def stop_supervisors(self) -> None:
        stop_all([s.proc for s in self.supervisors])

    # -- faults and restarts -------------------------------------------------------------------

    async def start_redis(self) -> None:
        self.redis.start()
        await redis_answers(self.redis, self.redis_url, timeout=_START_S)

    async def restart(self, service: Service) -> None:
        """Start ``service`` again at its port (after a kill) and wait until it is healthy."""
        service.proc.start()
        await self.wait_healthy(service)

    async def wait_healthy(self, service: Service) -> None:
        async def up() -> bool:
            service.proc.check()
            return await self.get_json(service.health) is not None

        await wait_until(up, timeout=_START_S, what=f"{service.name} healthy")

    async def wait_sees_workers(self, sup: Service, timeout: float = _START_S) -> None:
        """Until ``sup`` lists every worker healthy, serving both ledger tools."""
        wanted = {f"{w.url}/mcp" for w in self.workers}

        async def sees() -> bool:
            sup.proc.check()
            body = await self.get_json(f"{sup.url}/v1/workers")
            if not isinstance(body, dict):
                return False
            ready = {
                w.get("url")
                for w in body.get("workers", [])
                if w.get("healthy") and {"ledger_idem", "ledger_once"} <= set(w["capabilities"])
            }
            return wanted <= ready

        await wait_until(sees, timeout=timeout, what=f"{sup.name} to see every worker healthy")

    async def held(self, sup: Service) -> int | None:
        """Jobs ``sup`` holds right now (``GET /v1/queues``), None when it does not answer."""
        body = await self.get_json(f"{sup.url}/v1/queues")
        if isinstance(body, dict) and isinstance(body.get("held_by_this_supervisor"), int):
            return int(body["held_by_this_supervisor"])
        return None

    async def ready(self, sup: Service) -> bool:
        return await self.get_json(f"{sup.url}/readyz") is not None

    async def get_json(self, url: str) -> Any:
        """The JSON of a 200 answer to a control-plane GET, or None (any failure)."""
        try:
            response = await self.http.get(url)
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        try:
            return response.json()
        except ValueError:
            return None


def _inside(host: Host | None, args: list[str]) -> list[str]:
    return host.run(args) if host else args


async def redis_answers(proc: Proc, url: str, *, timeout: float) -> None:
    """Wait until the ``redis-server`` run by ``proc`` answers PING at ``url``."""
    client = aioredis.Redis.from_url(url, socket_connect_timeout=1)

    async def pong() -> bool:
        proc.check()
        try:
            return bool(await client.ping())
        except (aioredis.RedisError, OSError):
            return False

    try:
        await wait_until(pong, timeout=timeout, what="redis-server answering PING")
    finally:
        await client.aclose()
