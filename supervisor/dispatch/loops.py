"""The dispatcher: its loops take jobs from the queue, keep their leases, and pass cancels on.

Delivery is at-least-once. A job is held as a pending entry of the dispatch stream; the
holder renews its lease every ``lease_s / 3`` and acknowledges the entry only once the job
has ended. Deliveries whose holder stopped renewing (a crashed replica) are reclaimed with
XAUTOCLAIM by any supervisor. Each held job runs in its own task (:mod:`.run`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from shared import Job, StoreUnavailable, SupervisorSettings, get_logger
from shared.protocol import WORKFLOW_CAPABILITY
from supervisor.dispatch.call import Calls
from supervisor.dispatch.held import Held, lose
from supervisor.dispatch.outcome import Outcomes
from supervisor.dispatch.placement import Placement, Route
from supervisor.dispatch.policy import RetryPolicy
from supervisor.dispatch.run import Runner
from supervisor.loops import cancel_all
from supervisor.metrics import Metrics
from supervisor.types import DispatchStore, WorkerCaller, WorkerDirectory

__all__ = ["Dispatcher"]

log = get_logger("fleet.dispatcher")

ROUTES_KEPT = 1024
"""Routes of jobs this process submitted, kept until their delivery (:meth:`Dispatcher.expect`);
past this many the oldest are dropped (such a job is read before it is routed, as any other)."""


class Dispatcher:
    """Runs jobs. :meth:`loops` are its background loops; ``run_until_idle()`` serves tests.

    Slots: ``FLEET_CONCURRENCY`` jobs run at once; a job that waits for a worker of its
    capability holds no slot (up to ``FLEET_WAITING_LIMIT`` may wait), so a busy capability
    never blocks jobs for idle ones.
    """

    def __init__(
        self,
        store: DispatchStore,
        registry: WorkerDirectory,
        caller: WorkerCaller,
        settings: SupervisorSettings,
        metrics: Metrics,
    ) -> None:
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self.held: dict[str, Held] = {}
        self._slot_freed = asyncio.Event()
        self.placement = Placement(registry, self._slot_freed.set)
        calls = Calls(store, registry, caller, metrics)
        calls.supervisor_url = settings.resource_url
        self.runner = Runner(
            store,
            registry,
            metrics,
            self.placement,
            calls,
            Outcomes(store, settings, metrics),
            RetryPolicy.from_settings(settings),
        )
        self._store_since: float | None = time.monotonic()
        """Since when the store has answered without a break (None: it is out). A lease runs
        only while the store can be reached: nothing is reclaimed until it has answered for a
        whole lease, so every live holder has had the time to renew or to record its end."""
        self._tasks: set[asyncio.Task[Any]] = set()
        self._routes: dict[str, Route] = {}

    def expect(self, job: Job) -> None:
        """``job`` is about to be submitted by this process: when its delivery comes here, a
        worker is chosen before it is read, and its lease, read and start are one store round
        trip (:meth:`Runner.handle`). Called before the submit (its delivery may arrive before
        the submit's answer); :meth:`forget` it if the submit did not queue it."""
        if job.service is None or job.capability == WORKFLOW_CAPABILITY:
            return
        if len(self._routes) >= ROUTES_KEPT:  # delivered elsewhere, or not yet: the oldest go
            del self._routes[next(iter(self._routes))]
        self._routes[job.id] = Route.of(job)

    def forget(self, job_id: str) -> None:
        self._routes.pop(job_id, None)

    def loops(self) -> dict[str, Callable[[], Awaitable[None]]]:
        """The background loops, by name, for :class:`supervisor.loops.Loops` to run."""
        return {"intake": self._intake, "leases": self._leases, "cancels": self._cancels}

    async def run(self) -> None:
        """Every loop at once, unsupervised (tests); held jobs are left for reclaim."""
        try:
            await asyncio.gather(*(loop() for loop in self.loops().values()))
        finally:
            await self.stop()

    async def stop(self) -> None:
        await cancel_all(list(self._tasks))

    async def _intake(self) -> None:
        while True:
            free = self._free_slots()
            if free <= 0:
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            try:
                entries = await self.store.take(free, block_ms=1000)
            except StoreUnavailable as exc:
                self._store_since = None
                # The outage is logged once, by the store's health; each try only at DEBUG.
                _store_log(self.store, "dispatcher.store_unavailable", exc.message)
                await self.store.health.pause()  # back off while the store is down
                with contextlib.suppress(StoreUnavailable):
                    await self.store.ensure_group()
                continue
            for entry_id, job_id in entries:  # their leases go to the store together
                self._spawn(entry_id, job_id)  # (supervisor.store.batch)

    def _free_slots(self) -> int:
        waiting = sum(1 for h in self.held.values() if h.waiting)
        running = len(self.held) - waiting
        room = self.settings.concurrency + self.settings.waiting_limit - len(self.held)
        return min(self.settings.concurrency - running, room)

    async def _leases(self) -> None:
        lease_ms = int(self.settings.lease_s * 1000)
        tick = self.settings.lease_s / 3
        while True:
            await asyncio.sleep(tick)
            try:
                await self._check_leases()
                await self.store.renew([h.entry_id for h in self.held.values() if not h.lost])
                if self._store_since is None:
                    self._store_since = time.monotonic()
                settled = time.monotonic() - self._store_since >= self.settings.lease_s
                if settled and self._free_slots() > 0:
                    for entry_id, job_id in await self.store.reclaim(lease_ms, self._free_slots()):
                        if job_id not in self.held:
                            log.info("dispatcher.reclaimed", job_id=job_id)
                            self._spawn(entry_id, job_id, reclaimed=True)
            except StoreUnavailable as exc:
                self._store_since = None
                _store_log(self.store, "dispatcher.lease_failed", exc.message)

    async def _check_leases(self) -> None:
        """One read for every held job. A job whose fence moved on was reclaimed by another
        supervisor (we were paused or cut off past the lease): stop its call and write nothing
        more for it. A job whose cancel was asked (a missed pub/sub message) is cancelled."""
        held = {j: h for j, h in self.held.items() if h.fence is not None and not h.lost}
        for job_id, (fence, cancel) in (await self.store.leases(list(held))).items():
            if fence != held[job_id].fence:
                lose(job_id, held[job_id], fence, self.metrics)
            elif cancel and not held[job_id].cancel_requested:
                self._cancel_local(job_id)

    async def _cancels(self) -> None:
        while True:
            try:
                async for job_id in self.store.cancel_messages():
                    self._cancel_local(job_id)
            except StoreUnavailable as exc:
                _store_log(self.store, "dispatcher.cancel_listener_failed", exc.message)
                await self.store.health.pause()  # re-subscribe after the store recovers
            except Exception as exc:  # whatever else: re-subscribe
                log.warning("dispatcher.cancel_listener_failed", error=str(exc))
                await asyncio.sleep(1.0)

    def _cancel_local(self, job_id: str) -> None:
        held = self.held.get(job_id)
        if held is not None and held.task is not None and not held.cancel_requested:
            held.cancel_requested = True
            held.task.cancel()

    def _spawn(self, entry_id: str, job_id: str, *, reclaimed: bool = False) -> None:
        held = Held(entry_id, reclaimed=reclaimed)
        self.held[job_id] = held
        self.metrics.in_flight.set(len(self.held))
        route = self._routes.pop(job_id, None)
        task = asyncio.create_task(self._run_job(job_id, held, route), name=f"job-{job_id}")
        held.task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_job(self, job_id: str, held: Held, route: Route | None) -> None:
        try:
            await self.runner.handle(job_id, held, route)
        finally:
            self.held.pop(job_id, None)
            self.metrics.in_flight.set(len(self.held))
            self._slot_freed.set()

    async def run_until_idle(self, timeout: float = 30.0) -> None:
        """Take everything queued now and wait for it to end (tests, benchmarks)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for entry_id, job_id in await self.store.take(self.settings.concurrency, block_ms=10):
                self._spawn(entry_id, job_id)
            if not self._tasks:
                return
            await asyncio.wait(set(self._tasks), timeout=max(0.0, deadline - time.monotonic()))
        raise TimeoutError("dispatcher did not go idle")


def _store_log(store: DispatchStore, event: str, error: str) -> None:
    """A failed try: at DEBUG while the store is out (its health said so once), else a
    warning (the store answered with an error)."""
    (log.warning if store.health.up else log.debug)(event, error=error)
