"""A workflow as a tree: the workflow's line, then one line per step, each with its own bar.

    ▸ workflow keywords 3f2a9c01d4e5  running  12/42  3.1s
    ├─ ✓ split  chunk_text        ━━━━━━━━━━━━━━━━━━━━━━━━   1/1
    ├─ ▸ each   extract_keywords  ━━━━━━━━━━━━────────────  11/40  1 failed
    └─ · merge  summarize         ────────────────────────   0/1

A map step is one line: its items summed (done/total), never a line per item. Every line is
cut to the width it is given, so the tree never wraps (the live view redraws it in place,
and a wrapped line would break that). Pure: the caller hands the job and the steps' state
(:class:`~supervisor.client.StepBoard`), which the live view folds from the event stream.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from rich.cells import cell_len
from rich.console import Group
from rich.text import Text

from supervisor.cli.render import STATUS_STYLE, duration, short_json
from supervisor.client import StepBoard, StepState

__all__ = ["GLYPHS", "Columns", "columns", "tree"]

GLYPHS: dict[str, tuple[str, str]] = {
    "pending": ("·", "dim"),
    "queued": ("·", "yellow"),
    "running": ("▸", "cyan"),
    "succeeded": ("✓", "green"),
    "failed": ("✗", "red"),
    "skipped": ("-", "dim"),
    "cancelled": ("■", "magenta"),
}
"""Each status's mark and colour (the job statuses and the steps' own ``pending``, ``skipped``)."""

_MAX_NAME = 24
_MAX_CAPABILITY = 28
_MAX_BAR = 30
_MIN_BAR = 6


@dataclass(frozen=True)
class Columns:
    """How wide each part of a step's line is at one width (0: left out)."""

    name: int
    capability: int
    bar: int
    count: int
    failed: int


def _count(step: StepState) -> str:
    return f"{step.done}/{step.total if step.total is not None else '?'}"


def _failed(step: StepState) -> str:
    return f"{step.failed} failed" if step.failed else ""


def columns(steps: dict[str, StepState], width: int) -> Columns:
    """The widths of a step line's parts that fit ``width``: the bar gives way first (down
    to a few cells), then the capability goes, then names are cut; the count stays."""
    states = list(steps.values())
    name = min(_MAX_NAME, max((cell_len(n) for n in steps), default=4))
    capability = min(_MAX_CAPABILITY, max((cell_len(s.capability) for s in states), default=0))
    count = max((len(_count(s)) for s in states), default=3)
    failed = max((len(_failed(s)) for s in states), default=0)
    fixed = 5 + count + (1 + failed if failed else 0)  # "├─ ✓ " and the counts

    def room(name_w: int, cap_w: int) -> int:
        return width - fixed - name_w - 1 - (cap_w + 3 if cap_w else 0) - 1

    if room(name, capability) < _MIN_BAR + 4:
        capability = 0
    while room(name, capability) < _MIN_BAR and name > 6:
        name -= 1
    bar = max(0, min(_MAX_BAR, room(name, capability)))
    if bar < 3:
        bar = 0
    return Columns(name, capability, bar, count, failed)


def _cut(value: str, width: int) -> str:
    """``value`` in exactly ``width`` cells: padded, or cut with an ellipsis."""
    if cell_len(value) <= width:
        return value + " " * (width - cell_len(value))
    out = ""
    for char in value:
        if cell_len(out + char) > width - 1:
            break
        out += char
    return out + "…" + " " * (width - 1 - cell_len(out))


def _bar(step: StepState, width: int) -> Text:
    """Filled by the items that ended (done or failed); whole once the step succeeded."""
    if step.status == "skipped":
        return Text("─" * width, style="dim")
    total = step.total or 0
    ended = total if step.status == "succeeded" else min(total, step.done + step.failed)
    filled = int(width * ended / total) if total else 0
    style = {"succeeded": "green", "failed": "red", "cancelled": "magenta"}.get(step.status, "cyan")
    return Text.assemble(("━" * filled, style), ("─" * (width - filled), "dim"))


def _step_line(name: str, step: StepState, cols: Columns, last: bool) -> Text:
    mark, style = GLYPHS.get(step.status, ("?", ""))
    line = Text.assemble(("└─ " if last else "├─ ", "dim"), (mark, style), " ")
    line.append(_cut(name, cols.name), style="bold")
    line.append(" ")
    if cols.capability:
        line.append(" " + _cut(step.capability, cols.capability) + "  ", style="dim")
    if cols.bar:
        line.append_text(_bar(step, cols.bar))
        line.append(" ")
    line.append(_count(step).rjust(cols.count))
    if step.failed:
        line.append(" ")
        line.append(_failed(step), style="red")
    return line


def _header(job: dict[str, Any], board: StepBoard, now: float, width: int) -> Text:
    """The workflow's mark, name, short id, status, units and time; narrow, the word
    "workflow" goes first, then the id, then the time, and the name is cut last."""
    status = str(job.get("status") or "queued")
    mark, style = GLYPHS.get(status, ("?", ""))
    spec = job.get("input") or {}
    name = str(spec.get("name") or "") if isinstance(spec, dict) else ""
    done, total = _units(job, board)
    units = f"{done:g}/{total:g}" if total is not None else f"{done:g}/?"
    started = job.get("started_at")
    took = duration(float(job.get("finished_at") or now) - float(started)) if started else ""
    short_id = str(job.get("id", ""))[:12]
    for word, ident, clock in ((True, True, True), (False, True, True), (False, False, True),
                               (False, False, False)):  # fmt: skip
        tail = Text.assemble(" ", (status, STATUS_STYLE.get(status, "")), f"  {units}")
        if clock and took:
            tail.append(f"  {took}", style="dim")
        head = "workflow " if word else ""
        head_id = short_id + " " if ident or not name else ""
        room = width - 2 - cell_len(head) - cell_len(head_id) - cell_len(tail.plain)
        if not name or cell_len(name) + 1 <= room or (word, ident, clock) == (False,) * 3:
            break
    line = Text.assemble((mark, style), " ", head)
    if name:  # cut last, to what is left: the status and the units always show
        line.append(_cut(name, max(2, room - 1)).rstrip() + " ", style="bold")
    line.append(head_id)
    line.append_text(tail)
    return line


def _units(job: dict[str, Any], board: StepBoard) -> tuple[float, float | None]:
    """The workflow's own progress (1 unit per plain step, 1 per map item) when it told one,
    else the steps' sum."""
    progress = job.get("progress") or {}
    if progress.get("total"):
        done = float(progress.get("progress") or 0)
        total = float(progress["total"])
        return (total if job.get("status") == "succeeded" else done), total
    steps_done, steps_total = board.units()
    return float(steps_done), (float(steps_total) if steps_total is not None else None)


def _footer(job: dict[str, Any], board: StepBoard, width: int, outcome: bool) -> list[Text]:
    """Why steps failed, and (``outcome``) the outcome once it ended; each one line."""
    lines = []
    for name, step in board.steps.items():
        if step.error is not None:
            lines.append(Text(f"   {name}: {step.error.code}: {step.error.message}", style="red"))
    status = job.get("status") if outcome else None
    if status == "succeeded":
        lines.append(Text(f"result: {short_json(job.get('result'), max(8, width - 8))}"))
    elif status in ("failed", "cancelled") and job.get("error"):
        err = job["error"]
        lines.append(Text(f"{status}: {err.get('code')}: {err.get('message')}", style="red"))
    return lines


def tree(
    job: dict[str, Any],
    board: StepBoard,
    width: int,
    *,
    now: float | None = None,
    note: str = "",
    outcome: bool = True,
) -> Group:
    """The workflow's tree in lines of at most ``width`` cells. ``note``: a last line (the
    live view's "reconnecting…"); ``outcome``: end with its result or error once it ended
    (one line, cut to fit: leave it out when the whole result is printed after)."""
    width = max(1, width)
    cols = columns(board.steps, width)
    names = list(board.steps)
    lines = [_header(job, board, time.time() if now is None else now, width)]
    lines += [
        _step_line(name, board.steps[name], cols, i == len(names) - 1)
        for i, name in enumerate(names)
    ]
    lines += _footer(job, board, width, outcome)
    if note:
        lines.append(Text(note, style="dim"))
    for line in lines:
        line.no_wrap = True
        line.truncate(width, overflow="ellipsis")
    return Group(*lines)
