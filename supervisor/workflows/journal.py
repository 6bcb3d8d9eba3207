"""What a workflow run writes to its own event log: each step's transitions at once, a map
step's counts at most every :data:`FLUSH_S`, and the workflow's progress with them — never
what the log already holds (a resumed run is handed the log as it was, ``recorded``).

    journal = Journal(states, write, recorded=fold(events_so_far))
    states["split"].status = "running"
    await journal.transition(["split"])     # one step event, and the progress
    journal.touch("each")                   # a map item ended: in the next flush
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from shared import Progress
from supervisor.workflows.state import StepState

__all__ = ["FLUSH_S", "MAX_EVENT_IDS", "MAX_LIVE_IDS", "Journal", "Write"]

FLUSH_S = 0.25
"""A map step's counts are written at most this often (its transitions at once)."""
MAX_EVENT_IDS = 1000
"""Most child ids one ``step`` event lists (a bigger map lists its first ones)."""
MAX_LIVE_IDS = 200
"""A map with more items lists its children in its transitions only, not as items end."""

Write = Callable[[list[tuple[str, dict[str, Any]]], Progress | None], Awaitable[None]]
"""Append events to the workflow's log (and set its progress, when given)."""


class Journal:
    """The step events and progress of one run, over the run's own step states."""

    def __init__(
        self,
        states: Mapping[str, StepState],
        write: Write,
        *,
        recorded: Mapping[str, StepState] | None = None,
    ) -> None:
        self.states = states
        self._write = write
        self.recorded = {name: _copy(s) for name, s in (recorded or {}).items()}
        """What the log holds for each step: a transition already there is not written again."""
        self._dirty: set[str] = set()
        self._lock = asyncio.Lock()
        self._progress: tuple[float, float] | None = None
        self._message = ""

    async def transition(self, names: list[str]) -> None:
        """Write each step's new state (what the log does not hold yet), with the progress,
        in one append."""
        async with self._lock:
            events: list[tuple[str, dict[str, Any]]] = []
            for name in names:
                self._dirty.discard(name)
                state = self.states[name]
                before = self.recorded.get(name)
                if before is not None and (
                    before.status == state.status or (before.ended and state.status == "running")
                ):
                    continue  # written by an earlier run of this workflow
                self._message = f"{name} {state.status}"
                events.append(("step", _event(name, state)))
                self.recorded[name] = _copy(state)
            await self._append(events)

    def touch(self, name: str) -> None:
        """A map step's counts (or children) moved: write them with the next flush."""
        self._dirty.add(name)

    async def flush(self) -> None:
        """Write the map steps whose counts moved since their last event."""
        async with self._lock:
            events = []
            for name in sorted(self._dirty):
                state = self.states[name]
                if state.status != "running":
                    continue
                before = self.recorded.get(name)
                if before is not None and _counts(before) == _counts(state):
                    continue
                events.append(("step", _event(name, state, live=True)))
                self.recorded[name] = _copy(state)
                self._message = f"{name} {state.done + state.failed}/{state.total}"
            self._dirty.clear()
            await self._append(events)

    async def run(self) -> None:
        """Flush every :data:`FLUSH_S` while anything moved (until cancelled)."""
        while True:
            await asyncio.sleep(FLUSH_S)
            if self._dirty:
                await self.flush()

    async def _append(self, events: list[tuple[str, dict[str, Any]]]) -> None:
        progress = self._units()
        moved = progress != self._progress
        if not events and not moved:
            return
        update = None
        if moved:
            self._progress = progress
            update = Progress(progress=progress[0], total=progress[1], message=self._message)
            events.append(("progress", update.model_dump()))
        await self._write(events, update)

    def _units(self) -> tuple[float, float]:
        """(units ended, units in all): 1 per plain step, 1 per map item (1 for a map step
        whose list is not known yet)."""
        done = total = 0
        for state in self.states.values():
            units = state.total if state.total is not None else 1
            total += units
            if state.ended and (state.total is None or state.status == "skipped"):
                done += units
            else:
                done += min(units, state.done + state.failed)
        return float(done), float(total)


def _event(name: str, state: StepState, *, live: bool = False) -> dict[str, Any]:
    """The step's event; a map's count event lists its children only while the map is
    small (its transitions always do), so a big map's log does not grow with the square of
    its items."""
    data = state.event(name, with_ids=False)
    if live and (state.total or 0) > MAX_LIVE_IDS:
        return data
    ids = [i for i in state.job_ids if i][:MAX_EVENT_IDS]
    if ids:
        data["job_ids"] = ids
    return data


def _counts(state: StepState) -> tuple[int, int, int]:
    return state.done, state.failed, sum(1 for i in state.job_ids if i)


def _copy(state: StepState) -> StepState:
    return StepState(
        status=state.status,
        total=state.total,
        done=state.done,
        failed=state.failed,
        job_ids=list(state.job_ids),
        error=state.error,
    )
