"""``shared`` and the client export their contract on purpose; the services export nothing by
accident."""

from __future__ import annotations

from types import ModuleType

import shared


def public_names(module: ModuleType) -> set[str]:
    """Its public attributes, without its submodules (present once anything imported them)."""
    return {
        name
        for name in dir(module)
        if not name.startswith("_") and not isinstance(getattr(module, name), ModuleType)
    }


def test_shared_exports_are_deliberate() -> None:
    assert public_names(shared) == set(shared.__all__), "update shared.__all__ on purpose"
    for name in shared.__all__:
        assert getattr(shared, name) is not None


def test_client_exports_are_deliberate() -> None:
    import supervisor.client

    assert supervisor.client.__all__ == [
        "ApiError",
        "AsyncFleetClient",
        "CapabilityInfo",
        "Event",
        "FleetApi",
        "FleetClient",
        "Job",
        "JobPage",
        "JobStatus",
        "QueueDepths",
        "StepBoard",
        "StepState",
        "Unreachable",
        "WorkerInfo",
        "Workflow",
    ]
    assert public_names(supervisor.client) == set(supervisor.client.__all__)


def test_cli_package_exports_only_the_app() -> None:
    import supervisor.cli

    assert supervisor.cli.__all__ == ["app"]
