"""Progress in steps, with a cancellation point after each one.

>>> import asyncio
>>> async def demo():
...     progress = ProgressReporter(None, total=2)
...     await progress.step(message="first half")
...     return progress.done
>>> asyncio.run(demo())
1.0
"""

from __future__ import annotations

import asyncio

from fastmcp import Context

__all__ = ["ProgressReporter"]


class ProgressReporter:
    """Report ``done/total`` through the MCP context; works without one (direct calls).

    Every :meth:`step` yields to the event loop, so a CPU-bound tool that steps per batch
    still sees cancellation promptly and lets ``/health`` answer.
    """

    def __init__(self, ctx: Context | None, total: float | None) -> None:
        self.ctx = ctx
        self.total = total
        self.done = 0.0

    async def step(self, amount: float = 1, message: str | None = None) -> None:
        self.done += amount
        if self.ctx is not None:
            await self.ctx.report_progress(self.done, self.total, message)
        await asyncio.sleep(0)
