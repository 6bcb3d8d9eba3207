"""A JWT issuer for tests: key pairs made here (cryptography), tokens minted with PyJWT, and
its key set (JWKS) served over real HTTP by a tiny Starlette app, whose keys a test can
rotate while the supervisor runs."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.servers import serve_asgi

ISSUER = "https://issuer.test"

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


@dataclass
class Key:
    kid: str
    alg: str
    private: PrivateKey

    def jwk(self) -> dict[str, Any]:
        public = self.private.public_key()
        jwk: dict[str, Any]
        if self.alg == "RS256":
            jwk = RSAAlgorithm.to_jwk(public, as_dict=True)  # type: ignore[arg-type]
        elif self.alg == "ES256":
            jwk = ECAlgorithm.to_jwk(public, as_dict=True)  # type: ignore[arg-type]
        else:
            jwk = OKPAlgorithm.to_jwk(public, as_dict=True)  # type: ignore[arg-type]
        return {**jwk, "kid": self.kid, "use": "sig", "alg": self.alg}


def new_key(alg: str = "RS256", kid: str | None = None) -> Key:
    private: PrivateKey
    if alg == "RS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif alg == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    else:
        private = ed25519.Ed25519PrivateKey.generate()
    return Key(kid or f"{alg.lower()}-{uuid.uuid4().hex[:8]}", alg, private)


@dataclass
class Issuer:
    """Mints tokens; ``published`` is the key set its JWKS endpoint answers with."""

    audience: str
    keys: list[Key] = field(default_factory=lambda: [new_key("RS256")])
    published: list[Key] = field(default_factory=list)
    jwks_url: str = ""
    hits: int = 0
    down: bool = False

    def __post_init__(self) -> None:
        self.published = list(self.keys)

    def mint(
        self,
        key: Key | None = None,
        *,
        kid: str | None = None,
        ttl_s: float = 300,
        **claims: Any,
    ) -> str:
        """A token signed by ``key`` (the first key), valid ``ttl_s``; ``claims`` override."""
        key = key or self.keys[0]
        at = int(time.time())
        body = {
            "iss": ISSUER,
            "aud": self.audience,
            "sub": "alice",
            "iat": at,
            "exp": at + int(ttl_s),
            "scope": "jobs:read",
            **claims,
        }
        body = {name: value for name, value in body.items() if value is not None}
        header = {"kid": kid or key.kid}
        return jwt.encode(body, key.private, algorithm=key.alg, headers=header)  # type: ignore[arg-type]

    async def _jwks(self, _: Request) -> Response:
        self.hits += 1
        if self.down:
            return JSONResponse({"error": "down"}, status_code=503)
        return JSONResponse({"keys": [key.jwk() for key in self.published]})

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[Issuer]:
        app = Starlette(routes=[Route("/jwks", self._jwks)])
        async with serve_asgi(app, lifespan="off") as base:
            self.jwks_url = base + "/jwks"
            yield self


class Clock:
    """A monotonic clock a test moves by hand (the verifier's cache and refetch limit)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now
