"""The engine's scheduling on its own: children are a small in-process stand-in (what the
engine is tested for is the order, the limits, the policies and the log, not the jobs)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import pytest

from shared import Job, JobError, JobStatus, JobSubmit, Progress, now
from supervisor.workflows.engine import Flow, WorkflowCancelled, child_key
from supervisor.workflows.spec import parse_spec, plan
from supervisor.workflows.state import StepState, fold
from tests.helpers import wait_until

Behaviour = Callable[[dict[str, Any]], Awaitable[Any]]


class Refused(Exception):
    """A tool's own failure in the stand-in: the child ends failed with this code."""


class FakeChildren:
    """Child jobs run as tasks of this process, one behaviour per capability; a key already
    used answers the same job (as the store's idempotency does)."""

    def __init__(self, behaviours: dict[str, Behaviour]) -> None:
        self.behaviours = behaviours
        self.jobs: dict[str, Job] = {}
        self.by_key: dict[str, str] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.ended: dict[str, asyncio.Event] = {}
        self.submitted: list[JobSubmit] = []
        self.runs: list[str] = []  # keys, once per execution
        self.in_flight = 0
        self.peak = 0
        self.cancelled: list[str] = []
        self.stop_asked = False
        self.max_children: int | None = None
        self._ids = itertools.count(1)

    async def submit(self, body: JobSubmit) -> Job:
        self.submitted.append(body)
        assert body.idempotency_key is not None
        if body.idempotency_key in self.by_key:
            return self.jobs[self.by_key[body.idempotency_key]].model_copy()
        job_id = f"{next(self._ids):032x}"
        job = Job(
            id=job_id,
            status=JobStatus.QUEUED,
            capability=body.capability,
            input=body.input,
            correlation_id="c",
            idempotency_key=body.idempotency_key,
            parent_id=body.parent_id,
            created_at=now(),
        )
        self.jobs[job_id] = job
        self.by_key[body.idempotency_key] = job_id
        self.ended[job_id] = asyncio.Event()
        self.tasks[job_id] = asyncio.create_task(self._run(job))
        return job.model_copy()

    async def _run(self, job: Job) -> None:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        self.runs.append(job.idempotency_key or "")
        job.status = JobStatus.RUNNING
        try:
            job.result = await self.behaviours[job.capability](job.input)
            job.status = JobStatus.SUCCEEDED
        except Refused as exc:
            job.status = JobStatus.FAILED
            job.error = JobError(code="REFUSED_ON_PURPOSE", message=str(exc))
        except asyncio.CancelledError:
            job.status = JobStatus.CANCELLED
            job.error = JobError(code="CANCELLED", message="cancelled on request")
        finally:
            self.in_flight -= 1
            self.ended[job.id].set()

    async def wait(self, job_id: str, timeout: float) -> Job:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.ended[job_id].wait(), timeout)
        return self.jobs[job_id].model_copy()

    async def cancel(self, job_ids: Iterable[str]) -> None:
        for job_id in job_ids:
            self.cancelled.append(job_id)
            self.tasks[job_id].cancel()
        await asyncio.gather(*(self.ended[j].wait() for j in self.cancelled))

    async def stopping(self) -> bool:
        return self.stop_asked

    async def close(self) -> None:
        for task in self.tasks.values():
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)


class Log:
    """The workflow's event log, as the engine writes it."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.writes = 0

    async def write(self, events: list[tuple[str, dict[str, Any]]], _: Progress | None) -> None:
        self.writes += 1
        self.events += events

    def steps(self, name: str | None = None) -> list[dict[str, Any]]:
        return [d for t, d in self.events if t == "step" and (name is None or d["step"] == name)]

    def transitions(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for data in self.steps():
            pair = (data["step"], data["status"])
            if pair not in out:  # each (step, status) once, as first written
                out.append(pair)
        return out

    def progress(self) -> list[dict[str, Any]]:
        return [d for t, d in self.events if t == "progress"]


async def echo(arguments: dict[str, Any]) -> Any:
    await asyncio.sleep(0)
    return {"value": arguments.get("value")}


async def fail(arguments: dict[str, Any]) -> Any:
    raise Refused(f"failed on purpose: {arguments}")


def flow(
    data: dict[str, Any],
    children: FakeChildren,
    log: Log,
    recorded: dict[str, StepState] | None = None,
    workflow_id: str = "f" * 32,
) -> Flow:
    spec = parse_spec(data)
    return Flow(workflow_id, spec, plan(spec), children, log.write, recorded=recorded)


@pytest.fixture
async def children() -> Any:
    made: list[FakeChildren] = []

    def make(**behaviours: Behaviour) -> FakeChildren:
        made.append(FakeChildren({"echo": echo, "fail": fail, **behaviours}))
        return made[-1]

    yield make
    for c in made:
        await c.close()


async def test_a_chain_passes_results_along(children: Any) -> None:
    kids, log = children(), Log()
    data = {
        "input": {"v": 1},
        "steps": {
            "a": {"capability": "echo", "input": {"value": "$.input.v"}},
            "b": {"capability": "echo", "input": {"value": "$.steps.a.result.value"}},
            "c": {"capability": "echo", "input": {"value": ["$.steps.b.result", "$$lit"]}},
        },
    }
    outcome = await flow(data, kids, log).run()
    assert outcome.status is JobStatus.SUCCEEDED, outcome.error
    assert outcome.result == {"value": [{"value": 1}, "$lit"]}
    assert [b.idempotency_key for b in kids.submitted] == [
        child_key("f" * 32, s, None) for s in "abc"
    ]
    assert all(b.parent_id == "f" * 32 for b in kids.submitted)
    assert log.transitions() == [
        ("a", "running"),
        ("a", "succeeded"),
        ("b", "running"),
        ("b", "succeeded"),
        ("c", "running"),
        ("c", "succeeded"),
    ]
    assert log.steps("a")[0]["job_ids"] == [kids.by_key[child_key("f" * 32, "a", None)]]
    assert log.progress()[-1] == {"progress": 3.0, "total": 3.0, "message": "c succeeded"}


async def test_a_map_keeps_to_its_concurrency_and_item_order(children: Any) -> None:
    release = asyncio.Event()

    async def slow(arguments: dict[str, Any]) -> Any:
        await release.wait()
        return arguments["i"] * 10

    kids, log = children(slow=slow), Log()
    data = {
        "input": {"items": list(range(30))},
        "steps": {
            "each": {
                "capability": "slow",
                "map": "$.input.items",
                "concurrency": 4,
                "input": {"i": "$.item", "at": "$.index"},
            }
        },
    }
    run = asyncio.create_task(flow(data, kids, log).run())
    await wait_until(lambda: kids.in_flight == 4, message="4 in flight")
    for _ in range(10):
        await asyncio.sleep(0)
    assert kids.in_flight == 4 and len(kids.submitted) == 4
    release.set()
    outcome = await run
    assert outcome.status is JobStatus.SUCCEEDED
    assert outcome.result == [i * 10 for i in range(30)]
    assert kids.peak == 4
    assert [b.input["at"] for b in kids.submitted] == list(range(30))
    final = log.steps("each")[-1]
    assert final["status"] == "succeeded"
    assert (final["total"], final["done"], final["failed"]) == (30, 30, 0)
    assert final["job_ids"] == [kids.by_key[child_key("f" * 32, "each", i)] for i in range(30)]
    assert log.progress()[-1]["progress"] == log.progress()[-1]["total"] == 30.0


async def test_map_progress_is_throttled(children: Any) -> None:
    async def quick(arguments: dict[str, Any]) -> Any:
        await asyncio.sleep(0.001)
        return arguments

    kids, log = children(quick=quick), Log()
    data = {
        "input": {"items": list(range(300))},
        "steps": {"m": {"capability": "quick", "map": "$.input.items", "concurrency": 50}},
    }
    outcome = await flow(data, kids, log).run()
    assert outcome.status is JobStatus.SUCCEEDED
    # 300 item ends, but only the transitions and a few flushes (at most 4 a second) written
    assert len(log.steps("m")) < 20
    counts = [d["done"] for d in log.steps("m")]
    assert counts == sorted(counts) and counts[-1] == 300


async def test_fan_in_waits_for_every_branch(children: Any) -> None:
    gates = {"b": asyncio.Event(), "c": asyncio.Event()}

    async def gated(arguments: dict[str, Any]) -> Any:
        await gates[arguments["gate"]].wait()
        return arguments["gate"]

    kids, log = children(gated=gated), Log()
    data = {
        "steps": {
            "b": {"capability": "gated", "input": {"gate": "b"}},
            "c": {"capability": "gated", "input": {"gate": "c"}},
            "d": {
                "capability": "echo",
                "input": {"value": ["$.steps.b.result", "$.steps.c.result"]},
            },
        },
    }
    run = asyncio.create_task(flow(data, kids, log).run())
    await wait_until(lambda: kids.in_flight == 2, message="b and c run together")
    gates["c"].set()
    await wait_until(lambda: ("c", "succeeded") in log.transitions(), message="c ended")
    assert len(kids.submitted) == 2  # d still waits for b
    gates["b"].set()
    outcome = await run
    assert outcome.result == {"value": ["b", "c"]}


async def test_fail_fast_stops_the_rest(children: Any) -> None:
    never = asyncio.Event()

    async def hang(arguments: dict[str, Any]) -> Any:
        await never.wait()

    kids, log = children(hang=hang), Log()
    data = {
        "steps": {
            "long": {"capability": "hang"},
            "bad": {"capability": "fail", "input": {"why": 1}},
            "after_bad": {"capability": "echo", "after": ["bad"]},
        },
        "on_failure": "fail_fast",
    }
    outcome = await flow(data, kids, log).run()
    assert outcome.status is JobStatus.FAILED
    assert outcome.error is not None and outcome.error.code == "STEP_FAILED"
    assert "step 'bad' failed" in outcome.error.message
    assert outcome.error.details["step"] == "bad"
    assert outcome.error.details["error"]["code"] == "REFUSED_ON_PURPOSE"
    steps = outcome.error.details["steps"]
    assert steps["bad"]["status"] == "failed"
    assert steps["long"]["status"] == "cancelled"
    assert steps["after_bad"]["status"] == "skipped"
    long_id = kids.by_key[child_key("f" * 32, "long", None)]
    assert kids.cancelled == [long_id]
    assert kids.jobs[long_id].status is JobStatus.CANCELLED


async def test_continue_runs_what_does_not_depend_on_the_failure(children: Any) -> None:
    kids, log = children(), Log()
    data = {
        "input": {"items": [1, 2, 3]},
        "steps": {
            "bad": {"capability": "fail"},
            "dependent": {"capability": "echo", "input": {"value": "$.steps.bad.result"}},
            "deeper": {"capability": "echo", "after": ["dependent"]},
            "free": {"capability": "echo", "input": {"value": 7}},
            "free_map": {
                "capability": "echo",
                "map": "$.input.items",
                "input": {"value": "$.item"},
            },
        },
        "on_failure": "continue",
    }
    outcome = await flow(data, kids, log).run()
    assert outcome.status is JobStatus.FAILED
    assert outcome.error is not None
    steps = outcome.error.details["steps"]
    assert {n: s["status"] for n, s in steps.items()} == {
        "bad": "failed",
        "dependent": "skipped",
        "deeper": "skipped",
        "free": "succeeded",
        "free_map": "succeeded",
    }
    assert "needs 'bad', which failed" in steps["dependent"]["error"]["message"]
    assert "needs 'dependent', which skipped" in steps["deeper"]["error"]["message"]
    assert sorted(b.capability for b in kids.submitted) == ["echo"] * 4 + ["fail"]
    assert kids.cancelled == []


async def test_a_failed_map_item_fails_the_step(children: Any) -> None:
    async def picky(arguments: dict[str, Any]) -> Any:
        if arguments["i"] == 5:
            raise Refused("not five")
        return arguments["i"]

    kids, log = children(picky=picky), Log()
    data = {
        "input": {"items": list(range(10))},
        "steps": {"m": {"capability": "picky", "map": "$.input.items", "concurrency": 1,
                        "input": {"i": "$.item"}}},
        "on_failure": "continue",
    }  # fmt: skip
    outcome = await flow(data, kids, log).run()
    assert outcome.status is JobStatus.FAILED and outcome.error is not None
    error = outcome.error.details["error"]
    assert error["code"] == "REFUSED_ON_PURPOSE" and error["details"]["index"] == 5
    assert "(item 5)" in error["message"]
    assert len(kids.submitted) == 6  # no item started after the failure
    final = log.steps("m")[-1]
    assert (final["status"], final["done"], final["failed"]) == ("failed", 5, 1)


async def test_a_reference_the_data_does_not_hold_fails_its_step(children: Any) -> None:
    kids, log = children(), Log()
    data = {
        "input": {"x": 1},
        "steps": {
            "a": {"capability": "echo", "input": {"value": "$.input.x"}},
            "b": {"capability": "echo", "input": {"value": "$.steps.a.result.nope"}},
            "m": {"capability": "echo", "map": "$.steps.a.result"},
        },
        "on_failure": "continue",
    }
    outcome = await flow(data, kids, log).run()
    assert outcome.error is not None
    steps = outcome.error.details["steps"]
    assert steps["b"]["error"]["code"] == "INVALID_REFERENCE"
    assert "$.steps.a.result has no field 'nope'" in steps["b"]["error"]["message"]
    assert steps["m"]["error"]["code"] == "INVALID_REFERENCE"
    assert "is not a list" in steps["m"]["error"]["message"]


async def test_an_empty_map_succeeds_with_no_children(children: Any) -> None:
    kids, log = children(), Log()
    data = {
        "input": {"items": []},
        "steps": {
            "m": {"capability": "echo", "map": "$.input.items"},
            "n": {"capability": "echo", "input": {"value": "$.steps.m.results"}},
        },
    }
    outcome = await flow(data, kids, log).run()
    assert outcome.result == {"value": []}
    assert len(kids.submitted) == 1


async def test_output_template_and_default_of_several_sinks(children: Any) -> None:
    kids, log = children(), Log()
    data: dict[str, Any] = {
        "steps": {
            "a": {"capability": "echo", "input": {"value": 1}},
            "b": {"capability": "echo", "input": {"value": 2}},
        },
    }
    assert (await flow(data, kids, log).run()).result == {"a": {"value": 1}, "b": {"value": 2}}
    data["output"] = {"sum": ["$.steps.a.result.value", "$.steps.b.result.value"]}
    outcome = await flow(data, children(), Log(), workflow_id="e" * 32).run()
    assert outcome.result == {"sum": [1, 2]}


async def test_a_resumed_run_reruns_nothing_finished_nor_writes_it_twice(children: Any) -> None:
    """The second run meets the first's children again (same keys) and its log (recorded):
    finished children are not run again, transitions already written are not written again."""
    release = asyncio.Event()

    async def slow(arguments: dict[str, Any]) -> Any:
        await release.wait()
        return arguments["i"]

    kids, log = children(slow=slow), Log()
    data = {
        "input": {"items": list(range(6))},
        "steps": {
            "a": {"capability": "echo", "input": {"value": 1}},
            "m": {"capability": "slow", "map": "$.input.items", "concurrency": 2,
                  "input": {"i": "$.item"}, "after": ["a"]},
            "z": {"capability": "echo", "input": {"value": "$.steps.m.results"}},
        },
    }  # fmt: skip
    first = asyncio.create_task(flow(data, kids, log).run())
    await wait_until(lambda: kids.in_flight == 2 and ("m", "running") in log.transitions())
    first.cancel()  # the supervisor died: its children go on
    with pytest.raises(asyncio.CancelledError):
        await first
    runs_before = list(kids.runs)
    assert len(runs_before) == 3  # a, and two items in flight
    second_log = Log()
    recorded = fold(d for _, d in log.events if "step" in d)
    release.set()
    outcome = await flow(data, kids, second_log, recorded=recorded).run()
    assert outcome.status is JobStatus.SUCCEEDED
    assert outcome.result == {"value": list(range(6))}
    assert sorted(kids.runs) == sorted(set(kids.runs))  # no key ran twice
    assert len(kids.runs) == 1 + 6 + 1
    written = [(d["step"], d["status"]) for d in second_log.steps()]
    assert ("a", "running") not in written and ("a", "succeeded") not in written
    assert written.count(("m", "succeeded")) == 1
    assert ("z", "running") in written and ("z", "succeeded") in written


async def test_stop_on_cancel_marks_running_and_pending(children: Any) -> None:
    never = asyncio.Event()

    async def hang(arguments: dict[str, Any]) -> Any:
        await never.wait()

    kids, log = children(hang=hang), Log()
    data = {
        "steps": {"a": {"capability": "hang"}, "b": {"capability": "echo", "after": ["a"]}},
    }
    running = flow(data, kids, log)
    task = asyncio.create_task(running.run())
    await wait_until(lambda: kids.in_flight == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await running.stop("cancelled")
    assert [(d["step"], d["status"]) for d in log.steps()][-2:] == [
        ("a", "cancelled"),
        ("b", "cancelled"),
    ]
    assert kids.cancelled == [kids.by_key[child_key("f" * 32, "a", None)]]


async def test_a_child_cancelled_by_the_workflows_own_cancel_is_no_step_failure(
    children: Any,
) -> None:
    never = asyncio.Event()

    async def hang(arguments: dict[str, Any]) -> Any:
        await never.wait()

    kids, log = children(hang=hang), Log()
    run = asyncio.create_task(flow({"steps": {"a": {"capability": "hang"}}}, kids, log).run())
    await wait_until(lambda: kids.in_flight == 1)
    kids.stop_asked = True  # the workflow's cancel: its children are cancelled with it
    kids.tasks[next(iter(kids.tasks))].cancel()
    with pytest.raises(WorkflowCancelled):
        await run
    assert ("a", "failed") not in log.transitions()


async def test_a_map_over_more_items_than_children_allowed_fails_at_once(children: Any) -> None:
    kids, log = children(), Log()
    kids.max_children = 5
    data = {"input": {"items": list(range(6))},
            "steps": {"m": {"capability": "echo", "map": "$.input.items"}}}  # fmt: skip
    outcome = await flow(data, kids, log).run()
    assert outcome.error is not None
    error = outcome.error.details["error"]
    assert error["code"] == "DELEGATION_LIMIT" and "FLEET_MAX_CHILDREN" in error["message"]
    assert kids.submitted == []
