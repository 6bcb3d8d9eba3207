"""What a submitted job must satisfy before it is stored: a strict JSON body that is a
:class:`~shared.JobSubmit`, a capability some worker serves, and input valid against that
capability's schema."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from collections.abc import Iterable, Mapping
from typing import Any

import jsonschema
from fastapi import Request
from pydantic import ValidationError

from shared import (
    InvalidInput,
    JobSubmit,
    StoreUnavailable,
    UnknownCapability,
    ValidationFailed,
    get_logger,
)
from shared.errors import NoHealthyWorker
from supervisor.api.limits import parse_json_body
from supervisor.registry import Target
from supervisor.services import Services

__all__ = ["check_capability", "parse_submit", "validation_details"]

log = get_logger("fleet.api")


def validation_details(errors: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Pydantic's (or FastAPI's) errors as ``details.errors``: each a ``field`` and ``message``."""
    return [{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in errors]


def _schema_path(error: jsonschema.ValidationError) -> str:
    field = "input"
    for part in error.absolute_path:
        field += f"[{part}]" if isinstance(part, int) else f".{part}"
    if error.validator == "required" and isinstance(error.message, str):
        missing = error.message.split("'")[1] if "'" in error.message else ""
        field += f".{missing}" if missing else ""
    return field


async def parse_submit(request: Request, idem_header: str | None) -> JobSubmit:
    raw = await request.body()
    data = parse_json_body(raw) if raw else None  # strict: see supervisor.api.limits
    if not isinstance(data, dict):
        raise ValidationFailed("request body must be a JSON object", details={"field": "body"})
    try:
        body = JobSubmit.model_validate(data)
    except ValidationError as exc:
        errors = validation_details(exc.errors())
        raise ValidationFailed(
            f"invalid job: {errors[0]['field']}: {errors[0]['message']}",
            details={"field": errors[0]["field"], "errors": errors},
        ) from exc
    if idem_header:
        if body.idempotency_key and body.idempotency_key != idem_header:
            raise ValidationFailed(
                "Idempotency-Key header and body idempotency_key differ",
                details={"field": "idempotency_key"},
            )
        body.idempotency_key = idem_header
    return body


@functools.lru_cache(maxsize=512)
def _validator(schema: str) -> jsonschema.protocols.Validator:
    """Validators are costly to build and schemas change rarely: one per distinct schema."""
    loaded = json.loads(schema)
    cls = jsonschema.validators.validator_for(loaded, default=jsonschema.Draft202012Validator)
    return cls(loaded)


_BY_OBJECT: dict[int, tuple[dict[str, Any], jsonschema.protocols.Validator]] = {}
"""id(schema) → (that schema, its validator): a capability's schema is one dict from one probe
to the next (discovery builds new ones; nothing edits them), so the text key of
:func:`_validator` (a ``json.dumps`` of the schema per submission) is needed only once per
dict. The dict itself is held, so its id cannot be reused while it is here."""


def _validator_of(schema: dict[str, Any]) -> jsonschema.protocols.Validator:
    known = _BY_OBJECT.get(id(schema))
    if known is not None and known[0] is schema:
        return known[1]
    validator = _validator(json.dumps(schema, sort_keys=True))
    if len(_BY_OBJECT) >= 512:
        _BY_OBJECT.clear()
    _BY_OBJECT[id(schema)] = (schema, validator)
    return validator


async def check_capability(svc: Services, body: JobSubmit) -> Target:
    """The (service, tool, schema) the job is for; its input is valid against that schema."""
    registry = svc.registry
    if not registry.probed.is_set():  # first probe round still running: wait for it, briefly
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(registry.probed.wait(), 5.0)
    try:
        target = registry.resolve(body.capability)  # UnknownCapability names the choices
    except UnknownCapability:
        if registry.registrations_error is not None:  # maybe registered, but Redis is down
            raise StoreUnavailable(
                "the store is unreachable, so self-registered workers cannot be listed: "
                f"{registry.registrations_error}",
                details={"capability": body.capability},
            ) from None
        unheard = registry.unheard()
        if unheard:  # a worker that never answered may well serve it: not "unknown"
            raise NoHealthyWorker(
                f"no healthy worker offers capability {body.capability!r} right now: "
                + "; ".join(f"worker {w.url} is down ({w.down_reason})" for w in unheard[:3])
                + ("; …" if len(unheard) > 3 else "")
                + "; it may serve it once it is up: start it, or check FLEET_WORKERS",
                details={
                    "field": "capability",
                    "workers": [
                        {"name": w.name, "url": w.url, "down_reason": w.down_reason}
                        for w in unheard
                    ],
                },
            ) from None
        raise
    spec = target.spec
    if body.worker and not any(
        w.answers_to(body.worker) and w.serves(target.service, target.tool, None)
        for w in registry.workers.values()
    ):
        raise ValidationFailed(
            f"no known worker {body.worker!r} serves {body.capability!r}",
            details={"field": "worker"},
        )
    if spec.input_schema:
        try:
            validator = _validator_of(spec.input_schema)
            error = jsonschema.exceptions.best_match(validator.iter_errors(body.input))
        except Exception as exc:  # the worker's schema is broken ({"type": 5}, a dangling
            # $ref): not the client's fault, and the worker checks its own input anyway
            log.warning("api.input_schema_unusable", capability=body.capability, error=repr(exc))
            error = None
        if error is not None:
            field = _schema_path(error)
            reason = error.message if len(error.message) <= 500 else error.message[:500] + "…"
            raise InvalidInput(
                f"{field}: {reason}",
                details={"field": field, "reason": reason, "schema": spec.input_schema},
            )
    return target
