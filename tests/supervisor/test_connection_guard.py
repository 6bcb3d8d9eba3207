"""The supervisor's HTTP server under connection abuse, over real sockets (shared.connections).

Slowloris, a header flood, a stalled body, and more connections than the cap: the attackers
are cut or refused, and another client is still answered while the attack runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from shared import SupervisorSettings
from shared.connections import ConnectionLimits
from shared.serving import Running, loopback_socket, serving
from supervisor.app import create_app
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e

LIMITS = ConnectionLimits(
    max_connections=64, max_header_bytes=8 * 1024, header_timeout_s=1.0, body_timeout_s=1.0
)
ANSWER_BOUND_S = 1.0
"""How long another client may wait for an answer during an attack (generous: it is ~ms)."""


@contextlib.asynccontextmanager
async def supervisor(limits: ConnectionLimits = LIMITS) -> AsyncIterator[tuple[Running, int]]:
    sock = loopback_socket()
    app = create_app(SupervisorSettings(redis_url="memory://", workers=""))
    async with serving(app, sockets=[sock], limits=limits) as running:
        yield running, int(sock.getsockname()[1])


def open_connections(running: Running) -> int:
    return len(running.server.server_state.connections)


async def timed_get(url: str) -> tuple[int, float]:
    """A normal client on its own connection: the status and the seconds it took."""
    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=5) as http:
        response = await http.get(url + "/healthz")
    return response.status_code, time.perf_counter() - started


async def read_status(reader: asyncio.StreamReader) -> str:
    """The status line the server sent before closing ('' when it closed without one)."""
    with contextlib.suppress(ConnectionError):
        return (await reader.readline()).decode().strip()
    return ""


async def trickle(writer: asyncio.StreamWriter, data: bytes, pace_s: float) -> None:
    """Send ``data`` one byte at a time (the attack's pace, not a wait for anything)."""
    with contextlib.suppress(ConnectionError):
        for i in range(len(data)):
            writer.write(data[i : i + 1])
            await writer.drain()
            await asyncio.sleep(pace_s)


async def test_slowloris_is_cut_at_the_header_deadline_and_others_are_answered() -> None:
    request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 200 + b"\r\n\r\n"
    async with supervisor() as (running, port):
        url = running.url
        started = time.perf_counter()
        slow = [await asyncio.open_connection("127.0.0.1", port) for _ in range(40)]
        tricklers = [asyncio.create_task(trickle(w, request, 0.05)) for _, w in slow]
        try:
            await wait_until(lambda: open_connections(running) >= 40, message="40 slow conns")
            # While every slow connection is still sending its headers, another client is
            # answered at once.
            status, took = await timed_get(url)
            assert status == 200
            assert took < ANSWER_BOUND_S, f"answered in {took:.3f}s during a slowloris"
            statuses = await asyncio.wait_for(
                asyncio.gather(*(read_status(r) for r, _ in slow)), timeout=10
            )
            cut_after = time.perf_counter() - started
        finally:
            for task in tricklers:
                task.cancel()
            for _, writer in slow:
                writer.close()
        assert set(statuses) == {"HTTP/1.1 408 Request Timeout"}
        # Each was cut at its 1-s deadline: 10+ s of trickling did not keep them open.
        assert LIMITS.header_timeout_s <= cut_after < 5, cut_after
        await wait_until(lambda: open_connections(running) == 0, message="slow conns gone")
        print(f"\nslowloris: normal request answered in {took * 1000:.1f} ms; cut {cut_after:.2f}s")


async def test_a_silent_connection_is_closed_without_an_answer() -> None:
    async with supervisor() as (running, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            assert await asyncio.wait_for(read_status(reader), timeout=5) == ""
        finally:
            writer.close()
        await wait_until(lambda: open_connections(running) == 0, message="the server let go")


async def test_a_header_flood_gets_431_and_never_reaches_the_app() -> None:
    async with supervisor() as (running, port):
        # Over the limit in one header: refused with 431.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 9000)
        await writer.drain()
        assert await asyncio.wait_for(read_status(reader), 5) == (
            "HTTP/1.1 431 Request Header Fields Too Large"
        )
        writer.close()
        # 8 MB of headers: the server closes the connection long before the end.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        sent = 0
        with contextlib.suppress(ConnectionError):
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            for i in range(8 * 1024):
                line = b"X-Pad-%d: %s\r\n" % (i, b"a" * 1000)
                writer.write(line)
                await asyncio.wait_for(writer.drain(), 5)
                sent += len(line)
            writer.write(b"\r\n")
            await writer.drain()
        writer.close()
        assert sent < 8 * 1024 * 1000, "the server read 8 MB of headers"
        # Just under the limit still passes, and the server still answers others.
        async with httpx.AsyncClient(timeout=5) as http:
            ok = await http.get(running.url + "/healthz", headers={"X-Big": "a" * 7000})
        assert ok.status_code == 200
        status, took = await timed_get(running.url)
        assert status == 200 and took < ANSWER_BOUND_S


async def test_a_stalled_body_is_cut_but_a_slow_honest_one_is_not() -> None:
    async with supervisor() as (_, port):
        head = (
            b"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
        )
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head + b'{"capability"')
        await writer.drain()
        started = time.perf_counter()
        with contextlib.suppress(ConnectionError):
            assert await asyncio.wait_for(reader.read(), timeout=10) == b""  # closed, no answer
        stalled = time.perf_counter() - started
        writer.close()
        assert LIMITS.body_timeout_s * 0.9 <= stalled < 5, stalled
        # A body that keeps coming, each piece well within the deadline, though the whole
        # takes longer than it: answered (422: no worker serves "noop" here). Its pieces are
        # each larger than the header limit, which counts header bytes only.
        body = b'{"capability": "noop", "input": {"x": "' + b"a" * 40_000 + b'"}}'
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head.replace(b"100", str(len(body)).encode()))
        quarter = len(body) // 4
        pieces = [body[i * quarter : (i + 1) * quarter] for i in range(3)] + [body[3 * quarter :]]
        for piece in pieces:
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(LIMITS.body_timeout_s * 0.4)  # the client's pace under test
        status = await asyncio.wait_for(read_status(reader), 5)
        writer.close()
        assert status.startswith("HTTP/1.1 422"), status


async def test_connections_over_the_cap_are_refused_at_once() -> None:
    limits = ConnectionLimits(max_connections=8, header_timeout_s=30.0)
    async with supervisor(limits) as (running, port):
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(8)]
        try:
            await wait_until(lambda: open_connections(running) == 8, message="8 held")
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            assert await asyncio.wait_for(read_status(reader), 5) == (
                "HTTP/1.1 503 Service Unavailable"
            )
            writer.close()
            assert open_connections(running) == 8
        finally:
            held.pop()[1].close()
        # One slot free again: the next client gets in.

        async def answered() -> Any:
            with contextlib.suppress(httpx.HTTPError):
                return (await timed_get(running.url))[0] == 200
            return False

        try:
            await wait_until(answered, timeout=5, message="a free slot")
        finally:
            for _, writer in held:
                writer.close()
