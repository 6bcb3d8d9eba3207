"""The ``Host``/``Origin`` guard remembers its decisions (shared.hosts.HostOriginGuard): a
remembered answer is the one the rules give, a request again gets it without the rules, long
values are never remembered, and the memory stays under its cap."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.types import Receive, Scope, Send

import shared.hosts
from shared.hosts import HostOriginGuard, Refusal

CASES = [
    ("127.0.0.1:8700", None, ("127.0.0.1", 8700), "http"),
    ("localhost", "http://localhost:3000", ("127.0.0.1", 8700), "http"),
    ("evil.example", None, ("127.0.0.1", 8700), "http"),
    ("127.0.0.1:8700", "http://evil.example", ("127.0.0.1", 8700), "http"),
    ("10.0.0.7:8700", None, ("10.0.0.7", 8700), "http"),
    ("10.0.0.7:8700", None, ("127.0.0.1", 8700), "http"),
    ("10.0.0.7:8700", "https://10.0.0.7:8700", ("10.0.0.7", 8700), "https"),
    ("10.0.0.7:8700", "http://10.0.0.7:8700", ("10.0.0.7", 8700), "https"),
    ("api.internal", "https://app.example", None, "http"),
    ("", None, ("127.0.0.1", 8700), "http"),
]


class Answers:
    def __init__(self) -> None:
        self.passed = 0
        self.refused: list[Refusal] = []

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.passed += 1

    async def refuse(self, scope: Scope, send: Send, refusal: Refusal) -> None:
        self.refused.append(refusal)


def guard(answers: Answers) -> HostOriginGuard:
    return HostOriginGuard(
        answers.app,
        hosts=["api.internal"],
        origins=["https://app.example"],
        refuse=answers.refuse,
    )


def scope(host: str | None, origin: str | None, server: Any, scheme: str) -> Scope:
    headers = [(b"accept", b"*/*")]
    if host is not None:
        headers.append((b"host", host.encode()))
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    return {"type": "http", "headers": headers, "server": server, "scheme": scheme}


async def outcome(g: HostOriginGuard, answers: Answers, s: Scope) -> Refusal | None:
    before = answers.passed, len(answers.refused)
    await g(s, None, None)  # type: ignore[arg-type]
    if answers.passed > before[0]:
        return None
    assert len(answers.refused) == before[1] + 1
    return answers.refused[-1]


async def test_a_remembered_decision_is_the_rules_decision(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ruled: list[tuple[str, str | None]] = []
    rules = shared.hosts.check

    def counted(host: str, origin: str | None, **kw: Any) -> Any:
        ruled.append((host, origin))
        return rules(host, origin, **kw)

    monkeypatch.setattr(shared.hosts, "check", counted)
    answers = Answers()
    g = guard(answers)
    first = [await outcome(g, answers, scope(*case)) for case in CASES]
    assert len(ruled) == len(CASES)
    again = [await outcome(g, answers, scope(*case)) for case in CASES]
    assert again == first
    assert len(ruled) == len(CASES)  # every one remembered
    for (host, origin, server, scheme), got in zip(CASES, first, strict=True):
        expected = rules(
            host, origin, server=server, hosts=g.hosts, origins=g.origins, scheme=scheme
        )
        assert (got.kind if got else None) == expected, (host, origin, server, scheme)
    assert [r and r.kind for r in first] == [
        None, None, "host", "origin", None, "host", None, "origin", None, "host",
    ]  # fmt: skip


async def test_the_first_host_and_origin_count() -> None:
    answers = Answers()
    g = guard(answers)
    s = scope("127.0.0.1", None, ("127.0.0.1", 8700), "http")
    s["headers"] += [(b"host", b"evil.example"), (b"origin", b"http://localhost")]
    s["headers"] += [(b"origin", b"http://evil.example")]
    assert await outcome(g, answers, s) is None
    s = scope("evil.example", None, ("127.0.0.1", 8700), "http")
    s["headers"].append((b"host", b"127.0.0.1"))
    refused = await outcome(g, answers, s)
    assert refused == Refusal("host", "evil.example")


async def test_long_values_are_not_remembered_and_the_memory_is_capped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answers = Answers()
    g = guard(answers)
    long = "a" * (HostOriginGuard.REMEMBERED_LENGTH + 1)
    refused = await outcome(g, answers, scope(long, None, None, "http"))
    assert refused == Refusal("host", long[:200])  # the answer echoes 200 characters
    assert not g.decisions
    monkeypatch.setattr(HostOriginGuard, "DECISIONS", 5)
    for i in range(12):
        await outcome(g, answers, scope(f"h{i}.example", None, None, "http"))
        assert 1 <= len(g.decisions) <= 5
    assert await outcome(g, answers, scope("h11.example", None, None, "http")) == Refusal(
        "host", "h11.example"
    )
