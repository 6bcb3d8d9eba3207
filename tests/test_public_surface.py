"""``shared`` exports its contract on purpose; the services export nothing by accident."""

from __future__ import annotations

import shared


def test_shared_exports_are_deliberate() -> None:
    public = {name for name in dir(shared) if not name.startswith("_")}
    modules = {"errors", "keys", "logs", "models", "protocol", "settings", "sse", "telemetry"}
    assert public - modules == set(shared.__all__), "update shared.__all__ on purpose"
    for name in shared.__all__:
        assert getattr(shared, name) is not None


def test_cli_package_exports_only_the_app() -> None:
    import supervisor.cli

    assert supervisor.cli.__all__ == ["app"]
