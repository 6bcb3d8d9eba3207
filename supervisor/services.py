"""The long-lived parts of one supervisor process, wired by :func:`supervisor.app.lifespan`."""

from __future__ import annotations

from dataclasses import dataclass

from shared import SupervisorSettings
from supervisor.calls import WorkerPool
from supervisor.dispatch import Dispatcher
from supervisor.loops import Loops
from supervisor.metrics import Metrics
from supervisor.registry import Registry
from supervisor.store import Store

__all__ = ["Services"]


@dataclass
class Services:
    settings: SupervisorSettings
    store: Store
    pool: WorkerPool
    registry: Registry
    dispatcher: Dispatcher
    metrics: Metrics
    loops: Loops
