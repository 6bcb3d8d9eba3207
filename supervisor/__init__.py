"""The supervisor: an HTTP API over a durable job store, dispatching jobs to MCP workers.

The map of its packages and the life of one job through them is ``ARCHITECTURE.md``; the
seams between the parts are the Protocols in :mod:`supervisor.types`.
"""
