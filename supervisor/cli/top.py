"""``fleet top``: the fleet on one screen — slots per capability, workers, running jobs,
recent failures and rates — with keys to act on a job.

On a terminal it takes the whole screen (the alternate screen: the shell's scrollback is left
as it was) and redraws every ``--interval`` seconds and on each key. A supervisor that stops
answering (unreachable, 5xx, too slow) is shown as "reconnecting…" over the last data until
it answers again; only 401/403 end it (exit 5), and ``q`` or Ctrl-C (exit 0).

Keys: ↑/↓ or j/k select a job; ``w`` (or Enter) watches it, exactly as ``fleet watch ID``,
in the normal screen — top comes back when the job ends or on Ctrl-C, which detaches the
watch only (the job keeps running); ``c`` cancels it (after ``y`` to confirm); ``r``
redrives a failed (dead-lettered) job; ``q`` quits.

Off a terminal it prints one snapshot as text and exits 0; ``--json`` prints one snapshot
per line every interval (with ``--once``, a single one) and, like the screen, waits out a
supervisor that stops answering (:func:`_json_lines`).

The jobs listed, and selectable, are the running ones, then the queued ones (in yellow, marked
"queued"), then the last failed ones: a queued job is watched or cancelled like any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable
from typing import Annotated, Any

import httpx
import typer
from rich.live import Live
from rich.text import Text

from supervisor.cli.base import Exit, JsonOpt, State, app, print_json, run_api, state
from supervisor.cli.hints import examples
from supervisor.cli.top_data import Rates, describe, fatal, guarded, snapshot
from supervisor.cli.top_keys import Keys
from supervisor.cli.top_view import View, render, selectable
from supervisor.client import ApiError, FleetApi, Unreachable

__all__ = ["Top", "snapshot"]

RATE_WINDOW_S = 20.0
_PASSING = (ApiError, Unreachable, httpx.HTTPError)
"""What a snapshot may fail with while the supervisor restarts or is away."""
_MESSAGE_S = 8.0


class Top:
    """The interactive screen: polls the API, reads keys, draws, acts."""

    def __init__(self, st: State, api: FleetApi, interval: float) -> None:
        self.st = st
        self.api = api
        self.interval = interval
        self.snap: dict[str, Any] = {"url": api.url, "workers": [], "running": []}
        self.rates = Rates(RATE_WINDOW_S)
        self.view = View()
        self.pending: Callable[[], Any] | None = None  # an action waiting for ``y``
        self._message_at = 0.0
        self._selected_at = 0  # where the selection was: its place when that job leaves
        self._wake = asyncio.Event()
        self._live: Live | None = None

    # -- the loops --------------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        # Killed or hung up: leave as Ctrl-C does, through every cleanup (the terminal's
        # modes, the normal screen, the cursor), not with a terminal left in cbreak mode.
        ends = (signal.SIGTERM, signal.SIGHUP)
        for sig in ends:
            loop.add_signal_handler(sig, signal.raise_signal, signal.SIGINT)
        try:
            while True:
                watch = await self._screen()
                if watch is None:
                    return
                await self._watch(watch)
        finally:
            for sig in ends:
                loop.remove_signal_handler(sig)

    async def _screen(self) -> str | None:
        """Top on the alternate screen until ``q`` (None) or ``w`` (the job to watch)."""
        loop = asyncio.get_running_loop()
        with (
            Keys() as keys,
            Live(
                console=self.st.out,
                screen=True,
                auto_refresh=False,
                redirect_stdout=False,
                redirect_stderr=False,
            ) as live,
        ):
            self._live = live
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signal.SIGWINCH, self.draw)
            poller = asyncio.create_task(self._poll())
            try:
                self.draw()
                while True:
                    key = asyncio.ensure_future(keys.get())
                    await asyncio.wait({key, poller}, return_when=asyncio.FIRST_COMPLETED)
                    if poller.done():  # it ends only on an error to exit with (401/403)
                        key.cancel()
                        poller.result()
                    outcome = await self._key(key.result())
                    if outcome is not None:
                        return outcome or None
            finally:
                poller.cancel()
                with contextlib.suppress(asyncio.CancelledError, ApiError, Unreachable):
                    await poller
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(signal.SIGWINCH)
                self._live = None

    async def _poll(self) -> None:
        link = self.view.link
        while True:
            try:
                snap = await guarded(self.api, timeout=max(5.0, 3 * self.interval))
            except (*_PASSING, ValueError, KeyError, TypeError) as exc:
                # Not only the client's errors: something at the URL that is not (yet) the
                # supervisor (an answer that is not its JSON) is also waited out, not a crash.
                if fatal(exc):
                    raise
                link.down_since = link.down_since or time.time()
                link.attempts += 1
                link.reason = describe(exc)
            else:
                link.down_since, link.attempts = None, 0
                self.snap = snap
                self.rates.add(time.monotonic(), snap.get("by_status"))
                self._keep_selection()
            self.draw()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)

    def draw(self) -> None:
        if self._live is None:
            return
        if self.view.message is not None and time.monotonic() - self._message_at > _MESSAGE_S:
            self.view.message = None
            self.pending = None  # a question no longer on the screen is not answered by a key
        width, height = self.st.out.size
        frame = render(self.snap, self.view, width, height, self.rates.now(), RATE_WINDOW_S)
        self._live.update(frame, refresh=True)

    # -- keys -----------------------------------------------------------------------------

    async def _key(self, key: str) -> str | None:
        """What a key does: None to go on, "" to quit, a job id to watch."""
        if self.pending is not None:
            action, self.pending = self.pending, None
            if key in ("y", "Y"):
                await action()
            else:
                self.say("not cancelled", "dim")
            self.draw()
            return None
        jobs = selectable(self.snap)
        job = next((j for j in jobs if j.get("id") == self.view.selected), None)
        if key == "q":
            return ""
        if key in ("up", "k", "down", "j", "pageup", "pagedown", "home", "end"):
            self._move(key, jobs)
        elif job is None and key in ("w", "enter", "c", "r"):
            self.say("select a job first (↑↓ or j/k)", "yellow")
        elif job is not None and key in ("w", "enter"):
            return str(job["id"])
        elif job is not None and key == "c":
            self._ask_cancel(job)
        elif job is not None and key == "r":
            await self._redrive(job)
        self.draw()
        return None

    def _move(self, key: str, jobs: list[dict[str, Any]]) -> None:
        if not jobs:
            return
        ids = [j.get("id") for j in jobs]
        at = ids.index(self.view.selected) if self.view.selected in ids else -1
        step = {"up": -1, "k": -1, "down": 1, "j": 1, "pageup": -10, "pagedown": 10}
        if key == "home":
            at = 0
        elif key == "end":
            at = len(ids) - 1
        elif at < 0:
            at = 0 if step[key] > 0 else len(ids) - 1
        else:
            at = max(0, min(len(ids) - 1, at + step[key]))
        self.view.selected = str(ids[at])
        self._selected_at = at

    def _keep_selection(self) -> None:
        """The first job is selected from the start; a selected job that left the list (it
        ended) leaves the selection on the one now in its place."""
        ids = [str(j.get("id")) for j in selectable(self.snap)]
        if self.view.selected in ids:
            self._selected_at = ids.index(self.view.selected)
        elif ids:
            self._selected_at = min(self._selected_at, len(ids) - 1)
            self.view.selected = ids[self._selected_at]
        else:
            self.view.selected = None

    def _ask_cancel(self, job: dict[str, Any]) -> None:
        short = str(job["id"])[:12]
        if job.get("status") not in ("queued", "running"):
            self.say(f"{short} is {job.get('status')}: nothing to cancel", "yellow")
            return

        async def cancel() -> None:
            try:
                done = await self.api.cancel(str(job["id"]))
            except (ApiError, Unreachable) as exc:
                self.say(f"cancel {short}: {describe(exc)}", "red")
                return
            status = done.get("status")
            word = "cancelled" if status == "cancelled" else f"cancelling (still {status})"
            self.say(f"{word} {short}", "magenta")
            self._wake.set()

        self.pending = cancel
        self.say(f"cancel {short} ({job.get('capability')})? y/n", "bold yellow")

    async def _redrive(self, job: dict[str, Any]) -> None:
        short = str(job["id"])[:12]
        if job.get("status") != "failed":
            self.say(f"{short} is {job.get('status')}: only a failed job is redriven", "yellow")
            return
        try:
            done = await self.api.redrive(str(job["id"]))
        except (ApiError, Unreachable) as exc:
            self.say(f"redrive {short}: {describe(exc)}", "red")
            return
        self.say(f"redriven {short}: {done.get('status')}", "green")
        self._wake.set()

    def say(self, message: str, style: str = "") -> None:
        self.view.message = Text(message, style=style)
        self._message_at = time.monotonic()

    # -- watching -------------------------------------------------------------------------

    async def _watch(self, job_id: str) -> None:
        """``fleet watch ID`` in the normal screen; Ctrl-C ends the watch, not top."""
        from supervisor.cli.jobs import _follow  # the very code of `fleet watch`

        self.st.err.print(f"watching {job_id} (Ctrl-C: back to top)", markup=False)
        task = asyncio.create_task(_follow(self.st, self.api, job_id, False))
        loop = asyncio.get_running_loop()
        previous = signal.getsignal(signal.SIGINT)
        signal.signal(signal.SIGINT, lambda *_: loop.call_soon_threadsafe(task.cancel))
        try:
            code = await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # top itself is being stopped, not just the watch
            self.say(f"detached from {job_id[:12]}; it keeps running", "dim")
        except (ApiError, Unreachable) as exc:
            if fatal(exc):
                raise
            self.say(f"watch {job_id[:12]}: {describe(exc)}", "red")
        else:
            outcome = Exit(code).name.lower().replace("_", " ")
            self.say(f"watched {job_id[:12]} to its end: {outcome} (exit {int(code)})", "dim")
        finally:
            signal.signal(signal.SIGINT, previous)


@app.command(
    epilog=examples(
        "fleet top                        # live: keys j/k select, w watch, c cancel, r redrive",
        "fleet top --interval 0.5         # redraw twice a second",
        "fleet top > now.txt              # not a terminal: one plain snapshot",
        "fleet --json top --once          # one snapshot as JSON",
    )
)
def top(
    ctx: typer.Context,
    interval: Annotated[float, typer.Option(min=0.2, help="Seconds between frames.")] = 1.0,
    once: Annotated[bool, typer.Option("--once", help="Render one frame and exit.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Live dashboard: slots per capability (in flight/limit, queued), workers, running and
    queued jobs, recent failures and rates; keys select a job to watch (w), cancel (c) or
    redrive (r).

    Keeps going through a supervisor restart ("reconnecting…"); q or Ctrl-C quits. Off a
    terminal (or with --once) it prints one snapshot; --json prints one snapshot per line
    every interval (with --once, a single one), and through a restart says "reconnecting"
    once on stderr and goes on.
    """
    st = state(ctx)
    as_json = st.wants_json(json_out)

    async def go(api: FleetApi) -> None:
        if as_json:
            await _json_lines(st, api, interval, once)
        elif once or not st.out.is_terminal:
            frame = render(await snapshot(api), View(interactive=False), st.out.width, None)
            st.out.print(frame)
        else:
            await Top(st, api, interval).run()

    try:
        run_api(st, go)
    except KeyboardInterrupt:
        raise typer.Exit(int(Exit.OK)) from None


RETRY_FIRST_S = 0.5
RETRY_MAX_S = 5.0


async def _json_lines(st: State, api: FleetApi, interval: float, once: bool) -> None:
    """One snapshot per line on stdout, every ``interval`` seconds, until Ctrl-C.

    A supervisor that stops answering (restarting, unreachable, 5xx, too slow) is waited out
    as the live screen does: retried with backoff (0.5 s doubling to 5 s, or the interval if
    longer), with one line on stderr when the link goes down and one when it is back, and no
    line on stdout meanwhile, so every stdout line is a snapshot. A refused token (401/403)
    exits 5. ``--once`` is a single answer: the first failure is its exit code (4 unreachable,
    5 an API error), as for any other one-shot command.
    """
    rates = Rates(RATE_WINDOW_S)
    down_since: float | None = None
    reason = ""
    retry = RETRY_FIRST_S
    while True:
        try:
            snap = await guarded(api, timeout=max(5.0, 3 * interval))
        except (*_PASSING, ValueError, KeyError, TypeError) as exc:
            if once or fatal(exc):
                raise
            now_reason = describe(exc)
            if down_since is None or now_reason != reason:
                st.err.print(
                    f"reconnecting to {api.url}: {now_reason}", markup=False, highlight=False
                )
            down_since, reason = down_since or time.monotonic(), now_reason
            await asyncio.sleep(retry)
            retry = min(retry * 2, max(RETRY_MAX_S, interval))
            continue
        if down_since is not None:
            away = time.monotonic() - down_since
            st.err.print(f"reconnected to {api.url} after {away:.1f}s", markup=False)
            down_since, reason, retry = None, "", RETRY_FIRST_S
        rates.add(time.monotonic(), snap.get("by_status"))
        snap["rates"] = rates.now()
        print_json(snap)
        if once:
            return
        await asyncio.sleep(interval)
