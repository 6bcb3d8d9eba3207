"""A worker whose tools delegate to the fleet, for the end-to-end delegation tests:
``python -m tests.e2e.delegating_worker --port P``."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from workers.kit import Context, Fleet, Toolset, Worker, WorkerSettings, main

tools = Toolset()


@tools.tool(max_concurrency=32)
async def fan_sleep(
    n: Annotated[int, Field(ge=0, le=100)],
    seconds: Annotated[float, Field(ge=0, le=300)],
    ctx: Context,
) -> dict[str, Any]:
    """Run ``n`` echo ``sleep`` children at once (progress counts them as they end)."""
    async with Fleet.of(ctx) as fleet:
        results = await fleet.map(
            "sleep", [{"seconds": seconds, "steps": 1}] * n, concurrency=max(1, n), progress=True
        )
    return {"results": results}


@tools.tool(max_concurrency=32)
async def nested(levels: Annotated[int, Field(ge=0, le=10)], ctx: Context) -> dict[str, Any]:
    """Delegate to itself ``levels`` deep: each level runs one child of the next."""
    if levels == 0:
        return {"levels": 0}
    async with Fleet.of(ctx) as fleet:
        below = await fleet.run("nested", {"levels": levels - 1})
    return {"levels": levels, "below": below}


def build(settings: WorkerSettings | None = None) -> Worker:
    return Worker("delegating", tools=tools, settings=settings)


if __name__ == "__main__":
    main(build, prog="python -m tests.e2e.delegating_worker")
