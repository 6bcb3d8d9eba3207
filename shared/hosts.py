"""DNS-rebinding protection: every request's ``Host`` and ``Origin`` must be on an allowlist.

A web page on ``http://evil.example`` whose name later resolves to 127.0.0.1 (or to a
container address) would otherwise reach a supervisor or a worker from the victim's browser.
The MCP transport spec asks servers to validate ``Origin``; the MCP SDK and FastMCP also
validate ``Host``. The decision is FastMCP's own guard's (``HostOriginGuardMiddleware``,
strict mode), its rules in :mod:`shared.host_rules` (held to FastMCP's answers by a test, and
without importing FastMCP's server stack at start); each side answers a refusal with its own
structured JSON error (the ``refuse`` callable).

Allowed ``Host`` values, any port: ``localhost``, ``127.0.0.1``, ``[::1]``, the address the
connection arrived on (so a pod or container IP works: a kubelet probes with the pod IP as
``Host`` and the connection arrives on that IP), the bind host when it is not a wildcard, a
worker's ``advertise_url`` host, and the configured extras (``*`` globs allowed). Any other
gets **421** ``HOST_NOT_ALLOWED``, as the SDK answers. A request without ``Origin`` passes
(programs send none); a loopback (any port) or same-origin ``Origin`` passes, as does one in
the configured origins (``:*`` for any port); any other gets **403** ``ORIGIN_NOT_ALLOWED``,
as the spec requires. An extra host ``*`` turns the ``Host`` check off: only for a server
behind a proxy that checks ``Host`` itself.

>>> sorted(allowed_hosts(["api.internal"], advertise_url="http://w1:8701/mcp", bind_host="::"))
['127.0.0.1', '::1', 'api.internal', 'localhost', 'w1']
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from shared.host_rules import check
from shared.startup import ExitCode, StartupError

__all__ = [
    "LOOPBACK_HOSTS",
    "LOOPBACK_ORIGINS",
    "HostOriginGuard",
    "InsecureBind",
    "Refusal",
    "Refuse",
    "allowed_hosts",
    "check_bind",
    "is_loopback",
]

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
LOOPBACK_ORIGINS = tuple(
    f"{scheme}://{host}:*"
    for scheme in ("http", "https")
    for host in ("localhost", "127.0.0.1", "[[]::1]")  # ``[[]`` is a literal ``[`` in a glob
)
"""A page served from this machine is no rebinding attacker: its origin passes, any port."""
_WILDCARD_BINDS = frozenset({"", "0.0.0.0", "::", "*"})
_ECHO = 200  # longest piece of a refused header repeated in an answer


def allowed_hosts(
    extra: Iterable[str], *, advertise_url: str | None = None, bind_host: str | None = None
) -> list[str]:
    """The ``Host`` names a server answers to: loopback, bind host, advertised host, extras."""
    hosts = {*LOOPBACK_HOSTS, *(h.strip().lower() for h in extra if h.strip())}
    if advertise_url:
        name = urlsplit(advertise_url).hostname
        if name:
            hosts.add(name.lower())
    bind = (bind_host or "").strip().strip("[]").lower()
    if bind not in _WILDCARD_BINDS:
        hosts.add(bind)
    return sorted(hosts)


class InsecureBind(StartupError):
    """A refused bind: one line, exit code 4 (:class:`shared.startup.ExitCode.AUTH_CONFIG`)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, ExitCode.AUTH_CONFIG)


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address (``127.0.0.0/8``, ``::1``, bracketed or not)."""
    host = host.strip().strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, port: int, *, missing: str, fix: str, insecure: bool) -> None:
    """A server without its secret binds only to loopback, unless told it is insecure.

    ``missing`` names the secret (``API tokens``), empty when it is set; ``fix`` says how to
    set it. The refusal is :class:`InsecureBind`: one line, the process's exit message.
    """
    if missing and not is_loopback(host) and not insecure:
        raise InsecureBind(
            f"refusing to bind {host}:{port} without {missing}: set {fix}, bind 127.0.0.1, "
            "or pass --insecure (FLEET_INSECURE=1) to accept the risk"
        )


@dataclass(frozen=True)
class Refusal:
    """Why a request was refused: ``kind`` (``host`` → 421, ``origin`` → 403) and the value
    (cut to 200 characters)."""

    kind: Literal["host", "origin"]
    value: str

    @property
    def status(self) -> int:
        return 421 if self.kind == "host" else 403


Refuse = Callable[[Scope, Send, Refusal], Awaitable[None]]
"""Answers a refused request (the status is ``refusal.status``) in the server's own format."""


class HostOriginGuard:
    """Pure ASGI: refuse a disallowed ``Host`` (421) or ``Origin`` (403) through ``refuse``.

    The decision depends only on the two headers, the address the connection arrived on and
    the scheme: it is remembered for short values (:data:`DECISIONS` of them at most), so a
    client calling again with the same headers costs a dict lookup, not the parse of its
    ``Host`` and ``Origin``."""

    DECISIONS = 1024
    """Most decisions remembered (then forgotten all at once: a cap, not an LRU)."""
    REMEMBERED_LENGTH = 256
    """Longest ``Host`` plus ``Origin`` whose decision is remembered."""

    def __init__(
        self, app: ASGIApp, *, hosts: Sequence[str], origins: Sequence[str] = (), refuse: Refuse
    ) -> None:
        self.app = app
        self.hosts = tuple(hosts)
        self.origins = (*LOOPBACK_ORIGINS, *origins)
        self.refuse = refuse
        self.decisions: dict[tuple[str, str | None, str | None, str], str | None] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw_host = raw_origin = None
        for name, value in scope["headers"]:  # the first of each, as Headers.get reads them
            if name == b"host":
                if raw_host is None:
                    raw_host = value
            elif name == b"origin" and raw_origin is None:
                raw_origin = value
        host = "" if raw_host is None else raw_host.decode("latin-1")
        origin = None if raw_origin is None else raw_origin.decode("latin-1")
        server = scope.get("server")
        scheme = scope.get("scheme", "http")
        key = (host, origin, server[0] if server else None, scheme)
        try:
            refused = self.decisions[key]
        except KeyError:
            refused = check(
                host, origin, server=server, hosts=self.hosts, origins=self.origins, scheme=scheme
            )
            if len(host) + len(origin or "") <= self.REMEMBERED_LENGTH:
                if len(self.decisions) >= self.DECISIONS:
                    self.decisions.clear()
                self.decisions[key] = refused
        if refused is None:
            await self.app(scope, receive, send)
        elif refused == "host":
            await self.refuse(scope, send, Refusal("host", host[:_ECHO]))
        else:
            await self.refuse(scope, send, Refusal("origin", (origin or "")[:_ECHO]))
