"""The worker URL allowlist (shared.allowlist): URL prefixes, host globs, CIDRs, IPv6."""

from __future__ import annotations

import re

import pytest

from shared import SupervisorSettings
from shared.allowlist import Allowlist, BadPattern


def allows(patterns: str, url: str) -> bool:
    return Allowlist.parse(patterns.split(",")).allows(url)


def test_an_empty_list_allows_everything() -> None:
    assert not Allowlist.parse([]).active
    assert allows("", "http://anywhere.example:1/mcp")
    assert allows(" , ", "gopher://x")


@pytest.mark.parametrize(
    ("pattern", "url", "expected"),
    [
        ("http://w1.internal:8701/mcp", "http://w1.internal:8701/mcp", True),
        ("http://w1.internal:8701/mcp", "http://W1.Internal:8701/mcp", True),
        ("http://w1.internal:8701", "http://w1.internal:8701/mcp", True),
        ("http://w1.internal:8701/mcp", "http://w1.internal:8701/mcp/", True),
        ("http://w1.internal:8701/mcp", "http://w1.internal:8701/mcpx", False),  # segment
        ("http://w1.internal:8701/a", "http://w1.internal:8701/ab/mcp", False),
        ("http://w1.internal:8701", "http://w1.internal:8702/mcp", False),  # port
        ("http://w1.internal:8701", "https://w1.internal:8701/mcp", False),  # scheme
        ("http://w1.internal", "http://w1.internal:9999/mcp", True),  # no port: any
        ("http://w1.internal", "http://w1.internal.evil.com/mcp", False),  # host boundary
        ("http://w1.internal", "http://w1.internal@evil.com/mcp", False),  # userinfo trick
        ("http://*.svc.cluster.local", "http://echo.fleet.svc.cluster.local:80/mcp", True),
        ("http://*.svc.cluster.local", "http://svc.cluster.local.evil/mcp", False),
        ("https://gw:443/fleet", "https://gw/fleet/echo/mcp", True),  # default port
    ],
)
def test_url_prefixes(pattern: str, url: str, expected: bool) -> None:
    assert allows(pattern, url) is expected


@pytest.mark.parametrize(
    ("pattern", "url", "expected"),
    [
        ("worker-*", "http://worker-3:8701/mcp", True),
        ("worker-*", "https://WORKER-a/mcp", True),
        ("worker-*", "http://evil-worker-3:8701/mcp", False),
        ("*.internal", "http://a.b.internal/mcp", True),
        ("*.internal", "http://internal/mcp", False),
        ("*.internal", "http://a.internal.evil.com/mcp", False),
        ("localhost", "http://localhost:8701/mcp", True),
        ("localhost", "ftp://localhost/mcp", False),  # never a scheme other than http(s)
        ("localhost", "http://user:pw@localhost/mcp", False),  # never credentials in a URL
    ],
)
def test_host_globs(pattern: str, url: str, expected: bool) -> None:
    assert allows(pattern, url) is expected


@pytest.mark.parametrize(
    ("pattern", "url", "expected"),
    [
        ("10.0.0.0/8", "http://10.200.3.4:8701/mcp", True),
        ("10.0.0.0/8", "http://11.0.0.1:8701/mcp", False),
        ("10.0.0.0/8", "http://10.example.com/mcp", False),  # names are never resolved
        ("10.1.2.3", "http://10.1.2.3/mcp", True),  # a bare address is a /32
        ("10.1.2.3", "http://10.1.2.4/mcp", False),
        ("127.0.0.0/8", "http://localhost:8701/mcp", False),
        ("fd00::/8", "http://[fd12:3456::7]:8701/mcp", True),
        ("fd00::/8", "http://[fe80::1]:8701/mcp", False),
        ("::1", "http://[::1]:8701/mcp", True),
        ("::1/128", "http://127.0.0.1:8701/mcp", False),  # v4 never matches a v6 network
        ("10.0.0.0/8", "http://[::ffff:10.0.0.9]:8701/mcp", True),  # IPv4-mapped counts as v4
        ("fe80::/10", "http://[fe80::1%25eth0]:8701/mcp", True),  # zone id dropped
    ],
)
def test_cidrs_and_ipv6(pattern: str, url: str, expected: bool) -> None:
    assert allows(pattern, url) is expected


def test_several_patterns_allow_their_union() -> None:
    allow = Allowlist.parse(["10.0.0.0/8", "*.internal", "https://gw/fleet"])
    assert allow.allows("http://10.0.0.1/mcp")
    assert allow.allows("http://w.internal/mcp")
    assert allow.allows("https://gw/fleet/mcp")
    assert not allow.allows("https://gw/other/mcp")
    assert not allow.allows("not a url")
    assert not allow.allows("http://:80/mcp")


@pytest.mark.parametrize(
    "pattern", ["w1:8701", "host/path", "ftp://x", "http://", "http://u@h", "http://h:99999"]
)
def test_a_bad_pattern_is_refused_naming_itself(pattern: str) -> None:
    with pytest.raises(BadPattern, match=re.escape(repr(pattern))):
        Allowlist.parse([pattern])
    with pytest.raises(ValueError, match="worker_allow"):
        SupervisorSettings(worker_allow=f"10.0.0.0/8,{pattern}")
