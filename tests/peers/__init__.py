"""Foreign MCP peers for interop tests: software nobody here wrote, installed and run for real.

- ``tests.peers.install``: cached, pinned installs (npm and PyPI) — ``npm_package``, ``venv``,
  ``node22``, ``mcp1_python``, ``fastmcp2_python``, ``fastmcp_tasks_python``,
  ``server_everything_argv``, ``conformance_argv``, ``inspector_argv``; failures raise
  ``PeerUnavailable`` (tests ``pytest.fail`` on it).
- ``tests.peers.procs``: ``peer(argv, env, port=...)`` and the ``everything``/``mcp1``/
  ``fastmcp2`` constructors, which start a peer and wait until its port answers.
- ``tests/peers/servers/``, ``tests/peers/clients/``: peer server and client scripts run by the
  foreign venvs' pythons (they import nothing of this project).
"""
