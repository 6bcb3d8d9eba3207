"""``fleet workflow run … --watch`` in a real pseudo-terminal at 80×24, read as a person sees it.

A real supervisor and real text and echo workers run as processes; the README's command runs
as written (``examples/flow.json`` over ``examples/article.txt``) under ``pexpect``, and
``pyte`` keeps the screen: the tree is drawn in place (one line per step, never a line per
frame), nothing passes the 80th column, and the exit code is the workflow's outcome.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.cli.terminal import Term
from tests.helpers import wait_until_sync
from tests.processes import ROOT, supervisor, worker

pytestmark = pytest.mark.e2e

FAST = {
    "FLEET_PROBE_INTERVAL_S": "0.5",
    "FLEET_BACKOFF_INITIAL_S": "0.05",
    "FLEET_BACKOFF_MAX_S": "0.2",
}
SLOW_FLOW = {
    "name": "naps",
    "input": {"naps": [1.5, 1.5, 1.5, 1.5, 1.5, 1.5]},
    "steps": {
        "nap": {"capability": "sleep", "map": "$.input.naps", "concurrency": 2,
                "input": {"seconds": "$.item", "steps": 3}},
        "after": {"capability": "noop", "after": ["nap"], "input": {}},
    },
}  # fmt: skip


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with worker("text") as text, worker("echo") as echo:
        workers = f"{text.url},{echo.url}"
        with supervisor(**FAST, FLEET_WORKERS=workers) as sup:

            def healthy() -> bool:
                found = httpx.get(f"{sup.url}/v1/workers", timeout=5).json()["workers"]
                return len(found) == 2 and all(w["healthy"] for w in found)

            wait_until_sync(healthy, timeout=30, message="text and echo workers healthy")
            yield sup.url


def _rows(text: str, name: str) -> list[str]:
    return [line for line in text.splitlines() if re.match(rf"^[├└]─ . {name}\b", line)]


def test_the_readmes_workflow_watched_at_80x24(url: str) -> None:
    args = ["workflow", "run", "examples/flow.json", "--input", "text=@examples/article.txt"]
    term = Term([*args, "--watch"], url)
    try:
        assert term.exit_code(timeout=60) == 0, term.text
        screen = term.text
        # Only the result printed whole after the tree may run past the 80th column.
        tree_overflows = [o for o in term.screen.overflows if "─ " in o or "workflow " in o]
        assert not tree_overflows, tree_overflows
        for name, capability in (("split", "chunk_text"), ("keywords", "extract_keywords"),
                                 ("summary", "summarize")):  # fmt: skip
            rows = _rows(screen, name)
            assert len(rows) == 1, screen  # redrawn in place: one line per step
            assert rows[0][3] == "✓" and capability in rows[0], rows
        (keywords,) = _rows(screen, "keywords")
        assert re.search(r"\b6/6$", keywords), keywords  # six chunks, summed on one line
        assert re.search(r"^✓ workflow keywords [0-9a-f]{12}  succeeded  8/8  ", screen, re.M)
        assert "submitted workflow" in screen and '"chunks": 6,' in screen  # the result, whole
    finally:
        term.close()


def test_ctrl_c_detaches_and_fleet_watch_draws_it_again_to_its_end(
    url: str, tmp_path: Path
) -> None:
    flow = tmp_path / "naps.json"
    flow.write_text(json.dumps(SLOW_FLOW), encoding="utf-8")
    term = Term(["workflow", "run", str(flow), "--watch"], url)
    try:
        term.wait_for(lambda text: re.search(r"^├─ ▸ nap\s.*\b\d/6$", text, re.M))
        job_id = re.search(r"submitted workflow ([0-9a-f]{32})", term.text.replace("\n", ""))
        assert job_id, term.text
        term.send("\x03")
        assert term.exit_code() == 130
        assert f"detached from workflow {job_id.group(1)}" in term.text.replace("\n", "")
    finally:
        term.close()
    status = httpx.get(f"{url}/v1/jobs/{job_id.group(1)}", timeout=5).json()["status"]
    assert status == "running"  # detaching is not cancelling

    again = Term(["watch", job_id.group(1)], url)
    try:
        again.wait_for(lambda text: _rows(text, "nap"))
        assert again.exit_code(timeout=60) == 0, again.text
        (nap,) = _rows(again.text, "nap")
        assert nap[3] == "✓" and nap.endswith("6/6"), nap
        assert _rows(again.text, "after")[0][3] == "✓"
        assert not again.screen.overflows, again.screen.overflows
    finally:
        again.close()


def test_piped_it_prints_step_lines_then_the_tree(url: str) -> None:
    import subprocess
    import sys

    from tests.processes import process_env

    out = subprocess.run(
        [sys.executable, "-m", "supervisor", "workflow", "run", "examples/flow.json",
         "--input", "text=@examples/article.txt", "--watch"],
        env=process_env(FLEET_URL=url, PYTHONPATH=str(ROOT)), cwd=ROOT, capture_output=True,
        text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "\x1b" not in out.stdout
    lines = out.stdout.splitlines()
    assert "split  succeeded  1/1" in lines and "summary  succeeded  1/1" in lines
    assert any(line.startswith("└─ ✓ summary") for line in lines)
