"""How long each service takes from process start to a port that accepts connections.

    python -m bench.listen                 # every service, 3 runs each, median in seconds
    python -m bench.listen --runs 5 echo supervisor-redis

The target is 2 s on a quiet machine (issue 15: "services listen within 2 s of start").
:func:`time_to_listen` is the one measurement, for any script that wants the number
(``bench/startup.py`` prints it beside the CLI's own timings).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

__all__ = ["SERVICES", "TARGET_S", "Listened", "command", "time_to_listen"]

ROOT = Path(__file__).resolve().parent.parent
TARGET_S = 2.0
"""Seconds from process start to a listening port (issue 15)."""

SERVICES: dict[str, tuple[str, dict[str, str]]] = {
    "supervisor-memory": ("supervisor.server", {"FLEET_REDIS_URL": "memory://"}),
    "supervisor-redis": ("supervisor.server", {"FLEET_REDIS_URL": "redis://127.0.0.1:6379/15"}),
    "echo": ("workers.echo", {}),
    "data": ("workers.data", {}),
    "text": ("workers.text", {}),
}
"""What :func:`command` can start, by name: a module run with ``-m`` and its environment."""


def _free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def command(name: str, port: int) -> tuple[list[str], dict[str, str]]:
    """The argv and environment that start service ``name`` on ``127.0.0.1:port``."""
    module, extra = SERVICES[name]
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    env.update(FASTMCP_CHECK_FOR_UPDATES="off", FASTMCP_SHOW_SERVER_BANNER="false")
    env.update(extra, FLEET_LOG_LEVEL="WARNING", FLEET_KEY_PREFIX=f"bench-listen-{port}")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    argv = [sys.executable, "-m", module, "--host", "127.0.0.1", "--port", str(port)]
    return argv, env


class Listened(NamedTuple):
    """One start: wall-clock seconds to a listening port, and the CPU seconds the process had
    spent by then (user + system: what the start costs on a quiet machine, whatever the
    load while it was measured)."""

    wall_s: float
    cpu_s: float


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process (Linux ``/proc``; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def time_to_listen(
    argv: Sequence[str], port: int, *, env: Mapping[str, str] | None = None, timeout: float = 60
) -> Listened:
    """Time from starting ``argv`` to ``127.0.0.1:port`` accepting a TCP connection; the
    process is stopped (SIGTERM, then SIGKILL) before this returns. Raises if it exits first
    or does not listen within ``timeout``."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        list(argv), env=dict(env) if env is not None else None, cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        while not _accepts(port):
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise RuntimeError(f"{argv[2:]} exited with {proc.returncode}: {err.strip()}")
            if time.perf_counter() - started > timeout:
                raise TimeoutError(f"{argv[2:]} did not listen within {timeout} s")
            time.sleep(0.005)  # a poll interval: the measurement's resolution
        return Listened(time.perf_counter() - started, _cpu_s(proc.pid))
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if proc.stderr is not None:
            proc.stderr.close()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.listen", description=__doc__)
    parser.add_argument("services", nargs="*", metavar="SERVICE", help=", ".join(SERVICES))
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    unknown = set(args.services) - set(SERVICES)
    if unknown:
        parser.error(f"unknown service(s) {sorted(unknown)}: choose from {', '.join(SERVICES)}")
    print(f"{'service':<18} {'wall s':>7} {'max s':>6} {'cpu s':>6}  (median of {args.runs}; "
          f"target {TARGET_S} s; load {os.getloadavg()[0]:.1f})")  # fmt: skip
    for name in args.services or SERVICES:
        runs = []
        for _ in range(args.runs):
            port = _free_port()
            cmd, env = command(name, port)
            runs.append(time_to_listen(cmd, port, env=env))
        wall = statistics.median(r.wall_s for r in runs)
        cpu = statistics.median(r.cpu_s for r in runs)
        verdict = "ok" if wall <= TARGET_S else "over"
        print(f"{name:<18} {wall:>7.2f} {max(r.wall_s for r in runs):>6.2f} {cpu:>6.2f}  {verdict}")


if __name__ == "__main__":
    main()
