"""Real processes for end-to-end tests: workers and supervisors, started and reaped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import redis

from shared.serving import free_port
from tests.helpers import wait_until_sync

ROOT = Path(__file__).resolve().parent.parent


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    env.update(
        FASTMCP_CHECK_FOR_UPDATES="off",
        FASTMCP_SHOW_SERVER_BANNER="false",
        FLEET_LOG_FORMAT="json",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


class Proc:
    def __init__(
        self,
        args: list[str],
        env: dict[str, str],
        url: str,
        health: str,
        log: Path | None = None,
    ) -> None:
        """``log``: a file the process's output goes to (else it is dropped), for a test to
        show what the process said when it fails (:meth:`said`)."""
        self.url = url
        self.health = health
        self.log = log
        with open(log, "ab") if log is not None else open(os.devnull, "wb") as out:
            self.p = subprocess.Popen(args, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)

    def said(self, about: str, lines: int = 40) -> str:
        """The last ``lines`` lines of its log that mention ``about``."""
        if self.log is None or not self.log.exists():
            return "(no log kept)"
        text = self.log.read_text(errors="replace").splitlines()
        return "\n".join([line for line in text if about in line][-lines:])

    def healthy(self) -> bool:
        if self.p.poll() is not None:
            raise AssertionError(f"process exited with {self.p.returncode}")
        try:
            return httpx.get(self.health, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_healthy(self, timeout: float = 30) -> Proc:
        wait_until_sync(self.healthy, timeout=timeout, message=f"{self.health} healthy")
        return self

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGKILL)
            self.p.wait(10)

    def stop(self) -> None:
        stop(self.p)


def stop(p: subprocess.Popen[bytes] | subprocess.Popen[str], grace_s: float = 15) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``grace_s``; reaped either way."""
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(grace_s)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)


def worker_env(**env: str) -> dict[str, str]:
    return _env(env)


def process_env(**env: str) -> dict[str, str]:
    """The environment of any fleet process: this one's without ``FLEET_*``, plus ``env``."""
    return _env(env)


@contextmanager
def worker(name: str = "echo", port: int | None = None, **env: str) -> Iterator[Proc]:
    port = port or free_port()
    args = [sys.executable, "-m", f"workers.{name}", "--host", "127.0.0.1", "--port", str(port)]
    proc = Proc(args, _env(env), f"http://127.0.0.1:{port}/mcp", f"http://127.0.0.1:{port}/health")
    try:
        yield proc.wait_healthy()
    finally:
        proc.stop()


def start_supervisor(**env: str) -> Proc:
    port = env.pop("port", None) or str(free_port())
    extra = {"FLEET_HOST": "127.0.0.1", "FLEET_PORT": port, **env}
    url = f"http://127.0.0.1:{port}"
    return Proc([sys.executable, "-m", "supervisor.server"], _env(extra), url, url + "/healthz")


@contextmanager
def supervisor(**env: str) -> Iterator[Proc]:
    proc = start_supervisor(**env)
    try:
        yield proc.wait_healthy()
    finally:
        proc.stop()


@contextmanager
def own_redis(port: int) -> Iterator[subprocess.Popen[bytes]]:
    """A redis-server of the test's own on ``port`` (the shared one is not ours to stop,
    flush or restart), answering when the block starts; killed at its end."""
    with tempfile.TemporaryDirectory(prefix="fleet-redis-") as workdir:
        argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        proc = subprocess.Popen(
            [*argv, "--appendonly", "no", "--dir", workdir],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=port, socket_connect_timeout=0.5)

        def up() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        try:
            wait_until_sync(up, timeout=20, message="redis-server to answer")
            yield proc
        finally:
            client.close()
            proc.kill()
            proc.wait(10)
