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
    """The capability's queue is at its limit (the API turns this into 429)."""

    def __init__(self, depth: int) -> None:
        super().__init__(f"queue depth {depth}")
        self.depth = depth
