"""shared.flags: one flag per settings field, help from the field, the settings validate."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.flags import parse_flags, settings_parser


class Demo(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DEMO_", use_attribute_docstrings=True)

    port: int = Field(default=80, le=65535)
    """Port to bind (100% of it)."""
    mode: Literal["a", "b"] = "a"
    debug: bool = False
    """Say more."""
    token: str | None = None


FIELDS = ["port", "mode", "debug", "token"]


def parse(*argv: str) -> Demo:
    return parse_flags(Demo, FIELDS, list(argv), prog="demo")


def test_flags_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_PORT", "81")
    monkeypatch.setenv("DEMO_DEBUG", "1")
    assert parse().port == 81 and parse().debug is True
    settings = parse("--port", "82", "--no-debug", "--mode", "b", "--token", "t")
    assert (settings.port, settings.debug, settings.mode, settings.token) == (82, False, "b", "t")
    assert parse("--debug").debug is True


def test_help_comes_from_the_field() -> None:
    text = " ".join(settings_parser(Demo, FIELDS, prog="demo").format_help().split())
    assert "--port INT Port to bind (100% of it). [DEMO_PORT; 80]" in text
    assert "--mode {a,b} [DEMO_MODE; a]" in text
    assert "--debug, --no-debug Say more. [DEMO_DEBUG; false]" in text
    assert "--token TEXT [DEMO_TOKEN]" in text


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--port", "x"], {}, "argument --port: Input should be a valid integer"),
        (["--port", "70000"], {}, "argument --port: Input should be less than or equal to 65535"),
        (["--mode", "c"], {}, "argument --mode: invalid choice: 'c'"),
        ([], {"DEMO_PORT": "x"}, "DEMO_PORT: Input should be a valid integer"),
    ],
)
def test_bad_input_exits_2_naming_the_flag_or_variable(
    argv: list[str],
    env: dict[str, str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SystemExit) as exited:
        parse(*argv)
    assert exited.value.code == 2
    assert f"demo: error: {message}" in capsys.readouterr().err
