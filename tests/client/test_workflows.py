"""The client's workflow calls against a real supervisor and a real echo worker, each its own
process, over HTTP: submit (with wait, an idempotency key, another input), the workflow's
state, and a watch whose ``step`` events fold into the same state the supervisor answers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from supervisor.client import (
    ApiError,
    AsyncFleetClient,
    Event,
    FleetClient,
    Job,
    JobStatus,
    StepBoard,
    Workflow,
)
from tests.helpers import ECHO_FLOW, ECHO_ITEMS, wait_until_sync
from tests.processes import supervisor, worker

pytestmark = pytest.mark.e2e

FAST = {
    "FLEET_PROBE_INTERVAL_S": "0.5",
    "FLEET_BACKOFF_INITIAL_S": "0.05",
    "FLEET_BACKOFF_MAX_S": "0.2",
}
ITEMS, SPEC = ECHO_ITEMS, ECHO_FLOW


def _worker_healthy(url: str) -> bool:
    found = httpx.get(f"{url}/v1/workers", timeout=5).json()["workers"]
    return bool(found) and all(w["healthy"] for w in found)


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    """A supervisor (memory://) with one echo worker, both real processes."""
    with worker("echo") as echo, supervisor(**FAST, FLEET_WORKERS=echo.url) as sup:
        wait_until_sync(lambda: _worker_healthy(sup.url), timeout=30, message="echo healthy")
        yield sup.url


def _states(board: StepBoard) -> dict[str, tuple[str, int | None, int, int]]:
    return {n: (s.status, s.total, s.done, s.failed) for n, s in board.steps.items()}


async def test_submit_wait_and_the_state_of_each_step(url: str) -> None:
    async with AsyncFleetClient(url) as fleet:
        job = await fleet.submit_workflow(SPEC, wait=30)
        flow = await fleet.workflow(job.id)
    assert isinstance(job, Job) and job.capability == "fleet:workflow"
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert job.result == {"echoed": ITEMS, "last": {"ok": True}}
    assert isinstance(flow, Workflow) and flow.job.id == job.id
    assert list(flow.steps) == ["first", "each", "last"]
    each = flow.steps["each"]
    assert (each.status, each.map, each.capability) == ("succeeded", True, "echo")
    assert (each.total, each.done, each.failed) == (len(ITEMS), len(ITEMS), 0)
    assert len(each.job_ids) == len(ITEMS)
    async with AsyncFleetClient(url) as fleet:  # each item is a child job of the workflow
        child = await fleet.get(each.job_ids[0])
    assert child.parent_id == job.id and child.capability == "echo"


async def test_watch_folds_into_what_the_supervisor_answers(url: str) -> None:
    async with AsyncFleetClient(url) as fleet:
        job = await fleet.submit_workflow(SPEC, {"items": ["x", "y"]})
        board = StepBoard.from_spec(job.input)
        events: list[Event] = []
        async for event in fleet.watch(job.id):
            events.append(event)
            board.apply(event)
        flow = await fleet.workflow(job.id)
    assert events[-1].type == "done" and events[-1].data["status"] == "succeeded"
    assert events[-1].data["result"]["echoed"] == ["x", "y"]  # the input given replaced the spec's
    assert any(e.type == "step" for e in events)
    assert _states(board) == _states(StepBoard.of(flow))
    assert board.steps["each"].total == 2 and board.units() == (4, 4)


async def test_an_idempotency_key_submits_once(url: str) -> None:
    key = f"flow-{uuid.uuid4().hex[:8]}"
    async with AsyncFleetClient(url) as fleet:
        first = await fleet.submit_workflow(SPEC, idempotency_key=key)
        again = await fleet.submit_workflow(SPEC, idempotency_key=key)
        await fleet.wait(first.id, timeout=30)
    assert again.id == first.id


async def test_an_invalid_spec_names_the_step_and_the_field(url: str) -> None:
    bad = {**SPEC, "steps": {**SPEC["steps"], "last": {"capability": "noop", "after": ["nope"]}}}
    async with AsyncFleetClient(url) as fleet:
        with pytest.raises(ApiError) as caught:
            await fleet.submit_workflow(bad)
    err = caught.value
    assert (err.status, err.code) == (422, "INVALID_WORKFLOW")
    assert err.details["step"] == "last" and err.details["field"] == "after[0]"


def test_the_sync_client_has_the_same_calls(url: str) -> None:
    with FleetClient(url) as fleet:
        job = fleet.submit_workflow(SPEC)
        types = [event.type for event in fleet.watch(job.id)]
        flow = fleet.workflow(job.id)
    assert "step" in types and types[-1] == "done"
    assert flow.job.status is JobStatus.SUCCEEDED
    assert all(step.status == "succeeded" for step in flow.steps.values())
