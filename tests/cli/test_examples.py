"""The programs and sample data in examples/ work as a user uses them (the README's commands)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest

from examples.submit_and_watch import submit_and_watch
from shared import SupervisorSettings, WorkerSettings
from shared.serving import serving
from supervisor.app import create_app
from tests.cli.conftest import BackgroundLoop, CliFleet
from tests.helpers import wait_until_sync
from tests.servers import free_socket

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_submit_and_watch_prints_every_event_then_the_result(
    cli_fleet: CliFleet, capsys: pytest.CaptureFixture[str]
) -> None:
    job = cli_fleet.bg.run(submit_and_watch(cli_fleet.url, "progress", {"steps": 3}))
    assert job.status == "succeeded"
    lines = capsys.readouterr().out.splitlines()
    types = [line.split()[1] for line in lines]
    assert types.count("progress") == 3 and types[-1] == "done"
    assert [int(line.split()[0]) for line in lines] == sorted(int(x.split()[0]) for x in lines)


def test_the_hello_worker_runs_as_a_script() -> None:
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "hello_worker.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "python examples/hello_worker.py" in out.stdout and "--port" in out.stdout


# -- the sample data: the README's commands that use it, run as written -------------------------

ROOT = EXAMPLES.parent
SAMPLES = ("examples/records.json", "examples/article.txt")


def readme_commands_using(samples: tuple[str, ...]) -> list[str]:
    """The README's shell lines (in its ```bash blocks) that name one of ``samples``."""
    blocks = re.findall(r"^```bash\n(.*?)^```", (ROOT / "README.md").read_text(), re.M | re.S)
    lines = [line for block in blocks for line in block.splitlines()]
    return [
        line
        for line in lines
        if not line.lstrip().startswith("#") and any(sample in line for sample in samples)
    ]


@pytest.fixture(scope="module")
def data_and_text_fleet(bg: BackgroundLoop) -> Iterator[str]:
    """A supervisor over HTTP with the real data and text workers, as the README starts them."""
    import workers.data
    import workers.text

    stack = AsyncExitStack()

    async def start() -> str:
        urls = []
        for build in (workers.data.build, workers.text.build):
            worker = build(WorkerSettings(_env_file=None))
            urls.append(await stack.enter_async_context(worker.serving(sockets=[free_socket()])))
        sock = free_socket()  # bound first: the supervisor names its URL to the workers
        settings = SupervisorSettings(
            redis_url="memory://",
            workers=",".join(urls),
            probe_interval_s=0.5,
            public_url=f"http://127.0.0.1:{sock.getsockname()[1]}",
        )
        running = await stack.enter_async_context(serving(create_app(settings), sockets=[sock]))
        return running.url

    url = bg.run(start())

    def healthy() -> bool:
        found = httpx.get(url + "/v1/workers", timeout=5).json()["workers"]
        return len(found) == 2 and all(w["healthy"] for w in found)

    try:
        wait_until_sync(healthy, timeout=30, message="data and text workers healthy")
        yield url
    finally:
        bg.run(stack.aclose())


def test_the_sample_files_fit_their_tools() -> None:
    records = json.loads((ROOT / "examples" / "records.json").read_text())
    assert set(records) == {"records"} and len(records["records"]) >= 5  # what --input takes
    text = (ROOT / "examples" / "article.txt").read_text()
    assert len([p for p in text.split("\n\n") if len(p) > 200]) >= 4  # a few paragraphs


def test_the_readme_commands_that_use_the_sample_files_succeed(
    data_and_text_fleet: str, tmp_path: Path
) -> None:
    commands = readme_commands_using(SAMPLES)
    for sample in SAMPLES:
        assert any(sample in line for line in commands), f"no README command uses {sample}"
    if shutil.which("jq") is None:
        pytest.fail("the README's commands for examples/article.txt need jq: apt-get install jq")
    # `fleet` is this checkout's CLI; FLEET_URL points it at the test's supervisor.
    (tmp_path / "fleet").write_text(f'#!/bin/sh\nexec {sys.executable} -m supervisor "$@"\n')
    (tmp_path / "fleet").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    env.update(
        PATH=f"{tmp_path}{os.pathsep}{env.get('PATH', '')}",
        PYTHONPATH=str(ROOT),
        FLEET_URL=data_and_text_fleet,
    )
    records = json.loads((ROOT / "examples" / "records.json").read_text())["records"]
    for command in commands:
        done = subprocess.run(
            ["bash", "-o", "pipefail", "-c", command],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
        if "--watch" not in command:  # it printed the job id: follow it to its result
            job_id = done.stdout.strip()
            job = httpx.get(f"{data_and_text_fleet}/v1/jobs/{job_id}?wait=60", timeout=70).json()
            assert job["status"] == "succeeded", job
            if job["capability"] == "profile_dataset":
                assert job["result"]["total_records"] == len(records)
        else:
            assert "lighthouse" in done.stdout.lower(), done.stdout  # the tool's result
