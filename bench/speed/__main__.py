"""``./run bench`` — ``python -m bench.speed [--quick] [--json FILE] [--keep]``.

Prints the tables; ``--json FILE`` also writes every number. Exit 0 once the run finished
(targets missed are in the report, not the exit code), 1 when the run itself failed, 130 on
Ctrl-C. Every process it started is stopped, even on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from types import FrameType

from rich.console import Console

from bench.speed.config import FULL, QUICK
from bench.speed.report import print_report, write_json
from bench.speed.run import run
from shared import configure_logging


def _on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="./run bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the short version (CI, < 2 min)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write every number here")
    parser.add_argument("--keep", action="store_true", help="keep the work dir and its logs")
    args = parser.parse_args(argv)
    configure_logging("console", "WARNING")  # the tables alone on stdout
    signal.signal(signal.SIGTERM, _on_sigterm)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # 1,000 watchers need the fds
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    err = Console(stderr=True)
    workdir = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
    counts, mode = (QUICK, "quick") if args.quick else (FULL, "full")
    failed = True
    try:
        result = asyncio.run(run(counts, mode, workdir, lambda line: err.print(line)))
        failed = False
    except KeyboardInterrupt:
        err.print("interrupted; every process was stopped")
        return 130
    finally:
        if args.keep or failed:
            err.print(f"logs: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print_report(result)
    if args.json:
        write_json(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
