"""The ``fleet`` command line: ``fleet --help``. Exports only the Typer ``app``.

Each module registers its commands on the one app: jobs (submit, watch, jobs, status,
cancel, workers, capabilities, dead-letters, redrive), top, services (supervisor, worker)
and demo.
"""

from supervisor.cli import demo, dev, doctor, jobs, services, top
from supervisor.cli.base import app

__all__ = ["app"]

del demo, dev, doctor, jobs, services, top  # imported for their commands
