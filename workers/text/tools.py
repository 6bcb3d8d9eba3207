"""The text worker's tools. Descriptions are written for an LLM choosing a tool."""

from __future__ import annotations

import math
from collections import Counter
from typing import Annotated

from pydantic import BaseModel, Field

from workers.kit import Context, Fleet, ProgressReporter, Toolset, invalid, normalize_text
from workers.text.analysis import STOPWORDS, paragraph_spans, sentences, syllables, words
from workers.text.chunking import Respect, chunk_spans

__all__ = ["MAX_TEXT", "tools"]

MAX_TEXT = 2_000_000
"""Characters per call; more answers TOO_LARGE."""
_BLOCK = 200
"""Sentences per progress report in the analysis tools."""
_WPM = 230

tools = Toolset()

Text = Annotated[str, Field(min_length=1, description=f"The text (at most {MAX_TEXT} chars).")]


def _clean(text: str) -> str:
    clean = normalize_text(text, "text", max_length=MAX_TEXT)
    if not clean.strip():
        invalid("text", "is blank", "Pass some text.")
    return clean


class TextStats(BaseModel):
    characters: int
    characters_no_whitespace: int
    words: int
    unique_words: int
    sentences: int
    paragraphs: int
    lines: int
    avg_word_length: float
    avg_sentence_words: float
    lexical_diversity: float = Field(description="unique_words / words (0-1).")
    reading_time_s: float = Field(description=f"At {_WPM} words per minute.")
    flesch_reading_ease: float | None = Field(
        description="English readability: higher is easier (60-70 is plain English)."
    )


@tools.tool(idempotent=True, read_only=True, estimated_duration_ms=50)
async def text_stats(text: Text, ctx: Context) -> TextStats:
    """Measure a text: characters, words, unique words, sentences, paragraphs, lines,
    average word and sentence length, lexical diversity, reading time and the Flesch
    reading-ease score (English). Call it to size or assess a text before processing it.
    Needs `text`; returns the figures as one object. Errors: INVALID_INPUT for blank text or
    control characters; TOO_LARGE past the size limit."""
    text = _clean(text)
    sents = sentences(text)
    progress = ProgressReporter(ctx, total=max(1, math.ceil(len(sents) / _BLOCK)))
    n_words = n_syllables = n_letters = 0
    unique: set[str] = set()
    for start in range(0, max(1, len(sents)), _BLOCK):
        for sentence in sents[start : start + _BLOCK]:
            found = words(sentence.text)
            n_words += len(found)
            n_letters += sum(len(w) for w in found)
            n_syllables += sum(syllables(w) for w in found)
            unique.update(w.lower() for w in found)
        await progress.step(message=f"analysed {min(start + _BLOCK, len(sents))} sentences")
    flesch = None
    if n_words and sents:
        flesch = round(206.835 - 1.015 * (n_words / len(sents)) - 84.6 * (n_syllables / n_words), 2)
    return TextStats(
        characters=len(text),
        characters_no_whitespace=sum(1 for c in text if not c.isspace()),
        words=n_words,
        unique_words=len(unique),
        sentences=len(sents),
        paragraphs=len(paragraph_spans(text)),
        lines=text.count("\n") + 1,
        avg_word_length=round(n_letters / n_words, 3) if n_words else 0.0,
        avg_sentence_words=round(n_words / len(sents), 3) if sents else 0.0,
        lexical_diversity=round(len(unique) / n_words, 4) if n_words else 0.0,
        reading_time_s=round(n_words / _WPM * 60, 1),
        flesch_reading_ease=flesch,
    )


class Keyword(BaseModel):
    term: str
    score: float = Field(description="Relative weight, 1.0 for the strongest term.")
    count: int


class Keywords(BaseModel):
    keywords: list[Keyword]


@tools.tool(idempotent=True, read_only=True, estimated_duration_ms=100)
async def extract_keywords(
    text: Text,
    ctx: Context,
    top_n: Annotated[int, Field(ge=1, le=100)] = 10,
    max_words: Annotated[int, Field(ge=1, le=4, description="Longest phrase, in words.")] = 2,
) -> Keywords:
    """Find the words and short phrases that best characterise a text, by frequency of
    non-stopword terms (English stopwords), favouring multi-word phrases. Call it to tag,
    index or quickly grasp what a text is about. Needs `text`; optionally `top_n` (1-100,
    default 10) and `max_words` per phrase (1-4, default 2). Returns keywords ordered by
    score, each with its count. Deterministic: ties keep first-appearance order."""
    text = _clean(text)
    sents = sentences(text)
    counts: Counter[str] = Counter()
    first_seen: dict[str, int] = {}
    progress = ProgressReporter(ctx, total=max(1, math.ceil(len(sents) / _BLOCK)))
    for start in range(0, max(1, len(sents)), _BLOCK):
        for sentence in sents[start : start + _BLOCK]:
            run: list[str] = []
            for word in [*words(sentence.text.lower()), ""]:
                if word and word not in STOPWORDS and not word.isdigit() and len(word) > 1:
                    run.append(word)
                    continue
                for n in range(1, max_words + 1):
                    for i in range(len(run) - n + 1):
                        term = " ".join(run[i : i + n])
                        counts[term] += 1
                        first_seen.setdefault(term, len(first_seen))
                run = []
        await progress.step(message=f"scanned {min(start + _BLOCK, len(sents))} sentences")
    scored = {
        term: count * len(term.split()) for term, count in counts.items()
        if len(term.split()) == 1 or count > 1  # a phrase seen once is not a keyphrase
    }  # fmt: skip
    ranked = sorted(scored, key=lambda t: (-scored[t], first_seen[t]))[:top_n]
    best = scored[ranked[0]] if ranked else 1
    return Keywords(
        keywords=[
            Keyword(term=t, score=round(scored[t] / best, 4), count=counts[t]) for t in ranked
        ]
    )


class ScoredSentence(BaseModel):
    index: int = Field(description="Position of the sentence in the text (0-based).")
    text: str
    score: float


class Summary(BaseModel):
    summary: str
    sentences: list[ScoredSentence] = Field(description="The chosen sentences, in text order.")
    total_sentences: int
    compression: float = Field(description="Summary length / text length (characters).")


@tools.tool(idempotent=True, read_only=True, estimated_duration_ms=100)
async def summarize(
    text: Text,
    ctx: Context,
    max_sentences: Annotated[int, Field(ge=1, le=50)] = 3,
) -> Summary:
    """Summarise a text extractively: pick its most representative sentences (scored by
    how frequent their content words are in the whole text) and return them in their
    original order; nothing is rewritten or invented. Call it to shorten long text for
    reading or for another step. Needs `text`; optionally `max_sentences` (1-50, default 3).
    Returns the summary, the chosen sentences with index and score, and the compression."""
    text = _clean(text)
    sents = sentences(text)
    freq: Counter[str] = Counter(
        w for w in words(text.lower()) if w not in STOPWORDS and len(w) > 1
    )
    top = max(freq.values(), default=1)
    scored: list[ScoredSentence] = []
    progress = ProgressReporter(ctx, total=max(1, math.ceil(len(sents) / _BLOCK)))
    for start in range(0, max(1, len(sents)), _BLOCK):
        for s in sents[start : start + _BLOCK]:
            content = [w for w in words(s.text.lower()) if w in freq]
            value = sum(freq[w] for w in content) / top / math.sqrt(max(1, len(content)))
            scored.append(ScoredSentence(index=s.index, text=s.text, score=round(value, 4)))
        await progress.step(message=f"scored {min(start + _BLOCK, len(sents))} sentences")
    chosen = sorted(scored, key=lambda s: (-s.score, s.index))[:max_sentences]
    chosen.sort(key=lambda s: s.index)
    summary = " ".join(s.text for s in chosen)
    return Summary(
        summary=summary,
        sentences=chosen,
        total_sentences=len(sents),
        compression=round(len(summary) / len(text), 4),
    )


class Chunk(BaseModel):
    index: int
    start: int = Field(description="Offset of the first character in the text.")
    end: int = Field(description="Offset just past the last character.")
    text: str
    words: int


class Chunks(BaseModel):
    chunks: list[Chunk]
    count: int


@tools.tool(idempotent=True, read_only=True, estimated_duration_ms=100)
async def chunk_text(
    text: Text,
    ctx: Context,
    max_chars: Annotated[int, Field(ge=50, le=100_000)] = 1000,
    overlap: Annotated[int, Field(ge=0, le=50_000)] = 0,
    respect: Respect = "sentence",
) -> Chunks:
    """Split a text into chunks of at most `max_chars` characters, breaking at paragraph,
    sentence or word boundaries (`respect`, default "sentence") and optionally repeating up
    to `overlap` characters of context between neighbours. Call it to prepare text for
    embedding, indexing or a model with a small context window. Needs `text`; optionally
    `max_chars` (50-100000, default 1000), `overlap` (less than half of max_chars) and
    `respect` ("paragraph", "sentence" or "word"). Returns the chunks with their character
    offsets in the text and word counts; reports progress per chunk."""
    text = _clean(text)
    if overlap * 2 > max_chars:
        invalid("overlap", "must be at most half of max_chars", "Lower overlap.")
    spans = list(chunk_spans(text, max_chars=max_chars, overlap=overlap, respect=respect))
    progress = ProgressReporter(ctx, total=len(spans))
    out: list[Chunk] = []
    for index, (start, end) in enumerate(spans):
        piece = text[start:end]
        out.append(Chunk(index=index, start=start, end=end, text=piece, words=len(words(piece))))
        await progress.step(message=f"chunk {index + 1}/{len(spans)}")
    return Chunks(chunks=out, count=len(out))


class ChunkedKeywords(BaseModel):
    keywords: list[Keyword]
    chunks: int = Field(description="How many chunks the text was split into.")
    child_jobs: list[str] = Field(
        description="The ids of the extract_keywords child jobs, in the order submitted."
    )


@tools.tool(idempotent=True, read_only=True, estimated_duration_ms=1000)
async def keywords_by_chunk(
    text: Text,
    ctx: Context,
    max_chars: Annotated[int, Field(ge=50, le=100_000)] = 2000,
    concurrency: Annotated[int, Field(ge=1, le=64)] = 8,
    top_n: Annotated[int, Field(ge=1, le=100)] = 10,
) -> ChunkedKeywords:
    """Find the keywords of a long text by splitting it into chunks of at most `max_chars`
    characters (at sentence boundaries), running extract_keywords on every chunk as child
    jobs through the supervisor (at most `concurrency` at a time, on any worker that offers
    it) and merging their counts. Call it for texts too long for one extract_keywords call to
    be quick. Needs `text`; optionally `max_chars` (50-100000, default 2000), `concurrency`
    (1-64, default 8) and `top_n` (1-100, default 10). Returns the merged keywords, the
    number of chunks and the child job ids; reports progress per finished chunk. Only works
    when called by a supervisor (or with FLEET_SUPERVISOR_URL set on the worker)."""
    text = _clean(text)
    spans = chunk_spans(text, max_chars=max_chars, overlap=0, respect="sentence")
    pieces = [text[start:end] for start, end in spans]
    inputs = [{"text": piece, "top_n": 100} for piece in pieces if piece.strip()]
    progress = ProgressReporter(ctx, total=len(inputs))
    async with Fleet.of(ctx) as fleet:
        children = await fleet.map(
            "extract_keywords", inputs, concurrency=concurrency, progress=progress
        )
    counts: Counter[str] = Counter()
    first_seen: dict[str, int] = {}
    for found in children:
        for keyword in found["keywords"]:
            counts[keyword["term"]] += keyword["count"]
            first_seen.setdefault(keyword["term"], len(first_seen))
    scored = {term: count * len(term.split()) for term, count in counts.items()}
    ranked = sorted(scored, key=lambda t: (-scored[t], first_seen[t]))[:top_n]
    best = scored[ranked[0]] if ranked else 1
    return ChunkedKeywords(
        keywords=[
            Keyword(term=t, score=round(scored[t] / best, 4), count=counts[t]) for t in ranked
        ],
        chunks=len(inputs),
        child_jobs=fleet.submitted,
    )
