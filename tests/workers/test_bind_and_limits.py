"""A worker's bind rule (no non-loopback bind without a token) and its connection guard."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from shared.hosts import InsecureBind
from shared.serving import free_port
from shared.settings import WorkerSettings
from workers import echo
from workers.kit.server import check_worker_bind

ROOT = Path(__file__).resolve().parents[2]


def settings(**kw: Any) -> WorkerSettings:
    base: dict[str, Any] = {"redis_url": None, "advertise_url": None, "worker_token": None}
    return WorkerSettings(**{**base, "insecure": False, **kw})


def test_a_non_loopback_bind_needs_a_token_or_insecure() -> None:
    for host in ("0.0.0.0", "::", "10.0.0.7", "worker.example"):
        with pytest.raises(InsecureBind, match="FLEET_WORKER_TOKEN") as refused:
            check_worker_bind(settings(host=host))
        message = refused.value.message
        assert refused.value.code == 4  # the start-up code of a bad token setting
        assert message.startswith(f"refusing to bind {host}:8701 without a worker token")
        assert "--insecure" in message and "\n" not in message
        check_worker_bind(settings(host=host, worker_token="s3cret"))
        check_worker_bind(settings(host=host, insecure=True))
    for host in ("127.0.0.1", "127.0.0.9", "localhost", "::1", "[::1]"):
        check_worker_bind(settings(host=host))


async def test_serve_applies_the_rule_to_the_host_it_binds() -> None:
    worker = echo.build(settings())
    with pytest.raises(InsecureBind):
        await worker.serve(host="0.0.0.0", port=0)


@pytest.mark.e2e
def test_the_process_refuses_in_one_line() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    done = subprocess.run(
        [sys.executable, "-m", "workers.echo", "--host", "0.0.0.0", "--port", str(free_port())],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 4  # bad token settings (shared/startup.py)
    lines = done.stderr.strip().splitlines()
    expected = "python -m workers.echo: refusing to bind 0.0.0.0:"
    assert len(lines) == 1 and lines[0].startswith(expected), done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.e2e
async def test_the_worker_serves_under_the_connection_guard() -> None:
    """The worker's settings reach its server: a silent connection is closed at the header
    deadline, and one over the cap is refused at once."""
    worker = echo.build(settings(header_timeout_s=0.5, max_connections=2))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    async with worker.serving(sockets=[sock]):
        silent = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"HTTP/1.1 503")
        writer.close()
        for reader, writer in silent:
            assert await asyncio.wait_for(reader.read(), 5) == b""  # closed at 0.5 s
            writer.close()
