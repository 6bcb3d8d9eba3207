"""Follow a workflow to its end: its tree redrawn live on a terminal, lines off one, or JSON.

The steps' state is folded from the workflow's own event stream (``step`` events, see
:class:`~supervisor.client.StepBoard`): the live tree costs no request beyond the stream,
which :meth:`FleetApi.events` resumes after a dropped connection with ``Last-Event-ID``.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from rich.console import Console, ConsoleOptions, RenderResult
from rich.live import Live
from rich.text import Text

from supervisor.cli.base import print_json
from supervisor.cli.workflow_view import tree
from supervisor.client import FleetApi, StepBoard

__all__ = ["FlowState", "FlowWatch"]

_PLAIN_PROGRESS_EVERY_S = 1.0
_REDRAW_EVERY_S = 0.05
"""An event redraws the tree at once, unless it was redrawn this recently: attaching late
replays the events so far in one burst, and a redraw per event would be a slideshow (the
Live's own refresh draws the last of them)."""


class FlowState:
    """A workflow as its events tell it: the job's body and every step's state. A renderable:
    its tree at the width it is drawn at (the live views redraw it as events arrive, from
    the Live's refresh thread: the lock keeps a frame from seeing half an event)."""

    def __init__(self, job: dict[str, Any], *, outcome: bool = True) -> None:
        self._lock = threading.Lock()
        self.job = dict(job)
        self.board = StepBoard.from_spec(job.get("input"))
        self.note = ""
        self.outcome = outcome

    def apply(self, event: dict[str, Any]) -> str | None:
        """Fold one event into the job and the steps; the step it changed, if any."""
        with self._lock:
            return self._apply(event)

    def _apply(self, event: dict[str, Any]) -> str | None:
        kind, data = event.get("type"), event.get("data") or {}
        if kind == "status":
            self.job["status"] = data.get("status", self.job.get("status"))
            if data.get("status") == "running" and not self.job.get("started_at"):
                self.job["started_at"] = event.get("ts")
        elif kind == "progress":
            self.job["progress"] = data
        elif kind == "done":
            self.job = dict(data)
        return self.board.apply(event)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        with self._lock:
            frame = tree(
                self.job, self.board, options.max_width, note=self.note, outcome=self.outcome
            )
        yield frame


class FlowWatch:
    """Follow one workflow job; :meth:`run` returns its final body (the ``done`` event's).

    ``job`` is its body as known at the start (the submit's answer, a ``GET``): its ``input``
    (the spec) names the steps, so every step is drawn from the first frame on.
    """

    def __init__(
        self,
        api: FleetApi,
        console: Console,
        job: dict[str, Any],
        *,
        json_lines: bool = False,
        live: bool | None = None,
    ) -> None:
        self.api = api
        self.console = console
        self.state = FlowState(job, outcome=False)  # the caller prints it whole
        self.json_lines = json_lines
        self.live = console.is_terminal if live is None else live
        self._printed: dict[str, tuple[str, int, int]] = {}
        self._last_plain = 0.0

    async def run(self) -> dict[str, Any]:
        if self.live and not self.json_lines:
            with Live(
                self.state, console=self.console, refresh_per_second=4, transient=False
            ) as live:  # the clock ticks by itself; events redraw at once
                await self._follow(live)
        else:
            await self._follow(None)
            if not self.json_lines:
                self.console.print(self.state)
        return self.state.job

    async def _follow(self, live: Live | None) -> None:
        def reconnecting(last: int, reason: str) -> None:
            self.state.note = f"reconnecting… ({reason[:50]}); resuming after event {last}"
            if live is not None:
                live.refresh()
            elif not self.json_lines:
                self._plain(self.state.note)

        drawn = 0.0
        async for event in self.api.events(self.state.job["id"], on_reconnect=reconnecting):
            self.state.note = ""
            if self.json_lines:
                print_json(event)
            changed = self.state.apply(event)
            if live is not None:
                if time.monotonic() - drawn >= _REDRAW_EVERY_S:
                    live.refresh()
                    drawn = time.monotonic()
            elif not self.json_lines and changed:
                self._tell(changed)

    def _tell(self, name: str) -> None:
        """Off a terminal: a line when a step changes status, and a map step's count at most
        once a second (and when it ends)."""
        step = self.state.board.steps[name]
        now = time.monotonic()
        said = self._printed.get(name)
        if said is not None and said[0] == step.status:  # the same status: only counts news
            if said[1:] == (step.done, step.failed):
                return
            if now - self._last_plain < _PLAIN_PROGRESS_EVERY_S:
                return
        self._last_plain = now
        self._printed[name] = (step.status, step.done, step.failed)
        total = step.total if step.total is not None else "?"
        line = f"{name}  {step.status}  {step.done}/{total}"
        line += f"  {step.failed} failed" if step.failed else ""
        if step.error is not None:
            line += f"  {step.error.code}: {step.error.message}"
        self._plain(line)

    def _plain(self, line: str) -> None:
        self.console.print(Text(line), soft_wrap=True)
