"""Test helpers: wait on conditions with a deadline (never fixed sleeps); read event streams."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from shared.sse import ServerSentEvent, SSEParser

T = TypeVar("T")


async def wait_until(
    predicate: Callable[[], Any | Awaitable[Any]],
    timeout: float = 10.0,
    interval: float = 0.01,
    message: str = "condition",
) -> Any:
    """Poll ``predicate`` (sync or async) until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        await asyncio.sleep(interval)


def wait_until_sync(
    predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02, message: str = ""
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message or predicate}")
        time.sleep(interval)


async def aiter_sse(response: httpx.Response) -> AsyncIterator[ServerSentEvent]:
    """The events of a streamed ``text/event-stream`` response (``AsyncClient.stream``)."""
    parser = SSEParser()
    async for chunk in response.aiter_bytes():
        for event in parser.feed(chunk):
            yield event


def iter_sse(response: httpx.Response) -> Iterator[ServerSentEvent]:
    """The events of a streamed ``text/event-stream`` response (``Client.stream``)."""
    parser = SSEParser()
    for chunk in response.iter_bytes():
        yield from parser.feed(chunk)


def run_harness(
    argv: list[str], *, what: str, timeout: float, cwd: Path
) -> subprocess.CompletedProcess[str]:
    """Run a harness that runs its own ``redis-server`` and processes (``python -m bench.X``)
    in its own process group; fail (never skip under ``FLEET_REQUIRE_REDIS=1``) without
    ``redis-server``; on a timeout, stop it and everything it started, then fail."""
    if shutil.which("redis-server") is None:
        if os.environ.get("FLEET_REQUIRE_REDIS") == "1":
            pytest.fail(f"{what} needs redis-server (it runs its own)")
        pytest.skip("redis-server is not installed")
    with subprocess.Popen(
        [sys.executable, *argv],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: nothing it started can outlive it
    ) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.terminate()  # the harness stops every process it started
            try:
                proc.communicate(timeout=60)
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"{what} took over {timeout}s")
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


ECHO_ITEMS = ["a", "b", "c", "d", "e"]
ECHO_FLOW: dict[str, Any] = {
    "name": "echoes",
    "input": {"items": ECHO_ITEMS},
    "steps": {
        "first": {"capability": "echo", "input": {"value": "$.input.items"}},
        "each": {
            "capability": "echo",
            "map": "$.steps.first.result.value",
            "concurrency": 2,
            "input": {"value": "$.item"},
        },
        "last": {"capability": "noop", "after": ["each"], "input": {}},
    },
    "output": {"echoed": "$.steps.each.results[*].value", "last": "$.steps.last.result"},
}
"""A workflow over the echo worker (chain, map, fan-in) the CLI and client tests run."""
