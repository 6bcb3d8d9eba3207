"""``fleet top``'s keys against a real supervisor, in this process (the pseudo-terminal tests
drive the same keys through a terminal; these reach the branches a screen cannot show fast:
a refused action, a question left unanswered, the selection when its job ends)."""

from __future__ import annotations

import io

from rich.console import Console

from shared import ClientSettings
from supervisor.cli.base import State
from supervisor.cli.top import Top
from supervisor.cli.top_data import guarded
from supervisor.cli.top_view import selectable
from supervisor.client import FleetApi
from tests.cli.conftest import CliFleet
from tests.helpers import wait_until

SLEEP = {"seconds": 60, "steps": 60}


def _state() -> State:
    out = Console(file=io.StringIO(), width=80, height=24)
    return State(ClientSettings(), False, out, out)


async def _refresh(top: Top) -> None:
    top.snap = await guarded(top.api, timeout=10)
    top._keep_selection()


async def test_keys_select_cancel_and_redrive_through_the_api(cli_fleet: CliFleet) -> None:
    first = cli_fleet.submit("sleep", SLEEP)
    second = cli_fleet.submit("sleep", SLEEP)
    failed = cli_fleet.submit("fail", {"code": "TOP_KEYS"}, max_attempts=1)
    assert cli_fleet.job(failed, wait=10)["status"] == "failed"
    for job_id in (first, second):
        cli_fleet.wait_running(job_id)
    async with FleetApi(cli_fleet.url) as api:
        top = Top(_state(), api, interval=0.5)
        try:
            await _refresh(top)
            running = [j["id"] for j in top.snap["running"]]
            assert top.view.selected == running[0]  # the first job, from the start
            assert await top._key("j") is None and top.view.selected == running[1]
            for _ in range(60):  # down to the failed job (other tests' jobs may be listed)
                if top.view.selected == failed:
                    break
                await top._key("j")
            assert top.view.selected == failed
            await top._key("c")  # a failed job: nothing to cancel, nothing asked
            assert top.pending is None and "nothing to cancel" in str(top.view.message)
            await top._key("r")
            assert f"redriven {failed[:12]}" in str(top.view.message)
            await wait_until(
                lambda: (
                    cli_fleet.job(failed)["status"] == "failed"
                    and cli_fleet.job(failed)["started_at"]
                ),
                timeout=10,
                message="the redriven job ran (and failed) again",
            )

            await top._key("home")
            victim = top.view.selected
            assert victim in (first, second)
            await top._key("r")  # a running job is not redriven
            assert "only a failed job" in str(top.view.message)
            await top._key("c")
            assert top.pending is not None and "? y/n" in str(top.view.message)
            await top._key("n")  # anything but y: not cancelled
            assert top.pending is None and cli_fleet.job(victim)["status"] == "running"
            await top._key("c")
            await top._key("y")
            assert f"cancelled {victim[:12]}" in str(top.view.message)
            assert cli_fleet.job(victim)["status"] == "cancelled"

            # The selected job left the running list: the selection takes the one in its place.
            await _refresh(top)
            assert top.view.selected != victim and top.view.selected is not None
            assert await top._key("w") == top.view.selected  # w hands the job to watch
            assert await top._key("q") == ""
        finally:
            for job_id in (first, second):
                cli_fleet.http.post(f"/v1/jobs/{job_id}/cancel")


async def test_a_refused_action_is_a_message_not_an_exit(cli_fleet: CliFleet) -> None:
    """The job ended behind top's back: its cancel is refused (409), top says so and goes on."""
    job_id = cli_fleet.submit("sleep", SLEEP)
    cli_fleet.wait_running(job_id)
    async with FleetApi(cli_fleet.url) as api:
        top = Top(_state(), api, interval=0.5)
        await _refresh(top)
        top.view.selected = job_id
        await top._key("c")
        assert cli_fleet.http.post(f"/v1/jobs/{job_id}/cancel").status_code == 200
        await top._key("y")
        assert f"cancel {job_id[:12]}: JOB_FINISHED" in str(top.view.message)


async def test_an_unanswered_question_goes_with_its_message(cli_fleet: CliFleet) -> None:
    job_id = cli_fleet.submit("sleep", SLEEP)
    cli_fleet.wait_running(job_id)
    try:
        async with FleetApi(cli_fleet.url) as api:
            top = Top(_state(), api, interval=0.5)
            await _refresh(top)
            top.view.selected = job_id
            await top._key("c")
            assert top.pending is not None
            top._message_at -= 60  # the question has been on the screen for a minute
            top._live = _NullLive()  # type: ignore[assignment]  # draw() without a screen
            top.draw()
            assert top.pending is None and top.view.message is None
            await top._key("y")  # now just a key: nothing is cancelled
            assert cli_fleet.job(job_id)["status"] == "running"
    finally:
        cli_fleet.http.post(f"/v1/jobs/{job_id}/cancel")


class _NullLive:
    def update(self, *_: object, **__: object) -> None:
        pass


async def test_a_queued_job_can_be_selected_watched_and_cancelled(cli_fleet: CliFleet) -> None:
    """One sleep more than the worker runs at once waits in the queue; top lists it after the
    running ones, selectable like them."""
    limit = cli_fleet.http.get("/v1/queues").json()["slots"]["sleep"]["limit"]
    jobs = [cli_fleet.submit("sleep", SLEEP) for _ in range(limit + 1)]
    try:

        def waiting_for_a_slot() -> str | None:
            slots = cli_fleet.http.get("/v1/queues").json()["slots"]["sleep"]
            if slots["in_flight"] < slots["limit"]:
                return None  # not all dispatched yet: a queued job now may start next
            return next((j for j in jobs if cli_fleet.job(j)["status"] == "queued"), None)

        waiting = await wait_until(waiting_for_a_slot, timeout=20, message="a sleep queued")
        async with FleetApi(cli_fleet.url) as api:
            top = Top(_state(), api, interval=0.5)
            await _refresh(top)
            queued = [j["id"] for j in top.snap["queued"]]
            assert waiting in queued
            ids = [j["id"] for j in selectable(top.snap)]
            assert ids.index(waiting) >= len(top.snap["running"])  # after the running ones
            for _ in range(len(ids)):
                if top.view.selected == waiting:
                    break
                await top._key("j")
            assert top.view.selected == waiting
            assert await top._key("w") == waiting  # watched as `fleet watch ID` would
            await top._key("c")
            assert "? y/n" in str(top.view.message)
            await top._key("y")
            assert f"cancelled {waiting[:12]}" in str(top.view.message)
            assert cli_fleet.job(waiting)["status"] == "cancelled"
    finally:
        for job_id in jobs:
            cli_fleet.http.post(f"/v1/jobs/{job_id}/cancel")
