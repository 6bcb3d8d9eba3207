"""The ``fleet`` command line: ``fleet --help``. Exports only the Typer ``app``.

Commands load lazily: ``fleet --help`` reads the table below (names and one-line helps) and
imports no command module; ``fleet status`` imports ``supervisor.cli.jobs`` only, so the demo,
the services and ``fleet top`` cost it nothing. Keep heavy imports (rich tables, the client,
the services) out of ``supervisor.cli.base``.

**Adding a command** is one line in ``COMMANDS``: its name, the module under
``supervisor.cli`` whose ``@app.command()`` defines it, the one line ``fleet --help`` shows,
and the package extras it needs (``supervisor``, ``worker``), if any. A command that needs an
extra that is not installed answers with a one-line ``pip install 'mcp-fleet[...]'`` hint and
exit 2 instead of a traceback. ``tests/cli/test_lazy_commands.py`` fails when a command is
defined but missing from the table, or listed but not defined.
"""

import sys

# httpx imports its own command line (httpx._main: click, rich.progress, pygments) whenever
# click is installed, ~40 ms of every `fleet` call for a program it never runs; httpx catches
# the ImportError this gives and leaves a stub `httpx.main` (only that stub is affected).
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

from supervisor.cli.base import LazyCommand, app  # noqa: E402

__all__ = ["app"]

COMMANDS: dict[str, LazyCommand] = {
    "submit": LazyCommand("jobs", "Submit a job (JSON or KEY=VALUE); --watch follows it."),
    "watch": LazyCommand("jobs", "Live progress of a job until it ends; --json prints events."),
    "jobs": LazyCommand("jobs", "List jobs, newest first."),
    "status": LazyCommand("jobs", "Show one job; --wait S waits for it to end."),
    "cancel": LazyCommand("jobs", "Cancel a queued or running job."),
    "workflow": LazyCommand("workflow", "Run a workflow file (steps over capabilities); show one."),
    "workers": LazyCommand("jobs", "Workers the supervisor knows: health, load, why down."),
    "capabilities": LazyCommand("jobs", "The capability catalog; with NAME, its input."),
    "dead-letters": LazyCommand("jobs", "Failed jobs waiting for a look."),
    "redrive": LazyCommand("jobs", "Queue a dead-lettered job again."),
    "top": LazyCommand("top", "Live dashboard: workers, slots, jobs; keys act on a job."),
    "doctor": LazyCommand("doctor", "Check the URL, supervisor, token, store and each worker."),
    "supervisor": LazyCommand("services", "Run the supervisor.", ("supervisor",)),
    "worker": LazyCommand("services", "Run an example worker: fleet worker NAME.", ("worker",)),
    "demo": LazyCommand("demo", "A whole fleet on this machine, a batch, live progress.",
                        ("supervisor", "worker")),
    "dev": LazyCommand("dev", "The demo's fleet left running here, URLs printed.",
                       ("supervisor", "worker")),
}  # fmt: skip
"""Every ``fleet`` command, in the order ``fleet --help`` lists them."""
