"""The store's refusals: a stale fence, a full queue."""

from __future__ import annotations


class Fenced(Exception):
    """A write by a holder whose lease was taken over (its fence token is stale)."""


def check_fence(result: int, job_id: str) -> int:
    """A script's result, or :class:`Fenced` for its -2 (refused by fence)."""
    if result == -2:
        raise Fenced(job_id)
    return result


class AdmissionFull(Exception):
    """The capability's queue is at its limit, or the job's tenant holds its share of it
    (``tenant`` set, ``depth`` its count) — the API turns this into 429."""

    def __init__(self, depth: int, tenant: str | None = None) -> None:
        super().__init__(f"queue depth {depth}")
        self.depth = depth
        self.tenant = tenant
