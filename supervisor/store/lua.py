"""The Lua scripts that make each multi-key store change atomic, read from ``scripts/*.lua``.

Status, capability, correlation_id and fence are stored raw in the job hash so these scripts
can read them; every other field is JSON. Event-log entry ids are ``{seq}-1``.

Fencing: ``fence`` grows by one each time a supervisor takes or reclaims the job (ACQUIRE).
Every write that advances or ends a job passes the holder's token; a token that is not the
current one is refused (-2), so a holder that was paused past its lease can no longer write.
Returns: the last event's seq (>= 0), -1 refused by status (or gone), -2 refused by fence.
Each file's header names its KEYS, ARGV and replies.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

NAMES = ("SUBMIT", "ACQUIRE", "TRANSITION", "APPEND", "REQUEUE", "ADMIT")

SOURCES: dict[str, str] = {
    name: files(__package__).joinpath("scripts", f"{name.lower()}.lua").read_text("utf-8")
    for name in NAMES
}
"""Each script's Lua source by name."""


WAKE = """\
-- {name}, then the PUBLISH that wakes other replicas' watchers, in one call: the last two ARGV
-- are the channel and the message, taken off before the script sees ARGV.
local message = table.remove(ARGV)
local channel = table.remove(ARGV)
local out = (function()
{source}
end)()
redis.call('publish', channel, message)
return out
"""


def waking(source: str, name: str) -> str:
    """``source`` that publishes a wake-up after it ran: one command instead of a pipeline of
    EVALSHA and PUBLISH (each pipeline costs redis-py ~50 µs of CPU more than one command)."""
    return WAKE.format(name=name, source=source.rstrip())


def register(client: Any, *, wake: bool = False) -> dict[str, Any]:
    """Every script registered on ``client`` (run by EVALSHA, loaded again after a flush);
    ``wake``: their :func:`waking` forms."""
    return {
        name: client.register_script(waking(source, name) if wake else source)
        for name, source in SOURCES.items()
    }
