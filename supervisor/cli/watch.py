"""Follow jobs to their end: live progress bars on a terminal, plain lines off one, or JSON.

One :class:`Watch` follows any number of jobs at once (``fleet watch``, ``submit --watch``
and the demo's batch); each job's events come from :meth:`FleetApi.events`, which resumes a
dropped stream without a gap or a duplicate.

Elapsed time, rate and ETA come from the job's own timestamps (each event's ``ts``, the run's
start), never from when this watcher happened to receive them: a watcher that attaches late
is handed the events so far in one burst, and timing that burst would make a 20 s job look
like 0.3 s with an ETA of nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TaskProgressColumn,
    TextColumn,
)
from rich.text import Text

from supervisor.cli.base import print_json
from supervisor.cli.render import STATUS_STYLE, duration, short_json
from supervisor.client import FleetApi

__all__ = ["JobView", "Watch"]

_LOG_LINES = 6
_PLAIN_PROGRESS_EVERY_S = 1.0
_RATE_WINDOW_S = 10.0
"""The rate is the progress over (about) the last this many seconds of the job's own time."""


class MarkColumn(SpinnerColumn):
    """A spinner while the job is live; its outcome once it ended."""

    def render(self, task: Task) -> Text:
        ended = task.fields.get("ended")
        if ended:
            return Text(*{"succeeded": ("✓", "green"), "cancelled": ("■", "magenta")}.get(
                ended, ("✗", "red")))  # fmt: skip
        return Text(str(super().render(task)))


class EtaColumn(ProgressColumn):
    """While running: the time left (``~12s left``) when the rate tells it, else the time
    since the run started; once ended, the time the run took (whatever its outcome)."""

    def render(self, task: Task) -> Text:
        clock: RunClock = task.fields["clock"]
        if task.fields.get("ended"):
            return Text(duration(clock.took), style="progress.elapsed")
        left = clock.left(time.time())
        if left is not None:
            return Text(f"~{duration(left)} left", style="progress.remaining")
        return Text(duration(clock.elapsed(time.time())), style="progress.elapsed")


class RateColumn(ProgressColumn):
    """Progress steps per second over the job's own recent time."""

    def render(self, task: Task) -> Text:
        clock: RunClock = task.fields["clock"]
        return Text(rate(clock.rate), style="progress.data.speed")


def rate(per_s: float | None) -> str:
    """``0.25/s``, ``3.2/s``, ``257/s``, ``25.7k/s``: as many digits as a rate can mean."""
    if not per_s or per_s <= 0:
        return ""
    if per_s < 10:
        return f"{per_s:.2g}/s" if per_s < 1 else f"{per_s:.1f}/s"
    if per_s < 1000:
        return f"{per_s:.0f}/s"
    return f"{per_s / 1000:.1f}k/s" if per_s < 1_000_000 else f"{per_s / 1e6:.1f}M/s"


@dataclass
class RunClock:
    """A run's time as the job tells it: when it started, and its progress samples
    ``(event ts, progress)``; the rate is taken over the last :data:`_RATE_WINDOW_S` of them."""

    started: float | None = None
    finished: float | None = None
    total: float | None = None
    samples: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=512))

    def restart(self, ts: float | None) -> None:
        self.started, self.finished, self.total = ts, None, None
        self.samples.clear()

    def sample(self, ts: float, progress: float, total: float | None) -> None:
        self.total = total
        if self.samples and progress < self.samples[-1][1]:
            self.samples.clear()  # the tool started over (a retry): its earlier pace is moot
        self.samples.append((ts, progress))
        while len(self.samples) > 2 and ts - self.samples[1][0] >= _RATE_WINDOW_S:
            self.samples.popleft()

    @property
    def rate(self) -> float | None:
        """Progress per second, or None while there is no pace to tell (fewer than two
        samples, or no time between them)."""
        if len(self.samples) < 2:
            return None
        (t0, p0), (t1, p1) = self.samples[0], self.samples[-1]
        if t1 - t0 <= 0 or p1 <= p0:
            return None
        return (p1 - p0) / (t1 - t0)

    def elapsed(self, now: float) -> float | None:
        if self.started is None:
            return None
        end = self.finished or now
        if self.samples:  # a clock behind the supervisor's never shows less than it told
            end = max(end, self.samples[-1][0])
        return max(0.0, end - self.started)

    def left(self, now: float) -> float | None:
        """Seconds to go: what is left at the current rate, counted from the last sample."""
        speed = self.rate
        if speed is None or self.total is None or not self.samples:
            return None
        last_ts, progress = self.samples[-1]
        return max(0.0, (self.total - progress) / speed - max(0.0, now - last_ts))

    @property
    def took(self) -> float | None:
        if self.started is None or self.finished is None:
            return None
        return max(0.0, self.finished - self.started)


@dataclass
class JobView:
    job_id: str
    label: str
    status: str = "queued"
    progress: float = 0.0
    total: float | None = None
    message: str = ""
    job: dict[str, Any] | None = None
    task: TaskID | None = None
    last_plain: float = 0.0
    seqs: list[int] = field(default_factory=list)
    clock: RunClock = field(default_factory=RunClock)


class Watch:
    """Follow jobs; returns their final bodies (``job_id → job``)."""

    def __init__(
        self,
        api: FleetApi,
        console: Console,
        *,
        json_lines: bool = False,
        live: bool | None = None,
        on_event: Callable[[dict[str, Any]], object] | None = None,
        extras: list[RenderableType] | None = None,
    ) -> None:
        """``extras``: drawn under the bars in the live view (the demo's workflow tree)."""
        self.api = api
        self.console = console
        self.json_lines = json_lines
        self.live = console.is_terminal if live is None else live
        self.on_event = on_event
        self.extras = list(extras or [])
        self.views: dict[str, JobView] = {}
        self.logs: deque[Text] = deque(maxlen=_LOG_LINES)
        self.progress = Progress(
            MarkColumn(),
            TextColumn("{task.description}", style="bold"),
            BarColumn(bar_width=28),
            TaskProgressColumn(),
            RateColumn(),
            EtaColumn(),
            TextColumn("{task.fields[status]}"),
            TextColumn("{task.fields[message]}", style="dim"),
            console=console,
            auto_refresh=False,
            expand=False,
        )

    def add(self, job_id: str, label: str | None = None) -> JobView:
        view = JobView(job_id=job_id, label=label or job_id[:12])
        view.task = self.progress.add_task(
            view.label,
            total=None,
            start=False,
            status=self._status(view),
            message="",
            ended="",
            clock=view.clock,
        )
        self.views[job_id] = view
        return view

    def __rich__(self) -> RenderableType:
        parts: list[RenderableType] = [self.progress.get_renderable()]
        for extra in self.extras:
            parts += [Text(""), extra]
        if self.logs:
            parts.append(Text(""))
            parts.extend(self.logs)
        return Group(*parts)

    async def run(self, job_ids: list[str] | None = None) -> dict[str, dict[str, Any]]:
        for job_id in job_ids or []:
            if job_id not in self.views:
                self.add(job_id)
        followers = [self._follow(view) for view in self.views.values()]
        if self.live and not self.json_lines:
            with Live(self, console=self.console, refresh_per_second=8, transient=False):
                await asyncio.gather(*followers)
        else:
            await asyncio.gather(*followers)
        return {job_id: v.job for job_id, v in self.views.items() if v.job is not None}

    async def _follow(self, view: JobView) -> None:
        def reconnecting(last: int, reason: str) -> None:
            self._log(view, f"connection lost ({reason[:60]}); resuming after event {last}", "dim")

        async for event in self.api.events(view.job_id, on_reconnect=reconnecting):
            view.seqs.append(int(event["seq"]))
            if self.on_event is not None:
                self.on_event(event)
            if self.json_lines:
                print_json(event)
            self._apply(view, event)

    # -- applying events ------------------------------------------------------------------

    def _apply(self, view: JobView, event: dict[str, Any]) -> None:
        kind, data = event.get("type"), event.get("data") or {}
        if kind == "status":
            self._on_status(view, data, event)
        elif kind == "progress":
            self._on_progress(view, data, event)
        elif kind == "log":
            level = str(data.get("level", "info"))
            style = {"warning": "yellow", "error": "red"}.get(level, "")
            self._log(view, f"{level}: {data.get('message', '')}", style)
        elif kind == "done":
            self._on_done(view, data)

    def _on_status(self, view: JobView, data: dict[str, Any], event: dict[str, Any]) -> None:
        status = str(data.get("status", view.status))
        view.status = status
        if status == "running" and view.task is not None:
            view.clock.restart(_ts(event))  # each attempt's run starts its own clock
            self.progress.start_task(view.task)
            worker, attempt = data.get("worker"), data.get("attempt")
            where = f" on {worker}" if worker else ""  # a workflow runs on no worker of its own
            self._log(view, f"running{where} (attempt {attempt})", "cyan")
        elif status == "queued" and data.get("redriven"):
            self._log(view, "redriven: queued again", "yellow")
        self._update(view)  # terminal statuses are told by the ``done`` event that follows

    def _on_progress(self, view: JobView, data: dict[str, Any], event: dict[str, Any]) -> None:
        view.progress = float(data.get("progress") or 0)
        view.total = float(data["total"]) if data.get("total") else None
        view.message = str(data.get("message") or "")
        ts = _ts(event)
        if ts is not None:
            view.clock.sample(ts, view.progress, view.total)
        self._update(view)
        now = time.monotonic()
        done = view.total is not None and view.progress >= view.total
        if (
            not self.live
            and not self.json_lines
            and (done or now - view.last_plain >= _PLAIN_PROGRESS_EVERY_S)
        ):
            view.last_plain = now
            pct = f"{100 * view.progress / view.total:.0f}%" if view.total else f"{view.progress:g}"
            self._plain(f"{view.label}  {pct}  {view.message}".rstrip())

    def _on_done(self, view: JobView, job: dict[str, Any]) -> None:
        view.job = job
        view.status = str(job.get("status"))
        if job.get("started_at"):  # the record's own times are the last word
            view.clock.started = float(job["started_at"])
        view.clock.finished = float(job.get("finished_at") or 0) or None
        if view.status == "succeeded":
            view.total = view.total or 1.0
            view.progress = view.total
        self._update(view)
        took = duration((job.get("finished_at") or 0) - (job.get("started_at") or 0))
        if not job.get("started_at"):
            took = "-"
        style = STATUS_STYLE.get(view.status, "")
        if view.status == "succeeded":
            self._log(view, f"succeeded in {took}: {short_json(job.get('result'), 70)}", style)
        elif job.get("error"):
            err = job["error"]
            self._log(view, f"{view.status}: {err['code']}: {err['message']}", style)
        else:
            self._log(view, view.status, style)
        if view.task is not None:
            self.progress.update(view.task, ended=view.status)
            self.progress.stop_task(view.task)

    def _update(self, view: JobView) -> None:
        if view.task is None:
            return
        message = view.message[:40]
        self.progress.update(
            view.task,
            total=view.total,
            completed=view.progress,
            status=self._status(view),
            message=message,
        )

    @staticmethod
    def _status(view: JobView) -> str:
        style = STATUS_STYLE.get(view.status, "")
        return f"[{style}]{view.status}[/]" if style else view.status

    def _log(self, view: JobView, message: str, style: str = "") -> None:
        line = Text.assemble((f"{view.label}  ", "bold"), (message, style))
        if self.json_lines:
            return
        if self.live:
            self.logs.append(line)
        else:
            self._plain(line)

    def _plain(self, line: str | Text) -> None:
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)


def _ts(event: dict[str, Any]) -> float | None:
    try:
        return float(event["ts"])
    except (KeyError, TypeError, ValueError):
        return None
