"""Signed worker registrations: an HMAC-SHA256 over the fields a supervisor acts on.

A worker with ``FLEET_REGISTRATION_SECRET`` signs every heartbeat; a supervisor with the same
secret ignores a registration that is unsigned, badly signed, expired or not yet valid. What is
signed (:func:`registration_message`) is a canonical JSON object::

    {"exp":…,"fleet":"<key prefix>","iat":…,"name":"<service>","purpose":"mcp-fleet/
     worker-registration","url":"<MCP URL>","v":1,"version":"<worker version>"}

(sorted keys, no spaces, ASCII only). ``url`` is where the supervisor will send calls and
credentials and ``name`` picks the per-service credential, so both are covered; ``fleet`` (the
key prefix) stops a registration copied between fleets that share a secret; ``iat``/``exp``
bound a replay of a captured registration to its validity window (the worker signs each
heartbeat for ``3 × heartbeat_s``, the lifetime of its Redis key). Capabilities are not in a
registration: the supervisor reads them over MCP from the signed URL.

    reg = sign_registration(WorkerRegistration(name="echo", url=u), "secret", fleet="fleet",
                            ttl_s=15)
    check_registration(reg, "secret", fleet="fleet")   # None, or why it is refused
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Literal

from shared.models import WorkerRegistration

__all__ = [
    "CLOCK_SKEW_S",
    "PURPOSE",
    "Refusal",
    "check_registration",
    "registration_message",
    "sign_registration",
]

PURPOSE = "mcp-fleet/worker-registration"
CLOCK_SKEW_S = 30
"""Seconds a registration's ``issued_at`` may lie in the supervisor's future (clock skew)."""

Refusal = Literal["unsigned", "bad_signature", "expired", "not_yet_valid"]


def registration_message(reg: WorkerRegistration, *, fleet: str) -> bytes:
    """The canonical bytes a registration's signature covers."""
    fields = {
        "v": 1,
        "purpose": PURPOSE,
        "fleet": fleet,
        "name": reg.name,
        "url": reg.url,
        "version": reg.version,
        "iat": reg.issued_at,
        "exp": reg.expires_at,
    }
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _mac(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign_registration(
    reg: WorkerRegistration, secret: str, *, fleet: str, ttl_s: int, at: float | None = None
) -> WorkerRegistration:
    """A copy of ``reg``, valid from ``at`` (now) for ``ttl_s`` seconds, with its signature."""
    issued = int(time.time() if at is None else at)
    timed = reg.model_copy(update={"issued_at": issued, "expires_at": issued + max(1, ttl_s)})
    signature = _mac(secret, registration_message(timed, fleet=fleet))
    return timed.model_copy(update={"signature": signature})


def check_registration(
    reg: WorkerRegistration, secret: str, *, fleet: str, at: float | None = None
) -> Refusal | None:
    """None when ``reg`` carries a valid signature made with ``secret``; else the reason."""
    if not reg.signature or reg.issued_at is None or reg.expires_at is None:
        return "unsigned"
    expected = _mac(secret, registration_message(reg, fleet=fleet))
    if not hmac.compare_digest(expected.encode(), reg.signature.encode("utf-8", "replace")):
        return "bad_signature"
    moment = time.time() if at is None else at
    if moment >= reg.expires_at:
        return "expired"
    if reg.issued_at > moment + CLOCK_SKEW_S:
        return "not_yet_valid"
    return None
