"""shared.host_rules answers as FastMCP's own Host/Origin guard (strict mode) does.

The supervisor decides Host and Origin without importing FastMCP's server stack at start; this
holds every answer of that port to FastMCP's guard over a matrix of headers, addresses and
allowlists, so an upgrade of FastMCP that changes a rule fails here.
"""

from __future__ import annotations

import itertools

import pytest
from fastmcp.server.http import HostOriginGuardMiddleware
from starlette.types import Message, Receive, Scope, Send

from shared.host_rules import check
from shared.hosts import LOOPBACK_ORIGINS

HOSTS = [
    "", "localhost", "localhost:8700", "LOCALHOST:1", "127.0.0.1:8700", "[::1]:8700", "::1",
    "10.0.0.5:8700", "evil.example", "evil.example:8700", "worker-data:8702", "a.internal",
    "127.0.0.2:80", "[fe80::1]:8700", "[::1", "w1", "x:y:z",
]  # fmt: skip
ORIGINS = [
    None, "", "null", "http://localhost:3000", "http://127.0.0.1", "https://[::1]:9",
    "http://evil.example", "https://app.example", "https://app.example:443", "http://dash:8080",
    "http://10.0.0.5:8700", "http://worker-data:8702", "ftp://x", "http://a.internal/path",
    "http://[bad", "http://x:99999",
]  # fmt: skip
SERVERS = [None, ("127.0.0.1", 8700), ("0.0.0.0", 8700), ("10.0.0.5", 8700), ("::", 1)]
ALLOWLISTS = [
    ((), ()),
    (("worker-data", "*.internal"), ("https://app.example", "http://dash:*")),
    (("*",), ()),
]


async def _fastmcp(
    host: str, origin: str | None, server: tuple[str, int] | None, hosts: tuple[str, ...],
    origins: tuple[str, ...],
) -> str | None:  # fmt: skip
    async def accept(scope: Scope, receive: Receive, send: Send) -> None:
        pass

    guard = HostOriginGuardMiddleware(
        accept, allowed_hosts=hosts, allowed_origins=origins, mode="strict"
    )
    headers = [(b"host", host.encode())] + ([(b"origin", origin.encode())] if origin else [])
    scope: Scope = {"type": "http", "scheme": "http", "headers": headers, "server": server}
    statuses: list[int] = []

    async def capture(message: Message) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    await guard(scope, receive, capture)
    return {421: "host", 403: "origin"}.get(statuses[0]) if statuses else None


@pytest.mark.parametrize(("hosts", "origins"), ALLOWLISTS)
async def test_every_answer_is_fastmcps(hosts: tuple[str, ...], origins: tuple[str, ...]) -> None:
    origins = (*LOOPBACK_ORIGINS, *origins)  # as shared.hosts.HostOriginGuard passes them
    differ = []
    for host, origin, server in itertools.product(HOSTS, ORIGINS, SERVERS):
        ours = check(host, origin, server=server, hosts=hosts, origins=origins)
        theirs = await _fastmcp(host, origin, server, hosts, origins)
        if ours != theirs:
            differ.append((host, origin, server, ours, theirs))
    assert not differ, differ[:10]
    # the matrix is not vacuous: each answer occurs
    answers = {
        check(h, o, server=s, hosts=hosts, origins=origins)
        for h, o, s in itertools.product(HOSTS, ORIGINS, SERVERS)
    }
    assert answers >= ({None, "origin"} if "*" in hosts else {None, "host", "origin"})
