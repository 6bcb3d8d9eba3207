"""Every server of the fleet answers without Nagle's delay.

The services bind their socket before the app starts (shared.startup.bind_socket). A socket
made with proto 0 passes that on to each accepted connection, and asyncio then leaves
TCP_NODELAY off: a response written in two parts waited for the client's delayed ACK, ~40 ms
per MCP call (a no-op call to a worker took 44 ms instead of 2). This holds the option on the
connections the server really accepted.
"""

from __future__ import annotations

import asyncio
import socket

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from shared.serving import serving
from shared.startup import bind_socket


def test_bound_socket_is_tcp_without_nagle() -> None:
    sock = bind_socket("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        sock.close()


async def test_accepted_connections_have_nodelay() -> None:
    app = Starlette(routes=[Route("/", lambda request: PlainTextResponse("ok"))])
    sock = bind_socket("127.0.0.1", 0)
    async with serving(app, sockets=[sock]) as running:
        host, port = sock.getsockname()[:2]
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(b"GET / HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
            await writer.drain()
            assert (await reader.readuntil(b"\r\n")).startswith(b"HTTP/1.1 200")
            served = list(running.server.server_state.connections)
            assert served, "the server holds the connection it answered"
            for protocol in served:
                accepted = protocol.transport.get_extra_info("socket")
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        finally:
            writer.close()
