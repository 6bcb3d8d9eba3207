"""``python -m supervisor`` runs the supervisor (same as ``fleet supervisor``)."""

from supervisor.cli import app

app(prog_name="fleet")
