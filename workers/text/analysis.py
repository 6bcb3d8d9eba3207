"""Plain-Python text analysis: tokens, sentences, paragraphs, syllables, stopwords.

Deterministic and language-light: word and sentence splitting work for any language that
separates words with spaces; stopwords and the readability score are English.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "STOPWORDS",
    "Sentence",
    "paragraph_spans",
    "sentences",
    "syllables",
    "words",
]

_WORD = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*", re.UNICODE)
_SENTENCE_END = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s|$)|\n\s*\n")
_PARAGRAPH = re.compile(r"\n\s*\n")
_VOWELS = re.compile(r"[aeiouy]+")

_STOPWORD_TEXT = """
    a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is it
    its itself just me more most my myself no nor not now of off on once only or other our ours
    ourselves out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours yourself
    yourselves also may might must shall us one two many much like get got via per within
    without upon yet"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())


@dataclass(frozen=True, slots=True)
class Sentence:
    index: int
    start: int
    end: int
    text: str


def words(text: str) -> list[str]:
    return _WORD.findall(text)


def sentences(text: str) -> list[Sentence]:
    """Sentences with their character offsets in ``text`` (whitespace trimmed)."""
    out: list[Sentence] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        _add(out, text, start, match.end())
        start = match.end()
    _add(out, text, start, len(text))
    return out


def _add(out: list[Sentence], text: str, start: int, end: int) -> None:
    chunk = text[start:end]
    stripped = chunk.strip()
    if not stripped or not _WORD.search(stripped):
        return
    lead = len(chunk) - len(chunk.lstrip())
    begin = start + lead
    out.append(Sentence(len(out), begin, begin + len(stripped), stripped))


def paragraph_spans(text: str) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    start = 0
    for match in _PARAGRAPH.finditer(text):
        if text[start : match.start()].strip():
            spans.append((start, match.start()))
        start = match.end()
    if text[start:].strip():
        spans.append((start, len(text)))
    return spans


def syllables(word: str) -> int:
    """English syllable estimate (vowel groups, silent final e), at least one."""
    lowered = word.lower()
    count = len(_VOWELS.findall(lowered))
    if lowered.endswith("e") and not lowered.endswith(("le", "ee")) and count > 1:
        count -= 1
    return max(1, count)
