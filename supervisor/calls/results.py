"""What a ``tools/call`` result means: its shape checked, its text, and the job's value."""

from __future__ import annotations

from typing import Any

from supervisor.calls import errors

__all__ = ["check", "result_value", "texts"]


def check(result: dict[str, Any], url: str) -> None:
    """Raise :class:`shared.errors.WorkerBadResponse` unless the result is a valid MCP one."""
    content = result.get("content", [])
    structured = result.get("structuredContent")
    if not isinstance(content, list) or not all(
        isinstance(block, dict) and isinstance(block.get("type"), str) for block in content
    ):
        raise errors.bad(url, "tools/call result has malformed content")
    if structured is not None and not isinstance(structured, dict):
        raise errors.bad(url, "structuredContent is not an object")


def texts(result: dict[str, Any]) -> str:
    """The result's text blocks, joined by newlines."""
    return "\n".join(
        str(block.get("text", ""))
        for block in result.get("content") or []
        if isinstance(block, dict) and block.get("type") == "text"
    )


def result_value(
    result: dict[str, Any], *, wrapped: bool
) -> tuple[Any, list[dict[str, Any]] | None]:
    """The job's ``(result, content)`` from a tool's result.

    ``result``: ``structuredContent`` (a FastMCP-wrapped primitive unwrapped), else the text
    blocks joined by newlines, else None. ``content``: every content block, kept whenever it
    holds more than ``result`` already says (an image, audio, a resource, a link, or text
    beside structured content other than its one serialised copy); else None.
    """
    blocks: list[dict[str, Any]] = result.get("content") or []
    structured = result.get("structuredContent")
    meta = result.get("_meta")
    wrap_meta = isinstance(meta, dict) and (meta.get("fastmcp") or {}).get("wrap_result")
    only_text = all(block.get("type") == "text" for block in blocks)
    if structured is not None:
        if (wrapped or wrap_meta) and set(structured) == {"result"}:
            value: Any = structured["result"]
        else:
            value = structured
        serialised_copy = len(blocks) == 1 and blocks[0].get("type") == "text"
        return value, None if (not blocks or serialised_copy) else blocks
    text = texts(result) if any(b.get("type") == "text" for b in blocks) else None
    return text, None if only_text else blocks
