"""Start-up errors of every service: one line on stderr, one exit code per kind of problem.

Every service (the supervisor, each worker) starts the same way: settings, then the bind,
then the app. Whatever goes wrong on the way is a :class:`StartupError`, which the entrypoint
(:func:`exit_on_startup_error`) prints as one line naming the program and what to do, then
exits with its :class:`ExitCode`. A traceback is logged only at ``--log-level DEBUG``.

=====  =================================================================================
code   meaning
=====  =================================================================================
0      stopped cleanly (SIGTERM or Ctrl-C)
1      an unexpected failure at start (the traceback with ``--log-level DEBUG``)
2      a bad flag, ``FLEET_*`` value or URL (``--redis-url``, ``FLEET_WORKERS``)
3      cannot bind: the port is in use, the address is not this machine's, or it needs
       privileges
4      bad token settings (``FLEET_API_TOKENS``, JWT, secrets), or a non-loopback bind with
       no token
=====  =================================================================================

An unreachable Redis is not a start-up error: the service starts, retries with backoff, and
says why in its readiness probe (``/readyz`` of the supervisor).

    with exit_on_startup_error("fleet supervisor", debug=False):
        sock = bind_socket("127.0.0.1", 8700)
"""

from __future__ import annotations

import contextlib
import errno
import socket
import sys
import traceback
from collections.abc import Iterator
from enum import IntEnum

__all__ = [
    "EXIT_CODES_HELP",
    "ExitCode",
    "StartupError",
    "bind_socket",
    "exit_on_startup_error",
]


class ExitCode(IntEnum):
    """A service's exit code at start (the table in this module's docstring)."""

    OK = 0
    INTERNAL = 1
    USAGE = 2
    CANNOT_BIND = 3
    AUTH_CONFIG = 4


EXIT_CODES_HELP = (
    "Exit codes: 0 stopped cleanly (SIGTERM/Ctrl-C); 1 unexpected failure at start (traceback "
    "with --log-level DEBUG); 2 bad flag, FLEET_* value or URL; 3 cannot bind (port in use, "
    "address not on this machine, needs privileges); 4 bad token settings, or a non-loopback "
    "bind without a token. An unreachable Redis is no exit: the service retries with backoff "
    "and says why in its readiness probe."
)
"""The table in one paragraph, for each service's ``--help``."""


class StartupError(Exception):
    """A service cannot start: ``message`` is one line saying what to do; ``code`` its exit."""

    def __init__(self, message: str, code: ExitCode) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def bind_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (not listening yet: the server listens on it once
    it is ready to answer), or a :class:`StartupError` saying why not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and an
    # accepted socket inherits the listener's proto. With proto 0 every response written in two
    # parts (headers, then body) waited ~40 ms for the client's delayed ACK (Nagle). NODELAY on
    # the listener too: Linux hands it to each accepted socket, whichever loop serves them.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    # Like uvicorn's own bind: a restarted service binds at once, past TIME_WAIT connections
    # (a port another socket listens on still fails with EADDRINUSE).
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise StartupError(_bind_problem(host, port, exc), ExitCode.CANNOT_BIND) from exc
    return sock


def _bind_problem(host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return (
            f"port {port} on {host} is already in use: stop the other process or pass "
            "--port (FLEET_PORT) with a free port"
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"binding port {port} needs privileges: pass --port (FLEET_PORT) above 1023"
    if exc.errno == errno.EADDRNOTAVAIL or isinstance(exc, socket.gaierror):
        return (
            f"{host} is not an address of this machine: pass --host (FLEET_HOST) 127.0.0.1, "
            "0.0.0.0 or one of its addresses"
        )
    return f"cannot bind {host}:{port}: {exc.strerror or exc}"


@contextlib.contextmanager
def exit_on_startup_error(prog: str, *, debug: bool = False) -> Iterator[None]:
    """Turn a :class:`StartupError` (or any exception) raised in the block into one line on
    stderr, ``prog: message``, and its exit code; with ``debug``, the traceback before it.
    """
    try:
        yield
    except StartupError as exc:
        _exit(prog, exc.message, exc.code, exc, debug)
    except KeyboardInterrupt:
        raise SystemExit(ExitCode.OK) from None
    except Exception as exc:  # anything else still ends in one line, not a traceback
        what = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        hint = "" if debug else " (run with --log-level DEBUG for the traceback)"
        _exit(prog, f"failed to start: {what}{hint}", ExitCode.INTERNAL, exc, debug)


def _exit(prog: str, message: str, code: ExitCode, exc: BaseException, debug: bool) -> None:
    sys.stdout.flush()
    if debug:  # asked for: the traceback first (logging may not be set up yet), then the line
        traceback.print_exception(exc, file=sys.stderr)
    sys.stderr.write(f"{prog}: {message}\n")
    sys.stderr.flush()
    raise SystemExit(int(code))
