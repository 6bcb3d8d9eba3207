"""What a process costs, read from ``/proc``: CPU seconds of a process and its descendants
(utime + stime of ``/proc/<pid>/stat``) and resident memory (``VmRSS``)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ["cpu_seconds", "descendants", "own_cpu_seconds", "rss_mb"]

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, ...


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (Celery's prefork children, for one)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            parents[int(entry.name)] = int(fields[1])
    out, frontier = [pid], [pid]
    while frontier:
        frontier = [child for child, parent in parents.items() if parent in frontier]
        out.extend(frontier)
    return out


def cpu_seconds(pids: Iterable[int]) -> float:
    """utime + stime of these processes and their descendants, in seconds."""
    total = 0
    for root in pids:
        for pid in descendants(root):
            fields = _stat(pid)
            if fields is not None:
                total += int(fields[11]) + int(fields[12])
    return total / _TICK


def own_cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` alone, in seconds: a process that started the others (a
    bench's driver) without what its children spent."""
    fields = _stat(pid)
    if fields is None:
        raise RuntimeError(f"no /proc/{pid}/stat")
    return (int(fields[11]) + int(fields[12])) / _TICK


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")
