"""A foreign peer: an ``mcp`` 1.x SDK ``FastMCP`` server over streamable HTTP at ``/mcp``.

Run with the python of ``tests.peers.install.mcp1_python()`` (never this project's venv)::

    python mcp1_server.py --port P [--ledger FILE] [--stateless] [--only-version V] [--name N]

Streaming (SSE) responses, not ``json_response``; DNS-rebinding protection on, allowing
127.0.0.1/localhost/[::1] on any port. Tools: see ``peer_common.register_tools``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peer_common import (
    LOOPBACK_HOSTS,
    LOOPBACK_ORIGINS,
    Ledger,
    only_protocol_version,
    parse_args,
    register_tools,
)


def main() -> None:
    args = parse_args("mcp1-peer")
    if args.only_version:
        only_protocol_version(args.only_version)

    from mcp.server.fastmcp import Context, FastMCP
    from mcp.server.fastmcp.exceptions import ToolError
    from mcp.server.transport_security import TransportSecuritySettings

    mcp = FastMCP(
        args.name,
        host="127.0.0.1",
        port=args.port,
        streamable_http_path="/mcp",
        stateless_http=args.stateless,
        json_response=False,
        log_level="WARNING",
        transport_security=TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=LOOPBACK_HOSTS,
            allowed_origins=LOOPBACK_ORIGINS,
        ),
    )
    register_tools(mcp, Context, ToolError, Ledger(args.ledger))
    mcp.run(transport="streamable-http")


if __name__ == "__main__":
    main()
