"""Which MCP revision an endpoint speaks, and how a request is framed for it.

- **modern** (2026-07-28): every request is its own POST, no session; the request ``_meta``
  carries the envelope; closing the response stream cancels the call on the server.
- **legacy** (2024-11-05, 2025-03-26, 2025-06-18, 2025-11-25): an ``initialize`` handshake,
  an ``Mcp-Session-Id`` when the server keeps sessions (none when it is stateless), the
  negotiated ``MCP-Protocol-Version`` header on every later request, and
  ``notifications/cancelled`` to stop a call.

Detection (:func:`detect`) follows the MCP SDK's own connect-time policy (``mcp.client._probe``):
probe ``server/discover`` at 2026-07-28; anything that is not positive evidence of a modern
server (an HTTP 4xx, a JSON-RPC error, a result without 2026-07-28 among
``supportedVersions``) falls back to the ``initialize`` handshake. Only status codes, JSON-RPC
error codes and result fields decide, never the text of a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from shared import WorkerBadResponse, WorkerCallError, WorkerRefused
from supervisor.calls import answers, errors

__all__ = [
    "LEGACY_VERSIONS",
    "MODERN_VERSION",
    "Endpoint",
    "Framed",
    "ServerInfo",
    "detect",
    "frame",
    "headers",
    "next_id",
]

MODERN_VERSION = "2026-07-28"
LEGACY_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05")
"""Handshake revisions we speak, newest first; ``initialize`` asks for the first."""

CLIENT_INFO = {"name": "mcp-fleet", "version": "0.1.0"}
_ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": MODERN_VERSION,
    "io.modelcontextprotocol/clientInfo": CLIENT_INFO,
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/logLevel": "info",
}
_ids = itertools.count(1)


def next_id() -> int:
    """A JSON-RPC request id, unique in this process."""
    return next(_ids)


@dataclass
class ServerInfo:
    """What an endpoint told us about itself when we connected."""

    name: str
    version: str
    protocol: str
    dialect: str  # "modern" | "legacy"
    stateful: bool = False
    capabilities: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Framed:
    """One request ready to POST."""

    id: int
    body: dict[str, Any]
    headers: dict[str, str]


class Endpoint(Protocol):
    """Where detection sends its requests (a :class:`supervisor.calls.Connection`)."""

    url: str

    async def post(
        self, body: dict[str, Any], headers: dict[str, str]
    ) -> aiohttp.ClientResponse: ...


def headers(
    info: ServerInfo, session_id: str | None, method: str | None = None, tool: str | None = None
) -> dict[str, str]:
    """The HTTP headers a request (``method``; None for a notification) carries."""
    if info.dialect == "modern":
        out = {"mcp-protocol-version": MODERN_VERSION}
        if method is not None:
            out["mcp-method"] = method
        if tool is not None:
            out["mcp-name"] = tool
        return out
    out = {"mcp-protocol-version": info.protocol}
    if session_id:
        out["mcp-session-id"] = session_id
    return out


def frame(
    info: ServerInfo,
    session_id: str | None,
    method: str,
    params: dict[str, Any],
    *,
    meta: dict[str, Any] | None = None,
    progress: bool = False,
    tool: str | None = None,
) -> Framed:
    """A request for ``info``'s revision; ``progress`` asks for progress notifications."""
    request_id = next_id()
    request_meta = dict(meta or {})
    if progress:
        request_meta["progressToken"] = f"p{request_id}"
    if info.dialect == "modern":
        request_meta.update(_ENVELOPE)
    body = {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": method,
        "params": {**params, "_meta": request_meta} if request_meta else params,
    }
    return Framed(request_id, body, headers(info, session_id, method, tool))


async def detect(endpoint: Endpoint, timeout: float) -> tuple[ServerInfo, str | None]:
    """The endpoint's revision and, for a legacy server that keeps one, its session id."""
    try:
        async with asyncio.timeout(timeout):
            info = await _discover(endpoint)
            if info is not None:
                return info, None
            return await _handshake(endpoint)
    except TimeoutError as exc:
        raise errors.timed_out(endpoint.url, "connect") from exc


async def _exchange(endpoint: Endpoint, request: Framed) -> dict[str, Any]:
    response = await endpoint.post(request.body, request.headers)
    async with response:
        return await answers.read(response, request.id, endpoint.url)


async def _discover(endpoint: Endpoint) -> ServerInfo | None:
    """A modern server's info, or None when the answer is no evidence of one."""
    probe = ServerInfo("?", "?", MODERN_VERSION, "modern")
    try:
        result = await _exchange(endpoint, frame(probe, None, "server/discover", {}))
    except (errors.Rejected, WorkerRefused, WorkerBadResponse):
        return None
    except WorkerCallError as exc:
        if exc.code not in ("INVALID_REQUEST", "RPC_ERROR"):
            raise
        return None
    versions = result.get("supportedVersions") or []
    if not isinstance(versions, list) or MODERN_VERSION not in versions:
        return None
    name, version = _server_info(result.get("_meta") or {}, "io.modelcontextprotocol/serverInfo")
    capabilities = dict(result.get("capabilities") or {})
    return ServerInfo(name, version, MODERN_VERSION, "modern", capabilities=capabilities)


async def _handshake(endpoint: Endpoint) -> tuple[ServerInfo, str | None]:
    request_id = next_id()
    body = {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "initialize",
        "params": {
            "protocolVersion": LEGACY_VERSIONS[0],
            "capabilities": {},
            "clientInfo": CLIENT_INFO,
        },
    }
    try:
        response = await endpoint.post(body, {})
        async with response:
            result = await answers.read(response, request_id, endpoint.url)
            session_id = response.headers.get("mcp-session-id")
    except errors.Rejected as exc:
        raise errors.refused(endpoint.url, exc) from exc
    version = result.get("protocolVersion")
    if version not in LEGACY_VERSIONS:
        raise errors.unspoken_version(endpoint.url, version, (MODERN_VERSION, *LEGACY_VERSIONS))
    name, server_version = _server_info(result, "serverInfo")
    info = ServerInfo(
        name,
        server_version,
        str(version),
        "legacy",
        stateful=bool(session_id),
        capabilities=dict(result.get("capabilities") or {}),
    )
    initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    response = await endpoint.post(initialized, headers(info, session_id))
    response.release()
    if response.status >= 300:
        raise errors.initialized_refused(endpoint.url, response.status)
    if "logging" in info.capabilities:
        with contextlib.suppress(WorkerCallError, errors.Rejected):
            set_level = frame(info, session_id, "logging/setLevel", {"level": "info"})
            await _exchange(endpoint, set_level)
    return info, session_id


def _server_info(container: dict[str, Any], key: str) -> tuple[str, str]:
    info = container.get(key)
    if not isinstance(info, dict):
        return "?", "?"
    return str(info.get("name") or "?"), str(info.get("version") or "?")
