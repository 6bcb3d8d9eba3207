"""The one entry of a bench that starts its own processes: flags ``--quick``, ``--json FILE``
and ``--keep``, a work dir, SIGTERM as Ctrl-C, the report, and the work dir removed unless
kept or the run failed. ``bench.speed`` and ``bench.scale`` both run through it.

    return bench_main(argv, prog="./run bench", description=..., prefix="fleet-bench-",
                      counts=(FULL, QUICK), run=run, report=print_report)
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console

from bench.speed.report import write_json
from shared import configure_logging

__all__ = ["bench_main"]

Run = Callable[[Any, str, Path, Callable[[str], None]], Awaitable[dict[str, Any]]]


def _on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def bench_main(
    argv: list[str] | None,
    *,
    prog: str,
    description: str,
    prefix: str,
    counts: tuple[Any, Any],
    run: Run,
    report: Callable[[dict[str, Any]], None],
    quick_help: str = "the short version (CI)",
) -> int:
    """Exit 0 once the run finished (what it found is in the report), 1 when the run itself
    failed, 130 on Ctrl-C or SIGTERM; every process the run started is stopped by it."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--json", type=Path, metavar="FILE", help="write every number here")
    parser.add_argument("--keep", action="store_true", help="keep the work dir and its logs")
    args = parser.parse_args(argv)
    configure_logging("console", "WARNING")  # the tables alone on stdout
    signal.signal(signal.SIGTERM, _on_sigterm)
    err = Console(stderr=True)
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    full, quick = counts
    chosen, mode = (quick, "quick") if args.quick else (full, "full")
    failed = True
    try:
        result = asyncio.run(run(chosen, mode, workdir, lambda line: err.print(line)))
        failed = False
    except KeyboardInterrupt:
        err.print("interrupted; every process was stopped")
        return 130
    finally:
        if args.keep or failed:
            err.print(f"logs: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    report(result)
    if args.json:
        write_json(result, args.json)
    return 0
