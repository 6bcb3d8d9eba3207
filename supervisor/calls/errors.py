"""The one translation table: what a call ran into → which :class:`shared.errors.WorkerCallError`.

HTTP statuses, JSON-RPC error codes, transport exceptions, timeouts, handshake refusals and a
tool's own error report each map to one error class here and nowhere else, and the class fixes
``delivered`` (could the call have reached the tool?) and ``retryable``. Only status codes,
JSON-RPC error codes and exception types decide, never the text of a message.

One outcome is not (yet) an error for the caller: :class:`Rejected`, a refusal at the protocol
level (an HTTP status in :data:`REJECTION_STATUSES`, or JSON-RPC ``-32022``). It never reached
a tool, so the connection looks at the endpoint again once and re-sends; a second one becomes
:class:`shared.errors.WorkerRefused` (:func:`refused`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
import mcp_types
from pydantic import ValidationError

from shared import (
    ToolFailed,
    WorkerBadResponse,
    WorkerBusy,
    WorkerCallError,
    WorkerDropped,
    WorkerHttpError,
    WorkerRefused,
    WorkerTimeout,
    WorkerUnreachable,
    decode_tool_error,
)

__all__ = [
    "EXCERPT",
    "HTTP_STATUSES",
    "METHOD_NOT_FOUND",
    "REJECTION_STATUSES",
    "RPC_CODES",
    "TIMEOUTS",
    "TRANSPORT",
    "TRANSPORT_ERRORS",
    "Rejected",
    "Rule",
    "bad",
    "closed_before_answering",
    "http_error",
    "initialized_refused",
    "refused",
    "rpc_error",
    "timed_out",
    "tool_error",
    "transport_error",
    "unspoken_version",
]

EXCERPT = 300
"""How much of an unreadable body an error quotes."""
METHOD_NOT_FOUND = -32601
_INVALID_PARAMS = -32602
_UNSUPPORTED_VERSION = -32022


class Rejected(Exception):
    """The server refused the request at the protocol level: it never reached a tool."""

    def __init__(self, status: int, code: int | None, message: str) -> None:
        super().__init__(f"HTTP {status}, JSON-RPC {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Rule:
    """One row: the class raised, its message (``str.format`` fields), per-instance overrides."""

    error: type[WorkerCallError]
    message: str
    code: str | None = None
    retryable: bool | None = None
    delivered: bool | None = None

    def build(self, details: dict[str, Any], **fields: Any) -> WorkerCallError:
        return self.error(
            self.message.format(**fields),
            code=self.code,
            retryable=self.retryable,
            delivered=self.delivered,
            details=details,
        )


# -- HTTP statuses (an answer with status >= 300) ---------------------------------------------

_UNAUTHORIZED = Rule(
    WorkerCallError,
    "worker {url} refused the call ({status}): check FLEET_WORKER_TOKEN or FLEET_WORKER_TOKENS",
    code="UNAUTHORIZED",
    retryable=False,
    delivered=False,
)
HTTP_STATUSES: dict[int, Rule] = {
    401: _UNAUTHORIZED,
    403: _UNAUTHORIZED,
    429: Rule(WorkerBusy, "worker {url} is rate limiting (429)"),
    503: Rule(WorkerUnreachable, "worker {url} is not taking calls (503)"),
}
REJECTION_STATUSES = frozenset({400, 404, 405, 406, 415, 422})
"""Statuses that refuse the request itself (a revision or session the server does not know):
they become :class:`Rejected`, and the connection looks again once."""
_REDIRECT = Rule(WorkerRefused, "worker {url} redirected the call ({status})")  # not followed:
# the request went nowhere
_CLIENT_ERROR = Rule(WorkerRefused, "worker {url} refused the call ({status})")
_SERVER_ERROR = Rule(WorkerHttpError, "worker {url} answered HTTP {status}")

# -- JSON-RPC error codes (an error response to our request) ----------------------------------

_INVALID_REQUEST = Rule(
    WorkerCallError,
    "worker {url} refused the request: {message}",
    code="INVALID_REQUEST",
    retryable=False,
    delivered=False,
)
RPC_CODES: dict[int, Rule] = {_INVALID_PARAMS: _INVALID_REQUEST, METHOD_NOT_FOUND: _INVALID_REQUEST}
_RPC_ERROR = Rule(
    WorkerCallError, "worker {url} answered error {code}: {message}", code="RPC_ERROR"
)

# -- transport exceptions, by where they struck -----------------------------------------------

Stage = Literal["send", "resend", "answer"]
"""``send``: POSTing (maybe on a reused keep-alive connection); ``resend``: the one re-send on a
fresh connection after a stale one; ``answer``: reading the answer."""

TRANSPORT_ERRORS = (aiohttp.ClientError, ConnectionError)
_CLOSED = Rule(WorkerDropped, "worker {url} closed the connection before answering: {exc!r}")
_FAILED = Rule(WorkerDropped, "call to {url} failed: {exc!r}")
_Kinds = type[BaseException] | tuple[type[BaseException], ...]
TRANSPORT: dict[Stage, tuple[tuple[_Kinds, Rule], ...]] = {
    "send": (
        (aiohttp.ClientConnectorError, Rule(WorkerUnreachable, "worker {url} unreachable: {exc}")),
        ((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError), _CLOSED),
        (aiohttp.ClientError, _FAILED),
    ),
    "resend": (  # the first try may have reached a server that then died
        (
            aiohttp.ClientConnectorError,
            Rule(
                WorkerDropped,
                "worker {url} closed the connection before answering, then refused a new one: "
                "{exc}",
            ),
        ),
        ((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError), _CLOSED),
        (aiohttp.ClientError, _FAILED),
    ),
    "answer": (
        (aiohttp.ClientPayloadError, Rule(WorkerDropped, "answer from {url} broke off: {exc!r}")),
        (TRANSPORT_ERRORS, Rule(WorkerDropped, "connection to {url} dropped mid-answer: {exc!r}")),
    ),
}
"""Per stage, the first row whose exception types match wins (the last row catches the rest)."""

# -- timeouts, handshake refusals ---------------------------------------------------------------

TIMEOUTS: dict[str, Rule] = {
    "tools/call": Rule(WorkerTimeout, "{tool} on {url} timed out after {timeout:g}s"),
    "tools/list": Rule(WorkerTimeout, "tools/list on {url} timed out"),
    "connect": Rule(WorkerTimeout, "connecting to {url} timed out"),
}
_UNSPOKEN_VERSION = Rule(
    WorkerRefused,
    "worker {url} offers protocol {version!r}; this supervisor speaks {spoken}",
    retryable=False,
)
_INITIALIZED_REFUSED = Rule(
    WorkerRefused, "worker {url} refused notifications/initialized ({status})"
)


def http_error(url: str, status: int, raw: bytes) -> Exception:
    """An answer with status >= 300 (``raw``: the start of its body)."""
    excerpt = raw[:EXCERPT].decode("utf-8", "replace")
    if status in REJECTION_STATUSES:
        code, message = None, excerpt
        with contextlib.suppress(ValueError, ValidationError):
            parsed = mcp_types.jsonrpc_message_adapter.validate_json(raw)
            if isinstance(parsed, mcp_types.JSONRPCError):
                code, message = parsed.error.code, parsed.error.message
        return Rejected(status, code, message)
    rule = HTTP_STATUSES.get(status)
    if rule is None:
        rule = _REDIRECT if status < 400 else _CLIENT_ERROR if status < 500 else _SERVER_ERROR
    return rule.build({"worker": url, "status": status, "body": excerpt}, url=url, status=status)


def rpc_error(url: str, code: int, message: str) -> Exception:
    """A JSON-RPC error response to our request."""
    if code == _UNSUPPORTED_VERSION:
        return Rejected(200, code, message)
    rule = RPC_CODES.get(code, _RPC_ERROR)
    return rule.build({"worker": url, "rpc_code": code}, url=url, code=code, message=message)


def _transport_rule(stage: Stage, exc: BaseException) -> Rule:
    rows = TRANSPORT[stage]
    return next((rule for kinds, rule in rows if isinstance(exc, kinds)), rows[-1][1])


def transport_error(url: str, stage: Stage, exc: BaseException) -> WorkerCallError:
    return _transport_rule(stage, exc).build({"worker": url}, url=url, exc=exc)


def closed_before_answering(exc: BaseException) -> bool:
    """The server closed the connection before answering (on a reused one: it was stale)."""
    return _transport_rule("send", exc) is _CLOSED


def timed_out(url: str, what: str, **fields: Any) -> WorkerCallError:
    details = {"worker": url, **({"tool": fields["tool"]} if "tool" in fields else {})}
    return TIMEOUTS[what].build(details, url=url, **fields)


def unspoken_version(url: str, version: Any, spoken: tuple[str, ...]) -> WorkerCallError:
    details = {"worker": url, "protocol": version}
    return _UNSPOKEN_VERSION.build(details, url=url, version=version, spoken=", ".join(spoken))


def initialized_refused(url: str, status: int) -> WorkerCallError:
    return _INITIALIZED_REFUSED.build({"worker": url, "status": status}, url=url, status=status)


def refused(url: str, exc: Rejected) -> WorkerRefused:
    """A :class:`Rejected` request that looking again did not cure."""
    return WorkerRefused(
        f"worker {url} refused the request (HTTP {exc.status}): {exc.message[:200]}",
        details={"worker": url, "status": exc.status, "rpc_code": exc.code},
    )


def bad(url: str, message: str, **details: Any) -> WorkerBadResponse:
    """Anything that is not a valid JSON-RPC answer (or MCP result) to our request."""
    return WorkerBadResponse(f"{url}: {message}", details={"worker": url, **details})


def tool_error(url: str, tool: str, text: str) -> WorkerCallError:
    """The tool ran and reported an error (``isError``): the worker's code decides."""
    payload = decode_tool_error(text)
    details: dict[str, Any] = {"worker": url, "tool": tool}
    if payload.field:
        details["field"] = payload.field
    if payload.hint:
        details["hint"] = payload.hint
    if payload.code == "BUSY":
        return WorkerBusy(payload.message or "worker busy", details=details)
    return ToolFailed(
        payload.message or "the tool reported an error",
        code=payload.code,
        retryable=payload.retryable,
        details=details,
    )
