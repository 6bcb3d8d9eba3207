"""The ``Host``/``Origin`` decision of FastMCP's guard (strict mode), without FastMCP.

FastMCP's ``HostOriginGuardMiddleware`` lives in ``fastmcp.server.http``, whose import brings
the whole MCP server stack (about a second of CPU at start). The supervisor's REST API needs
only the decision, so its rules are here, as FastMCP 4.1 writes them for ``mode="strict"``
with explicit allowlists (the only way :class:`shared.hosts.HostOriginGuard` uses them);
``tests/test_host_rules.py`` holds every answer to FastMCP's own on a matrix of headers, so a
FastMCP upgrade that changes a rule fails there.

>>> check("example.com:8700", None, server=("127.0.0.1", 8700), hosts=(), origins=())
'host'
>>> check("localhost:8700", "http://localhost:3000", server=None, hosts=(), origins=())
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from fnmatch import fnmatchcase
from typing import Literal
from urllib.parse import urlsplit

__all__ = ["DEFAULT_HOSTS", "check"]

DEFAULT_HOSTS = ("127.0.0.1", "localhost", "::1")


def check(
    host: str,
    origin: str | None,
    *,
    server: tuple[str, int | None] | None,
    hosts: Sequence[str],
    origins: Sequence[str],
    scheme: str = "http",
) -> Literal["host", "origin"] | None:
    """What a request with these ``Host`` and ``Origin`` headers, arrived on ``server``, is
    refused for (``host`` → 421, ``origin`` → 403), or None when it passes."""
    allowed = [*DEFAULT_HOSTS, *hosts]
    if server and not _is_unspecified(server[0]):
        allowed.append(server[0])
    if not _host_matches(host, allowed):
        return "host"
    same = _normalize_origin(f"{scheme}://{host}")
    if origin and not _origin_allowed(origin, same, host, origins):
        return "origin"
    return None


def _normalize_host(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host if end == -1 else host[1:end]
    if host.count(":") == 1:
        return host.rsplit(":", 1)[0]
    return host


def _is_loopback(host: str) -> bool:
    host = _normalize_host(host)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_unspecified(host: str) -> bool:
    host = _normalize_host(host)
    if not host:
        return True
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def _host_matches(host: str, allowed: Sequence[str]) -> bool:
    host = _normalize_host(host)
    for each in allowed:
        pattern = _normalize_host(each)
        if pattern == "*" or fnmatchcase(host, pattern):
            return True
    return False


def _normalize_origin(origin: str) -> str:
    origin = origin.strip().rstrip("/")
    try:
        parsed = urlsplit(origin)
        port = parsed.port
    except ValueError:
        return origin.lower()
    if not parsed.scheme or not parsed.hostname:
        return origin.lower()
    if parsed.path or parsed.query or parsed.fragment:
        return origin.lower()
    scheme = parsed.scheme.lower()
    host = _normalize_host(parsed.hostname)
    host = f"[{host}]" if ":" in host and not host.startswith("[") else host
    if port is None:
        port = {"http": 80, "https": 443}.get(scheme)
    return f"{scheme}://{host}" if port is None else f"{scheme}://{host}:{port}"


def _origin_allowed(origin: str, request_origin: str, host: str, origins: Sequence[str]) -> bool:
    normalized = _normalize_origin(origin)
    for each in origins:
        pattern = _normalize_origin(each)
        if pattern == "*" or fnmatchcase(normalized, pattern):
            return True
    try:
        origin_host = urlsplit(origin).hostname or ""
    except ValueError:
        origin_host = ""
    if _is_loopback(origin_host) and _is_loopback(host):
        return True
    return normalized == request_origin
