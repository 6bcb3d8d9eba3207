"""A foreign peer: a FastMCP 2.x server over streamable HTTP at ``/mcp``.

Run with the python of ``tests.peers.install.fastmcp2_python()`` (never this project's venv)::

    python fastmcp2_server.py --port P [--ledger FILE] [--stateless] [--only-version V] [--name N]

Streaming (SSE) responses, not ``json_response``. FastMCP 2.x builds its transport without
DNS-rebinding protection, so 127.0.0.1/localhost (and any Host) are accepted. Tools: see
``peer_common.register_tools``; ``--only-version`` patches the mcp 1.x SDK underneath.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peer_common import (
    Ledger,
    only_protocol_version,
    parse_args,
    register_tools,
)


def main() -> None:
    args = parse_args("fastmcp2-peer")
    if args.only_version:
        only_protocol_version(args.only_version)

    from fastmcp import Context, FastMCP
    from fastmcp.exceptions import ToolError

    mcp = FastMCP(args.name)
    register_tools(mcp, Context, ToolError, Ledger(args.ledger))
    mcp.run(
        transport="http",
        host="127.0.0.1",
        port=args.port,
        path="/mcp",
        stateless_http=args.stateless,
        json_response=False,
        show_banner=False,
        log_level="WARNING",
    )


if __name__ == "__main__":
    main()
