"""``fleet top``'s screen: one frame of lines that never wrap and never pass the width.

Tables here lay their own columns out rather than leave it to rich, which squeezes every
column at once on a narrow terminal: each column has a width and a rank, and the lowest
ranks go first until the row fits (the flexible column — message, reason — takes what is
left, or goes when less than its minimum remains). Every cell is cut with an ellipsis at its
width, so a row is one line whatever the data.

Vertically the sections share the height in a fixed order of need: the header, the rates and
the key help always; each section at least a row; then running jobs get what is left, scrolled
to keep the selected job in sight.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.cells import cell_len
from rich.console import Group
from rich.text import Text

from supervisor.cli.render import ago, duration, job_duration, percent

__all__ = ["KEY_HELP", "Column", "Link", "View", "layout", "render"]

KEY_HELP = "↑↓/jk select · w watch · c cancel · r redrive · q quit"
_GAP = 1
_BAR = 10


@dataclass(frozen=True)
class Column:
    """``rank``: higher stays longer when the width runs short (0: never dropped);
    ``least``: the width it may shrink to once nothing more can be dropped."""

    header: str
    width: int
    rank: int = 0
    cell: Callable[[dict[str, Any]], Text | str] = lambda _: ""
    right: bool = False
    flex: bool = False  # takes the width left over; ``width`` is its minimum
    least: int = 0


def layout(columns: Sequence[Column], width: int) -> list[tuple[Column, int]]:
    """The columns that fit ``width``, each with its width, in their order: drop by rank,
    then shrink the columns that may, then give the flexible one what is left."""
    kept = list(columns)

    def fixed(cols: list[Column]) -> int:
        return sum(c.width for c in cols if not c.flex) + _GAP * max(0, len(cols) - 1)

    while any(c.rank for c in kept):
        spare = width - fixed(kept)
        if spare >= sum(c.width + _GAP for c in kept if c.flex):
            break
        kept.remove(min((c for c in kept if c.rank), key=lambda c: c.rank))
    kept = [c for c in kept if not c.flex or width - fixed(kept) >= c.width + _GAP]
    widths = {id(c): c.width for c in kept}
    excess = fixed(kept) - width
    while excess > 0:
        slack = [c for c in kept if not c.flex and widths[id(c)] > (c.least or c.width)]
        if not slack:
            break
        widest = max(slack, key=lambda c: widths[id(c)] - (c.least or c.width))
        widths[id(widest)] -= 1
        excess -= 1
    spare = max(0, width - fixed(kept) + sum(c.width - widths[id(c)] for c in kept))
    out: list[tuple[Column, int]] = []
    for col in kept:
        if col.flex:
            share = max(0, spare - _GAP)
            out.append((col, share))
            spare -= share + _GAP
        else:
            out.append((col, widths[id(col)]))
    return [(c, w) for c, w in out if w > 0]


def _fit(value: Text | str, width: int, right: bool = False) -> Text:
    text = value.copy() if isinstance(value, Text) else Text(value)
    text.no_wrap = True
    text.truncate(width, overflow="ellipsis")
    pad = width - cell_len(text.plain)
    if pad > 0:
        if right:
            text = Text(" " * pad) + text
        else:
            text.pad_right(pad)
    return text


def _row(cells: list[tuple[Column, int]], row: dict[str, Any], width: int) -> Text:
    parts = [_fit(col.cell(row), w, col.right) for col, w in cells]
    return _line(Text(" " * _GAP).join(parts), width)


def _header(title: str, cells: list[tuple[Column, int]], width: int) -> Text:
    heads = [_fit(col.header, w, col.right) for col, w in cells]
    if cells:  # the section's name stands in the first column's heading
        heads[0] = _fit(Text(title, style="bold"), cells[0][1])
    line = Text(" " * _GAP).join(heads)
    line.stylize("bold")
    return _line(line, width)


def _line(text: Text, width: int) -> Text:
    text.no_wrap = True
    text.overflow = "ellipsis"
    text.truncate(width, overflow="ellipsis")
    return text


# -- cells ------------------------------------------------------------------------------------


def _short(job: dict[str, Any]) -> Text:
    """The id's first 12 characters (any 6 or more work in every command); a queued job's in
    yellow, so it is told from a running one at any width."""
    return Text(str(job.get("id", ""))[:12], style="yellow" if _waiting(job) else "")


def _waiting(job: dict[str, Any]) -> bool:
    return job.get("status") == "queued"


def _state_bar(job: dict[str, Any]) -> Text:
    if _waiting(job):
        return Text("queued", style="yellow")
    return _bar(_fraction(job))


def _time(job: dict[str, Any]) -> Text:
    """How long it has been running, or (dim) waiting in the queue."""
    if _waiting(job):
        created = job.get("created_at")
        return Text(duration(time.time() - float(created)) if created else "-", style="dim")
    return Text(duration(job_duration(job)))


def _bar(fraction: float | None, width: int = _BAR) -> Text:
    if fraction is None:
        return Text("·" * width, style="dim")
    filled = round(max(0.0, min(1.0, fraction)) * width)
    return Text.assemble(("█" * filled, "cyan"), ("░" * (width - filled), "dim"))


def _pct(job: dict[str, Any]) -> str:
    pct = 100.0 if job.get("status") == "succeeded" else percent(job.get("progress"))
    if pct is None:
        p = job.get("progress") or {}
        return f"{p['progress']:g}"[:4] if p else "-"
    return f"{pct:3.0f}%"


def _progress(job: dict[str, Any]) -> Text:
    pct = percent(job.get("progress"))
    return Text.assemble(_bar(None if pct is None else pct / 100), " ", _pct(job).rjust(4))


def _message(job: dict[str, Any]) -> str:
    return str((job.get("progress") or {}).get("message") or "")


def _error(job: dict[str, Any]) -> dict[str, Any]:
    return dict(job.get("error") or {})


def _slots(row: dict[str, Any]) -> Text:
    limit, busy = int(row.get("limit") or 0), int(row.get("in_flight") or 0)
    style = "red" if not limit else "yellow" if busy >= limit else ""
    return Text(f"{busy}/{limit}", style=style)


def _slot_bar(row: dict[str, Any]) -> Text:
    limit = int(row.get("limit") or 0)
    return _bar(int(row.get("in_flight") or 0) / limit if limit else None)


def _queued(row: dict[str, Any]) -> Text:
    n = int(row.get("queued") or 0)
    return Text(str(n), style="yellow" if n else "dim")


def _workers_of(row: dict[str, Any]) -> Text:
    healthy, total = int(row.get("healthy_workers") or 0), int(row.get("workers") or 0)
    return Text(f"{healthy}/{total}", style="red" if total and not healthy else "")


def _health(w: dict[str, Any]) -> Text:
    health = w.get("health") or ("healthy" if w.get("healthy") else "down")
    return Text(str(health), style="green" if w.get("healthy") else "red")


def _load(w: dict[str, Any]) -> str:
    cap = (w.get("reported_load") or {}).get("max_concurrency")
    return f"{w.get('in_flight', 0)}/{cap}" if cap else str(w.get("in_flight", 0))


def _breaker(w: dict[str, Any]) -> Text:
    breaker = str(w.get("breaker", "-"))
    return Text(breaker, style="green" if breaker == "closed" else "yellow")


SLOT_COLUMNS = (
    Column("", 16, cell=lambda r: str(r["name"]), least=8),
    Column("IN FLIGHT/LIMIT", 15, cell=_slots, right=True, least=7),
    Column("", _BAR, rank=2, cell=_slot_bar),
    Column("QUEUED", 6, cell=_queued, right=True),
    Column("WORKERS", 7, rank=3, cell=_workers_of, right=True),
)
WORKER_COLUMNS = (
    Column("", 22, cell=lambda w: str(w.get("name", "?")), least=10),
    Column("HEALTH", 9, cell=_health),
    Column("LOAD", 6, rank=4, cell=_load, right=True),
    Column("BREAKER", 9, rank=3, cell=_breaker),
    Column("SEEN", 9, rank=2, cell=lambda w: ago(w.get("last_seen"))),
    Column("REASON", 8, rank=1, flex=True, cell=lambda w: str(w.get("error") or "")),
)
JOB_COLUMNS = (
    Column("", 12, cell=_short),
    Column("CAPABILITY", 12, rank=7, cell=lambda j: str(j.get("capability", "")), least=6),
    Column("", _BAR, rank=3, cell=_state_bar),
    Column("DONE", 4, rank=6, cell=_pct, right=True),
    Column("TRY", 3, rank=4, cell=lambda j: str(j.get("attempts", 0)), right=True),
    Column("FOR", 7, rank=5, cell=_time, right=True),
    Column("WORKER", 22, rank=1, cell=lambda j: str(j.get("worker") or "-")),
    Column("MESSAGE", 8, rank=2, flex=True, cell=_message),
)
FAILURE_COLUMNS = (
    Column("", 12, cell=_short),
    Column("CAPABILITY", 12, rank=4, cell=lambda j: str(j.get("capability", ""))),
    Column(
        "ERROR", 16, rank=5, cell=lambda j: Text(str(_error(j).get("code", "")), "red"), least=8
    ),
    Column("ENDED", 10, rank=3, cell=lambda j: ago(j.get("finished_at")), right=True),
    Column("MESSAGE", 8, rank=2, flex=True, cell=lambda j: str(_error(j).get("message", ""))),
)


def _fraction(job: dict[str, Any]) -> float | None:
    pct = percent(job.get("progress"))
    return None if pct is None else pct / 100


# -- the frame --------------------------------------------------------------------------------


@dataclass
class Link:
    """The connection as the screen tells it: down since when, how many tries, and why."""

    down_since: float | None = None
    attempts: int = 0
    reason: str = ""

    def line(self, now: float) -> Text | None:
        if self.down_since is None:
            return None
        since = time.strftime("%H:%M:%S", time.localtime(self.down_since))
        return Text(
            f"reconnecting… since {since} ({duration(now - self.down_since)}), "
            f"attempt {self.attempts}: {self.reason}",
            style="bold yellow",
        )


@dataclass
class View:
    """What the screen shows besides the data: the selection, the link, a message."""

    selected: str | None = None
    link: Link = field(default_factory=Link)
    message: Text | None = None
    interactive: bool = True


def _rates_line(rates: dict[str, float] | None, window: float, width: int) -> Text:
    if rates is None:
        return Text("rates: measuring… (two snapshots needed)", style="dim")
    names = {"submitted": "submitted", "succeeded": "succeeded", "failed": "failed"}
    if width < 62:  # the short words: the numbers are what must fit
        names.update(submitted="in", succeeded="ok")
    parts = [f"{label} {_rate(rates[name])}/s" for name, label in names.items()]
    line = Text(f"last {window:.0f}s: ", style="dim") + Text(" · ".join(parts))
    if rates["failed"]:
        line.highlight_words(["failed"], "red")
    return line


def _rate(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _title(snap: dict[str, Any], width: int) -> Text:
    if "at" not in snap:
        return _line(Text.assemble(("fleet top", "bold"), f"  {snap.get('url', '')}"), width)
    workers = snap.get("workers") or []
    healthy = sum(1 for w in workers if w.get("healthy"))
    counts = snap.get("by_status") or {}
    queued = counts.get("queued", sum((snap.get("queues") or {}).values()))
    running = counts.get("running", len(snap.get("running") or []))
    line = Text.assemble(
        ("fleet top", "bold"),
        f"  workers {healthy}/{len(workers)}  queued {queued}  running {running}",
        (f"  {snap.get('url', '')}", "dim"),
    )
    return _line(line, width)


def _slot_rows(snap: dict[str, Any]) -> list[dict[str, Any]]:
    slots = snap.get("slots")
    if slots is None:  # a supervisor from before slots: its queue depths alone
        slots = {name: {"queued": n} for name, n in (snap.get("queues") or {}).items()}
    rows = [{"name": name, **row} for name, row in slots.items()]
    # The busiest first: in flight and queued work before idle capabilities.
    return sorted(rows, key=lambda r: (-(r.get("in_flight") or 0) - (r.get("queued") or 0),
                                       r["name"]))  # fmt: skip


@dataclass
class _Section:
    title: str
    columns: Sequence[Column]
    rows: list[dict[str, Any]]
    selectable: bool = False
    show: int = 0
    offset: int = 0


def _jobs(snap: dict[str, Any]) -> list[dict[str, Any]]:
    """The jobs section: running, then queued."""
    return list(snap.get("running") or []) + list(snap.get("queued") or [])


def selectable(snap: dict[str, Any]) -> list[dict[str, Any]]:
    """The jobs the keys move through, in screen order: running, queued, then failed."""
    return _jobs(snap) + list(snap.get("failures") or [])


def render(
    snap: dict[str, Any],
    view: View,
    width: int,
    height: int | None,
    rates: dict[str, float] | None = None,
    window: float = 20.0,
) -> Group:
    """The frame: ``height`` None renders every row (a snapshot for a pipe)."""
    now = time.time()
    sections = [
        _Section("queues", SLOT_COLUMNS, _slot_rows(snap)),
        _Section("workers", WORKER_COLUMNS, list(snap.get("workers") or [])),
        # Queued jobs (in yellow, "queued" where the bar is) follow the running ones.
        _Section("jobs" if snap.get("queued") else "running jobs", JOB_COLUMNS, _jobs(snap), True),
        _Section("failed jobs", FAILURE_COLUMNS, list(snap.get("failures") or []), True),
    ]
    top: list[Text] = [_title(snap, width)]
    link = view.link.line(now)
    top.append(_line(link if link is not None else _rates_line(rates, window, width), width))
    bottom: list[Text] = []
    if view.interactive:
        bottom.append(_line(view.message or Text(KEY_HELP, style="dim"), width))
    if "at" not in snap:  # nothing read yet: no empty tables that look like an idle fleet
        if link is None:
            top[1] = _line(Text(f"connecting to {snap.get('url', '')}…", style="dim"), width)
        return Group(*top, *bottom)
    _share(sections, None if height is None else height - len(top) - len(bottom), view)
    lines = list(top)
    marker = 2 if view.interactive else 0
    for section in sections:
        if section.show < 0:
            continue
        cells = layout(section.columns, width - marker)
        more = len(section.rows) - section.show
        title = section.title + (f" +{more}" if more > 0 else "")
        lines.append(_line(Text(" " * marker) + _header(title, cells, width - marker), width))
        if not section.rows and section.show:
            lines.append(_line(Text(" " * marker + "(none)", style="dim"), width))
        for row in section.rows[section.offset : section.offset + section.show]:
            chosen = section.selectable and view.selected == row.get("id")
            line = Text("> " if chosen else " " * marker, style="bold") + _row(
                cells, row, width - marker
            )
            if chosen:
                line.stylize("reverse")
            lines.append(_line(line, width))
    return Group(*lines, *bottom)


def _share(sections: list[_Section], room: int | None, view: View) -> None:
    """How many rows each section shows (``show``; -1: hidden) within ``room`` lines."""
    if room is None:
        for s in sections:
            s.show = max(1, len(s.rows))
        return
    slots, workers, jobs, failures = sections
    want = {id(s): max(1, len(s.rows)) for s in sections}
    caps = {id(slots): 6, id(workers): 3, id(failures): 4}
    for s in sections:
        s.show = min(want[id(s)], caps.get(id(s), want[id(s)]))
    # Shrink the others (workers first) to leave running jobs at least three rows, then
    # hide whole sections when even one row each does not fit.
    for s in (workers, slots, failures):
        while s.show > 1 and _used(sections) + min(want[id(jobs)], 3) - jobs.show > room:
            s.show -= 1
    jobs.show = max(1, room - _used(sections) + jobs.show)
    jobs.show = min(jobs.show, want[id(jobs)]) if jobs.rows else 1
    for s in (workers, failures, slots):
        if _used(sections) > room:
            s.show = -1
    if _used(sections) > room:
        jobs.show = max(0, room - 1)
    ids = [r.get("id") for r in jobs.rows]
    if view.selected in ids and jobs.show > 0:
        at = ids.index(view.selected)
        jobs.offset = max(0, at - jobs.show + 1)


def _used(sections: list[_Section]) -> int:
    return sum(1 + s.show for s in sections if s.show >= 0)
