"""``python -m bench.chaos [--quick] [--json] [--only NAMES] [--keep] [--seed N]``.

``--json`` prints one JSON document on stdout (and the table on stderr); ``--render FILE``
prints the table of a saved one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from typing import Any

from bench.chaos.config import FULL, QUICK, Config
from bench.chaos.procs import redis_server
from bench.chaos.report import as_json, exit_status, revision, table
from bench.chaos.scenarios import SCENARIOS
from bench.chaos.suite import ScenarioResult, run_suite


async def _run(cfg: Config, **kwargs: Any) -> list[ScenarioResult]:
    """The suite, cancelled (so that everything is cleaned up) on SIGTERM as on Ctrl-C."""
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await run_suite(cfg, **kwargs)


def main() -> int:
    names = [s.name for s in SCENARIOS]
    parser = argparse.ArgumentParser(
        prog="./run chaos", description="Inject faults into a real fleet and count what broke."
    )
    parser.add_argument("--quick", action="store_true", help="the short version CI runs")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--only", help=f"comma-separated scenarios of: {', '.join(names)}")
    parser.add_argument("--keep", action="store_true", help="keep work dirs (logs, ledger, AOF)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the job mix")
    parser.add_argument("--render", metavar="FILE", help="print the table of a saved --json run")
    args = parser.parse_args()
    if args.render:
        with open(args.render) as f:
            print(table(json.load(f)))
        return 0
    only = [n.strip() for n in args.only.split(",")] if args.only else None
    if only and (unknown := set(only) - set(names)):
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    if redis_server() is None:
        print("redis-server is not installed; the chaos suite runs its own", file=sys.stderr)
        return 2
    cfg = QUICK if args.quick else FULL
    if args.seed is not None:
        cfg = cfg.with_seed(args.seed)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    started, measured = time.monotonic(), revision()
    try:
        results = asyncio.run(_run(cfg, only=only, keep=args.keep, log=log))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted: every process was stopped and every work dir removed", file=sys.stderr)
        return 130
    doc = as_json(results, cfg, time.monotonic() - started, measured)
    if args.json:  # the table goes to stderr, for whoever watches
        print(table(doc), file=sys.stderr)
        print(json.dumps(doc, indent=2, default=str))
    else:
        print(table(doc))
    return exit_status(results)


if __name__ == "__main__":
    sys.exit(main())
