"""Settings, one pydantic-settings class per program, built once at the entrypoint.

Every field reads ``FLEET_<NAME>`` from the environment; command-line flags override them
(:mod:`shared.flags`). A field's attribute docstring is its description, which is also the
help text of its flag. Nothing here is read at import time.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal, NamedTuple, Self
from urllib.parse import urlsplit

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shared.allowlist import Allowlist
from shared.client_settings import ClientSettings  # its own module: the CLI imports only it
from shared.redis_urls import cluster_nodes

__all__ = [
    "SCOPES",
    "TENANT_PATTERN",
    "ApiToken",
    "ClientSettings",
    "LogFormat",
    "SupervisorSettings",
    "WorkerSettings",
    "parse_api_tokens",
    "split_csv",
]

LogFormat = Literal["auto", "json", "console"]

TENANT_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")
"""What a tenant's name may be (a static token's or a JWT claim's)."""
SCOPES = ("jobs:read", "jobs:write", "admin")
"""The API's scopes; ``admin`` implies the others."""
_WILDCARD_HOSTS = ("", "0.0.0.0", "::", "[::]")


class ApiToken(NamedTuple):
    """One entry of ``api_tokens``: ``[name=]token[:scope+scope...]``."""

    name: str
    """Who the token stands for in audit logs: the entry's name, or ``token-<position>``."""
    secret: str
    scopes: frozenset[str]


def parse_api_tokens(value: str) -> list[ApiToken]:
    """Parse ``api_tokens``; an error names the entry by position, never its secret.

    >>> [(t.name, sorted(t.scopes)) for t in parse_api_tokens("s3cret, ci=t2:jobs:read")]
    [('token-1', ['admin', 'jobs:read', 'jobs:write']), ('ci', ['jobs:read'])]
    """
    out: list[ApiToken] = []
    for number, entry in enumerate(split_csv(value), 1):
        name, sep, rest = entry.partition("=")
        if not sep:
            name, rest = f"token-{number}", entry
        secret, colon, scopes = rest.partition(":")
        name, secret = name.strip(), secret.strip()
        if not name or not secret or secret.startswith("="):  # "abc==": base64 padding
            raise ValueError(
                f"API token entry {number} is not [name=]token[:scope+scope] (a token cannot "
                "contain ',', ':' or '=')"
            )
        wanted = frozenset(s.strip() for s in scopes.split("+") if s.strip()) if colon else None
        if wanted is not None and (not wanted or not wanted <= set(SCOPES)):
            raise ValueError(
                f"API token entry {number} ({name}): scopes must be {'+'.join(SCOPES)} "
                f"joined by '+', got {sorted(wanted - set(SCOPES)) or 'none'}"
            )
        out.append(ApiToken(name, secret, frozenset(SCOPES) if wanted is None else wanted))
    return out


def check_store_url(value: str) -> str:
    """A store URL that can be opened: ``memory://``, ``redis://``, ``rediss://``,
    ``unix://`` or ``redis+cluster://host:port,...``, with numeric ports and database.
    Checked at start, so a typo is one line saying so rather than a failure later (or an
    endless retry against nothing).

    >>> check_store_url("redis://127.0.0.1:6379/0")
    'redis://127.0.0.1:6379/0'
    """
    value = value.strip()
    scheme, _, rest = value.partition("://") if "://" in value else ("", "", value)
    shown = repr(f"{scheme}://***@{rest.rpartition('@')[2]}" if "@" in rest else value)
    example = "memory://, redis://host:port/db or redis+cluster://host:port,host:port"
    scheme = scheme.lower()
    if scheme == "memory":
        return value
    if scheme in ("redis+cluster", "rediss+cluster"):
        try:
            cluster_nodes(value)
        except ValueError:
            raise ValueError(f"{shown} names no host:port nodes: use {example}") from None
        return value
    if scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"{shown} is not a store URL: use {example}")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 -- raises on a port that is not a number in range
    except ValueError:
        raise ValueError(f"{shown} has a port that is not a number: use {example}") from None
    db = parts.path.strip("/") if scheme != "unix" else ""
    if db and not db.isdigit():
        raise ValueError(f"{shown} names database {db!r}, not a number: use {example}")
    return value


def check_worker_entries(value: str) -> str:
    """Every ``[service=]URL`` of ``workers`` is an ``http(s)://host[:port]/path`` URL; an
    error names the entry by position."""
    for number, entry in enumerate(split_csv(value), 1):
        name, sep, url = entry.partition("=")
        if not sep or "://" in name:
            url = entry
        try:
            parts = urlsplit(url.strip())
            parts.port  # noqa: B018 -- raises on a port that is not a number in range
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"entry {number} ({entry!r}) is not [service=]URL with an http:// or https:// "
                "URL, e.g. echo=http://127.0.0.1:8701/mcp"
            )
    return value


def split_csv(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else value
    return [item.strip() for item in items if item and item.strip()]


class _Base(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="FLEET_", extra="ignore", use_attribute_docstrings=True
    )

    log_format: LogFormat = "auto"
    """Log lines as JSON, for a console, or ``auto`` (console on a TTY)."""
    log_level: str = "INFO"
    """DEBUG, INFO, WARNING or ERROR."""
    key_prefix: str = Field(default="fleet", pattern=r"^[A-Za-z0-9_.:-]+$")
    """Prefix of every Redis key."""


class _Serving(_Base):
    """What an HTTP server of the fleet (supervisor or worker) accepts from its clients."""

    max_connections: int = Field(default=1000, ge=1)
    """Open HTTP connections at most; one more is closed at once (after a bare 503). Keep it
    below the process's open-file limit (``ulimit -n``)."""
    max_header_bytes: int = Field(default=32 * 1024, ge=1024)
    """Size limit of a request's line and headers; beyond it 431 and the connection closes."""
    header_timeout_s: float = Field(default=10.0, gt=0)
    """Seconds a request's headers may take to arrive (from the connection opening, or from
    the request's first byte on a kept-alive one); beyond it 408 and close (slowloris)."""
    body_timeout_s: float = Field(default=30.0, gt=0)
    """Seconds a request body may stall (no byte arriving while the server waits for one)
    before the connection is closed."""
    allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Comma-separated extra names a request's ``Host`` may carry (any port; ``*`` globs, e.g.
    ``*.internal``; ``*`` alone turns the check off). Loopback names, the bind host, the
    address a connection arrived on (a pod IP) and a worker's ``advertise_url`` host are
    always allowed; any other ``Host`` gets 421 (DNS-rebinding protection)."""
    allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Comma-separated extra browser origins (``https://app.example``, ``http://dash:*``). A
    request without ``Origin`` passes; loopback and same-origin ones pass; others get 403."""

    @field_validator("allowed_hosts", "allowed_origins", mode="before")
    @classmethod
    def _csv(cls, value: str | list[str] | None) -> list[str]:
        return split_csv(value)


class SupervisorSettings(_Serving):
    host: str = "127.0.0.1"
    """Interface to bind; a non-loopback one needs API tokens (or ``insecure``)."""
    port: int = Field(default=8700, ge=0, le=65535)
    """Port to bind."""
    redis_url: str = "memory://"
    """The job store: ``memory://`` (in process), ``redis://host:port/db`` or a Redis Cluster,
    ``redis+cluster://host:port,host:port`` (any of its nodes; see :mod:`shared.redis_urls`)."""
    workers: str = ""
    """Comma-separated worker MCP URLs (``http://host:port/mcp``), each optionally named
    ``service=URL`` (the service name then qualifies its capabilities: ``service.tool``)."""
    api_tokens: str = ""
    """Comma-separated bearer tokens, each ``[name=]token[:scope+scope]`` (scopes ``jobs:read``,
    ``jobs:write``, ``admin``; none given: all). Empty, and no JWT issuer: no auth, loopback
    binds only."""
    token_tenants: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    """Tenants of static tokens, ``name=tenant,...`` (names from ``api_tokens``, unnamed ones
    are ``token-<position>``). A token with a tenant sees only its tenant's jobs (unless it has
    ``admin``); one without sees every job."""
    jwt_tenant_claim: str = Field(default="tenant", min_length=1, max_length=100)
    """The JWT claim that names the caller's tenant; a JWT without it sees every job."""
    rate_submit_per_s: float = Field(default=0.0, ge=0)
    """Submissions allowed per second per tenant (per actor for a caller without a tenant),
    across every supervisor sharing the store; beyond, 429 ``RATE_LIMITED``. 0: no limit."""
    rate_burst: int = Field(default=0, ge=0)
    """Submissions allowed at once above ``rate_submit_per_s`` (the token bucket's size);
    0: one second's worth (at least 1)."""
    tenant_max_inflight: int = Field(default=0, ge=0)
    """Jobs in flight (queued or running) allowed per tenant (per actor without one); beyond,
    429 ``RATE_LIMITED``. 0: no limit."""
    tenant_max_watchers: int = Field(default=0, ge=0)
    """Event streams (SSE) open at once per tenant (per actor without one) on one supervisor;
    beyond, 429 ``RATE_LIMITED``. 0: no limit."""
    public_url: str | None = None
    """The supervisor's URL as clients and workers reach it (the OAuth resource it is; sent
    in every call's ``_meta`` so that a tool can delegate work to the fleet); unset:
    ``http://<host>:<port>`` (``127.0.0.1`` for a wildcard host)."""
    jwks_url: str | None = None
    """URL of the JWT issuer's key set (JWKS); set, the API accepts JWT access tokens too."""
    jwt_issuer: str | None = None
    """The ``iss`` a JWT must carry (required with ``jwks_url``)."""
    jwt_audience: str | None = None
    """The ``aud`` a JWT must carry; unset: the public URL (RFC 8707 resource indicator)."""
    jwt_algorithms: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["RS256", "ES256", "EdDSA"]
    )
    """Comma-separated JWT signature algorithms accepted (asymmetric only: never ``none`` or
    ``HS*``)."""
    jwt_leeway_s: float = Field(default=30.0, ge=0, le=300)
    """Clock skew allowed on ``exp``, ``nbf`` and ``iat``."""
    jwks_cache_s: float = Field(default=300.0, gt=0)
    """Seconds a fetched key set is used before it is fetched again."""
    jwks_refresh_min_s: float = Field(default=30.0, ge=0)
    """A token signed by a key not in the cached set (a rotation) fetches the set again, at
    most once per this many seconds."""
    insecure: bool = False
    """Allow a non-loopback bind with no API tokens."""
    worker_token: str | None = None
    """Bearer token sent to workers on every MCP call (to workers that passed
    ``registration_secret`` and ``worker_allow``), unless ``worker_tokens`` names their service."""
    worker_tokens: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    """Per-service worker tokens, ``service=token,...``: a worker registered (signed) under that
    name, or listed as ``service=URL`` in ``workers``, gets its own token instead of
    ``worker_token``."""
    registration_secret: str | None = Field(default=None, min_length=16)
    """Shared secret (16+ characters) workers sign their self-registrations with (HMAC-SHA256).
    Set: unsigned, badly signed and expired registrations are ignored. Unset: any registration
    in Redis is trusted."""
    worker_allow: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Comma-separated worker URL allowlist for static and registered workers alike: URL
    prefixes (``https://w1.internal:8701/mcp``, ``http://*.svc.cluster.local``), host globs
    (``worker-*``, ``*.internal``) or CIDRs (``10.0.0.0/8``, ``fd00::/8``; IP-literal hosts
    only). Empty: every URL is allowed."""
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    """Request body limit (413 beyond)."""
    shards: int | None = Field(default=None, ge=1, le=1024)
    """How many shards new jobs are spread over, each a hash slot of its own (its own
    dispatch queue, records and indexes), so a Redis Cluster's masters share a fleet. Unset:
    64 on a cluster, 1 elsewhere; ignored by ``memory://``. Raise it at will; lowering it
    leaves the higher shards' queued jobs untaken (see :mod:`shared.keys`)."""
    watch_connections: int = Field(default=64, ge=1)
    """Redis connections event watchers (SSE) read through: a pool apart from the one jobs
    are dispatched through, so watchers cannot make jobs wait for a connection."""
    queue_limit: int = Field(default=1000, ge=1)
    """Queued jobs allowed per capability before submissions get 429."""
    tenant_queue_share: float = Field(default=0.5, gt=0, le=1)
    """The part of a capability's ``queue_limit`` one tenant's queued jobs may take (fair
    admission: one tenant filling a queue leaves room for the others). Jobs without a
    tenant are not counted."""
    default_timeout_s: float = Field(default=60.0, gt=0)
    """Seconds an attempt of a job may take when its submission names no ``timeout_s``."""
    default_max_attempts: int = Field(default=3, ge=1, le=20)
    """Attempts a job gets when its submission names no ``max_attempts``."""
    max_depth: int = Field(default=4, ge=0, le=64)
    """How deep jobs may nest: a child of a top-level job is at depth 1; a submission deeper
    than this gets 422 ``DELEGATION_LIMIT`` (one runaway tool cannot recurse forever)."""
    max_children: int = Field(default=1000, ge=1)
    """How many children one job may submit (422 ``DELEGATION_LIMIT`` beyond): one bad tool
    cannot flood the fleet."""
    concurrency: int = Field(default=256, ge=1)
    """Jobs one supervisor process runs at once."""
    waiting_limit: int = Field(default=4096, ge=0)
    """Jobs one supervisor holds while they wait for a worker of their capability; they hold
    no slot of ``concurrency``, so a busy capability never blocks an idle one."""
    client_max_in_flight: int = Field(default=64, ge=1, le=95)
    """Calls in flight per pooled worker client (below httpx's 100-connection limit)."""
    lease_s: float = Field(default=15.0, gt=0)
    """A job held by a supervisor that stops renewing for this long is reclaimed by another."""
    probe_interval_s: float = Field(default=5.0, gt=0)
    """Seconds between health probes of each worker."""
    probe_failures_to_down: int = Field(default=2, ge=1, le=100)
    """Consecutive failed probes before a worker that was up is marked down (one failed probe
    is often a blip; a refused connection during a call marks it down at once)."""
    foreign_concurrency: int = Field(default=16, ge=1, le=95)
    """Calls in flight allowed per tool on a plain MCP server that declares no limit."""
    breaker_threshold: int = Field(default=5, ge=1)
    """Consecutive transport failures that open a worker's circuit breaker."""
    breaker_reset_s: float = Field(default=10.0, gt=0)
    """Seconds an open breaker waits before it lets one probe call through."""
    backoff_initial_s: float = Field(default=0.2, ge=0)
    """Base delay before a failed attempt is retried; it grows exponentially, with jitter."""
    backoff_max_s: float = Field(default=10.0, gt=0)
    """Longest retry delay."""
    busy_wait_s: float = Field(default=120.0, ge=0)
    """How long a job keeps retrying (with the backoff) workers that answer ``BUSY`` — all
    their slots taken, e.g. by other supervisors — before it fails with ``BUSY``. Such an
    answer is not an attempt: the call never reached the tool."""
    retention_s: int = Field(default=7 * 86_400, ge=60)
    """How long finished jobs and their events are kept."""
    idempotency_ttl_s: int = Field(default=86_400, ge=1)
    """How long an ``Idempotency-Key`` maps to its job."""
    sse_keepalive_s: float = Field(default=15.0, gt=0)
    """Seconds between keep-alive comments on an idle event stream."""

    @field_validator("redis_url")
    @classmethod
    def _store_url(cls, value: str) -> str:
        return check_store_url(value)

    @field_validator("workers")
    @classmethod
    def _workers(cls, value: str) -> str:
        return check_worker_entries(value)

    @field_validator("worker_allow", mode="before")
    @classmethod
    def _allow_csv(cls, value: str | list[str] | None) -> list[str]:
        patterns = split_csv(value)
        Allowlist.parse(patterns)  # a bad pattern fails at start, naming itself
        return patterns

    @field_validator("api_tokens")
    @classmethod
    def _api_tokens(cls, value: str) -> str:
        parse_api_tokens(value)  # a bad entry fails at start, by position
        return value

    @field_validator("token_tenants", mode="before")
    @classmethod
    def _token_tenants(
        cls, value: str | dict[str, str] | None, info: ValidationInfo
    ) -> dict[str, str]:
        if isinstance(value, dict):
            pairs = list(value.items())
        else:
            pairs = [(e.partition("=")[0], e.partition("=")[2]) for e in split_csv(value)]
        out: dict[str, str] = {}
        for number, (name, tenant) in enumerate(pairs, 1):
            name, tenant = name.strip(), tenant.strip()
            if not name or not TENANT_PATTERN.fullmatch(tenant):
                raise ValueError(
                    f"entry {number} is not name=tenant (a tenant is 1-64 letters, digits, "
                    "'.', '_' or '-')"
                )
            out[name] = tenant
        # api_tokens is declared first: validated (or failed, then absent) by now
        names = {t.name for t in parse_api_tokens(info.data.get("api_tokens") or "")}
        if set(out) - names:
            raise ValueError(f"names tokens not in FLEET_API_TOKENS: {sorted(set(out) - names)}")
        return out

    @field_validator("jwt_algorithms", mode="before")
    @classmethod
    def _algorithms(cls, value: str | list[str] | None) -> list[str]:
        algorithms = split_csv(value)
        if not algorithms:
            raise ValueError("name at least one algorithm")
        for alg in algorithms:
            if alg.lower() == "none" or alg.upper().startswith("HS"):
                raise ValueError(f"{alg!r} is not allowed: only asymmetric ones (RS, ES, EdDSA…)")
        return algorithms

    @model_validator(mode="after")
    def _jwt_complete(self) -> Self:
        if (self.jwks_url is None) != (self.jwt_issuer is None):
            raise ValueError("FLEET_JWKS_URL and FLEET_JWT_ISSUER go together: set both or neither")
        return self

    @field_validator("worker_tokens", mode="before")
    @classmethod
    def _service_tokens(cls, value: str | dict[str, str] | None) -> dict[str, str]:
        if isinstance(value, dict):
            return value
        out: dict[str, str] = {}
        for number, entry in enumerate(split_csv(value), 1):
            service, sep, token = entry.partition("=")
            if not sep or not service.strip() or not token.strip():  # never echo a secret back
                raise ValueError(f"entry {number} is not service=token")
            out[service.strip()] = token.strip()
        return out

    @property
    def worker_urls(self) -> list[str]:
        return split_csv(self.workers)

    @property
    def tokens(self) -> list[str]:
        """The secrets of ``api_tokens``."""
        return [token.secret for token in self.api_token_entries]

    @property
    def api_token_entries(self) -> list[ApiToken]:
        return parse_api_tokens(self.api_tokens)

    @property
    def jwt_enabled(self) -> bool:
        return self.jwks_url is not None

    @property
    def auth_enabled(self) -> bool:
        """Whether the API asks for a credential (static tokens or JWTs)."""
        return bool(self.api_tokens.strip()) or self.jwt_enabled

    @property
    def resource_url(self) -> str:
        """The public URL, without a trailing slash."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in _WILDCARD_HOSTS else self.host
        host = f"[{host}]" if ":" in host and not host.startswith("[") else host
        return f"http://{host}:{self.port}"


class WorkerSettings(_Serving):
    name: str | None = None
    """Service name (it qualifies the capabilities); unset: the worker's own, e.g. ``echo``."""
    host: str = "127.0.0.1"
    """Interface to bind; a non-loopback one needs ``worker_token`` (or ``insecure``)."""
    port: int = Field(default=8701, ge=0, le=65535)
    """Port to bind."""
    max_concurrency: int = Field(default=4, ge=1)
    """Default per-tool concurrency limit; a tool may declare its own."""
    redis_url: str | None = None
    """Shared idempotency store and self-registration. Unset or ``memory://``: in process."""
    advertise_url: str | None = None
    """The MCP URL supervisors should call; with ``redis_url`` turns on self-registration."""
    worker_token: str | None = None
    """When set, MCP calls must carry ``Authorization: Bearer <token>``."""
    registration_secret: str | None = Field(default=None, min_length=16)
    """Secret (16+ characters, the supervisor's ``registration_secret``) to sign this worker's
    self-registrations with (HMAC-SHA256); unset, they are unsigned."""
    insecure: bool = False
    """Allow a non-loopback bind with no ``worker_token``."""
    supervisor_url: str | None = None
    """The supervisor a tool delegates work to (``workers.kit.Fleet``); unset: the one that
    made the call, as it names itself in the call's ``_meta``."""
    supervisor_token: str | None = None
    """The token the tool's delegated submissions carry, when the supervisor needs one."""
    heartbeat_s: float = Field(default=5.0, gt=0)
    """Seconds between self-registration heartbeats."""
    grace_s: float = Field(default=10.0, ge=0)
    """Seconds in-flight calls get to finish on shutdown before they are cancelled."""
    idempotency_ttl_s: int = Field(default=86_400, ge=1)
    """How long a call's result is kept for a duplicate of it to replay."""
    idempotency_cache_bytes: int = Field(default=64 * 1024 * 1024, ge=0)
    """Total size of the results the in-process store (no ``redis_url``) keeps for replay;
    past it the least recently used go first."""
    idempotency_max_result_bytes: int = Field(default=8 * 1024 * 1024, ge=0)
    """A result larger than this is not stored (either store), so a duplicate of that call
    runs again."""

    @field_validator("redis_url")
    @classmethod
    def _memory_is_none(cls, value: str | None) -> str | None:
        return None if not value or check_store_url(value).startswith("memory://") else value
