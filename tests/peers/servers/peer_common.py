"""What both Python peer servers share: CLI, ledger, protocol-version patch and the tool set.

Runs inside a foreign venv (mcp 1.x, or FastMCP 2.x on mcp 1.x): it imports nothing of this
project and nothing of FastMCP. The server scripts beside it import it as a sibling module.

No ``from __future__ import annotations`` here: both SDKs find the ``Context`` parameter by its
annotation object, and the tools are defined inside :func:`register_tools`, where ``Context``
is a local name that string annotations could not resolve.
"""

import argparse
import json
import os
import struct
import threading
import zlib
from base64 import b64encode
from pathlib import Path
from typing import Any

import anyio
from mcp.types import ImageContent, TextContent, ToolAnnotations

PROTOCOL_VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
LOOPBACK_HOSTS = ["127.0.0.1:*", "localhost:*", "[::1]:*"]
LOOPBACK_ORIGINS = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]


def parse_args(default_name: str, argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="A foreign MCP peer server for interop tests.")
    parser.add_argument("--port", type=int, required=True, help="port on 127.0.0.1")
    parser.add_argument("--ledger", type=Path, default=None, help="JSON-lines event file")
    parser.add_argument("--stateless", action="store_true", help="stateless_http=True")
    parser.add_argument(
        "--only-version",
        choices=PROTOCOL_VERSIONS,
        default=None,
        help="negotiate and accept only this protocol version",
    )
    parser.add_argument("--name", default=default_name, help="server name")
    return parser.parse_args(argv)


def only_protocol_version(version: str) -> None:
    """Patch the mcp 1.x SDK so the server negotiates and accepts only ``version``.

    Where the SDK reads them (mcp 1.30): ``ServerSession._received_request`` answers
    ``initialize`` with the requested version if it is in ``mcp.server.session.
    SUPPORTED_PROTOCOL_VERSIONS``, else ``mcp.types.LATEST_PROTOCOL_VERSION``; the streamable
    HTTP transport rejects (400) a request whose ``MCP-Protocol-Version`` header is not in
    ``mcp.server.streamable_http.SUPPORTED_PROTOCOL_VERSIONS``, taking a missing header as
    ``mcp.server.streamable_http.DEFAULT_NEGOTIATED_VERSION`` (2025-03-26). Each module bound
    its own name at import, so each is patched; the default is patched too, or a 2024-11-05
    client (which sends no header) would be refused.
    """
    import mcp.server.session
    import mcp.server.streamable_http
    import mcp.shared.version
    import mcp.types

    mcp.types.LATEST_PROTOCOL_VERSION = version
    mcp.shared.version.SUPPORTED_PROTOCOL_VERSIONS = [version]
    mcp.server.session.SUPPORTED_PROTOCOL_VERSIONS = [version]
    mcp.server.streamable_http.SUPPORTED_PROTOCOL_VERSIONS = [version]
    mcp.server.streamable_http.DEFAULT_NEGOTIATED_VERSION = version


class Ledger:
    """Appends one JSON object per line; a no-op without a path. Safe from any thread."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()

    def write(self, event: dict[str, Any]) -> None:
        if self.path is None:
            return
        line = json.dumps(event, default=str) + "\n"
        with self._lock, open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())


def tiny_png() -> bytes:
    """A valid 1x1 red PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)  # 1x1, 8-bit RGB
    pixels = zlib.compress(b"\x00\xff\x00\x00")  # filter byte + one red pixel
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def _meta(ctx: Any) -> dict[str, Any]:
    request_context = ctx.request_context
    meta = getattr(request_context, "meta", None) if request_context is not None else None
    if meta is None:
        return {}
    return dict(meta.model_dump(mode="json", by_alias=True, exclude_none=True))


def register_tools(
    mcp: Any, context_cls: type, tool_error: type[Exception], ledger: Ledger
) -> None:
    """The tool set both peers serve. ``context_cls`` is the SDK's injectable ``Context``."""
    Context = context_cls  # the annotations below read it as a type

    def called(ctx: Any, tool: str) -> None:
        ledger.write({"event": "call", "tool": tool, "meta": _meta(ctx)})

    @mcp.tool()
    async def echo(message: str, ctx: Context) -> str:
        """Return the message unchanged."""
        called(ctx, "echo")
        return message

    @mcp.tool(annotations=ToolAnnotations(idempotentHint=True))
    async def add(a: int, b: int, ctx: Context) -> int:
        """Add two integers."""
        called(ctx, "add")
        return a + b

    @mcp.tool()
    async def progress(ctx: Context, steps: int = 5) -> str:
        """Report progress i/steps with a message after each step; return 'done N'."""
        called(ctx, "progress")
        for i in range(1, steps + 1):
            await anyio.sleep(0.01)  # a step of "work"
            await ctx.report_progress(i, steps, f"step {i}/{steps}")
        return f"done {steps}"

    @mcp.tool()
    async def slow(seconds: float, tag: str, ctx: Context) -> str:
        """Wait; the ledger shows start, then done or cancelled."""
        called(ctx, "slow")
        ledger.write({"event": "start", "tag": tag})
        try:
            await anyio.sleep(seconds)
        except anyio.get_cancelled_exc_class():
            ledger.write({"event": "cancelled", "tag": tag})
            raise
        ledger.write({"event": "done", "tag": tag})
        return f"slept {seconds} {tag}"

    @mcp.tool()
    async def fail(message: str, ctx: Context):
        """Fail with the message (the result is isError)."""
        called(ctx, "fail")
        raise tool_error(message)

    @mcp.tool()
    async def big(size: int, ctx: Context) -> str:
        """Report one progress notification, then return exactly ``size`` characters."""
        called(ctx, "big")
        await ctx.report_progress(0, 1, f"building {size} characters")
        return "x" * size

    @mcp.tool()
    async def image(ctx: Context):
        """A small PNG image plus a text block."""
        called(ctx, "image")
        data = b64encode(tiny_png()).decode()
        return [
            ImageContent(type="image", data=data, mimeType="image/png"),
            TextContent(type="text", text="a 1x1 red pixel"),
        ]
