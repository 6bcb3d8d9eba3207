"""The HTTP/1.1 connection guard every server of the fleet runs under: a connection cap, a
header size limit, and header and body read deadlines.

Stock uvicorn (0.54, measured with both parsers) enforces none of these:

- **no header deadline**: a connection that sends half a request line and then nothing, or one
  header byte at a time (slowloris), stays open for ever; its keep-alive timer only runs
  between requests. 300 such connections were all still open after 7 s, with either parser.
- **no header size limit with httptools** (the default parser): 8 MB of headers got a
  ``200``. h11 stops at 16 KiB (``h11_max_incomplete_event_size``), but costs every request
  a pure-Python parse.
- ``limit_concurrency`` counts open connections, half-open ones included, and answers ``503``
  only to a request whose headers are complete, which a slowloris never sends: 300 slow
  connections against ``limit_concurrency=100`` made every *normal* request get ``503``. It
  turns the attack into a denial of service, so it is not used.

:class:`GuardedHttpTools` is uvicorn's httptools protocol with four additions:

1. a connection beyond ``max_connections`` is closed as soon as it is accepted (after a bare
   ``503``), so the slots it would take stay with the connections already open;
2. a request's headers must arrive within ``header_timeout_s`` of the connection opening (first
   request) or of its first byte (later ones on a keep-alive connection), else ``408`` and
   close;
3. more than ``max_header_bytes`` received before the headers end gets ``431`` and close; this
   counts raw bytes, so one endless header is stopped too;
4. a request body that stalls (no byte for ``body_timeout_s`` while the app waits for one) closes
   the connection; the app sees ``http.disconnect``. While uvicorn itself paused reading (the
   app reads slower than the client sends) the clock does not run against the client.

A client that is slow but honest (a large upload on a poor link) keeps sending and is never cut.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["ConnectionLimits", "GuardedHttpTools", "guarded_protocol"]


@dataclass(frozen=True)
class ConnectionLimits:
    """What one server accepts from its clients; the defaults are the settings' defaults."""

    max_connections: int = 1000
    max_header_bytes: int = 32 * 1024
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0

    @classmethod
    def of(cls, settings: Any) -> ConnectionLimits:
        """The limits a :class:`shared.settings` object carries (``FLEET_MAX_CONNECTIONS`` ...)."""
        return cls(
            max_connections=settings.max_connections,
            max_header_bytes=settings.max_header_bytes,
            header_timeout_s=settings.header_timeout_s,
            body_timeout_s=settings.body_timeout_s,
        )


def _status(code: int, reason: str) -> bytes:
    return f"HTTP/1.1 {code} {reason}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".encode()


_BUSY = _status(503, "Service Unavailable")
_TIMEOUT = _status(408, "Request Timeout")
_TOO_LARGE = _status(431, "Request Header Fields Too Large")


class GuardedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol under :class:`ConnectionLimits` (see the module doc).

    Built on uvicorn's parser callbacks (``on_message_begin``, ``on_headers_complete``,
    ``on_body``, ``on_message_complete``) and its ``server_state.connections`` set;
    ``tests/supervisor/test_connection_guard.py`` breaks if an upgrade moves them.
    """

    limits: ClassVar[ConnectionLimits] = ConnectionLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._in_headers = True  # waiting for (the rest of) a request's headers
        self._begun = False  # a request's first byte has arrived
        self._header_bytes = 0
        self._boundary = False  # during one data_received: headers or a message ended in it
        self._refused = False

    # -- the connection ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.limits.max_connections:
            self._refused = True
            self.transport = transport  # connection_lost closes it again, harmlessly
            transport.write(_BUSY)
            transport.close()
            return
        super().connection_made(transport)
        self._arm(self.limits.header_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._refused:
            return
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        self._boundary = False
        super().data_received(data)
        # While waiting for headers, the bytes of a chunk with no boundary in it are all header
        # bytes (httptools holds them until the headers end). A chunk in which headers or a
        # message ended is not counted: it carries body bytes too, and perhaps the start of a
        # pipelined request, and it is one read (at most 256 KiB) anyway.
        if self._in_headers and not self._boundary and not self.transport.is_closing():
            self._header_bytes += len(data)
            if self._header_bytes > self.limits.max_header_bytes:
                self._close(_TOO_LARGE)

    # -- the parser's callbacks -------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._begun = True
        if self._deadline is None:  # the first request's deadline runs from the connection
            self._arm(self.limits.header_timeout_s)

    def on_headers_complete(self) -> None:
        self._in_headers, self._boundary, self._header_bytes = False, True, 0
        self._arm(self.limits.body_timeout_s)  # disarmed at once when there is no body
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._arm(self.limits.body_timeout_s)
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm()
        self._in_headers, self._begun, self._header_bytes, self._boundary = True, False, 0, True
        super().on_message_complete()

    # -- the deadline -----------------------------------------------------------------

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self._in_headers:
            self._close(_TIMEOUT if self._begun else b"")
        elif self.flow.read_paused or (
            self.cycle is not None and self.cycle.waiting_for_100_continue
        ):
            # The app is behind (uvicorn paused reading), or has not asked for a body that
            # waits for ``100 Continue``: the client is not the one stalling.
            self._arm(self.limits.body_timeout_s)
        else:  # a stalled body: the app is running, so no status of ours can be sent
            self.transport.close()

    def _close(self, answer: bytes) -> None:
        self._disarm()
        if answer and (self.cycle is None or self.cycle.response_complete):
            self.transport.write(answer)
        self.transport.close()


def guarded_protocol(limits: ConnectionLimits) -> type[GuardedHttpTools]:
    """A :class:`GuardedHttpTools` bound to ``limits``, for ``uvicorn.Config(http=...)``."""
    return type("GuardedHttpTools", (GuardedHttpTools,), {"limits": limits})
