"""Split text into chunks of at most ``max_chars``, preferring natural boundaries.

Boundaries are tried in order of preference — paragraph ends, sentence ends, then
whitespace — and a level is used only when it fills at least half a chunk; otherwise the
next level is tried, and a word longer than a whole chunk is cut hard. Each chunk after
the first starts up to ``overlap`` characters before the previous one ended, on a word
boundary. Offsets always index the original text.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator
from typing import Literal

from workers.text.analysis import paragraph_spans, sentences

__all__ = ["Respect", "chunk_spans"]

Respect = Literal["paragraph", "sentence", "word"]
_SPACE = re.compile(r"\s+")


def _levels(text: str, respect: Respect) -> list[list[int]]:
    word_ends = sorted({m.start() for m in _SPACE.finditer(text)} | {len(text)})
    levels: list[list[int]] = []
    if respect == "paragraph":
        levels.append([end for _, end in paragraph_spans(text)])
    if respect in ("paragraph", "sentence"):
        levels.append([s.end for s in sentences(text)])
    levels.append(word_ends)
    return levels


def _best(boundaries: list[int], low: int, high: int) -> int | None:
    """The largest boundary in ``(low, high]``."""
    i = bisect.bisect_right(boundaries, high)
    if i and boundaries[i - 1] > low:
        return boundaries[i - 1]
    return None


def chunk_spans(
    text: str, *, max_chars: int, overlap: int, respect: Respect
) -> Iterator[tuple[int, int]]:
    """Yield ``(start, end)`` of each chunk, trimmed of surrounding whitespace."""
    levels = _levels(text, respect)
    word_starts = [m.end() for m in _SPACE.finditer(text)]
    pos = len(text) - len(text.lstrip())
    while pos < len(text):
        limit = pos + max_chars
        if limit >= len(text):
            end = len(text)
        else:
            end = limit
            for boundaries in levels:
                found = _best(boundaries, pos + max_chars // 2, limit)
                if found is not None:
                    end = found
                    break
        chunk = text[pos:end]
        start, stop = pos + len(chunk) - len(chunk.lstrip()), pos + len(chunk.rstrip())
        if stop > start:
            yield start, stop
        if end >= len(text):
            return
        nxt = end
        if overlap:
            i = bisect.bisect_left(word_starts, end - overlap)
            if i < len(word_starts) and pos < word_starts[i] < end:
                nxt = word_starts[i]
        # Skip whitespace so the next chunk starts on a word.
        while nxt < len(text) and text[nxt].isspace():
            nxt += 1
        pos = max(nxt, pos + 1)
