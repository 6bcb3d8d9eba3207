"""Workers: the kit (:mod:`workers.kit`) and example workers, one package each.

- ``workers.echo``  the kit's minimal example; the tools the supervisor's tests and bench use
- ``workers.data``  validate, transform and profile records
- ``workers.text``  statistics, keywords, extractive summaries, chunking

Run one with ``python -m workers.<name> --host 127.0.0.1 --port 8701``.
"""

import os

# FastMCP reads these when it is imported; workers run offline and print no banner.
os.environ.setdefault("FASTMCP_CHECK_FOR_UPDATES", "off")
os.environ.setdefault("FASTMCP_SHOW_SERVER_BANNER", "false")

__all__: list[str] = []
