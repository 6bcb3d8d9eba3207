"""Job ids and generated correlation ids: a UUID4's 32 hex digits, as ``uuid.uuid4().hex``."""

from __future__ import annotations

import os
import uuid

from supervisor.api.limits import is_job_id, new_job_id, uuid4_hex
from supervisor.api.middleware import correlation_id


def test_the_same_digits_as_a_uuid4_of_the_same_bytes() -> None:
    for raw in [bytes(16), b"\xff" * 16, bytes(range(16)), *(os.urandom(16) for _ in range(500))]:
        assert uuid4_hex(raw) == uuid.UUID(bytes=raw, version=4).hex


def test_fresh_ids_are_uuid4s() -> None:
    ids = [new_job_id() for _ in range(500)] + [correlation_id() for _ in range(500)]
    assert len(set(ids)) == len(ids)
    for value in ids:
        assert is_job_id(value)
        parsed = uuid.UUID(hex=value)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
        assert parsed.hex == value
