"""What the CLI tells people beyond the API's own words: what to do about an auth error, and
the "Examples:" block of each command's ``--help``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # every command imports this module for its --help examples: keep it light
    from supervisor.client import ApiError

__all__ = ["auth_hint", "error_line", "examples"]

_SET_TOKEN = "set FLEET_TOKEN (or --token) to a token the supervisor accepts"


def auth_hint(status: int, code: str, message: str, details: dict[str, Any]) -> str | None:
    """A refused token (401/403) as what to do, in the CLI's terms (FLEET_TOKEN, --token)
    rather than HTTP headers'; None for any other answer."""
    if status == 401:
        why = "no token was sent" if code == "UNAUTHORIZED" else message
        return f"{code}: {why}: {_SET_TOKEN}"
    scope = details.get("required_scope")
    if status == 403 and code == "INSUFFICIENT_SCOPE" and scope:
        return (
            f"{code}: token lacks scope {scope}: set FLEET_TOKEN (or --token) to a token "
            f"with {scope}"
        )
    return None


def error_line(exc: ApiError) -> str:
    """The one line a failed call prints: the API's code and message, or for a refused token
    what to do about it; an ambiguous short id lists the jobs it could mean."""
    line = auth_hint(exc.status, exc.code, exc.message, exc.details) or exc.one_line()
    if exc.code == "AMBIGUOUS_JOB_ID":
        candidates = [c for c in exc.details.get("candidates") or [] if isinstance(c, dict)]
        line += ": " + ", ".join(
            f"{str(c.get('id', ''))[:12]} ({c.get('capability')}, {c.get('status')})"
            for c in candidates
        )
    return line


def examples(*lines: str) -> str:
    """An epilog that ``--help`` prints as written (``\\b``: click does not rewrap it)."""
    return "Examples:\n\n\b\n" + "\n".join(f"  {line}" for line in lines)
