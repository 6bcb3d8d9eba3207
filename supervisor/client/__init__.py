"""The public Python client of the supervisor's HTTP API (``/v1``); the ``fleet`` CLI stands on it.

    from supervisor.client import AsyncFleetClient, FleetClient

    async with AsyncFleetClient("http://127.0.0.1:8700", token="...") as fleet:
        job = await fleet.submit("sleep", {"seconds": 2}, idempotency_key="order-42")
        async for event in fleet.watch(job.id):   # resumes across dropped connections
            print(event.seq, event.type, event.data)

    with FleetClient("http://127.0.0.1:8700") as fleet:   # the same calls, blocking
        print(fleet.wait(fleet.submit("noop").id).status)

Answers are the shared models (:class:`Job`, :class:`Event`, :class:`JobPage`,
:class:`WorkerInfo`, :class:`CapabilityInfo`, :class:`QueueDepths`, and for workflows
:class:`Workflow` and :class:`StepState`); ``client.raw`` (a
:class:`FleetApi`) is the same client answering the API's JSON as dicts. Every call raises
:class:`ApiError` (the supervisor refused: ``code``, ``message``, ``details``) or
:class:`Unreachable` (no answer), nothing else. It needs only the base install
(``pip install mcp-fleet``: httpx and pydantic), none of the server stack.
"""

import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:
    from shared.models import (
        CapabilityInfo,
        Event,
        Job,
        JobPage,
        JobStatus,
        QueueDepths,
        WorkerInfo,
    )
    from supervisor.client.blocking import FleetClient
    from supervisor.client.fleet_api import ApiError, FleetApi, Unreachable
    from supervisor.client.typed import AsyncFleetClient
    from supervisor.client.workflows import StepBoard, StepState, Workflow

# Each name is imported on first use (PEP 562): the raw layer (ApiError, FleetApi, Unreachable)
# needs httpx only, so a CLI call that prints the API's dicts does not pay for pydantic.
_WHERE: dict[str, str] = {
    "ApiError": "supervisor.client.fleet_api",
    "AsyncFleetClient": "supervisor.client.typed",
    "CapabilityInfo": "shared.models",
    "Event": "shared.models",
    "FleetApi": "supervisor.client.fleet_api",
    "FleetClient": "supervisor.client.blocking",
    "Job": "shared.models",
    "JobPage": "shared.models",
    "JobStatus": "shared.models",
    "QueueDepths": "shared.models",
    "StepBoard": "supervisor.client.workflows",
    "StepState": "supervisor.client.workflows",
    "Unreachable": "supervisor.client.fleet_api",
    "WorkerInfo": "shared.models",
    "Workflow": "supervisor.client.workflows",
}

__all__ = [
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


def __getattr__(name: str) -> _typing.Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_importlib.import_module(where), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
