"""What keeps ``fleet status`` quick: it imports no pydantic, and the two short cuts that avoid
it (command-line values, the URL and token) answer what typer and ClientSettings would.

Timing is the bench's business (``./run bench startup``); these hold the properties behind it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
import typer
from pydantic import ValidationError
from typer._coercion import build_runtime_param, resolve_type_descriptor
from typer.models import OptionInfo

from shared import ClientSettings
from supervisor.cli.base import endpoint
from supervisor.cli.params import _MISS, quick_value
from tests.processes import ROOT

PYDANTIC = ("pydantic", "pydantic_settings", "pydantic_core", "shared.models", "typer._adapters")


def loaded_after(argv: list[str], env: dict[str, str] | None = None) -> set[str]:
    code = (
        "import json, sys\n"
        "from supervisor.cli import app\n"
        "try:\n"
        f"    app({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "sys.__stderr__.write(json.dumps(sorted(sys.modules)))\n"
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    base.update(env or {}, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-c", code], env=base, capture_output=True, text=True, timeout=60
    )
    return set(json.loads(done.stderr.strip().splitlines()[-1]))


@pytest.mark.parametrize(
    "argv",
    [
        ["--url", "http://127.0.0.1:9", "status", "0" * 32],
        ["--url", "http://127.0.0.1:9", "status", "abc123", "--wait", "0.5", "--json"],
        ["--url", "http://127.0.0.1:9", "jobs", "--limit", "5"],
        ["--url", "http://127.0.0.1:9", "cancel", "abc123"],
    ],
)
def test_a_call_that_prints_the_apis_dicts_imports_no_pydantic(argv: list[str]) -> None:
    loaded = loaded_after(argv, {"FLEET_TOKEN": "t"})
    assert "supervisor.cli.jobs" in loaded
    assert not loaded & set(PYDANTIC)


def test_a_bad_value_still_gets_typers_own_message() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "from supervisor.cli import app; app()", "status", "x", "--wait",
         "99"],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "Invalid value for '--wait'" in done.stderr
    assert "Traceback" not in done.stderr


def typer_value(annotation: Any, info: OptionInfo, value: Any) -> Any:
    """What typer's own (pydantic) checker makes of ``value``, or the exception it raises."""
    runtime = build_runtime_param(resolve_type_descriptor(annotation, info))
    try:
        return runtime._coerce_value(value, param=None, ctx=None)  # type: ignore[arg-type]
    except Exception as exc:  # the comparison wants whatever it raised
        return type(exc)


CASES: list[tuple[Any, dict[str, Any], Any]] = [
    (str, {}, "abc"),
    (str, {}, ""),
    (str, {}, "  spaced "),
    (str, {}, 5),
    (bool, {}, True),
    (bool, {}, "yes"),
    (int, {}, "42"),
    (int, {}, "-7"),
    (int, {}, "007"),
    (int, {}, "+5"),
    (int, {}, "1_000"),
    (int, {}, " 5"),
    (int, {}, "5.0"),
    (int, {}, 3),
    (int, {}, 3.5),
    (int, {"min": 1, "max": 500}, "0"),
    (int, {"min": 1, "max": 500}, "500"),
    (int, {"min": 1, "max": 500, "clamp": True}, "900"),
    (float, {}, 0),
    (float, {}, "2.5"),
    (float, {}, "-1"),
    (float, {}, "1e3"),
    (float, {}, "inf"),
    (float, {}, "abc"),
    (float, {"min": 0, "max": 60}, "60"),
    (float, {"min": 0, "max": 60}, "60.5"),
    (float, {"min": 0, "max": 60, "clamp": True}, "-3"),
]


@pytest.mark.parametrize(("annotation", "bounds", "value"), CASES)
def test_a_quick_value_is_typers_value(annotation: Any, bounds: dict[str, Any], value: Any) -> None:
    info = OptionInfo(**bounds)
    quick = quick_value(annotation, info, value)
    if quick is _MISS:
        return  # typer's own checker decides: nothing to compare
    expected = typer_value(annotation, info, value)
    assert quick == expected
    assert type(quick) is type(expected)


def test_the_everyday_values_are_quick() -> None:
    info = OptionInfo(min=0, max=60)
    assert quick_value(float, info, "5") == 5.0
    assert quick_value(float, info, 0) == 0.0
    assert quick_value(int, OptionInfo(), "20") == 20
    assert quick_value(str, OptionInfo(), "abc") == "abc"


def settings_answer(url: str | None, token: str | None) -> Any:
    overrides = {k: v for k, v in {"url": url, "token": token}.items() if v is not None}
    try:
        settings = ClientSettings(**overrides)
    except ValidationError:
        return "refused"
    return (settings.url, settings.token)


@pytest.mark.parametrize(
    ("env", "url", "token"),
    [
        ({}, None, None),
        ({"FLEET_URL": "http://fleet:8700", "FLEET_TOKEN": "s3cret"}, None, None),
        ({"FLEET_URL": "http://fleet:8700"}, "https://other/", "t"),
        ({"FLEET_TOKEN": ""}, None, None),
        ({"fleet_url": "http://lower:1"}, None, None),
        ({"FLEET_URL": "localhost:8700"}, None, None),
        ({"FLEET_URL": " http://padded:1 "}, None, None),
        ({}, "HTTP://caps:1", None),
        ({}, "http://", None),
        ({}, "", None),
        ({}, "ftp://x", None),
    ],
)
def test_the_endpoint_is_what_client_settings_reads(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], url: str | None, token: str | None
) -> None:
    for name in list(os.environ):
        if name.lower().startswith("fleet_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    expected = settings_answer(url, token)
    if expected == "refused":
        with pytest.raises(typer.Exit) as exited:  # after one line on stderr
            endpoint(url, token)
        assert exited.value.exit_code == 2
        return
    got = endpoint(url, token)
    assert (got.url, got.token) == expected
