"""The demo's workflow over the text worker: split a text into chunks (``chunk_text``), find
each chunk's keywords (``extract_keywords``, a map step: one child job per chunk), then
summarise the whole text (``summarize``) once every chunk is done.

``examples/flow.json`` is the same workflow as a file (without the text, given with
``--input text=@examples/article.txt``); ``tests/cli/test_workflow_view.py`` keeps the two
alike.
"""

from __future__ import annotations

from typing import Any

from supervisor.cli.batch import DemoJob

__all__ = ["FLOW_LABEL", "flow_job", "flow_spec"]

FLOW_LABEL = "workflow keywords"

_STEPS: dict[str, Any] = {
    "split": {
        "capability": "chunk_text",
        "input": {"text": "$.input.text", "max_chars": "$.input.max_chars"},
    },
    "keywords": {
        "capability": "extract_keywords",
        "map": "$.steps.split.result.chunks",
        "concurrency": 4,
        "input": {"text": "$.item.text", "top_n": "$.input.top_n"},
    },
    "summary": {
        "capability": "summarize",
        "after": ["keywords"],
        "input": {"text": "$.input.text", "max_sentences": 2},
    },
}
_OUTPUT = {
    "chunks": "$.steps.split.result.count",
    "top_keyword_per_chunk": "$.steps.keywords.results[*].keywords[0].term",
    "summary": "$.steps.summary.result.summary",
}


def flow_spec(text: str | None = None) -> dict[str, Any]:
    """The workflow's spec; with ``text``, ready to submit."""
    spec_input: dict[str, Any] = {"max_chars": 400, "top_n": 5}
    if text is not None:
        spec_input["text"] = text
    return {"name": "keywords", "input": spec_input, "steps": _STEPS, "output": _OUTPUT}


def _describe(result: Any) -> str:
    terms = list(dict.fromkeys(result["top_keyword_per_chunk"]))
    return f"{result['chunks']} chunks → keywords ({', '.join(terms[:3])}) → summary"


def flow_job(text: str) -> DemoJob:
    """The workflow as one more job of the demo's batch (it is one: its steps are children)."""
    return DemoJob(FLOW_LABEL, "fleet:workflow", flow_spec(text), describe=_describe)
