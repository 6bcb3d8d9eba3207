"""The progress measurement's watchers stay in one process unless asked to spread."""

from __future__ import annotations

import os

import pytest

from bench.speed.progress import PER_PROCESS, processes_for


def test_watchers_spread_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BENCH_WATCHER_PROCESSES", raising=False)
    assert processes_for(100) == 1  # the default: comparable with earlier runs
    monkeypatch.setenv("BENCH_WATCHER_PROCESSES", "4")
    assert [processes_for(n) for n in (1, PER_PROCESS, 2 * PER_PROCESS, 100 * PER_PROCESS)] == [
        1, 1, 2, 4,
    ]  # fmt: skip
    monkeypatch.setenv("BENCH_WATCHER_PROCESSES", "auto")
    assert processes_for(100 * PER_PROCESS) == (os.cpu_count() or 1)
