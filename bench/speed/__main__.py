"""``./run bench`` — ``python -m bench.speed [--quick] [--json FILE] [--keep]``.

Prints the tables; ``--json FILE`` also writes every number. Exit 0 once the run finished
(targets missed are in the report, not the exit code), 1 when the run itself failed, 130 on
Ctrl-C. Every process it started is stopped, even on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import resource
import sys

from bench.harness import bench_main
from bench.speed.config import FULL, QUICK
from bench.speed.report import print_report
from bench.speed.run import run


def main(argv: list[str] | None = None) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # 1,000 watchers need the fds
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    return bench_main(
        argv,
        prog="./run bench",
        description=(__doc__ or "").split("\n\n")[0],
        prefix="fleet-bench-",
        counts=(FULL, QUICK),
        run=run,
        report=print_report,
        quick_help="the short version (CI, < 2 min)",
    )


if __name__ == "__main__":
    sys.exit(main())
