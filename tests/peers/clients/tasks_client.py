"""A foreign MCP host that uses the tasks extension (``fastmcp-tasks``, SEP-2663), run by its
own venv's python against a server URL. It imports nothing of this project.

    python tasks_client.py URL [TOKEN]

Prints one JSON object: what each step saw (task ids, statuses, status messages, results).
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from fastmcp import Client
from fastmcp_tasks import call_tool_task


async def main(url: str, token: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    async with Client(url, auth=token) as client:
        # create, get, result
        task = await call_tool_task(client, "echo", {"value": "as a task"})
        out["echo_task_id"] = task.task_id
        out["echo_created_status"] = task.create_result.status
        done = await task.wait(timeout=60)
        out["echo_status"] = done.status
        out["echo_result"] = (await task.result()).structured_content

        # a long one: its progress shows as the status message; then cancel it
        task = await call_tool_task(client, "sleep", {"seconds": 60, "steps": 600})
        out["sleep_task_id"] = task.task_id
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        status = await task.status()
        while not status.status_message and loop.time() < deadline:
            status = await task.wait(state="working", timeout=5)
            if not status.status_message:
                await asyncio.sleep(0.2)  # the host's own poll interval
        out["sleep_working_status"] = status.status
        out["sleep_status_message"] = status.status_message
        await task.cancel()
        out["sleep_final_status"] = (await task.wait(timeout=30)).status

        # a plain call_tool from a tasks-capable client: tasked, and polled to its result
        result = await client.call_tool("echo", {"value": "transparent"})
        out["plain_call_result"] = result.structured_content
    return out


if __name__ == "__main__":
    url = sys.argv[1]
    token = sys.argv[2] if len(sys.argv) > 2 else None
    print(json.dumps(asyncio.run(main(url, token))))
