"""Per-tenant limits. On submissions: the store counts (across every supervisor sharing it),
this turns a refusal into 429 ``RATE_LIMITED`` and gives back the place of a job that was
not created (an idempotent replay, a full queue, a failed write). On event streams: each
supervisor counts the streams it serves (:class:`Watchers`)."""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from shared import Job
from shared.errors import RateLimited
from supervisor.api.auth import Principal
from supervisor.services import Services
from supervisor.store import OverLimit

__all__ = ["Watchers", "admitted"]

_SETTING = {
    "submit_rate": "FLEET_RATE_SUBMIT_PER_S",
    "in_flight": "FLEET_TENANT_MAX_INFLIGHT",
    "watchers": "FLEET_TENANT_MAX_WATCHERS",
}
WATCHER_RETRY_S = 5


class Admitted:
    """Mark :attr:`created` once the store made the job; otherwise its place is given back."""

    created = False


@asynccontextmanager
async def admitted(svc: Services, who: Principal, job: Job) -> AsyncIterator[Admitted]:
    """Count ``job`` against ``who``'s tenant (or ``who``, without one), or refuse it. A
    replay (an idempotency key already used) is answered, never limited."""
    settings = svc.settings
    ticket = Admitted()
    rate, inflight = settings.rate_submit_per_s, settings.tenant_max_inflight
    if not rate and not inflight:
        yield ticket
        return
    budget, job_id = who.limited_as, job.id
    try:
        await svc.store.admit(
            budget, job_id, rate_per_s=rate, burst=settings.rate_burst, max_inflight=inflight
        )
    except OverLimit as exc:
        if job.idempotency_key and await svc.store.key_used(job.idempotency_key, job.tenant):
            yield ticket  # the submit answers the first job
            return
        kind, _, name = budget.partition(":")
        raise RateLimited(
            f"{kind} {name!r} is over its {exc.limit.replace('_', ' ')} limit "
            f"({_SETTING[exc.limit]}); retry in {exc.retry_after} s",
            retry_after=exc.retry_after,
            details={"limit": exc.limit, kind: name},
        ) from exc
    try:
        yield ticket
    finally:
        if inflight and not ticket.created:
            await svc.store.release(budget, job_id)


class Watchers:
    """Event streams open per tenant (or actor) on this supervisor, under a cap.

    A place is taken before the stream's answer starts (so the refusal can be a 429) and given
    back when the stream ends; a stream whose body never ran gives it back when collected.
    """

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.open: dict[str, int] = {}

    def take(self, who: Principal, owner: object) -> Callable[[], None]:
        """A place for ``who``'s stream ``owner`` (its body generator), or 429; returns the
        release, idempotent, also called when ``owner`` is collected."""
        budget = who.limited_as
        if self.cap and self.open.get(budget, 0) >= self.cap:
            kind, _, name = budget.partition(":")
            raise RateLimited(
                f"{kind} {name!r} has {self.cap} event streams open, its limit "
                f"({_SETTING['watchers']}); close one or retry in {WATCHER_RETRY_S} s",
                retry_after=WATCHER_RETRY_S,
                details={"limit": "watchers", kind: name},
            )
        self.open[budget] = self.open.get(budget, 0) + 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                left = self.open.get(budget, 1) - 1
                if left > 0:
                    self.open[budget] = left
                else:
                    self.open.pop(budget, None)

        weakref.finalize(owner, release)
        return release
