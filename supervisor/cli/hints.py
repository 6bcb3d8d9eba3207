"""What the CLI tells people beyond the API's own words: what to do about an auth error, and
the "Examples:" block of each command's ``--help``."""

from __future__ import annotations

from supervisor.client import ApiError

__all__ = ["error_line", "examples"]

_SET_TOKEN = "set FLEET_TOKEN (or --token) to a token the supervisor accepts"


def error_line(exc: ApiError) -> str:
    """The one line a failed call prints: the API's code and message, and for 401/403 what
    to do about it in the CLI's terms (FLEET_TOKEN, --token) rather than HTTP headers'."""
    if exc.status == 401:
        reason = exc.details.get("reason")
        why = "no token was sent" if exc.code == "UNAUTHORIZED" else "the token is not accepted"
        return f"{exc.code}: {why}{f' ({reason})' if reason else ''}: {_SET_TOKEN}"
    if exc.status == 403 and exc.code == "INSUFFICIENT_SCOPE":
        scope = exc.details.get("required_scope")
        if scope:
            return (
                f"{exc.code}: token lacks scope {scope}: set FLEET_TOKEN (or --token) to a "
                f"token with {scope}"
            )
    return exc.one_line()


def examples(*lines: str) -> str:
    """An epilog that ``--help`` prints as written (``\\b``: click does not rewrap it)."""
    return "Examples:\n\n\b\n" + "\n".join(f"  {line}" for line in lines)
