"""The progress measurement's watchers: in one process unless asked to spread, and the lean
client reads every event of the supervisor's own frames."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from bench.speed.progress import PER_PROCESS, _Watcher, processes_for
from shared import Event, Progress
from supervisor.api.jobs import _frame


def test_watchers_spread_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BENCH_WATCHER_PROCESSES", raising=False)
    assert processes_for(100) == 1  # the default: comparable with earlier runs
    monkeypatch.setenv("BENCH_WATCHER_PROCESSES", "4")
    assert [processes_for(n) for n in (1, PER_PROCESS, 2 * PER_PROCESS, 100 * PER_PROCESS)] == [
        1, 1, 2, 4,
    ]  # fmt: skip
    monkeypatch.setenv("BENCH_WATCHER_PROCESSES", "auto")
    assert processes_for(100 * PER_PROCESS) == (os.cpu_count() or 1)


async def _serve_once(body_parts: list[bytes], status: int = 200) -> tuple[asyncio.Server, str]:
    """A one-response HTTP server: the parts as chunks of a chunked body, one write each."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(f"HTTP/1.1 {status} X\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
        for part in body_parts:
            writer.write(b"%x\r\n%s\r\n" % (len(part), part))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


def _stream(n: int) -> bytes:
    """A job's stream as the supervisor frames it: n progress events, then done."""
    now = time.time()
    events = [
        Event(seq=i + 1, type="progress", job_id="a" * 32, correlation_id="c", ts=now,
              data=Progress(progress=i, total=n, message=repr(now - 0.001)).model_dump())
        for i in range(n)
    ]  # fmt: skip
    events.append(Event(seq=n + 1, type="done", job_id="a" * 32, correlation_id="c", ts=now))
    return b"".join(_frame(event) for event in events)


async def test_lean_watcher_reads_every_event_of_a_real_frame_in_any_split() -> None:
    raw = _stream(50)
    parts = [raw[i : i + 97] for i in range(0, len(raw), 97)]  # events split mid-frame
    server, base = await _serve_once(parts)
    async with server:
        watcher = _Watcher()
        await watcher.watch(base, "a" * 32)
    assert watcher.connected and watcher.done_at > 0
    assert len(watcher.emit_ms) == len(watcher.append_ms) == 50
    assert all(ms >= 0 for ms in watcher.append_ms)
    assert all(a > b for a, b in zip(watcher.emit_ms, watcher.append_ms, strict=True))


async def test_lean_watcher_fails_on_a_refused_stream() -> None:
    server, base = await _serve_once([b"{}"], status=404)
    async with server:
        with pytest.raises(RuntimeError, match="404"):
            await _Watcher().watch(base, "a" * 32)
