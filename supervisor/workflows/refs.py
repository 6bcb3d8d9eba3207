"""The reference language of a workflow: where a step's input comes from.

A JSON string that is exactly a reference is replaced by the value it names; every other
value is kept as it is. The language is a small path grammar over plain JSON data, parsed
here and walked by :func:`lookup`; nothing is ever evaluated::

    $.input.text                        the workflow's own input
    $.steps.split.result.chunks         a plain step's result
    $.steps.each.results                a map step's results, in item order
    $.steps.each.results[*].keywords    [*] projects the rest of the path over a list
    $.steps.split.result.chunks[0]      [N] an element ([-1]: the last)
    $.item.text   $.index               the item (and its index) in a map step's input
    $.input["odd key"]                  a key that is not a plain name, quoted
    $$5 a month                         a literal string: "$5 a month"

A projection keeps the nesting (``[*].a[*]`` is a list of lists). A name the data does not
hold, an index out of range or a step that was not run is an error, never a silent null.

    >>> lookup(parse("$.steps.s.results[*].n"), Scope(results={"s": [{"n": 1}, {"n": 2}]}))
    [1, 2]
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "ROOTS",
    "STAR",
    "Ref",
    "RefError",
    "Scope",
    "lookup",
    "parse",
    "refs_in",
    "resolve",
]

ROOTS = ("input", "steps", "item", "index")
MAX_REF_CHARS = 1000
"""Longest reference string."""

Root = Literal["input", "steps", "item", "index"]


class _Star:
    """``[*]``: the rest of the path, over each element of a list."""

    def __repr__(self) -> str:
        return "STAR"


STAR = _Star()
Segment = str | int | _Star

_NAME = re.compile(r"\.([A-Za-z_][A-Za-z0-9_-]*)")
_INDEX = re.compile(r"\[(-?\d{1,9})\]")
_QUOTED = re.compile(r"""\[(?:"([^"]*)"|'([^']*)')\]""")


class RefError(ValueError):
    """A reference that does not parse, or names what the data does not hold."""

    def __init__(self, reason: str, ref: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.ref = ref


@dataclass(frozen=True)
class Ref:
    """One parsed reference: its root, the step it reads (``$.steps`` only) and the path."""

    text: str
    root: Root
    step: str | None = None
    kind: Literal["result", "results"] | None = None
    """``result`` (a plain step's) or ``results`` (a map step's list), for ``$.steps``."""
    path: tuple[Segment, ...] = ()
    """The segments after the root (after ``.result``/``.results`` for a step)."""


@dataclass
class Scope:
    """What references may read while a step's input is resolved."""

    input: Any = None
    results: Mapping[str, Any] = field(default_factory=dict)
    """Each finished step's result (a map step's: the list of its items' results)."""
    item: Any = None
    index: int | None = None
    """The item's index in a map step; None outside one (then ``$.item`` is an error)."""


def is_ref(value: Any) -> bool:
    """A string that is a reference (``$`` first, but not the ``$$`` escape)."""
    return isinstance(value, str) and value.startswith("$") and not value.startswith("$$")


def parse(text: str) -> Ref:
    """The reference ``text`` spells; :class:`RefError` says what is wrong with it."""
    if len(text) > MAX_REF_CHARS:
        raise RefError(f"a reference has at most {MAX_REF_CHARS} characters", text[:64] + "…")
    if not text.startswith("$"):
        raise RefError("a reference starts with $", text)
    segments: list[Segment] = []
    pos = 1
    while pos < len(text):
        if m := _NAME.match(text, pos):
            segments.append(m.group(1))
        elif m := _INDEX.match(text, pos):
            segments.append(int(m.group(1)))
        elif text.startswith("[*]", pos):
            segments.append(STAR)
            pos += 3
            continue
        elif m := _QUOTED.match(text, pos):
            segments.append(m.group(1) if m.group(1) is not None else m.group(2))
        else:
            raise RefError(
                f"unexpected {text[pos : pos + 12]!r} at character {pos + 1}: a path goes on "
                'with .name, [N], [*] or ["key"]',
                text,
            )
        pos = m.end()
    return _rooted(text, segments)


def _rooted(text: str, segments: list[Segment]) -> Ref:
    if not segments or not isinstance(segments[0], str) or segments[0] not in ROOTS:
        raise RefError(
            "a reference begins with $.input, $.steps.NAME, $.item or $.index"
            + ("; write $$ for a literal $" if not segments else ""),
            text,
        )
    root: Root = segments[0]  # type: ignore[assignment]  # checked against ROOTS just above
    rest = tuple(segments[1:])
    if root == "index":
        if rest:
            raise RefError("$.index is a number: nothing follows it", text)
        return Ref(text, root)
    if root != "steps":
        return Ref(text, root, path=rest)
    if not rest or not isinstance(rest[0], str):
        raise RefError("$.steps is followed by a step's name: $.steps.NAME.result", text)
    if len(rest) < 2 or rest[1] not in ("result", "results"):
        raise RefError(
            f"after $.steps.{rest[0]} comes .result (a plain step) or .results (a map step)",
            text,
        )
    kind: Literal["result", "results"] = "result" if rest[1] == "result" else "results"
    return Ref(text, root, step=rest[0], kind=kind, path=rest[2:])


def refs_in(template: Any, where: str = "") -> Iterator[tuple[str, Ref]]:
    """Every reference in a JSON template, with the field it is at (``input.text``,
    ``input.parts[0]``); :class:`RefError` (its ``ref`` set to the field) for one that does not
    parse. Keys are never references: only string values are."""
    if isinstance(template, str):
        if is_ref(template):
            try:
                yield where, parse(template)
            except RefError as exc:
                raise RefError(exc.reason, where) from None
    elif isinstance(template, dict):
        for key, value in template.items():
            yield from refs_in(value, f"{where}.{key}" if where else str(key))
    elif isinstance(template, list):
        for i, value in enumerate(template):
            yield from refs_in(value, f"{where}[{i}]")


def resolve(template: Any, scope: Scope) -> Any:
    """``template`` with each reference replaced by its value and each ``$$`` escape undone
    (a new value: the template is not changed)."""
    if isinstance(template, str):
        if template.startswith("$$"):
            return template[1:]
        if template.startswith("$"):
            return lookup(parse(template), scope)
        return template
    if isinstance(template, dict):
        return {key: resolve(value, scope) for key, value in template.items()}
    if isinstance(template, list):
        return [resolve(value, scope) for value in template]
    return template


def lookup(ref: Ref, scope: Scope) -> Any:
    """The value ``ref`` names in ``scope``; :class:`RefError` when the data does not hold it."""
    if ref.root == "input":
        return _walk(scope.input, ref.path, ref, "$.input")
    if ref.root in ("item", "index"):
        if scope.index is None:
            raise RefError(f"$.{ref.root} is only known in a map step's input", ref.text)
        if ref.root == "index":
            return scope.index
        return _walk(scope.item, ref.path, ref, "$.item")
    assert ref.step is not None
    if ref.step not in scope.results:
        raise RefError(f"step {ref.step!r} has no result", ref.text)
    base = f"$.steps.{ref.step}.{ref.kind}"
    return _walk(scope.results[ref.step], ref.path, ref, base)


def _walk(value: Any, path: tuple[Segment, ...], ref: Ref, at: str) -> Any:
    for i, segment in enumerate(path):
        if segment is STAR:
            if not isinstance(value, list):
                raise RefError(f"{at} is {_kind(value)}, not a list: [*] needs a list", ref.text)
            return [_walk(v, path[i + 1 :], ref, f"{at}[{n}]") for n, v in enumerate(value)]
        if isinstance(segment, int):
            if not isinstance(value, list):
                raise RefError(f"{at} is {_kind(value)}, not a list", ref.text)
            if not -len(value) <= segment < len(value):
                raise RefError(f"{at} has {len(value)} elements: no [{segment}]", ref.text)
            value = value[segment]
            at = f"{at}[{segment}]"
            continue
        assert isinstance(segment, str)
        if not isinstance(value, dict):
            raise RefError(f"{at} is {_kind(value)}, not an object: no .{segment}", ref.text)
        if segment not in value:
            raise RefError(f"{at} has no field {segment!r}", ref.text)
        value = value[segment]
        at = f"{at}.{segment}" if _NAME.fullmatch(f".{segment}") else f'{at}["{segment}"]'
    return value


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"
