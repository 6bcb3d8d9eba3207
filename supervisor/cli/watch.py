"""Follow jobs to their end: live progress bars on a terminal, plain lines off one, or JSON.

One :class:`Watch` follows any number of jobs at once (``fleet watch``, ``submit --watch``
and the demo's batch); each job's events come from :meth:`FleetApi.events`, which resumes a
dropped stream without a gap or a duplicate.
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
    TimeRemainingColumn,
)
from rich.text import Text

from supervisor.cli.base import print_json
from supervisor.cli.render import STATUS_STYLE, duration, short_json
from supervisor.client import FleetApi

__all__ = ["JobView", "Watch"]

_LOG_LINES = 6
_PLAIN_PROGRESS_EVERY_S = 1.0


class MarkColumn(SpinnerColumn):
    """A spinner while the job is live; its outcome once it ended."""

    def render(self, task: Task) -> Text:
        ended = task.fields.get("ended")
        if ended:
            return Text(*{"succeeded": ("✓", "green"), "cancelled": ("■", "magenta")}.get(
                ended, ("✗", "red")))  # fmt: skip
        return Text(str(super().render(task)))


class EtaColumn(TimeRemainingColumn):
    """Time left while running; time taken once the job ended (whatever its outcome)."""

    def render(self, task: Task) -> Text:
        if task.fields.get("ended"):
            return Text(duration(task.elapsed), style="progress.elapsed")
        return super().render(task)


class RateColumn(ProgressColumn):
    """Steps per second, from rich's own moving window of updates."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.1f}/s" if speed else "", style="progress.data.speed")


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


class Watch:
    """Follow jobs; returns their final bodies (``job_id → job``)."""

    def __init__(
        self,
        api: FleetApi,
        console: Console,
        *,
        json_lines: bool = False,
        live: bool | None = None,
        on_event: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.api = api
        self.console = console
        self.json_lines = json_lines
        self.live = console.is_terminal if live is None else live
        self.on_event = on_event
        self.views: dict[str, JobView] = {}
        self.logs: deque[Text] = deque(maxlen=_LOG_LINES)
        self.progress = Progress(
            MarkColumn(),
            TextColumn("{task.description}", style="bold"),
            BarColumn(bar_width=28),
            TaskProgressColumn(),
            RateColumn(),
            EtaColumn(compact=True),
            TextColumn("{task.fields[status]}"),
            TextColumn("{task.fields[message]}", style="dim"),
            console=console,
            auto_refresh=False,
            expand=False,
        )

    def add(self, job_id: str, label: str | None = None) -> JobView:
        view = JobView(job_id=job_id, label=label or job_id[:12])
        view.task = self.progress.add_task(
            view.label, total=None, start=False, status=self._status(view), message="", ended=""
        )
        self.views[job_id] = view
        return view

    def __rich__(self) -> RenderableType:
        parts: list[RenderableType] = [self.progress.get_renderable()]
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
            self._on_status(view, data)
        elif kind == "progress":
            self._on_progress(view, data)
        elif kind == "log":
            level = str(data.get("level", "info"))
            style = {"warning": "yellow", "error": "red"}.get(level, "")
            self._log(view, f"{level}: {data.get('message', '')}", style)
        elif kind == "done":
            self._on_done(view, data)

    def _on_status(self, view: JobView, data: dict[str, Any]) -> None:
        status = str(data.get("status", view.status))
        view.status = status
        if status == "running" and view.task is not None:
            self.progress.start_task(view.task)
            worker, attempt = data.get("worker"), data.get("attempt")
            self._log(view, f"running on {worker} (attempt {attempt})", "cyan")
        elif status == "queued" and data.get("redriven"):
            self._log(view, "redriven: queued again", "yellow")
        self._update(view)  # terminal statuses are told by the ``done`` event that follows

    def _on_progress(self, view: JobView, data: dict[str, Any]) -> None:
        view.progress = float(data.get("progress") or 0)
        view.total = float(data["total"]) if data.get("total") else None
        view.message = str(data.get("message") or "")
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
