"""The job hash's field codec: which fields are raw, and how a record is encoded and decoded."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from shared import Job, JobNotFound
from supervisor.fastjson import dumps

# Fields stored raw rather than JSON-encoded, because the Lua scripts read them.
RAW = {"status", "capability", "correlation_id", "cancel"}
# Internal fields of the job hash handed out beside the job (not part of the Job model).
FLAGS = {"cancel", "fence", "run_start"}
JOB_FIELDS = tuple(f for f in Job.model_fields if f != "children")
USAGE_FIGURES = ("jobs", "attempts", "worker_us", "bytes_in", "bytes_out")
"""The usage ledger's figures per (tenant, capability), in the order TRANSITION takes them."""


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _json_default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return str(value)


def encode_fields(fields: dict[str, Any]) -> list[str]:
    flat: list[str] = []
    for name, value in fields.items():
        flat.append(name)
        if name in RAW:
            flat.append(str(value))
        else:
            flat.append(dumps(value, _json_default))
    return flat


def job_fields(job: Job) -> dict[str, Any]:
    return job.model_dump(mode="json", exclude={"children"})  # a list of its own


def decode_job(raw: dict[Any, Any]) -> Job:
    data: dict[str, Any] = {}
    for key, value in raw.items():
        name = text(key)
        if name not in JOB_FIELDS:
            continue
        value_text = text(value)
        data[name] = value_text if name in RAW else json.loads(value_text)
    return Job.model_validate(data)


def job_and_flags(job_id: str, raw: Any) -> tuple[Job, dict[str, str]]:
    if isinstance(raw, list):  # a script's HGETALL reply: field, value, field, value ...
        raw = dict(zip(raw[::2], raw[1::2], strict=True))
    if not raw:
        raise JobNotFound(f"no job with id {job_id!r}", details={"job_id": job_id})
    flags = {text(k): text(v) for k, v in raw.items() if text(k) in FLAGS}
    return decode_job(raw), flags


def entry_id_of(entry: str) -> str:
    """The stream entry id of a dispatch delivery as the store hands it out: on a sharded
    store ``{entry id}@{shard}`` (the shard's queue holds it), else the entry id itself."""
    return entry.partition("@")[0]


def shard_of_entry(entry: str) -> int:
    _, _, shard = entry.partition("@")
    return int(shard) if shard else 0
