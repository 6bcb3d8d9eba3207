"""Workflows as a client sees them: each step's state, folded from the workflow's events.

A workflow is a job (capability ``fleet:workflow``, input the spec) whose event log carries,
besides ``status`` and ``done``, one ``step`` event at each step's transition (and, for a map
step, as its items end). :class:`StepBoard` folds those events into the state of every step,
so a watcher draws the whole tree from the event stream alone, with no request per step:

    board = StepBoard.from_spec(job.input)
    async for event in fleet.watch(job.id):
        board.apply(event)
        print({name: (s.status, s.done, s.total) for name, s in board.steps.items()})

``GET /v1/workflows/{id}`` answers the same fold made by the supervisor (:class:`Workflow`).
These are the client's own small views: the client does not import the server's models.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.models import Event, Job, JobError

__all__ = ["STEP_ENDED", "StepBoard", "StepState", "Workflow"]

STEP_ENDED = frozenset({"succeeded", "failed", "skipped", "cancelled"})
"""A step in one of these statuses will not change again."""


class StepState(BaseModel):
    """One step of a workflow: ``pending`` until its first ``step`` event, then ``running``
    and one of :data:`STEP_ENDED`. ``total``/``done``/``failed`` count its items (a map
    step) or its one job (a plain step)."""

    model_config = ConfigDict(extra="ignore", defer_build=True)

    status: str = "pending"
    capability: str = ""
    map: bool = False
    total: int | None = None
    """None until known (a map step learns its item count when it starts)."""
    done: int = 0
    failed: int = 0
    job_ids: list[str] = Field(default_factory=list)
    error: JobError | None = None
    after: list[str] = Field(default_factory=list)
    """The steps it waits for (from the spec; the supervisor's answer may leave it out)."""

    @property
    def ended(self) -> bool:
        return self.status in STEP_ENDED


class Workflow(BaseModel):
    """``GET /v1/workflows/{id}``: the workflow's job and the state of each of its steps."""

    model_config = ConfigDict(extra="ignore", defer_build=True)

    job: Job
    steps: dict[str, StepState] = Field(default_factory=dict)


class StepBoard:
    """The state of every step of one workflow, kept up to date by its events.

    Steps keep the spec's order (the order the author wrote them). A ``step`` event for a step
    the spec did not name (an older spec, a board made without one) adds it at the end.
    """

    def __init__(self, steps: Mapping[str, StepState] | None = None) -> None:
        self.steps: dict[str, StepState] = dict(steps or {})

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any] | None) -> StepBoard:
        """Every step of the spec (the workflow job's ``input``) as ``pending``."""
        board = cls()
        raw = (spec or {}).get("steps")
        for name, step in (raw if isinstance(raw, Mapping) else {}).items():
            step = step if isinstance(step, Mapping) else {}
            after = step.get("after")
            board.steps[str(name)] = StepState(
                capability=str(step.get("capability") or ""),
                map=step.get("map") is not None,
                total=None if step.get("map") is not None else 1,
                after=[str(a) for a in after] if isinstance(after, list) else [],
            )
        return board

    @classmethod
    def of(cls, workflow: Workflow) -> StepBoard:
        """The supervisor's own fold; the spec fills in what its answer leaves out."""
        board = cls.from_spec(workflow.job.input)
        for name, state in workflow.steps.items():
            known = board.steps.get(name)
            if known is not None:
                state.capability = state.capability or known.capability
                state.after = state.after or known.after
                state.map = state.map or known.map
            board.steps[name] = state
        return board

    def apply(self, event: Event | Mapping[str, Any]) -> str | None:
        """Fold one event in; the name of the step it changed (None for any other event)."""
        kind = event.type if isinstance(event, Event) else event.get("type")
        data = event.data if isinstance(event, Event) else event.get("data")
        if kind != "step" or not isinstance(data, Mapping) or not data.get("step"):
            return None
        name = str(data["step"])
        step = self.steps.setdefault(name, StepState())
        if data.get("status"):
            step.status = str(data["status"])
        for counter in ("done", "failed"):
            if isinstance(data.get(counter), int):
                setattr(step, counter, data[counter])
        if isinstance(data.get("total"), int):
            step.total = data["total"]
        if isinstance(data.get("job_ids"), list):
            step.job_ids = [str(j) for j in data["job_ids"]]
        error = data.get("error")
        if isinstance(error, Mapping):
            step.error = JobError(
                code=str(error.get("code") or "STEP_FAILED"),
                message=str(error.get("message") or ""),
                details=dict(error.get("details") or {}),
            )
        if step.status == "succeeded" and step.total is not None:
            step.done = max(step.done, step.total - step.failed)
        return name

    def units(self) -> tuple[int, int | None]:
        """Items done over items in all, every step summed (None while a map's count is not
        known); a step that was skipped or cancelled counts as done: nothing is left of it."""
        done, total = 0, 0
        known = True
        for step in self.steps.values():
            if step.total is None:
                known = False
                continue
            total += step.total
            done += step.total if step.status in ("skipped", "cancelled") else step.done
        return done, (total if known else None)
