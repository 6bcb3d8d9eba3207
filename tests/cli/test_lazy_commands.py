"""The command table of ``supervisor/cli/__init__.py`` and what each command imports.

Timing is the bench's business (``./run bench startup``); this holds the property behind it:
``fleet --help`` imports no command module and none of the heavy libraries, and a command
imports its own module and not the others'.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys

from typer.main import get_command_name

from supervisor.cli import COMMANDS, app
from tests.processes import ROOT

HEAVY = ("httpx", "pydantic", "rich", "shared.settings", "supervisor.client", "asyncio")
SERVER = ("fastmcp", "uvicorn", "redis", "structlog", "fastapi", "supervisor.app")


def test_the_table_lists_every_command_and_only_those() -> None:
    for entry in COMMANDS.values():
        importlib.import_module(f"supervisor.cli.{entry.module}")
    defined = {
        info.name or get_command_name(info.callback.__name__)
        for info in app.registered_commands
        if info.callback is not None
    }
    assert defined == set(COMMANDS)


def loaded_after(*argv: str) -> set[str]:
    """The modules loaded once ``fleet ARGV`` ran, in a fresh interpreter."""
    code = (
        "import json, sys\n"
        "from supervisor.cli import app\n"
        "try:\n"
        f"    app({list(argv)!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "sys.__stderr__.write(json.dumps(sorted(sys.modules)))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    return set(json.loads(done.stderr.strip().splitlines()[-1]))


def test_help_imports_no_command_and_no_heavy_library() -> None:
    loaded = loaded_after("--help")
    commands = {f"supervisor.cli.{entry.module}" for entry in COMMANDS.values()}
    assert not loaded & commands
    assert not loaded & {*HEAVY, *SERVER}


def test_a_command_imports_its_module_only() -> None:
    loaded = loaded_after("--url", "http://127.0.0.1:9", "status", "0" * 32)
    assert "supervisor.cli.jobs" in loaded
    assert not loaded & {"supervisor.cli.demo", "supervisor.cli.services", "supervisor.cli.top"}
    assert not loaded & set(SERVER)
