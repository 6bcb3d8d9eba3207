"""The worker URL allowlist (``FLEET_WORKER_ALLOW``): which addresses the supervisor may call.

It lives in ``shared`` so the settings can refuse a bad pattern when they are built.

Each pattern is one of:

- a **URL prefix** (it has ``://``): same scheme, the host equal or matching a ``*`` glob, the
  port equal when the pattern names one (any port when it does not), and the path a prefix on
  a segment boundary (``/a`` allows ``/a`` and ``/a/mcp``, not ``/ab``);
- a **CIDR** or a bare IP address (``10.0.0.0/8``, ``fd00::/8``, ``10.1.2.3``): the URL's host is
  an IP literal inside it (an IPv4-mapped IPv6 address counts as its IPv4 address). Host
  names are not resolved: a check that resolves can be answered differently at call time
  (DNS rebinding), so allow names by pattern instead;
- otherwise a **host glob** (``worker-*``, ``*.internal``, ``localhost``): any http(s) URL whose
  host matches, on any port.

Hosts compare case-insensitively. A URL that is not ``http``/``https`` with a host, or that
carries a user name or password, is never allowed while a list is set.

    allow = Allowlist.parse(["10.0.0.0/8", "*.internal", "https://gw:443/fleet"])
    allow.allows("http://10.1.2.3:8701/mcp")   # True
    Allowlist.parse([]).allows("http://anything")   # True: no list, no limit
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from urllib.parse import SplitResult, urlsplit

__all__ = ["Allowlist", "BadPattern"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_SCHEMES = ("http", "https")


class BadPattern(ValueError):
    """A ``worker_allow`` entry that is none of the three forms."""


@dataclass(frozen=True)
class _Prefix:
    scheme: str
    host: str
    port: int | None
    path: str

    def allows(self, url: SplitResult, host: str) -> bool:
        if url.scheme != self.scheme or not fnmatchcase(host, self.host):
            return False
        if self.port is not None and _port(url) != self.port:
            return False
        path = url.path or "/"
        base = self.path.rstrip("/")
        return not base or path == base or path.startswith(base + "/")


def _port(url: SplitResult) -> int | None:
    try:
        return url.port or (443 if url.scheme == "https" else 80)
    except ValueError:
        return None


def _address(host: str) -> IPAddress | None:
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])  # drop an IPv6 zone id
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _prefix(pattern: str) -> _Prefix:
    parts = urlsplit(pattern)
    if parts.scheme not in _SCHEMES or not parts.hostname:
        raise BadPattern(f"{pattern!r}: a URL prefix needs http:// or https:// and a host")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise BadPattern(f"{pattern!r}: a URL prefix has no user, query or fragment")
    try:
        port = parts.port
    except ValueError as exc:
        raise BadPattern(f"{pattern!r}: bad port") from exc
    return _Prefix(parts.scheme, parts.hostname.lower(), port, parts.path)


@dataclass(frozen=True)
class Allowlist:
    prefixes: tuple[_Prefix, ...] = ()
    networks: tuple[IPNetwork, ...] = ()
    hosts: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()

    @classmethod
    def parse(cls, patterns: Iterable[str]) -> Allowlist:
        """Parse ``worker_allow`` entries; :class:`BadPattern` names the one that is wrong."""
        prefixes: list[_Prefix] = []
        networks: list[IPNetwork] = []
        hosts: list[str] = []
        kept: list[str] = []
        for raw in patterns:
            pattern = raw.strip()
            if not pattern:
                continue
            kept.append(pattern)
            if "://" in pattern:
                prefixes.append(_prefix(pattern))
                continue
            try:
                networks.append(ipaddress.ip_network(pattern, strict=False))
                continue
            except ValueError:
                if "/" in pattern or ":" in pattern:
                    raise BadPattern(
                        f"{pattern!r}: not a CIDR, and a host glob has no '/' or ':' "
                        "(write a URL prefix as http://host:port/path)"
                    ) from None
            hosts.append(pattern.lower())
        return cls(tuple(prefixes), tuple(networks), tuple(hosts), tuple(kept))

    @property
    def active(self) -> bool:
        """False for an empty list, which allows everything."""
        return bool(self.patterns)

    def allows(self, url: str) -> bool:
        if not self.active:
            return True
        parts = urlsplit(url.strip())
        host = (parts.hostname or "").lower()
        if parts.scheme not in _SCHEMES or not host or parts.username or parts.password:
            return False
        if any(p.allows(parts, host) for p in self.prefixes):
            return True
        address = _address(host)
        if address is not None and any(address in n for n in self.networks):
            return True
        return any(fnmatchcase(host, h) for h in self.hosts)
