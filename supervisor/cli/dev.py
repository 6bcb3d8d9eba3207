"""``fleet dev``: the demo's fleet — the example workers and an embedded supervisor — left
running on this machine until Ctrl-C, with every URL printed, to develop and try things on.

Ctrl-C (or SIGTERM) is how it is meant to stop, as for ``fleet supervisor``: it stops every
process it started and exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from supervisor.cli.base import Exit, JsonOpt, app, die, print_json, state
from supervisor.cli.hints import examples
from supervisor.cli.procs import ChildProcess, reap, start_fleet

__all__: list[str] = []


def _urls(url: str, children: dict[str, ChildProcess]) -> dict[str, object]:
    return {
        "supervisor": url,
        "docs": f"{url}/docs",
        "mcp": f"{url}/mcp",
        "workers": {name: child.url for name, child in children.items()},
    }


def _announce(out: Console, urls: dict[str, object], redis_url: str, as_json: bool) -> None:
    if as_json:
        print_json({**urls, "store": redis_url})
        return
    workers = urls["workers"]
    assert isinstance(workers, dict)
    store = "memory store" if redis_url.startswith("memory://") else redis_url
    lines = [
        f"fleet dev: a supervisor ({store}) and workers {', '.join(workers)}; Ctrl-C stops all",
        f"  supervisor   {urls['supervisor']}",
        f"  API docs     {urls['docs']}",
        f"  MCP (fleet)  {urls['mcp']}",
        *(f"  worker {name:<5} {mcp}" for name, mcp in workers.items()),
        "",
        "In another shell:",
        f"  export FLEET_URL={urls['supervisor']}",
        "  fleet submit sleep seconds=3 --watch",
        "  fleet workflow run examples/flow.json --input text=@examples/article.txt --watch",
    ]
    out.print("\n".join(lines), markup=False, highlight=False)


@app.command(
    epilog=examples(
        "fleet dev                       # then, in another shell: export FLEET_URL=...",
        "fleet dev --port 8700           # the supervisor on a fixed port",
        "fleet dev --redis-url redis://127.0.0.1:6379/0",
        "fleet dev --json | head -1      # the URLs as one JSON line",
    )
)
def dev(
    ctx: typer.Context,
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="The supervisor's port (0: a free one).")
    ] = 0,
    redis_url: Annotated[
        str, typer.Option(help="The supervisor's store: memory:// (embedded) or redis://…")
    ] = "memory://",
    json_out: JsonOpt = False,
) -> None:
    """Run the example workers and a supervisor here until Ctrl-C; print their URLs.

    The same fleet as fleet demo, without the batch: use it from other shells (fleet
    submit, fleet top, the API docs, an MCP host on the supervisor's /mcp). Ctrl-C stops
    every process it started and exits 0.
    """
    st = state(ctx)
    as_json = st.wants_json(json_out)
    spawned: set[int] = set()

    async def main() -> None:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        with tempfile.TemporaryDirectory(prefix="fleet-dev-") as tmp:
            async with contextlib.AsyncExitStack() as stack:
                if not as_json:
                    st.err.print(
                        "starting workers echo, data, text and a supervisor…", markup=False
                    )
                url, children = await start_fleet(
                    Path(tmp), spawned, stack, redis_url=redis_url, port=port
                )
                _announce(st.out, _urls(url, children), redis_url, as_json)
                await _until_a_child_exits(children)

    try:
        asyncio.run(main())
    except (KeyboardInterrupt, asyncio.CancelledError):
        reap(spawned)
        if not as_json:
            st.err.print("stopped: every process fleet dev started is gone", markup=False)
        raise typer.Exit(int(Exit.OK)) from None
    except (RuntimeError, OSError) as exc:
        reap(spawned)
        what = f"port {port} is taken" if isinstance(exc, OSError) and port else str(exc)
        die(f"fleet dev could not start: {what}", Exit.FAILED, st.err)
    reap(spawned)


async def _until_a_child_exits(children: dict[str, ChildProcess]) -> None:
    """Serve until Ctrl-C; a worker that dies on its own ends ``fleet dev`` with its log."""
    waits = {asyncio.ensure_future(c.process.wait()): name for name, c in children.items()}
    try:
        done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
    name = waits[next(iter(done))]
    last = children[name].log_tail(1)
    raise RuntimeError(
        f"worker {name} exited with {children[name].process.returncode}"
        + (f": {last}" if last else "")
    )
