"""JWT access tokens checked against an issuer's key set (JWKS): :class:`JwtVerifier`.

PyJWT does the cryptography and the claim checks (signature, ``iss``, ``aud``, ``exp``,
``nbf``, ``iat``, with a leeway); this module only fetches and caches the key set.

The key set is fetched here with an async httpx client rather than with PyJWT's
``PyJWKClient``: that client fetches with blocking ``urllib`` (on the event loop, or a thread
per fetch), and it fetches again on *every* token whose ``kid`` it does not know, so anyone
could make the supervisor fetch the JWKS once per request by sending made-up ``kid``\\s. Here:

- the set is fetched on first use and again once it is ``cache_s`` old;
- a ``kid`` not in the set (the issuer rotated its keys) fetches it again at once;
- every fetch, whatever its cause, waits ``refresh_min_s`` after the last attempt, and
  concurrent requests share one fetch: no request can make the supervisor fetch more often;
- a failed fetch keeps the cached set (the issuer's outage does not lock everyone out);
  with nothing cached the request gets 503 ``JWKS_UNAVAILABLE``;
- only public signing keys of the allowed algorithms are kept (no ``oct`` keys: a JWKS never
  turns HMAC on), and a token's ``alg`` must be the key's own (PyJWT checks that too).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import jwt
from jwt import PyJWK, PyJWKSet

from shared import get_logger
from shared.errors import InvalidToken, KeysUnavailable

__all__ = ["MAX_JWKS_BYTES", "JwtVerifier"]

log = get_logger("fleet.supervisor")

MAX_JWKS_BYTES = 256 * 1024
"""A key set larger than this is refused (a JWKS holds a few keys: a few KB)."""
_ECHO = 64

# PyJWT's claim errors → (details.reason, what the message says). Subclasses come first.
_CLAIM_ERRORS: tuple[tuple[type[jwt.PyJWTError], str, str], ...] = (
    (jwt.ExpiredSignatureError, "expired", "the token has expired"),
    (jwt.ImmatureSignatureError, "not_yet_valid", "the token is not valid yet (nbf/iat)"),
    (jwt.InvalidAudienceError, "wrong_audience", "the token is for another audience (aud)"),
    (jwt.InvalidIssuerError, "wrong_issuer", "the token is from another issuer (iss)"),
    (jwt.InvalidSignatureError, "bad_signature", "the token's signature does not verify"),
    (jwt.InvalidAlgorithmError, "bad_algorithm", "the token's algorithm is not allowed"),
    (jwt.MissingRequiredClaimError, "missing_claim", "the token lacks a required claim"),
    (jwt.PyJWTError, "malformed", "the token is not a well-formed JWT"),
)


def _echo(value: object) -> str:
    text = str(value)
    return text if len(text) <= _ECHO else text[:_ECHO] + "…"


def invalid(reason: str, message: str, **details: Any) -> InvalidToken:
    return InvalidToken(message, details={"reason": reason, **details})


class JwtVerifier:
    """Verify JWT access tokens of one issuer and audience against its JWKS."""

    def __init__(
        self,
        *,
        jwks_url: str,
        issuer: str,
        audience: str,
        algorithms: Sequence[str],
        leeway_s: float = 30.0,
        cache_s: float = 300.0,
        refresh_min_s: float = 30.0,
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.jwks_url = jwks_url
        self.issuer = issuer
        self.audience = audience
        self.algorithms = list(algorithms)
        self.leeway_s = leeway_s
        self.cache_s = cache_s
        self.refresh_min_s = refresh_min_s
        self._http = http or httpx.AsyncClient(timeout=5.0, follow_redirects=False)
        self._clock = clock
        self._keys: dict[str | None, PyJWK] | None = None
        self._fetched_at = 0.0
        self._attempted_at: float | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0
        """Key-set fetches attempted (for tests and logs)."""

    async def aclose(self) -> None:
        await self._http.aclose()

    async def verify(self, token: str) -> dict[str, Any]:
        """The token's claims once every check passed; else :class:`InvalidToken` whose
        ``details.reason`` is one of ``malformed``, ``bad_algorithm``, ``unknown_key``,
        ``bad_signature``, ``expired``, ``not_yet_valid``, ``wrong_audience``,
        ``wrong_issuer``, ``missing_claim``."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise invalid("malformed", "the token is not a well-formed JWT") from None
        alg = header.get("alg")
        if alg not in self.algorithms:
            raise invalid(
                "bad_algorithm",
                f"the token's algorithm {_echo(alg)!r} is not one of {', '.join(self.algorithms)}",
            )
        key = await self._key(header.get("kid"))
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=self.algorithms,
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_s,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWTError as exc:
            reason, message = next((r, m) for cls, r, m in _CLAIM_ERRORS if isinstance(exc, cls))
            extra = {"claim": exc.claim} if isinstance(exc, jwt.MissingRequiredClaimError) else {}
            raise invalid(reason, message, **extra) from None
        return claims

    async def _key(self, kid: object) -> PyJWK:
        if kid is not None and not isinstance(kid, str):
            raise invalid("malformed", "the token's kid is not a string")
        stale = self._keys is None or self._clock() - self._fetched_at >= self.cache_s
        if stale and self._may_refetch():
            await self._refresh()
        if self._keys is None:
            raise KeysUnavailable(
                "the JWT issuer's key set could not be fetched; try again later",
                details={"jwks_url": self.jwks_url},
            )
        key = self._find(kid)
        if key is None and self._may_refetch():
            await self._refresh()  # a new key: the issuer rotated
            key = self._find(kid)
        if key is None:
            raise invalid(
                "unknown_key",
                f"no key with kid {_echo(kid)!r} in the issuer's key set"
                if kid is not None
                else "the token names no key (kid) and the issuer has several",
            )
        return key

    def _find(self, kid: str | None) -> PyJWK | None:
        keys = self._keys or {}
        if kid is None and len(keys) == 1:
            return next(iter(keys.values()))
        return keys.get(kid)

    def _may_refetch(self) -> bool:
        last = self._attempted_at
        return last is None or self._clock() - last >= self.refresh_min_s

    async def _refresh(self) -> None:
        seen = self._attempted_at
        async with self._lock:
            if self._attempted_at != seen:  # another request fetched while this one waited
                return
            self._attempted_at = self._clock()
            self.fetches += 1
            try:
                keys = await self._fetch()
            except Exception as exc:  # the cached set, if any, stays in use
                log.warning("auth.jwks_fetch_failed", url=self.jwks_url, error=_echo(exc))
                return
            self._keys = keys
            self._fetched_at = self._clock()
            log.info("auth.jwks_fetched", url=self.jwks_url, keys=len(keys))

    async def _fetch(self) -> dict[str | None, PyJWK]:
        async with self._http.stream("GET", self.jwks_url) as response:
            response.raise_for_status()
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise ValueError(f"key set over {MAX_JWKS_BYTES} bytes")
        jwk_set = PyJWKSet.from_json(body.decode())
        keys = {
            key.key_id: key
            for key in jwk_set.keys
            if key.key_type != "oct"
            and key.public_key_use in (None, "sig")
            and key.algorithm_name in self.algorithms
        }
        if not keys:
            raise ValueError(f"no signing key for {', '.join(self.algorithms)} in the set")
        return keys
