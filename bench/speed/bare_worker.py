"""A bare FastMCP server with the same ``noop`` tool as the echo worker and none of the kit:
the control for what the kit costs per call.

    python -m bench.speed.bare_worker PORT
"""

from __future__ import annotations

import sys

from fastmcp import FastMCP

mcp = FastMCP("bare")


@mcp.tool(annotations={"idempotentHint": True, "readOnlyHint": True})
async def noop() -> dict[str, bool]:
    """Do nothing and answer at once."""
    return {"ok": True}


if __name__ == "__main__":
    mcp.run(
        transport="http", host="127.0.0.1", port=int(sys.argv[1]), path="/mcp", log_level="warning"
    )
