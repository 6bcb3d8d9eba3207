"""``python -m workers.<name>`` as real processes: serving, SIGTERM drain, clean exit."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastmcp import Client

from shared.serving import free_port
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def worker_process(name: str, port: int, *extra: str) -> Iterator[subprocess.Popen[str]]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FLEET_")},
        "FASTMCP_CHECK_FOR_UPDATES": "off",
        "FASTMCP_SHOW_SERVER_BANNER": "false",
        "FLEET_LOG_FORMAT": "json",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", f"workers.{name}", "--host", "127.0.0.1", "--port", str(port),
         *extra],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


async def healthy(port: int) -> bool:
    try:
        async with httpx.AsyncClient(timeout=1) as http:
            return (await http.get(f"http://127.0.0.1:{port}/health")).status_code == 200
    except httpx.HTTPError:
        return False


async def exited(proc: subprocess.Popen[str], timeout: float) -> int:
    code = await wait_until(lambda: proc.poll() is not None, timeout, message="exit")
    assert code
    return proc.returncode


async def test_sigterm_drains_an_in_flight_call_then_exits_cleanly() -> None:
    port = free_port()
    with worker_process("echo", port, "--grace-s", "15") as proc:
        await wait_until(lambda: healthy(port), 30, message="worker up")
        async with Client(f"http://127.0.0.1:{port}/mcp") as client:
            # The client lists the tools after a result whose output schema it has not seen: a
            # second request that would race the server's shutdown. Seen now, before the call.
            await client.list_tools()
            started = asyncio.Event()

            async def on_progress(*_: Any) -> None:
                started.set()

            call = asyncio.create_task(
                client.call_tool("sleep", {"seconds": 1.0, "steps": 10},
                                 progress_handler=on_progress)
            )  # fmt: skip
            await asyncio.wait_for(started.wait(), 10)
            proc.send_signal(signal.SIGTERM)
            result = await asyncio.wait_for(call, 15)
        assert result.data == {"slept": 1.0}
        assert await exited(proc, 20) == 0
        out, err = proc.communicate(timeout=5)
    assert out == ""  # logs go to stderr; stdout stays clean
    assert "worker.started" in err and "worker.draining" in err and "worker.stopped" in err


@pytest.mark.parametrize("name", ["data", "text"])
async def test_data_and_text_workers_serve_on_the_given_port(name: str) -> None:
    port = free_port()
    with worker_process(name, port) as proc:
        await wait_until(lambda: healthy(port), 30, message=f"{name} up")
        async with Client(f"http://127.0.0.1:{port}/mcp") as client:
            caps = (await client.call_tool("get_capabilities", {})).structured_content
        assert caps is not None and caps["service_name"] == name
        proc.send_signal(signal.SIGTERM)
        assert await exited(proc, 20) == 0
