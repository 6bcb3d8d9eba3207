"""``fleet watch`` survives a dropped connection: it resumes with Last-Event-ID, and the
events it prints have no gap and no duplicate.

A TCP proxy between the CLI and the supervisor cuts the first event stream in the middle of
an event (after its ``id:`` line, before the blank line that completes it), also when that
stream is not the first request on its connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
from typer.testing import CliRunner

from supervisor.cli import app
from supervisor.client import FleetApi
from tests.cli.conftest import CliFleet

CUT_INSIDE_EVENT = 4


@dataclass
class Proxy:
    upstream_port: int
    requests: list[bytes] = field(default_factory=list)
    cuts: int = 0
    handlers: set[asyncio.Task[None]] = field(default_factory=set)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        try:
            await self._relay(reader, writer)
        finally:
            self.handlers.discard(task)
            writer.close()

    async def close(self) -> None:
        """Stop every relay still open (a keep-alive connection waits for its next request)."""
        for task in list(self.handlers):
            task.cancel()
        await asyncio.gather(*self.handlers, return_exceptions=True)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            up_writer.close()
            return
        cut = self._cuts(head)
        up_writer.write(head)
        await up_writer.drain()
        seen = b""

        async def client_to_upstream() -> None:
            nonlocal cut, seen
            with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
                while data := await reader.read(65536):
                    # The next request on a kept-alive connection (after a GET of the job, say):
                    # HTTP/1.1 without pipelining, so the previous answer has ended.
                    if data.startswith((b"GET ", b"POST ")) and self._cuts(data):
                        cut, seen = True, b""
                    up_writer.write(data)
                    await up_writer.drain()

        pump = asyncio.create_task(client_to_upstream())
        marker = f"id: {CUT_INSIDE_EVENT}\r\n".encode()
        try:
            while data := await up_reader.read(65536):
                if cut:
                    seen += data
                    if marker in seen:  # forward up to the middle of that event, then drop
                        end = seen.index(marker) + len(marker)
                        already = len(seen) - len(data)
                        writer.write(data[: max(0, end - already)])
                        await writer.drain()
                        writer.transport.abort()
                        return
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            pump.cancel()
            up_writer.close()
            writer.close()

    def _cuts(self, request: bytes) -> bool:
        """Note a request's head; whether its answer is the stream to cut (the first one)."""
        head = request.split(b"\r\n\r\n")[0] + b"\r\n\r\n"
        self.requests.append(head)
        if b"/events" in head.split(b"\r\n")[0] and self.cuts == 0:
            self.cuts += 1
            return True
        return False

    def last_event_ids(self) -> list[str | None]:
        out: list[str | None] = []
        for head in self.requests:
            if b"/events" not in head.split(b"\r\n")[0]:
                continue
            found = None
            for line in head.decode().split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.lower() == "last-event-id":
                    found = value.strip()
            out.append(found)
        return out


@contextlib.asynccontextmanager
async def proxy_to(url: str) -> AsyncIterator[tuple[str, Proxy]]:
    proxy = Proxy(int(url.rsplit(":", 1)[1]))
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", proxy
    finally:
        server.close()
        await proxy.close()
        await server.wait_closed()


def _with_proxy(cli_fleet: CliFleet) -> tuple[str, Proxy, contextlib.AsyncExitStack]:
    stack = contextlib.AsyncExitStack()

    async def start() -> tuple[str, Proxy]:
        return await stack.enter_async_context(proxy_to(cli_fleet.url))

    url, proxy = cli_fleet.bg.run(start())
    return url, proxy, stack


def test_watch_json_resumes_without_gap_or_duplicate(cli_fleet: CliFleet) -> None:
    job_id = cli_fleet.submit("progress", {"steps": 20, "delay_ms": 10})
    url, proxy, stack = _with_proxy(cli_fleet)
    try:
        result = CliRunner().invoke(app, ["--url", url, "--json", "watch", job_id])
    finally:
        cli_fleet.bg.run(stack.aclose())
    assert result.exit_code == 0, result.output
    seqs = [json.loads(line)["seq"] for line in result.stdout.splitlines()]
    assert seqs == list(range(1, len(seqs) + 1)), seqs  # no gap, no duplicate
    assert len(seqs) >= 20 + 3  # queued, running, 20 progress, succeeded, done
    assert proxy.cuts == 1
    # The first stream died inside event 4: the watcher resumed after event 3, which it had.
    assert proxy.last_event_ids() == [None, str(CUT_INSIDE_EVENT - 1)]


def test_watch_human_output_survives_the_drop(cli_fleet: CliFleet) -> None:
    job_id = cli_fleet.submit("progress", {"steps": 10, "delay_ms": 10})
    url, _, stack = _with_proxy(cli_fleet)
    try:
        result = CliRunner().invoke(app, ["--url", url, "watch", job_id])
    finally:
        cli_fleet.bg.run(stack.aclose())
    assert result.exit_code == 0, result.output
    assert "connection lost" in result.stdout and "resuming after event 3" in result.stdout
    assert result.stdout.count("100%  step 10/10") == 1
    assert '"steps": 10' in result.stdout


async def test_events_never_yield_a_partial_event() -> None:
    """A stream that ends inside an event: the client yields the whole events before it, then
    resumes after the last of them; the cut one (its ``data`` is not even JSON) is never read.
    """
    last_event_ids: list[str | None] = []
    first = b': ping\nid: 1\nevent: status\ndata: {"seq": 1, "type": "status"}\n\nid: 2\ndata: {'
    rest = (
        b'id: 2\ndata: {"seq": 2, "type": "status"}\n\nid: 3\ndata: {"seq": 3, "type": "done"}\n\n'
    )

    async def bytewise(raw: bytes) -> AsyncIterator[bytes]:
        for i in range(len(raw)):
            yield raw[i : i + 1]

    def handler(request: httpx.Request) -> httpx.Response:
        last_event_ids.append(request.headers.get("Last-Event-ID"))
        body = first if len(last_event_ids) == 1 else rest
        return httpx.Response(200, content=bytewise(body))

    transport = httpx.MockTransport(handler)
    async with FleetApi("http://fleet", transport=transport) as api:
        seqs = [event["seq"] async for event in api.events("j1")]
    assert seqs == [1, 2, 3]
    assert last_event_ids == [None, "1"]


def test_ctrl_c_detaches_without_cancelling(cli_fleet: CliFleet) -> None:
    import os
    import signal
    import subprocess
    import sys

    job_id = cli_fleet.submit("sleep", {"seconds": 30, "steps": 60})
    cli_fleet.wait_running(job_id)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "supervisor", "--url", cli_fleet.url, "watch", job_id],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        assert "running on" in proc.stdout.readline()  # following the live stream
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    assert err.strip() == (
        f"detached from job {job_id}; it keeps running "
        f"(follow it: fleet watch {job_id}; stop it: fleet cancel {job_id})"
    )
    assert cli_fleet.job(job_id)["status"] == "running"
    cli_fleet.http.post(f"/v1/jobs/{job_id}/cancel")
