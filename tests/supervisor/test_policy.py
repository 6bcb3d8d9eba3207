"""The retry policy and its safety rule, without a store or workers."""

from __future__ import annotations

import dataclasses

import pytest
from tenacity import AsyncRetrying, RetryCallState

from shared import (
    Job,
    JobStatus,
    StoreUnavailable,
    ToolFailed,
    WorkerBadResponse,
    WorkerBusy,
    WorkerCallError,
    WorkerDropped,
    WorkerHttpError,
    WorkerRefused,
    WorkerTimeout,
    WorkerUnreachable,
    now,
)
from supervisor.dispatch import NoWorker
from supervisor.dispatch.policy import AttemptBudget, RetryPolicy, may_retry, refuse_rerun

NEVER_DELIVERED = [
    WorkerUnreachable("down"),
    WorkerBusy("full"),
    WorkerRefused("no"),
    NoWorker("none"),
]
POSSIBLY_DELIVERED = [
    WorkerTimeout("slow"),
    WorkerDropped("cut"),
    WorkerBadResponse("garbled"),
    WorkerHttpError("502"),
    WorkerCallError("rpc", code="RPC_ERROR"),
]


@pytest.mark.parametrize("exc", NEVER_DELIVERED, ids=lambda e: e.code)
@pytest.mark.parametrize("idempotent", [True, False])
def test_a_call_never_delivered_is_retried(exc: WorkerCallError, idempotent: bool) -> None:
    assert may_retry(exc, idempotent=idempotent)


def test_a_call_never_delivered_is_not_retried_when_its_kind_says_no() -> None:
    exc = WorkerCallError("bad request", delivered=False, retryable=False)
    assert not may_retry(exc, idempotent=True)


@pytest.mark.parametrize("exc", POSSIBLY_DELIVERED, ids=lambda e: e.code)
def test_a_call_possibly_delivered_is_retried_only_for_an_idempotent_tool(
    exc: WorkerCallError,
) -> None:
    assert exc.delivered
    assert may_retry(exc, idempotent=True)
    assert not may_retry(exc, idempotent=False)


def test_a_possibly_delivered_call_that_says_retryable_is_still_not_retried() -> None:
    exc = WorkerTimeout("slow", retryable=True)
    assert not may_retry(exc, idempotent=False)


@pytest.mark.parametrize("idempotent", [True, False])
def test_a_tool_error_is_retried_only_when_the_worker_says_so(idempotent: bool) -> None:
    assert may_retry(ToolFailed("flaky", retryable=True), idempotent=idempotent)
    assert not may_retry(ToolFailed("bad input"), idempotent=idempotent)


@pytest.mark.parametrize("exc", [RuntimeError("bug"), StoreUnavailable("down")])
def test_other_errors_are_never_retried(exc: Exception) -> None:
    assert not may_retry(exc, idempotent=True)


def job(status: JobStatus, attempts: int, max_attempts: int = 3) -> Job:
    return Job(
        id="j1",
        status=status,
        capability="echo",
        attempts=attempts,
        max_attempts=max_attempts,
        worker="w1",
        correlation_id="c1",
        created_at=now(),
    )


@pytest.mark.parametrize("status", [JobStatus.QUEUED, JobStatus.RUNNING])
@pytest.mark.parametrize("idempotent", [True, False])
def test_a_rerun_with_no_attempts_left_is_refused(status: JobStatus, idempotent: bool) -> None:
    error = refuse_rerun(job(status, attempts=3), idempotent=idempotent)
    assert error is not None and error.code == "LEASE_LOST"
    assert error.details == {"attempts": 3, "delivery": "possibly"}


@pytest.mark.parametrize("idempotent", [True, False])
def test_a_job_that_never_reached_a_worker_runs_again(idempotent: bool) -> None:
    assert refuse_rerun(job(JobStatus.QUEUED, attempts=1), idempotent=idempotent) is None


def test_a_cut_off_call_runs_again_only_for_an_idempotent_tool() -> None:
    assert refuse_rerun(job(JobStatus.RUNNING, attempts=1), idempotent=True) is None
    error = refuse_rerun(job(JobStatus.RUNNING, attempts=1), idempotent=False)
    assert error is not None and error.code == "DROPPED"
    assert error.details == {"worker": "w1", "delivery": "possibly"}


class Flaky:
    """A call failing with each of ``errors`` in turn, then answering."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


async def run(retrying: AsyncRetrying, call: Flaky) -> tuple[str, list[float]]:
    """Runs ``call`` under ``retrying`` with a clock that only records the waits."""
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    result = ""
    async for attempt in retrying.copy(sleep=sleep):
        with attempt:
            result = call()
    return result, waits


POLICY = RetryPolicy(backoff_initial_s=0.2, backoff_max_s=0.5)


async def test_retries_back_off_exponentially_with_jitter_up_to_the_cap() -> None:
    call = Flaky(*(WorkerBusy("full") for _ in range(4)))
    result, waits = await run(POLICY.retrying(budget=5, idempotent=False), call)
    assert result == "ok" and call.calls == 5
    # 0.2 * 2**n plus up to 0.2 of jitter, never above 0.5
    assert 0.2 <= waits[0] <= 0.4 and 0.4 <= waits[1] <= 0.5
    assert waits[2:] == [0.5, 0.5]


async def test_the_budget_bounds_the_attempts_and_the_last_error_is_raised() -> None:
    call = Flaky(*(WorkerUnreachable(f"down {i}") for i in range(5)))
    with pytest.raises(WorkerUnreachable, match="down 2"):
        await run(POLICY.retrying(budget=3, idempotent=True), call)
    assert call.calls == 3


async def test_a_used_up_budget_still_makes_one_attempt() -> None:
    call = Flaky(WorkerUnreachable("down"))
    with pytest.raises(WorkerUnreachable):
        await run(POLICY.retrying(budget=0, idempotent=True), call)
    assert call.calls == 1


async def test_busy_answers_spend_no_attempts_but_run_out_of_patience() -> None:
    # Two supervisors share a worker: it answers BUSY more often than the job has attempts.
    call = Flaky(*(WorkerBusy("full") for _ in range(6)), WorkerUnreachable("down"))
    result, _ = await run(POLICY.retrying(budget=2, idempotent=True), call)
    assert result == "ok" and call.calls == 8  # 6 BUSY + 1 failure (of 2 allowed) + ok
    clock = iter(float(t) for t in range(100))
    budget = AttemptBudget(attempts=3, busy_wait_s=4, clock=lambda: next(clock))
    busy = Flaky(*(WorkerBusy("full") for _ in range(50)))
    policy = dataclasses.replace(POLICY, busy_wait_s=4)
    retrying = policy.retrying(budget=3, idempotent=True).copy(stop=budget)
    with pytest.raises(WorkerBusy):
        await run(retrying, busy)
    assert busy.calls == 4 and budget.spent == 0  # 4 s of (fake) patience, no attempt spent


async def test_a_failure_the_rule_refuses_ends_the_run_at_once() -> None:
    call = Flaky(WorkerTimeout("slow"))
    with pytest.raises(WorkerTimeout):
        await run(POLICY.retrying(budget=3, idempotent=False), call)
    assert call.calls == 1


async def test_before_sleep_hears_of_each_retry_and_its_wait() -> None:
    heard: list[tuple[str, float]] = []

    async def before_sleep(state: RetryCallState) -> None:
        assert state.outcome is not None and state.next_action is not None
        heard.append((getattr(state.outcome.exception(), "code", ""), state.next_action.sleep))

    call = Flaky(WorkerBusy("full"), WorkerTimeout("slow"))
    retrying = POLICY.retrying(budget=3, idempotent=True, before_sleep=before_sleep)
    result, waits = await run(retrying, call)
    assert result == "ok"
    assert heard == [("BUSY", waits[0]), ("TIMEOUT", waits[1])]
