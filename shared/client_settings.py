"""What the ``fleet`` CLI reads from the environment: ``FLEET_URL`` and ``FLEET_TOKEN``.

A module of its own, apart from :mod:`shared.settings`: importing that one builds the services'
settings classes (pydantic reads their fields' docstrings from the source), a cost every CLI
call would pay for two fields. ``shared.settings.ClientSettings`` is this same class.
"""

from __future__ import annotations

from pydantic import field_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ClientSettings"]


class ClientSettings(BaseSettings):
    """What the ``fleet`` CLI needs to talk to a supervisor."""

    model_config = SettingsConfigDict(env_prefix="FLEET_", extra="ignore")

    url: str = "http://127.0.0.1:8700"
    """The supervisor the CLI talks to: ``http://host:port`` or ``https://...``."""
    token: str | None = None
    """Bearer token the CLI sends."""

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        """``localhost:8700`` would otherwise fail later as "unreachable": say what is wrong."""
        value = value.strip()
        scheme, sep, rest = value.partition("://")
        if not sep:
            raise PydanticCustomError(
                "url_scheme", "{url} has no scheme: did you mean http://{bare}?",
                {"url": repr(value), "bare": value},
            )  # fmt: skip
        if scheme.lower() not in ("http", "https") or not rest.strip("/"):
            raise PydanticCustomError(
                "url_scheme", "{url} is not an http:// or https:// URL (e.g. http://127.0.0.1:8700)",
                {"url": repr(value)},
            )  # fmt: skip
        return value
