"""Idle-fleet health soak: do healthy, idle workers ever show as down?

    python bench/health_soak.py                     # 10 minutes, the default 5 s probe
    python bench/health_soak.py --seconds 20 --probe-interval 0.5 --json

Starts the echo, data and text workers and a supervisor (each its own process, on this
machine), leaves them idle, and reads ``GET /v1/workers`` until the time is up. It prints,
per worker, the probes made and how often it went from healthy to down (``downs``): every
down of an idle, healthy worker is a false alarm. Exit status 1 when any worker flapped.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from shared.serving import free_port as _port

ROOT = Path(__file__).resolve().parent.parent
WORKERS = ("echo", "data", "text")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    env.update(FASTMCP_CHECK_FOR_UPDATES="off", FASTMCP_SHOW_SERVER_BANNER="false", **extra)
    return env


def _wait(url: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)  # polling a process that is starting: nothing to wait on but time
    raise SystemExit(f"{url} did not come up")


def soak(seconds: float, probe_interval_s: float) -> dict[str, dict[str, Any]]:
    """Run the idle fleet for ``seconds``; per worker: probes, downs, last health."""
    with ExitStack() as stack:
        urls = []
        for name in WORKERS:
            port = _port()
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    f"workers.{name}",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                ],
                cwd=ROOT,
                env=_env(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            stack.callback(proc.wait, 15)
            stack.callback(proc.terminate)
            urls.append(f"http://127.0.0.1:{port}/mcp")
        port = _port()
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "supervisor.server"],
            cwd=ROOT,
            env=_env(
                FLEET_HOST="127.0.0.1",
                FLEET_PORT=str(port),
                FLEET_WORKERS=",".join(urls),
                FLEET_PROBE_INTERVAL_S=str(probe_interval_s),
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        stack.callback(supervisor.wait, 15)
        stack.callback(supervisor.terminate)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        for url in urls:
            _wait(url.replace("/mcp", "/health"), deadline)
        _wait(base + "/healthz", deadline)

        def workers() -> list[dict[str, Any]]:
            return list(httpx.get(base + "/v1/workers", timeout=5).json()["workers"])

        while not (len(w := workers()) == len(urls) and all(x["healthy"] for x in w)):
            if time.monotonic() > deadline:
                raise SystemExit(f"the fleet never became healthy: {w}")
            time.sleep(0.1)
        end = time.monotonic() + seconds
        while time.monotonic() < end:  # the soak itself: idle time is what is measured
            time.sleep(min(1.0, max(0.0, end - time.monotonic())))
        return {
            w["name"]: {"probes": w["probes"], "downs": w["downs"], "health": w["health"]}
            for w in workers()
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--probe-interval", type=float, default=5.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = soak(args.seconds, args.probe_interval)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"idle fleet for {args.seconds:g} s, probe every {args.probe_interval:g} s")
        print(f"{'worker':<32} {'probes':>7} {'downs':>6}  health")
        for name, row in sorted(result.items()):
            print(f"{name:<32} {row['probes']:>7} {row['downs']:>6}  {row['health']}")
    sys.exit(1 if any(row["downs"] for row in result.values()) else 0)


if __name__ == "__main__":
    main()
