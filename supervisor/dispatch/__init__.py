"""Dispatch: taking jobs from the queue, choosing workers, calling them, recording outcomes.

``dispatcher`` runs jobs, ``router`` chooses a worker for each attempt, ``breaker`` keeps a
failing worker out of the choice for a while.
"""

from supervisor.dispatch.dispatcher import Dispatcher, NoWorker

__all__ = ["Dispatcher", "NoWorker"]
