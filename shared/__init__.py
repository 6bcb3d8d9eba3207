"""What supervisor and workers both speak: models, errors, settings, logging, telemetry, keys.

Every name below is imported on first use (PEP 562), not when ``shared`` is: the client and
the CLI import ``shared`` with only the base install (no structlog, no OpenTelemetry), and
``fleet --help`` does not pay for the server stack. ``from shared import Job`` works as
before; a new export is one line in ``_WHERE`` and one in the ``TYPE_CHECKING`` block.
"""

import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:
    from shared.client_settings import ClientSettings
    from shared.errors import (
        AdmissionRefused,
        BadRequest,
        FleetError,
        Forbidden,
        IdempotencyConflict,
        InvalidInput,
        JobFinished,
        JobNotFound,
        PayloadTooLarge,
        StoreUnavailable,
        ToolFailed,
        Unauthorized,
        UnknownCapability,
        ValidationFailed,
        WorkerBadResponse,
        WorkerBusy,
        WorkerCallError,
        WorkerDropped,
        WorkerHttpError,
        WorkerRefused,
        WorkerTimeout,
        WorkerUnreachable,
    )
    from shared.keys import DISPATCH_GROUP, Keys
    from shared.logs import bind, configure_logging, get_logger
    from shared.models import (
        TERMINAL_STATUSES,
        CapabilitiesReport,
        CapabilitySpec,
        Event,
        Job,
        JobError,
        JobStatus,
        JobSubmit,
        Load,
        Progress,
        Usage,
        WorkerRegistration,
        now,
    )
    from shared.protocol import (
        CAPABILITIES_TOOL,
        HEADER_CORRELATION_ID,
        HEADER_IDEMPOTENCY_KEY,
        HEADER_JOB_ID,
        META_ATTEMPT,
        META_CORRELATION_ID,
        META_IDEMPOTENCY_KEY,
        META_JOB_ID,
        ToolErrorPayload,
        decode_tool_error,
        encode_tool_error,
    )
    from shared.settings import SupervisorSettings, WorkerSettings, split_csv
    from shared.telemetry import configure_tracing, current_trace_id, labels, tracer

_WHERE: dict[str, str] = {
    "AdmissionRefused": "errors",
    "BadRequest": "errors",
    "FleetError": "errors",
    "Forbidden": "errors",
    "IdempotencyConflict": "errors",
    "InvalidInput": "errors",
    "JobFinished": "errors",
    "JobNotFound": "errors",
    "PayloadTooLarge": "errors",
    "StoreUnavailable": "errors",
    "ToolFailed": "errors",
    "Unauthorized": "errors",
    "UnknownCapability": "errors",
    "ValidationFailed": "errors",
    "WorkerBadResponse": "errors",
    "WorkerBusy": "errors",
    "WorkerCallError": "errors",
    "WorkerDropped": "errors",
    "WorkerHttpError": "errors",
    "WorkerRefused": "errors",
    "WorkerTimeout": "errors",
    "WorkerUnreachable": "errors",
    "DISPATCH_GROUP": "keys",
    "Keys": "keys",
    "bind": "logs",
    "configure_logging": "logs",
    "get_logger": "logs",
    "TERMINAL_STATUSES": "models",
    "CapabilitiesReport": "models",
    "CapabilitySpec": "models",
    "Event": "models",
    "Job": "models",
    "JobError": "models",
    "JobStatus": "models",
    "JobSubmit": "models",
    "Load": "models",
    "Progress": "models",
    "Usage": "models",
    "WorkerRegistration": "models",
    "now": "models",
    "CAPABILITIES_TOOL": "protocol",
    "HEADER_CORRELATION_ID": "protocol",
    "HEADER_IDEMPOTENCY_KEY": "protocol",
    "HEADER_JOB_ID": "protocol",
    "META_ATTEMPT": "protocol",
    "META_CORRELATION_ID": "protocol",
    "META_IDEMPOTENCY_KEY": "protocol",
    "META_JOB_ID": "protocol",
    "ToolErrorPayload": "protocol",
    "decode_tool_error": "protocol",
    "encode_tool_error": "protocol",
    "ClientSettings": "client_settings",
    "SupervisorSettings": "settings",
    "WorkerSettings": "settings",
    "split_csv": "settings",
    "configure_tracing": "telemetry",
    "current_trace_id": "telemetry",
    "labels": "telemetry",
    "tracer": "telemetry",
}


def __getattr__(name: str) -> _typing.Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'shared' has no attribute {name!r}")
    value = getattr(_importlib.import_module(f"shared.{module}"), name)
    globals()[name] = value  # once: later look-ups do not come here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "CAPABILITIES_TOOL",
    "DISPATCH_GROUP",
    "HEADER_CORRELATION_ID",
    "HEADER_IDEMPOTENCY_KEY",
    "HEADER_JOB_ID",
    "META_ATTEMPT",
    "META_CORRELATION_ID",
    "META_IDEMPOTENCY_KEY",
    "META_JOB_ID",
    "TERMINAL_STATUSES",
    "AdmissionRefused",
    "BadRequest",
    "CapabilitiesReport",
    "CapabilitySpec",
    "ClientSettings",
    "Event",
    "FleetError",
    "Forbidden",
    "IdempotencyConflict",
    "InvalidInput",
    "Job",
    "JobError",
    "JobFinished",
    "JobNotFound",
    "JobStatus",
    "JobSubmit",
    "Keys",
    "Load",
    "PayloadTooLarge",
    "Progress",
    "StoreUnavailable",
    "SupervisorSettings",
    "ToolErrorPayload",
    "ToolFailed",
    "Unauthorized",
    "UnknownCapability",
    "Usage",
    "ValidationFailed",
    "WorkerBadResponse",
    "WorkerBusy",
    "WorkerCallError",
    "WorkerDropped",
    "WorkerHttpError",
    "WorkerRefused",
    "WorkerRegistration",
    "WorkerSettings",
    "WorkerTimeout",
    "WorkerUnreachable",
    "bind",
    "configure_logging",
    "configure_tracing",
    "current_trace_id",
    "decode_tool_error",
    "encode_tool_error",
    "get_logger",
    "labels",
    "now",
    "split_csv",
    "tracer",
]
