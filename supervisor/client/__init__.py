"""The public Python client of the supervisor's HTTP API (``/v1``); the ``fleet`` CLI uses it.

    from supervisor.client import ApiError, FleetApi, Unreachable

    async with FleetApi("http://127.0.0.1:8700", token="...") as api:
        job = await api.submit({"capability": "noop", "input": {}})
        async for event in api.events(job["id"]):   # resumes across dropped connections
            print(event["seq"], event["type"])

Every call raises :class:`ApiError` (the supervisor refused: ``code``, ``message``,
``details``) or :class:`Unreachable` (no answer), nothing else.
"""

from supervisor.client.fleet_api import ApiError, FleetApi, Unreachable

__all__ = ["ApiError", "FleetApi", "Unreachable"]
