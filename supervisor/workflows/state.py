"""A workflow's steps as its event log tells them: folded from the ``step`` events, so any
replica answers ``GET /v1/workflows/{id}`` and a resumed run knows what was written.

Each ``step`` event carries the step's state after a transition (or, for a map step, after
items ended): ``{"step", "status", "total", "done", "failed", "job_ids"?, "error"?}``. The
last event of a step is its state; ``job_ids`` is kept from the last event that had it.

    >>> fold([{"step": "a", "status": "running", "total": 1, "job_ids": ["j1"]},
    ...       {"step": "a", "status": "succeeded", "total": 1, "done": 1}])["a"].job_ids
    ['j1']
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field

from shared import Event, Job

__all__ = ["ENDED", "STATUSES", "StepState", "StepView", "WorkflowView", "fold", "steps_view"]

STATUSES = ("pending", "running", "succeeded", "failed", "skipped", "cancelled")
ENDED = frozenset({"succeeded", "failed", "skipped", "cancelled"})


@dataclass
class StepState:
    status: str = "pending"
    total: int | None = None
    """Child jobs the step runs: 1, or a map step's items (None until its list is known)."""
    done: int = 0
    """Children that succeeded."""
    failed: int = 0
    job_ids: list[str] = field(default_factory=list)
    error: dict[str, Any] | None = None

    def event(self, step: str, *, with_ids: bool) -> dict[str, Any]:
        """The ``step`` event that records this state."""
        data: dict[str, Any] = {
            "step": step,
            "status": self.status,
            "total": self.total,
            "done": self.done,
            "failed": self.failed,
        }
        if with_ids:
            data["job_ids"] = list(self.job_ids)
        if self.error is not None:
            data["error"] = self.error
        return data

    @property
    def ended(self) -> bool:
        return self.status in ENDED


def fold(events: Iterable[Event | Mapping[str, Any]]) -> dict[str, StepState]:
    """Each step's state after ``events`` (whole events, or the data of ``step`` events)."""
    states: dict[str, StepState] = {}
    for event in events:
        if isinstance(event, Event):
            if event.type != "step":
                continue
            data: Mapping[str, Any] = event.data
        else:
            data = event
        name = data.get("step")
        if not isinstance(name, str):
            continue
        state = states.setdefault(name, StepState())
        state.status = str(data.get("status", state.status))
        state.total = data.get("total", state.total)
        state.done = int(data.get("done") or 0)
        state.failed = int(data.get("failed") or 0)
        if isinstance(data.get("job_ids"), list):
            state.job_ids = [str(i) for i in data["job_ids"]]
        state.error = data.get("error")
    return states


def steps_view(spec: Mapping[str, Any], states: Mapping[str, StepState]) -> dict[str, Any]:
    """``GET /v1/workflows/{id}``'s ``steps``: every step of the spec (in its order), with its
    capability, whether it maps, and its folded state (``pending`` before its first event)."""
    out: dict[str, Any] = {}
    for name, step in (spec.get("steps") or {}).items():
        state = states.get(name, StepState())
        mapped = isinstance(step, dict) and step.get("map") is not None
        out[name] = {
            "status": state.status,
            "capability": step.get("capability") if isinstance(step, dict) else None,
            "map": mapped,
            "total": state.total if state.total is not None else (None if mapped else 1),
            "done": state.done,
            "failed": state.failed,
            "job_ids": state.job_ids,
            "error": state.error,
        }
    return out


class StepView(BaseModel):
    """One step in ``GET /v1/workflows/{id}``."""

    status: str = Field(description="pending, running, succeeded, failed, skipped or cancelled.")
    capability: str | None = None
    map: bool = False
    total: int | None = Field(
        default=None, description="Its child jobs: 1, or a map step's items (null: not known yet)."
    )
    done: int = Field(default=0, description="Children that succeeded.")
    failed: int = 0
    job_ids: list[str] = Field(default_factory=list, description="Its child jobs, in item order.")
    error: dict[str, Any] | None = None


class WorkflowView(BaseModel):
    """``GET /v1/workflows/{id}``: the workflow's job and each step's state."""

    job: Job
    steps: dict[str, StepView]
