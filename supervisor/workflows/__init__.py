"""Durable workflows: a DAG of steps, each run as child jobs of one workflow job.

- :mod:`~supervisor.workflows.spec` — the body of ``POST /v1/workflows`` and its checks
- :mod:`~supervisor.workflows.refs` — the reference language (``$.steps.split.result``)
- :mod:`~supervisor.workflows.engine` — one run: steps scheduled, children submitted, events
- :mod:`~supervisor.workflows.journal` — what a run writes to its log: step events, progress
- :mod:`~supervisor.workflows.runner` — the dispatcher's hook: a workflow job runs (or
  resumes) there
- :mod:`~supervisor.workflows.state` — the steps as the workflow's event log tells them
- :mod:`~supervisor.workflows.submission` — submitting one, from any face
"""
