"""Single keys from the terminal, for ``fleet top``: stdin in cbreak mode, read by the loop.

Cbreak (not raw) mode: keys arrive one at a time without echo, while Ctrl-C still raises
SIGINT and output keeps its newline translation. The terminal's settings are restored when
the block ends, however it ends.

    with Keys() as keys:
        key = await keys.get()      # "up", "down", "enter", "esc" or the character
"""

from __future__ import annotations

import asyncio
import os
import sys
import termios
import tty
from types import TracebackType
from typing import Any

__all__ = ["Keys", "parse"]

_SEQUENCES = {
    "\x1b[A": "up",
    "\x1b[B": "down",
    "\x1bOA": "up",
    "\x1bOB": "down",
    "\x1b[5~": "pageup",
    "\x1b[6~": "pagedown",
    "\x1b[H": "home",
    "\x1b[F": "end",
    "\r": "enter",
    "\n": "enter",
}


def parse(data: str) -> list[str]:
    """The keys in one read: escape sequences by name, anything else by character."""
    keys: list[str] = []
    i = 0
    while i < len(data):
        for seq, name in _SEQUENCES.items():
            if data.startswith(seq, i):
                keys.append(name)
                i += len(seq)
                break
        else:
            if data[i] == "\x1b" and i + 1 < len(data) and data[i + 1] in "[O":
                end = i + 2  # an unknown sequence: skip it whole (up to its final byte)
                while end < len(data) and not data[end].isalpha() and data[end] != "~":
                    end += 1
                i = end + 1
                continue
            keys.append("esc" if data[i] == "\x1b" else data[i])
            i += 1
    return keys


class Keys:
    """Keys typed on stdin, queued by the running event loop; a no-op off a terminal."""

    def __init__(self) -> None:
        self.fd = sys.stdin.fileno() if sys.stdin is not None else -1
        self.active = self.fd >= 0 and os.isatty(self.fd)
        self._saved: list[Any] | None = None
        self._queue: asyncio.Queue[str] = asyncio.Queue()

    def __enter__(self) -> Keys:
        if self.active:
            self._saved = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd)
            asyncio.get_running_loop().add_reader(self.fd, self._read)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._saved is not None:
            asyncio.get_running_loop().remove_reader(self.fd)
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)
            self._saved = None

    def _read(self) -> None:
        try:
            data = os.read(self.fd, 1024)
        except OSError:
            data = b""
        if not data:  # the terminal went away: stop reading, as if q was typed
            asyncio.get_running_loop().remove_reader(self.fd)
            self._queue.put_nowait("q")
            return
        for key in parse(data.decode(errors="replace")):
            self._queue.put_nowait(key)

    async def get(self) -> str:
        return await self._queue.get()
