from typing import Annotated

from pydantic import Field

from workers.kit import Context, ProgressReporter, Toolset, Worker, WorkerSettings, main

tools = Toolset()


@tools.tool(idempotent=True, read_only=True, estimated_duration_ms=5)
async def greet(
    name: Annotated[str, Field(max_length=100, pattern=r"\S")],
    ctx: Context,
    times: Annotated[int, Field(ge=1, le=10)] = 1,
) -> dict[str, str]:
    """Greet someone. Call it when you need a greeting; needs a name (and optionally how
    many times, 1-10); returns {"greeting": "..."}."""
    progress = ProgressReporter(ctx, total=times)
    for _ in range(times):
        await progress.step(message=f"greeted {name}")
    return {"greeting": " ".join([f"Hello, {name.strip()}!"] * times)}


def build(settings: WorkerSettings | None = None) -> Worker:
    return Worker("hello", tools=tools, settings=settings, version="1.0.0")


if __name__ == "__main__":
    main(build, prog="python examples/hello_worker.py")
