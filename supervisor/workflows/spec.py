"""What a workflow is: the body of ``POST /v1/workflows`` (:class:`WorkflowSpec`) and the
checks it passes before it is stored (:func:`plan`), all pure.

    spec = WorkflowSpec.model_validate({
        "input": {"text": "…"},
        "steps": {
            "split": {"capability": "chunk_text", "input": {"text": "$.input.text"}},
            "each": {"capability": "extract_keywords", "map": "$.steps.split.result.chunks",
                     "concurrency": 8, "input": {"text": "$.item.text"}},
        },
    })
    plan(spec).order          # ('split', 'each'): each needs split (it reads its result)

A step depends on the steps it names in ``after`` and on every step its references read.
Every problem is an :class:`~shared.errors.InvalidWorkflow` (422) whose details name the
step, the field and the reason: an unknown step, a cycle, a reference that does not parse or
reads what it cannot (``$.item`` outside a map, ``.result`` of a map step), a ``map`` that is
not a reference, no steps, too many.
"""

from __future__ import annotations

import graphlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.errors import InvalidWorkflow
from shared.models import MAX_IDEMPOTENCY_KEY, MAX_LABELS
from supervisor.workflows.refs import Ref, RefError, is_ref, parse, refs_in

__all__ = [
    "DEFAULT_CONCURRENCY",
    "MAX_CONCURRENCY",
    "MAX_MAP_ITEMS",
    "MAX_STEPS",
    "SUBMITTED_BY",
    "Plan",
    "StepSpec",
    "WorkflowSpec",
    "invalid",
    "parse_spec",
    "plan",
]

MAX_STEPS = 100
"""Most steps in one workflow."""
MAX_MAP_ITEMS = 10_000
"""Most items one map step runs over (each is a child job; FLEET_MAX_CHILDREN caps the
workflow's children as a whole)."""
DEFAULT_CONCURRENCY = 8
"""A map step's items in flight at once when it does not say."""
MAX_CONCURRENCY = 1000
SUBMITTED_BY = "submitted_by"
"""The key of the stored workflow (the job's input) that names the actor who submitted it:
its children count against that actor's limits (a tenant's workflow: the tenant's)."""
STEP_NAME = r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$"
CAPABILITY = r"^[A-Za-z0-9_.:/-]+$"
IDEMPOTENCY_KEY = r"^[^\x00-\x1f\x7f]+$"


class StepSpec(BaseModel):
    """One step: a capability called once (a plain step) or once per item of a list (``map``)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    capability: str = Field(min_length=1, max_length=200, pattern=CAPABILITY)
    input: dict[str, Any] = Field(
        default_factory=dict, description="The capability's arguments; strings may be references."
    )
    after: list[str] = Field(
        default_factory=list,
        max_length=MAX_STEPS,
        description="Steps that must succeed first (besides those the references read).",
    )
    map: str | None = Field(
        default=None,
        description="A reference to a list: the step runs once per item ($.item, $.index).",
    )
    concurrency: int | None = Field(
        default=None,
        ge=1,
        le=MAX_CONCURRENCY,
        description=f"A map step's items in flight at once (default {DEFAULT_CONCURRENCY}).",
    )
    max_attempts: int | None = Field(default=None, ge=1, le=20)
    timeout_s: float | None = Field(default=None, ge=0.001, le=86_400)
    idempotency_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_IDEMPOTENCY_KEY,
        pattern=IDEMPOTENCY_KEY,
        description="The child job's key (may be a reference, e.g. $.item.id); default: "
        "derived from the workflow's id, the step and the item's index.",
    )
    labels: dict[str, str] = Field(default_factory=dict, max_length=MAX_LABELS)


class WorkflowSpec(BaseModel):
    """The body of ``POST /v1/workflows``; also the workflow job's ``input``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str | None = Field(default=None, min_length=1, max_length=200)
    input: dict[str, Any] = Field(default_factory=dict)
    steps: dict[str, StepSpec]
    output: Any = Field(
        default=None,
        description="The workflow's result, a JSON template with references; default: the "
        "result of its one last step (several: an object of them by name).",
    )
    on_failure: Literal["fail_fast", "continue"] = "fail_fast"
    idempotency_key: str | None = Field(
        default=None, min_length=1, max_length=MAX_IDEMPOTENCY_KEY, pattern=IDEMPOTENCY_KEY
    )
    labels: dict[str, str] = Field(default_factory=dict, max_length=MAX_LABELS)


@dataclass(frozen=True)
class Plan:
    """A checked workflow: each step's dependencies, an order that respects them, and the
    steps nothing depends on (the sinks)."""

    needs: Mapping[str, frozenset[str]]
    order: tuple[str, ...]
    sinks: tuple[str, ...]


def invalid(step: str | None, field: str, reason: str, **details: Any) -> InvalidWorkflow:
    """The 422 for a problem at ``field`` of ``step`` (None: of the workflow itself)."""
    where = f"step {step!r}: {field}" if step is not None else field
    return InvalidWorkflow(
        f"invalid workflow: {where}: {reason}",
        details={"step": step, "field": field, "reason": reason, **details},
    )


def parse_spec(data: Any) -> WorkflowSpec:
    """The spec ``data`` holds; :class:`InvalidWorkflow` naming the first field that is wrong."""
    if not isinstance(data, dict):
        raise invalid(None, "body", "a workflow is a JSON object")
    try:
        return WorkflowSpec.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        first = errors[0]
        loc = [str(p) for p in first["loc"]]
        step = loc[1] if len(loc) >= 2 and loc[0] == "steps" else None
        field = (".".join(loc[2:]) or "step") if step is not None else ".".join(loc) or "body"
        raise invalid(
            step,
            field,
            first["msg"],
            errors=[{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]}
                    for e in errors[:20]],
        ) from None  # fmt: skip


def _is_step_name(name: str) -> bool:
    return re.fullmatch(STEP_NAME, name) is not None


def plan(spec: WorkflowSpec) -> Plan:
    """Check ``spec`` as a whole (names, references, dependencies, no cycle); its :class:`Plan`."""
    steps = spec.steps
    if not steps:
        raise invalid(None, "steps", "a workflow has at least one step")
    if len(steps) > MAX_STEPS:
        raise invalid(None, "steps", f"a workflow has at most {MAX_STEPS} steps ({len(steps)})")
    for name in steps:
        if not _is_step_name(name):
            raise invalid(
                name, "name", "a step's name is a letter or _ then up to 63 letters, digits, _ -"
            )
    needs: dict[str, frozenset[str]] = {}
    for name, step in steps.items():
        needs[name] = frozenset(_step_needs(name, step, steps))
    _check_refs(None, "input", spec.input, steps, in_map=False, allow_steps=False)
    sinks = tuple(n for n in steps if not any(n in deps for deps in needs.values()))
    if spec.output is not None:
        _check_refs(None, "output", spec.output, steps, in_map=False)
    order = _order(needs)
    return Plan(needs=needs, order=order, sinks=sinks)


def _step_needs(name: str, step: StepSpec, steps: Mapping[str, StepSpec]) -> set[str]:
    deps: set[str] = set()
    for i, other in enumerate(step.after):
        if other not in steps:
            raise invalid(name, f"after[{i}]", f"no step named {other!r}", known=sorted(steps))
        deps.add(other)
    if step.map is not None:
        if not is_ref(step.map):
            raise invalid(name, "map", "map is a reference to a list, e.g. $.input.items")
        deps |= _check_refs(name, "map", step.map, steps, in_map=False)
    elif step.concurrency is not None:
        raise invalid(name, "concurrency", "concurrency is for map steps (it limits their items)")
    in_map = step.map is not None
    deps |= _check_refs(name, "input", step.input, steps, in_map=in_map)
    if step.idempotency_key is not None:
        keyed = _check_refs(name, "idempotency_key", step.idempotency_key, steps, in_map=in_map)
        deps |= keyed
        if in_map and not _reads_item(step.idempotency_key):
            raise invalid(
                name,
                "idempotency_key",
                "a map step's key must tell its items apart: a reference to $.item… or $.index",
            )
    return deps


def _reads_item(value: str) -> bool:
    return is_ref(value) and parse(value).root in ("item", "index")


def _check_refs(
    step: str | None,
    field: str,
    template: Any,
    steps: Mapping[str, StepSpec],
    *,
    in_map: bool,
    allow_steps: bool = True,
) -> set[str]:
    """The steps ``template``'s references read; :class:`InvalidWorkflow` for a bad one."""
    read: set[str] = set()
    for where, ref in _refs(step, field, template):
        at = f"{field}.{where}" if where else field
        if ref.root in ("item", "index") and not in_map:
            hint = "" if step is None else " (this step has no map)"
            raise invalid(step, at, f"{ref.text}: $.item and $.index are for map steps{hint}")
        if ref.root != "steps":
            continue
        assert ref.step is not None
        if not allow_steps:
            raise invalid(step, at, f"{ref.text}: the workflow's input cannot read steps")
        if ref.step not in steps:
            raise invalid(step, at, f"{ref.text}: no step named {ref.step!r}", known=sorted(steps))
        mapped = steps[ref.step].map is not None
        if mapped and ref.kind == "result":
            raise invalid(step, at, f"{ref.text}: {ref.step!r} is a map step: read .results")
        if not mapped and ref.kind == "results":
            raise invalid(step, at, f"{ref.text}: {ref.step!r} is not a map step: read .result")
        read.add(ref.step)
    return read


def _refs(step: str | None, field: str, template: Any) -> Iterable[tuple[str, Ref]]:
    try:
        return list(refs_in(template))  # a field that is one string: at "", the field itself
    except RefError as exc:
        at = f"{field}.{exc.ref}" if exc.ref else field
        raise invalid(step, at, exc.reason) from None


def _order(needs: Mapping[str, frozenset[str]]) -> tuple[str, ...]:
    sorter = graphlib.TopologicalSorter(needs)
    try:
        return tuple(sorter.static_order())
    except graphlib.CycleError as exc:
        cycle: list[str] = exc.args[1]  # [a, b, …, a]
        path = " → ".join(cycle)
        raise invalid(cycle[0], "after", f"the steps form a cycle: {path}", cycle=cycle) from None
