"""A real pseudo-terminal for CLI tests: the program under ``pexpect``, the screen it draws
kept by ``pyte`` as a person would see it.

A character drawn past the last column — a row that would wrap — is counted by the screen
itself, so "nothing is wider than the terminal" is measured, not assumed.
"""

from __future__ import annotations

import copy
import sys
import termios
from collections.abc import Callable

import pexpect
import pyte
from pyte import modes as mo

from tests.helpers import wait_until_sync
from tests.processes import ROOT, process_env

__all__ = ["StrictScreen", "Term"]


class StrictScreen(pyte.Screen):
    """A screen that counts characters drawn where the cursor sits past the last column,
    and that has the alternate screen (mode 1049) pyte lacks: entering it saves the cursor and
    the normal screen's contents, leaving it brings both back, as a terminal does."""

    ALT_SCREEN = 1049

    def __init__(self, columns: int, lines: int) -> None:
        super().__init__(columns, lines)
        self.overflows: list[str] = []
        self._normal: object = None

    @property
    def on_normal(self) -> bool:
        return self._normal is None

    def draw(self, data: str) -> None:
        for char in data:
            if self.cursor.x >= self.columns:
                self.overflows.append(f"{char!r} after: {self.display[self.cursor.y]!r}")
            super().draw(char)

    def set_mode(self, *modes: int, **kwargs: object) -> None:
        if kwargs.get("private") and self.ALT_SCREEN in modes and self._normal is None:
            self.save_cursor()
            self._normal = copy.deepcopy(self.buffer)
            self.erase_in_display(2)
        super().set_mode(*modes, **kwargs)

    def reset_mode(self, *modes: int, **kwargs: object) -> None:
        super().reset_mode(*modes, **kwargs)
        if kwargs.get("private") and self.ALT_SCREEN in modes and self._normal is not None:
            self.buffer.clear()
            self.buffer.update(self._normal)
            self._normal = None
            self.restore_cursor()
            self.dirty.update(range(self.lines))


class Term:
    """A command in a pseudo-terminal of ``columns``×``lines``, and the screen it draws."""

    def __init__(self, args: list[str], url: str, columns: int = 80, lines: int = 24) -> None:
        self.screen = StrictScreen(columns, lines)
        self.stream = pyte.ByteStream(self.screen)
        env = process_env(FLEET_URL=url, TERM="xterm-256color", PYTHONPATH=str(ROOT))
        env.pop("COLUMNS", None)
        env.pop("LINES", None)
        self.child = pexpect.spawn(
            sys.executable,
            ["-m", "supervisor", *args],
            env=env,
            cwd=str(ROOT),
            dimensions=(lines, columns),
        )

    @property
    def text(self) -> str:
        return "\n".join(line.rstrip() for line in self.screen.display)

    def logical_lines(self) -> list[str]:
        """The screen's non-empty lines, a line the terminal wrapped (it filled the width)
        joined with its continuation: what the program printed as one line is one here."""
        out: list[str] = []
        wrapped = False
        for row in self.screen.display:
            if wrapped and out:
                out[-1] += row.rstrip()
            elif row.strip():
                out.append(row.rstrip())
            wrapped = len(row.rstrip()) == self.screen.columns
        return out

    def pump(self) -> None:
        try:
            while True:
                self.stream.feed(self.child.read_nonblocking(65536, timeout=0.05))
        except pexpect.TIMEOUT:
            pass
        except pexpect.EOF:
            pass

    def wait_for(self, what: str | Callable[[str], object], timeout: float = 30) -> object:
        """Until the screen shows ``what`` (text, or a predicate of the screen's text)."""

        def shown() -> object:
            self.pump()
            return what in self.text if isinstance(what, str) else what(self.text)

        try:
            return wait_until_sync(shown, timeout=timeout, message=f"{what!r} on the screen")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the screen:\n{self.text}") from None

    def send(self, keys: str) -> None:
        self.child.send(keys)

    def exit_code(self, timeout: float = 20) -> int:
        self.child.expect(pexpect.EOF, timeout=timeout)
        if isinstance(self.child.before, bytes):  # what it printed last, read by expect
            self.stream.feed(self.child.before)
        self.modes_after = termios.tcgetattr(self.child.child_fd)[3]  # the line's, as left
        self.child.close()
        status = self.child.exitstatus
        return int(status if status is not None else 128 + (self.child.signalstatus or 0))

    def left_clean(self) -> bool:
        """The terminal as it was: echo and line mode back, normal screen, cursor shown."""
        line_mode = self.modes_after & termios.ECHO and self.modes_after & termios.ICANON
        return bool(line_mode) and self.screen.on_normal and mo.DECTCEM in self.screen.mode

    def close(self) -> None:
        if self.child.isalive():
            self.child.terminate(force=True)
