"""Which workers the supervisor trusts, and the one credential each of them gets.

Discovery asks :class:`WorkerTrust` about every worker it finds, static or self-registered:

- a **registration** must carry a valid signature when ``registration_secret`` is set
  (:mod:`shared.signing`);
- every **URL** must pass ``worker_allow`` when it is set (:mod:`shared.allowlist`).

A worker that fails is not probed and not called: it is listed under ``refused`` in
``GET /v1/workers`` with its reason, logged once (not once per probe round) and counted in
``fleet_workers_refused_total{source, reason}``. One that passes is *admitted*: only
admitted URLs get a token (:meth:`WorkerTrust.token_for`, what the worker pool presents) —
the token of its service from ``worker_tokens``, else the shared ``worker_token``. The
service is the name the worker registered under (signed, when a secret is set) or the
``service=`` of its ``FLEET_WORKERS`` entry.

    trust = WorkerTrust.from_settings(settings, metrics)
    trust.refusal(reg, source="registered")   # None, or why it is refused (then recorded)
    trust.admit(url, "echo"); trust.token_for(url)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from shared import SupervisorSettings, WorkerRegistration, get_logger
from shared.allowlist import Allowlist
from shared.signing import check_registration
from supervisor.metrics import Metrics

__all__ = ["MAX_SHOWN", "Refused", "WorkerTrust"]

log = get_logger("fleet.trust")

MAX_SHOWN = 100
"""Refused workers listed by ``GET /v1/workers`` (the rest are still logged and counted)."""


@dataclass(frozen=True)
class Refused:
    """A worker discovery will not probe or call, and why."""

    url: str
    name: str
    source: str
    reason: str
    since: float

    def view(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "name": self.name,
            "source": self.source,
            "reason": self.reason,
            "since": self.since,
        }


class WorkerTrust:
    """Registration signatures, the URL allowlist and per-worker credentials, in one place.

    With no secret and no allowlist (the default) every worker is admitted and gets the shared
    token: the behaviour of a single-user fleet on a trusted network.
    """

    def __init__(
        self,
        *,
        secret: str | None = None,
        fleet: str = "fleet",
        allow: Allowlist | None = None,
        token: str | None = None,
        tokens: dict[str, str] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.secret = secret
        self.fleet = fleet
        self.allow = allow or Allowlist()
        self.token = token
        self.tokens = dict(tokens or {})
        self.metrics = metrics
        self.refused: dict[tuple[str, str, str], Refused] = {}
        self._seen: set[tuple[str, str, str]] = set()
        self._admitted: dict[str, str | None] = {}  # url → service its token is chosen by

    @classmethod
    def from_settings(
        cls, settings: SupervisorSettings, metrics: Metrics | None = None
    ) -> WorkerTrust:
        return cls(
            secret=settings.registration_secret,
            fleet=settings.key_prefix,
            allow=Allowlist.parse(settings.worker_allow),
            token=settings.worker_token,
            tokens=settings.worker_tokens,
            metrics=metrics,
        )

    # -- checks, once per discovery round -------------------------------------------------------

    def begin_round(self) -> None:
        """Start a discovery round: refusals not seen again by :meth:`end_round` are forgotten."""
        self._seen = set()

    def keep_refused(self) -> None:
        """The registrations could not be read this round: remember their refusals as they were."""
        self._seen.update(k for k in self.refused if k[0] == "registered")

    def end_round(self) -> None:
        for key in [k for k in self.refused if k not in self._seen]:
            del self.refused[key]

    def refusal(
        self, url: str, *, source: str, name: str | None, reg: WorkerRegistration | None = None
    ) -> str | None:
        """Why this worker may not be called (and record it), or None when it may."""
        reason: str | None = None
        if reg is not None and self.secret is not None:
            reason = check_registration(reg, self.secret, fleet=self.fleet)
        if reason is None and not self.allow.allows(url):
            reason = "not_allowed"
        if reason is not None:
            self._refuse(url, source=source, name=name or "?", reason=reason)
        return reason

    def _refuse(self, url: str, *, source: str, name: str, reason: str) -> None:
        key = (source, name, url)
        self._seen.add(key)
        known = self.refused.get(key)
        if known is not None and known.reason == reason:
            return  # logged and counted when it first appeared: no flood per probe round
        self.refused[key] = Refused(url, name, source, reason, time.time())
        self.revoke(url)
        log.warning("registry.worker_refused", url=url, name=name, source=source, reason=reason)
        if self.metrics is not None:
            self.metrics.workers_refused.labels(source=source, reason=reason).inc()

    def views(self) -> list[dict[str, Any]]:
        shown = sorted(self.refused.values(), key=lambda r: (r.source, r.url, r.name))
        return [r.view() for r in shown[:MAX_SHOWN]]

    # -- credentials ------------------------------------------------------------------------

    def admit(self, url: str, service: str | None) -> None:
        """``url`` passed every check: it gets the token of ``service`` (or the shared one)."""
        self._admitted[url] = service

    def revoke(self, url: str) -> None:
        self._admitted.pop(url, None)

    def admitted(self, url: str) -> bool:
        return url in self._admitted

    def token_for(self, url: str) -> str | None:
        """The bearer token to present to ``url``: None unless discovery admitted it."""
        if url not in self._admitted:
            return None
        service = self._admitted[url]
        if service is not None and service in self.tokens:
            return self.tokens[service]
        return self.token
