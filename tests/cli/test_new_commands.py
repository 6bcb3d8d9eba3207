"""The commands of the second pass at the front door, each against a real supervisor and real
workers: dev, doctor, capabilities NAME, typed submit, --version, completion, piped tables,
and the errors that used to mislead (no scheme, tokens, a worker that is down)."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import queue
import re
import shlex
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from shared.serving import free_port
from supervisor.cli import COMMANDS, app
from supervisor.cli.schema_input import example
from tests.cli.conftest import CliFleet
from tests.helpers import wait_until_sync
from tests.processes import ROOT, Proc, process_env, supervisor, worker

BOX = set("│┃─━┏┓┗┛┡┩└┘├┤┼╇╈")


def run(*args: str, url: str | None = None, token: str | None = None) -> Any:
    head = [*(["--url", url] if url else []), *(["--token", token] if token else [])]
    return CliRunner().invoke(app, [*head, *args])


def fleet(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``fleet ARGS`` as its own process, as a shell runs it."""
    return subprocess.run(
        [sys.executable, "-m", "supervisor", *args],
        cwd=ROOT,
        env=process_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# -- --version, completion, --help ---------------------------------------------------------


def test_version_prints_the_package_version() -> None:
    result = run("--version")
    assert result.exit_code == 0
    assert result.stdout == f"fleet (mcp-fleet) {version('mcp-fleet')}\n"


def test_bash_completion_script_is_printed_and_is_valid_bash(tmp_path: Any) -> None:
    result = fleet("--show-completion", "bash")
    assert result.returncode == 0, result.stderr
    script = result.stdout
    assert "complete" in script and "_fleet_completion" in script and "fleet" in script
    path = tmp_path / "fleet.bash"
    path.write_text(script)
    assert subprocess.run(["bash", "-n", str(path)], capture_output=True).returncode == 0


def test_completion_completes_command_names() -> None:
    env = {**process_env(), "_FLEET_COMPLETE": "complete_bash", "COMP_WORDS": "fleet doc",
           "COMP_CWORD": "1"}  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "supervisor"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert "doctor" in result.stdout.split(), result.stdout + result.stderr


OTHERS = {"supervisor", "worker"}
"""Commands whose --help is their service's own (its flags from the settings)."""


@pytest.mark.parametrize(
    "command",
    sorted(set(COMMANDS) - OTHERS),  # the table: commands load lazily, on first use
)
def test_every_command_help_has_examples(command: str) -> None:
    result = run(command, "--help")
    assert result.exit_code == 0
    text = result.stdout
    assert "Examples:" in text
    examples = text.split("Examples:")[1].strip().splitlines()
    assert examples and all(line.strip().startswith(("fleet ", "id=")) for line in examples)


# -- errors that used to mislead -------------------------------------------------------------


@pytest.mark.parametrize("url", ["localhost:8700", "127.0.0.1:8700"])
def test_a_url_with_no_scheme_is_bad_input_with_the_fix(url: str) -> None:
    result = run("jobs", url=url)
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"error: bad settings: {url!r} has no scheme: did you mean http://{url}?"
    ]
    doctor = run("doctor", url=url)
    assert doctor.exit_code == 2 and f"did you mean http://{url}?" in doctor.stderr


# -- piped tables ---------------------------------------------------------------------------


def _tsv(text: str) -> list[list[str]]:
    assert not BOX & set(text), text
    return [line.split("\t") for line in text.splitlines()]


def test_piped_tables_are_tab_separated_whole_and_boxless(cli_fleet: CliFleet) -> None:
    workers = _tsv(cli_fleet.invoke("workers").stdout)
    assert workers[0] == ["NAME", "URL", "HEALTH", "LOAD", "BREAKER", "CAPABILITIES", "SEEN"]
    (row,) = workers[1:]
    assert row[1] == cli_fleet.worker_url and row[2] == "healthy"
    assert row[5] == "echo, fail, noop, progress, sleep"

    long = "x" * 150  # longer than the ERROR column shows on a terminal
    job_id = cli_fleet.submit("fail", {"code": "LONG_ONE", "message": long})
    assert cli_fleet.job(job_id, wait=20)["status"] == "failed"
    jobs = _tsv(cli_fleet.invoke("jobs", "--capability", "fail", "--limit", "1").stdout)
    assert jobs[0][0] == "ID" and len(jobs) == 2
    assert jobs[1][0] == job_id and jobs[1][-1] == f"LONG_ONE: {long}"
    assert all(len(r) == len(jobs[0]) for r in jobs)

    caps = _tsv(cli_fleet.invoke("capabilities").stdout)
    assert caps[0][0] == "CAPABILITY"
    assert sorted(r[0] for r in caps[1:]) == ["echo", "fail", "noop", "progress", "sleep"]


# -- capabilities NAME ----------------------------------------------------------------------


def test_capabilities_name_shows_the_fields_and_an_example_the_supervisor_accepts(
    cli_fleet: CliFleet,
) -> None:
    result = cli_fleet.invoke("capabilities", "sleep")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    table = out.split("input fields:\n")[1].split("\n\n")[0]
    rows = {r[0]: r for r in _tsv(table)}
    assert rows["FIELD"] == ["FIELD", "TYPE", "REQUIRED", "DEFAULT", "RULES", "DESCRIPTION"]
    assert rows["seconds"][1:5] == ["number", "yes", "-", ">= 0, <= 300"]
    assert rows["seconds"][5] == "How long to sleep, 0-300 s."
    assert rows["steps"][1:4] == ["integer", "no", "10"]
    sample = json.loads(out.split("example input:\n")[1].split("\n\n")[0])
    assert sample == {"seconds": 1, "steps": 10}
    commands = [line.strip() for line in out.split("submit it:\n")[1].strip().splitlines()]
    assert commands[0] == "fleet submit sleep seconds=1 steps=10"
    for command in commands:  # each printed command, as printed, submits a job that succeeds
        words = shlex.split(command)
        assert words[:2] == ["fleet", "submit"]
        submitted = cli_fleet.invoke(*words[1:], "--json")
        assert submitted.exit_code == 0, submitted.stderr
        job = cli_fleet.job(json.loads(submitted.stdout)["id"], wait=20)
        assert job["status"] == "succeeded" and job["input"] == sample


def test_capabilities_name_json_and_unknown_name(cli_fleet: CliFleet) -> None:
    result = cli_fleet.invoke("capabilities", "echo.progress", "--json")
    assert result.exit_code == 0
    spec = json.loads(result.stdout)
    assert spec["tool"] == "progress" and spec["example"] == {"steps": 1, "delay_ms": 0}
    missing = cli_fleet.invoke("capabilities", "nope")
    assert missing.exit_code == 5
    assert missing.stderr.startswith("error: no capability 'nope' in the catalog (known: echo")
    assert len(missing.stderr.splitlines()) == 1
    table = cli_fleet.invoke("capabilities")  # no name: the catalog, as before
    assert table.exit_code == 0 and "CAPABILITY\tWORKERS" in table.stdout


# -- typed submit ---------------------------------------------------------------------------


def _submitted_input(cli_fleet: CliFleet, *args: str) -> dict[str, Any]:
    result = cli_fleet.invoke("submit", *args, "--json")
    assert result.exit_code == 0, result.stderr
    job = cli_fleet.job(json.loads(result.stdout)["id"], wait=20)
    assert job["status"] in ("succeeded", "failed"), job
    return dict(job["input"])


def test_submit_key_values_are_typed_by_the_schema(cli_fleet: CliFleet) -> None:
    typed = _submitted_input(cli_fleet, "sleep", "seconds=0.1", "steps=2")
    assert typed == {"seconds": 0.1, "steps": 2} and isinstance(typed["steps"], int)
    assert _submitted_input(cli_fleet, "sleep", "seconds=0") == {"seconds": 0}
    flags = _submitted_input(cli_fleet, "fail", "retryable=false", "code=E42", "message=1 2")
    assert flags == {"retryable": False, "code": "E42", "message": "1 2"}  # strings stay
    assert _submitted_input(cli_fleet, "echo", "value=[1,2]") == {"value": [1, 2]}
    assert _submitted_input(cli_fleet, "echo", 'value={"a":1}') == {"value": {"a": 1}}
    assert _submitted_input(cli_fleet, "echo", "value=hello") == {"value": "hello"}
    with_watch = cli_fleet.invoke("submit", "sleep", "seconds=0.1", "steps=1", "--watch")
    assert with_watch.exit_code == 0 and '"slept": 0.1' in with_watch.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sleep", "seconds=abc"], "error: field 'seconds' of sleep takes number, got 'abc'"),
        (["sleep", "seconds=1", "steps=1.5"],
         "error: field 'steps' of sleep takes integer, got '1.5'"),
        (["fail", "retryable=maybe"], "error: field 'retryable' of fail takes boolean, got "
         "'maybe'"),
        (["sleep", "secs=1"], "error: sleep has no field 'secs' (fields: seconds, steps)"),
        (["sleep", "seconds"], "error: arguments after the capability are key=value, got "
         "'seconds'"),
        (["sleep", "seconds=1", "--input", "{}"],
         "error: give the input as KEY=VALUE arguments or as --input, not both"),
    ],
)  # fmt: skip
def test_submit_refuses_a_wrong_value_naming_the_field(
    cli_fleet: CliFleet, args: list[str], message: str
) -> None:
    result = cli_fleet.invoke("submit", *args)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [message]
    assert result.stdout == ""


def test_submit_input_file_still_works(cli_fleet: CliFleet, tmp_path: Any) -> None:
    path = tmp_path / "in.json"
    path.write_text('{"seconds": 0.1, "steps": 1}')
    result = cli_fleet.invoke("submit", "sleep", "--input", f"@{path}", "--watch")
    assert result.exit_code == 0, result.stderr


# -- doctor, tokens, a worker that is down ----------------------------------------------------


def test_doctor_all_good(cli_fleet: CliFleet) -> None:
    result = cli_fleet.invoke("doctor")
    assert result.exit_code == 0, result.stdout
    lines = result.stdout.splitlines()
    assert all(line.startswith("✓ ") for line in lines), lines
    names = [line[2:].split(":")[0] for line in lines]
    assert names[:4] == ["url", "supervisor", "token", "store"]
    assert names[4].startswith("worker echo@")
    assert f"version {version('mcp-fleet')}" in lines[1]
    as_json = json.loads(cli_fleet.invoke("doctor", "--json").stdout)
    assert as_json["ok"] is True and len(as_json["checks"]) == len(lines)


def test_doctor_unreachable_supervisor_is_exit_4() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = run("doctor", url=url)
    assert result.exit_code == 4
    assert result.stdout.splitlines()[0].startswith("✓ url: ")
    assert result.stdout.splitlines()[1].startswith(f"✗ supervisor: no answer at {url}")


@dataclass
class Secured:
    supervisor: Proc
    echo: Proc
    dead_url: str


ADMIN, READER, WRITER = "adm1n-t0ken", "r3ader-t0ken", "wr1ter-t0ken"


@pytest.fixture(scope="module")
def secured() -> Iterator[Secured]:
    """A supervisor process with two tokens, an echo worker process, and a listed worker that
    never answers (nothing listens at its port)."""
    dead = f"http://127.0.0.1:{free_port()}/mcp"
    with worker("echo") as echo:
        tokens = f"admin={ADMIN},reader={READER}:jobs:read,writer={WRITER}:jobs:write"
        with supervisor(
            FLEET_WORKERS=f"{echo.url},{dead}",
            FLEET_API_TOKENS=tokens,
            FLEET_PROBE_INTERVAL_S="0.3",
        ) as sup:
            headers = {"Authorization": f"Bearer {ADMIN}"}

            def probed() -> bool:
                found = httpx.get(f"{sup.url}/v1/workers", headers=headers).json()["workers"]
                return {w["url"]: w["healthy"] for w in found} == {echo.url: True, dead: False}

            wait_until_sync(probed, timeout=30, message="echo healthy, the dead one down")
            yield Secured(sup, echo, dead)


@pytest.mark.e2e
def test_doctor_names_the_down_worker_and_why(secured: Secured) -> None:
    result = run("doctor", url=secured.supervisor.url, token=ADMIN)
    assert result.exit_code == 1, result.stdout
    lines = result.stdout.splitlines()
    assert [line[0] for line in lines[:4]] == ["✓"] * 4
    assert "token: accepted (may read and submit jobs)" in lines[2]
    port = secured.dead_url.split(":")[2].split("/")[0]
    (down,) = [line for line in lines if secured.dead_url in line]
    assert down.startswith(f"✗ worker ?@127.0.0.1:{port}: {secured.dead_url} down for ")
    assert down.endswith(f"unreachable: cannot connect to 127.0.0.1:{port} (nothing listening "
                         "there?)")  # fmt: skip
    assert any(line.startswith("✓ worker echo@") for line in lines)


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("token", "line"),
    [
        (None, "✗ token: UNAUTHORIZED: no token was sent: set FLEET_TOKEN (or --token) to a "
         "token the supervisor accepts"),
        ("wrong", "✗ token: INVALID_TOKEN: the bearer token is not one of the API tokens: "
         "set FLEET_TOKEN (or --token) to a token the supervisor accepts"),
        (READER, "✗ token: reads work, submits do not: INSUFFICIENT_SCOPE: token lacks scope "
         "jobs:write: set FLEET_TOKEN (or --token) to a token with jobs:write"),
    ],
)  # fmt: skip
def test_doctor_bad_token_says_what_to_set(secured: Secured, token: str | None, line: str) -> None:
    result = run("doctor", url=secured.supervisor.url, token=token)
    assert result.exit_code == 5
    assert line in result.stdout.splitlines()


@pytest.mark.e2e
def test_auth_errors_speak_of_fleet_token(secured: Secured) -> None:
    url = secured.supervisor.url
    none = run("jobs", url=url)
    assert none.exit_code == 5
    assert none.stderr.splitlines() == [
        "error: UNAUTHORIZED: no token was sent: set FLEET_TOKEN (or --token) to a token the "
        "supervisor accepts"
    ]
    wrong = run("jobs", url=url, token="nope")
    assert wrong.exit_code == 5
    assert wrong.stderr.startswith("error: INVALID_TOKEN: the bearer token is not one of")
    assert "set FLEET_TOKEN (or --token)" in wrong.stderr
    reader = run("submit", "noop", url=url, token=READER)
    assert reader.exit_code == 5
    assert reader.stderr.splitlines() == [
        "error: INSUFFICIENT_SCOPE: token lacks scope jobs:write: set FLEET_TOKEN (or --token) "
        "to a token with jobs:write"
    ]


@pytest.mark.e2e
def test_typed_submit_with_a_token_that_cannot_read_the_catalog(secured: Secured) -> None:
    result = run("submit", "sleep", "seconds=0.1", "steps=1", url=secured.supervisor.url,
                 token=WRITER)  # fmt: skip
    assert result.exit_code == 0, result.stderr
    job = httpx.get(
        f"{secured.supervisor.url}/v1/jobs/{result.stdout.strip()}",
        headers={"Authorization": f"Bearer {ADMIN}"},
    ).json()
    assert job["input"] == {"seconds": 0.1, "steps": 1}


@pytest.mark.e2e
def test_workers_table_says_why_a_worker_is_down(secured: Secured) -> None:
    result = run("workers", url=secured.supervisor.url, token=READER)
    assert result.exit_code == 0
    rows = _tsv(result.stdout)
    assert rows[0][-1] == "WHY DOWN"
    down = next(r for r in rows if r[1] == secured.dead_url)
    up = next(r for r in rows if r[1] == secured.echo.url)
    assert down[2] == "down" and down[-1].startswith("down for ")
    assert ": unreachable: cannot connect to 127.0.0.1:" in down[-1] and up[-1] == ""


def _on_a_terminal(*args: str) -> str:
    """``fleet ARGS`` with its output on a real pseudo-terminal of 80 columns."""
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    env = {**process_env(), "TERM": "xterm", "COLUMNS": "80", "LINES": "24"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "supervisor", *args],
        cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=child, stderr=child,
    )  # fmt: skip
    os.close(child)
    chunks = []
    try:
        while True:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(main)
        assert proc.wait(60) == 0
    return b"".join(chunks).decode()


@pytest.mark.e2e
def test_workers_on_a_terminal_show_a_table_then_why_each_is_down(secured: Secured) -> None:
    text = _on_a_terminal("--url", secured.supervisor.url, "--token", READER, "workers")
    plain = re.sub(r"\x1b\[[0-9;]*m", "", text)
    assert "┃" in plain and "WHY DOWN" not in plain
    *table, last = plain.strip().splitlines()
    assert all(len(line) <= 80 for line in table), table  # the table fits; the reason wraps
    port = secured.dead_url.split(":")[2].split("/")[0]
    assert re.fullmatch(
        rf"✗ \?@127\.0\.0\.1:{port} down for [0-9.]+s: unreachable: cannot connect to "
        rf"127\.0\.0\.1:{port} \(nothing listening there\?\)",
        last,
    ), last


# -- fleet dev ------------------------------------------------------------------------------


class Lines:
    """A process's stdout, line by line, read on a thread so a test can wait with a deadline."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        assert proc.stdout is not None
        stream = proc.stdout

        def pump() -> None:
            for line in stream:
                self._queue.put(line.rstrip("\n"))
            self._queue.put(None)

        threading.Thread(target=pump, daemon=True).start()

    def until(self, prefix: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            self.seen.append(line)
            if line.strip().startswith(prefix):
                return line
        raise AssertionError(f"no line starting {prefix!r} in {self.seen}")


def _answers(url: str) -> bool:
    try:
        httpx.get(url, timeout=1)
        return True
    except httpx.TransportError:
        return False


@pytest.mark.e2e
def test_dev_runs_a_fleet_until_ctrl_c() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "supervisor", "dev", "--port", str(port)],
        cwd=ROOT,
        env=process_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out = Lines(proc)
        export = out.until("export FLEET_URL=", timeout=90)
        url = export.split("=", 1)[1]
        assert url == f"http://127.0.0.1:{port}"
        text = "\n".join(out.seen)
        assert f"supervisor   {url}" in text and f"API docs     {url}/docs" in text
        assert f"MCP (fleet)  {url}/mcp" in text
        workers = {line.split()[1]: line.split()[2] for line in out.seen
                   if line.strip().startswith("worker ")}  # fmt: skip
        assert sorted(workers) == ["data", "echo", "text"]
        assert httpx.get(f"{url}/healthz").json()["status"] == "ok"
        assert {w["url"] for w in httpx.get(f"{url}/v1/workers").json()["workers"]} == set(
            workers.values()
        )

        submitted = fleet("--url", url, "submit", "sleep", "seconds=0.2", "steps=2", "--watch")
        assert submitted.returncode == 0, submitted.stderr
        assert submitted.stdout.endswith('{\n  "slept": 0.2\n}\n'), submitted.stdout

        # Every capability's generated example is an input the supervisor accepts.
        catalog = httpx.get(f"{url}/v1/capabilities").json()["capabilities"]
        assert len(catalog) >= 10
        for name, spec in catalog.items():
            body = {"capability": name, "input": example(spec["input_schema"])}
            answer = httpx.post(f"{url}/v1/jobs", json=body)
            assert answer.status_code == 202, (name, answer.text)

        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
        assert proc.stderr is not None
        assert "Traceback" not in proc.stderr.read()
        assert not _answers(f"{url}/healthz")
        assert not any(_answers(mcp) for mcp in workers.values())
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


@pytest.mark.e2e
def test_dev_on_a_taken_port_is_one_line() -> None:
    with supervisor() as taken:
        port = taken.url.rsplit(":", 1)[1]
        result = fleet("dev", "--port", port, timeout=90)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: fleet dev could not start: port {port} is taken"
    )
    assert "Traceback" not in result.stderr
