"""One error tree for the whole fleet. Each class has one stable ``code`` and one HTTP status.

    FleetError                      500 INTERNAL
    ├── BadRequest                  400 BAD_REQUEST (bad JSON, unreadable body)
    ├── Unauthorized                401 UNAUTHORIZED (no bearer token)
    │   └── InvalidToken            401 INVALID_TOKEN (unknown, expired, badly signed …)
    ├── Forbidden                   403 FORBIDDEN
    │   ├── InsufficientScope       403 INSUFFICIENT_SCOPE (carries the scope needed)
    │   └── OriginNotAllowed        403 ORIGIN_NOT_ALLOWED (DNS rebinding, CSRF)
    ├── NotFound                    404 NOT_FOUND
    │   └── JobNotFound             404 JOB_NOT_FOUND
    ├── Conflict                    409 CONFLICT
    │   ├── IdempotencyConflict     409 IDEMPOTENCY_CONFLICT
    │   └── JobFinished             409 JOB_FINISHED
    ├── PayloadTooLarge             413 PAYLOAD_TOO_LARGE
    ├── UnsupportedMediaType        415 UNSUPPORTED_MEDIA_TYPE (a body that is not JSON)
    ├── HostNotAllowed              421 HOST_NOT_ALLOWED (DNS rebinding)
    ├── ValidationFailed            422 VALIDATION_ERROR
    │   ├── UnknownCapability       422 UNKNOWN_CAPABILITY
    │   └── InvalidInput            422 INVALID_INPUT
    ├── AdmissionRefused            429 QUEUE_FULL (carries retry_after)
    │   └── RateLimited             429 RATE_LIMITED (a tenant's limit; names it)
    ├── StoreUnavailable            503 STORE_UNAVAILABLE
    ├── NoHealthyWorker             503 NO_HEALTHY_WORKER (names the workers down and why)
    ├── KeysUnavailable             503 JWKS_UNAVAILABLE (the JWT issuer's keys)
    └── WorkerCallError             502 (never sent as an HTTP error: ends up in job.error)
        ├── WorkerBusy              BUSY          never delivered; retryable
        ├── WorkerUnreachable       UNREACHABLE   never delivered; retryable
        ├── WorkerRefused           REFUSED       never delivered (an HTTP 4xx or a protocol
        │                                         refusal before the tool ran); retryable
        ├── WorkerTimeout           TIMEOUT       possibly delivered
        ├── WorkerDropped           DROPPED       possibly delivered (the answer stopped short)
        ├── WorkerBadResponse       BAD_RESPONSE  possibly delivered (not a JSON-RPC answer:
        │                                         an HTML page, a gateway's {"message"} ...)
        ├── WorkerHttpError         HTTP_ERROR    possibly delivered (a 5xx status)
        └── ToolFailed              <worker code> the tool ran and failed; permanent unless
                                                  the worker says retryable

Every :class:`WorkerCallError` says whether the call may have reached the tool
(``delivered``): a *never delivered* failure is safe to retry anywhere; a *possibly delivered*
one is retried only when the capability is idempotent or the worker de-duplicates. The job's
``error.details.delivery`` shows it (``never`` / ``possibly``).

The HTTP body of an error is ``{"error": {"code", "message", "details"}}`` (:meth:`to_body`).
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "AdmissionRefused",
    "BadRequest",
    "Conflict",
    "DelegationLimit",
    "FleetError",
    "Forbidden",
    "HostNotAllowed",
    "IdempotencyConflict",
    "InsufficientScope",
    "InvalidInput",
    "InvalidToken",
    "JobFinished",
    "JobNotFound",
    "KeysUnavailable",
    "NoHealthyWorker",
    "NotFound",
    "OriginNotAllowed",
    "PayloadTooLarge",
    "RateLimited",
    "StoreUnavailable",
    "ToolFailed",
    "Unauthorized",
    "UnknownCapability",
    "UnsupportedMediaType",
    "ValidationFailed",
    "WorkerBadResponse",
    "WorkerBusy",
    "WorkerCallError",
    "WorkerDropped",
    "WorkerHttpError",
    "WorkerRefused",
    "WorkerTimeout",
    "WorkerUnreachable",
]


class FleetError(Exception):
    """Base of every error the fleet raises on purpose.

    >>> FleetError("boom", details={"x": 1}).to_body()
    {'error': {'code': 'INTERNAL', 'message': 'boom', 'details': {'x': 1}}}
    """

    code: ClassVar[str] = "INTERNAL"
    status: ClassVar[int] = 500

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details or {}

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}

    def to_body(self) -> dict[str, Any]:
        return {"error": self.to_dict()}


class BadRequest(FleetError):
    code = "BAD_REQUEST"
    status = 400


class Unauthorized(FleetError):
    """No credential. ``resource_metadata``: the URL of the API's RFC 9728 document, which the
    ``WWW-Authenticate`` challenge names when JWTs are accepted."""

    code = "UNAUTHORIZED"
    status = 401

    def __init__(
        self,
        message: str,
        *,
        resource_metadata: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message, details=details)
        self.resource_metadata = resource_metadata


class InvalidToken(Unauthorized):
    """A bearer token that is not accepted; ``details.reason`` says why (never the token)."""

    code = "INVALID_TOKEN"


class Forbidden(FleetError):
    code = "FORBIDDEN"
    status = 403


class InsufficientScope(Forbidden):
    """A valid token without the scope the route needs (``scope``)."""

    code = "INSUFFICIENT_SCOPE"

    def __init__(
        self,
        message: str,
        *,
        scope: str,
        resource_metadata: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message, details={**(details or {}), "required_scope": scope})
        self.scope = scope
        self.resource_metadata = resource_metadata


class OriginNotAllowed(Forbidden):
    code = "ORIGIN_NOT_ALLOWED"


class NotFound(FleetError):
    code = "NOT_FOUND"
    status = 404


class JobNotFound(NotFound):
    code = "JOB_NOT_FOUND"


class Conflict(FleetError):
    code = "CONFLICT"
    status = 409


class IdempotencyConflict(Conflict):
    code = "IDEMPOTENCY_CONFLICT"


class JobFinished(Conflict):
    code = "JOB_FINISHED"


class AmbiguousJobId(Conflict):
    """A short id that more than one job's id starts with; ``details.candidates`` lists them."""

    code = "AMBIGUOUS_JOB_ID"


class PayloadTooLarge(FleetError):
    code = "PAYLOAD_TOO_LARGE"
    status = 413


class UnsupportedMediaType(FleetError):
    code = "UNSUPPORTED_MEDIA_TYPE"
    status = 415


class HostNotAllowed(FleetError):
    code = "HOST_NOT_ALLOWED"
    status = 421


class ValidationFailed(FleetError):
    code = "VALIDATION_ERROR"
    status = 422


class UnknownCapability(ValidationFailed):
    code = "UNKNOWN_CAPABILITY"


class InvalidInput(ValidationFailed):
    code = "INVALID_INPUT"


class DelegationLimit(ValidationFailed):
    """A child job past a limit: ``details.limit`` is ``depth`` (FLEET_MAX_DEPTH) or
    ``children`` (FLEET_MAX_CHILDREN), ``details.max`` its value."""

    code = "DELEGATION_LIMIT"


class AdmissionRefused(FleetError):
    code = "QUEUE_FULL"
    status = 429

    def __init__(
        self, message: str, *, retry_after: int = 1, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message, details={**(details or {}), "retry_after": retry_after})
        self.retry_after = retry_after


class RateLimited(AdmissionRefused):
    """A tenant (or an actor without one) is over a limit: ``details.limit`` is
    ``submit_rate`` (FLEET_RATE_SUBMIT_PER_S), ``in_flight`` (FLEET_TENANT_MAX_INFLIGHT) or
    ``watchers`` (FLEET_TENANT_MAX_WATCHERS)."""

    code = "RATE_LIMITED"


class StoreUnavailable(FleetError):
    code = "STORE_UNAVAILABLE"
    status = 503


class NoHealthyWorker(FleetError):
    """No healthy worker can say whether it serves the capability right now: the workers that
    might are down and were never heard from (``details.workers``: each one's name, url and
    why it is down). Unlike ``UNKNOWN_CAPABILITY``, retrying once they are up can succeed."""

    code = "NO_HEALTHY_WORKER"
    status = 503


class KeysUnavailable(FleetError):
    """The JWT issuer's key set (JWKS) could not be fetched, and none is cached."""

    code = "JWKS_UNAVAILABLE"
    status = 503


class WorkerCallError(FleetError):
    """A call to a worker failed.

    ``delivered``: the call may have reached the tool (False: it certainly did not).
    ``retryable``: for a never-delivered failure, whether another attempt can help; for a
    tool's own failure, what the worker said. A possibly delivered transport failure is
    retried by the dispatcher's rule (idempotent capability or de-duplicating worker).
    """

    code = "WORKER_ERROR"
    status = 502
    retryable: bool = False
    delivered: bool = True

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        retryable: bool | None = None,
        delivered: bool | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message, details=details)
        if code is not None:
            self.code = code  # type: ignore[misc]  # a worker's own stable code, per instance
        if retryable is not None:
            self.retryable = retryable
        if delivered is not None:
            self.delivered = delivered
        self.details.setdefault("delivery", "possibly" if self.delivered else "never")


class WorkerBusy(WorkerCallError):
    code = "BUSY"
    retryable = True
    delivered = False


class WorkerUnreachable(WorkerCallError):
    code = "UNREACHABLE"
    retryable = True
    delivered = False


class WorkerRefused(WorkerCallError):
    code = "REFUSED"
    retryable = True
    delivered = False


class WorkerTimeout(WorkerCallError):
    code = "TIMEOUT"


class WorkerDropped(WorkerCallError):
    code = "DROPPED"


class WorkerBadResponse(WorkerCallError):
    code = "BAD_RESPONSE"


class WorkerHttpError(WorkerCallError):
    code = "HTTP_ERROR"


class ToolFailed(WorkerCallError):
    code = "TOOL_ERROR"
