"""Submit a job to a supervisor and print its events as they arrive, then its result.

python examples/submit_and_watch.py http://127.0.0.1:8700 progress '{"steps": 3}'
"""

import asyncio
import json
import sys
from typing import Any

from supervisor.client import ApiError, AsyncFleetClient, Job, Unreachable


async def submit_and_watch(url: str, capability: str, arguments: dict[str, Any]) -> Job:
    async with AsyncFleetClient(url) as fleet:
        job = await fleet.submit(capability, arguments)
        async for event in fleet.watch(job.id):  # resumes across dropped connections
            print(event.seq, event.type, json.dumps(event.data))
        return await fleet.get(job.id)


if __name__ == "__main__":
    url, capability, arguments = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    try:
        job = asyncio.run(submit_and_watch(url, capability, arguments))
    except (ApiError, Unreachable) as exc:
        sys.exit(f"error: {exc}")
    print(job.status, json.dumps(job.result))
