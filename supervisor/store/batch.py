"""Script calls sent together: one pipelined round trip for the writes of many jobs.

Under load many jobs reach a store write in the same turn of the event loop (a burst of
results, a batch of deliveries). Each EVALSHA alone costs redis-py ~200 µs of CPU, most of it
per command rather than per byte; a pipeline of several costs little more than one. So each
write joins the calls made in the same turn and the last of them sends them all: no timer, no
added wait — a call alone goes out at the end of its turn as a plain EVALSHA.

Each call gets its own answer or its own error (a script error is that call's alone); a
connection error fails every call of the pipeline, as it would have failed each of them. A
``NOSCRIPT`` answer (a flushed or restarted Redis) means that call did not run: the script is
loaded and the call sent again, once. Order is kept within the pipeline, and one task's calls
are sequential anyway (each awaits its answer).
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.exceptions import NoScriptError, ResponseError

__all__ = ["ScriptBatch", "evalsha_many"]

Call = tuple[Any, list[str], list[str]]
"""A registered script (``.sha``, ``.script``), its keys and its arguments."""


async def evalsha_many(client: Any, calls: list[Call]) -> list[Any]:
    """Run every call, pipelined when there are several: each call's answer or exception.
    Connection errors are raised."""
    out: list[Any] = [None] * len(calls)
    todo = list(range(len(calls)))
    loaded: set[str] = set()
    while todo:
        if len(todo) == 1:
            script, keys, args = calls[todo[0]]
            try:
                answers = [await client.evalsha(script.sha, len(keys), *keys, *args)]
            except ResponseError as exc:  # the call's own answer, as in a pipeline
                answers = [exc]
        else:
            async with client.pipeline(transaction=False) as pipe:
                for i in todo:
                    script, keys, args = calls[i]
                    pipe.evalsha(script.sha, len(keys), *keys, *args)
                answers = await pipe.execute(raise_on_error=False)
        again = []
        for i, answer in zip(todo, answers, strict=True):
            script = calls[i][0]
            if isinstance(answer, NoScriptError) and script.sha not in loaded:
                again.append(i)  # did not run: load the script and send it once more
            else:
                out[i] = answer
        for script in {calls[i][0].sha: calls[i][0] for i in again}.values():
            await client.script_load(script.script)
            loaded.add(script.sha)
        todo = again
    return out


class ScriptBatch:
    """Collects the script calls of one event-loop turn and sends them in one pipeline."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._pending: list[tuple[Call, asyncio.Future[Any]]] = []
        self._sending: set[asyncio.Task[None]] = set()

    async def run(self, script: Any, keys: list[str], args: list[str]) -> Any:
        """The script's answer; raises its error, or the connection's."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append(((script, keys, args), future))
        if len(self._pending) == 1:  # the first of this turn sends them all, at its end
            loop.call_soon(self._send)
        return await future

    def _send(self) -> None:
        pending, self._pending = self._pending, []
        task = asyncio.get_running_loop().create_task(self._run(pending))
        self._sending.add(task)
        task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sending.discard(task)
        if not task.cancelled():
            task.exception()  # handed to the callers already

    async def _run(self, pending: list[tuple[Call, asyncio.Future[Any]]]) -> None:
        try:
            answers = await evalsha_many(self._client, [call for call, _ in pending])
        except asyncio.CancelledError:  # the loop is closing: so are the calls
            for _, future in pending:
                future.cancel()
            raise
        except Exception as exc:  # the connection: every call of the pipeline failed
            for _, future in pending:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), answer in zip(pending, answers, strict=True):
            if future.done():  # its caller was cancelled; the write was sent all the same
                continue
            if isinstance(answer, Exception):
                future.set_exception(answer)
            else:
                future.set_result(answer)
