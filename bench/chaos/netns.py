"""Hosts on one machine: Linux network namespaces joined by a switch, with cables to pull.

    with Network() as net:                      # needs root and iproute2's ``ip``
        box = net.add_host("redis")             # a namespace with an address of its own
        proc = subprocess.Popen(box.run(["redis-server", "--bind", box.ip]))
        net.cut(box)                            # the cable pulled: no RST, no FIN, silence
        net.mend(box)

Layout: a switch namespace ``{prefix}-switch`` holds a bridge; each host is a namespace
``{prefix}-{name}`` whose ``eth0`` is one end of a veth pair and whose switch port, the other
end, is named after the host. The root namespace joins the switch too (link ``{prefix}-root``,
address ``.1``), so the process that built the network reaches every host directly. The bridge
lives in its own namespace rather than the root's so that the root's firewall stays out of the
path: with ``br_netfilter`` loaded, bridged frames cross the root's FORWARD chain, which a
container runtime may set to DROP.

Addresses come from a /24 of ``10.231.0.0/16`` that nothing on this machine uses; every name
carries a per-run prefix (``fleet-<4 hex>``). :meth:`Network.close` removes everything by those
names, after killing whatever still runs inside its namespaces, and runs on failure too (the
context manager). Only a ``kill -9`` of the process that built the network leaves them behind:
``ip netns list | grep fleet-`` shows them, ``ip netns del NAME`` removes one.

Cutting a link (:meth:`Network.cut`) takes the host's switch port down: its ``eth0`` loses
carrier, frames either way are dropped, and open TCP connections simply go quiet until a
timeout notices, as when a cable is pulled or a switch dies.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

__all__ = ["Host", "Network", "NetworkError"]

_POOL = ipaddress.IPv4Network("10.231.0.0/16")
_NAME = re.compile(r"[a-z][a-z0-9-]{0,14}")
"""A host's name is its switch port's name too: at most 15 characters (``IFNAMSIZ``)."""
_RESERVED = frozenset({"switch", "root", "br0", "lo"})
_IP_TIMEOUT_S = 20.0


class NetworkError(RuntimeError):
    """Namespaces could not be built or removed here; the message says why."""


@dataclass(frozen=True)
class Host:
    """One namespace: its own loopback, one interface ``eth0`` with address ``ip``."""

    name: str
    namespace: str
    ip: str

    def run(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside this host (``ip netns exec`` execs it: same pid)."""
        return ["ip", "netns", "exec", self.namespace, *argv]


class Network:
    """A private /24 of hosts behind one switch; a context manager that removes it all."""

    def __init__(self) -> None:
        self.prefix = ""
        self.subnet: ipaddress.IPv4Network | None = None
        self.hosts: dict[str, Host] = {}
        self.cut_off: set[str] = set()
        """Names of the hosts whose link is cut right now."""
        self._namespaces: list[str] = []
        self._root_link: str | None = None

    # -- building ------------------------------------------------------------------------------

    def __enter__(self) -> Network:
        try:
            self.open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def switch(self) -> str:
        return f"{self.prefix}-switch"

    @property
    def root_ip(self) -> str:
        """The root namespace's address on the switch."""
        return str(self._subnet()[1])

    def open(self) -> None:
        """The switch, and the root namespace's link to it."""
        _check_can_build()
        self.prefix = _fresh_prefix()
        self.subnet = _free_subnet()
        self._namespaces.append(self.switch)
        _ip("netns", "add", self.switch)
        _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.switch, "link", "set", "br0", "up")
        self._root_link = f"{self.prefix}-root"
        _ip("link", "add", self._root_link, "type", "veth", "peer", "name", "root",
            "netns", self.switch)  # fmt: skip
        _ip("-n", self.switch, "link", "set", "root", "master", "br0", "up")
        _ip("addr", "add", f"{self.root_ip}/{self._subnet().prefixlen}", "dev", self._root_link)
        _ip("link", "set", self._root_link, "up")

    def add_host(self, name: str) -> Host:
        """A new host plugged into the switch, loopback and ``eth0`` up."""
        if not _NAME.fullmatch(name) or name in _RESERVED or name in self.hosts:
            raise ValueError(f"host name {name!r}: taken, reserved or not [a-z][a-z0-9-]{{,14}}")
        subnet = self._subnet()
        ip = str(subnet[10 + len(self.hosts)])
        host = Host(name, f"{self.prefix}-{name}", ip)
        self._namespaces.append(host.namespace)
        _ip("netns", "add", host.namespace)
        _ip("-n", self.switch, "link", "add", name, "type", "veth", "peer", "name", "eth0",
            "netns", host.namespace)  # fmt: skip
        _ip("-n", self.switch, "link", "set", name, "master", "br0", "up")
        _ip("-n", host.namespace, "addr", "add", f"{ip}/{subnet.prefixlen}", "dev", "eth0")
        _ip("-n", host.namespace, "link", "set", "lo", "up")
        _ip("-n", host.namespace, "link", "set", "eth0", "up")
        self.hosts[name] = host
        return host

    # -- faults --------------------------------------------------------------------------------

    def cut(self, host: Host) -> None:
        """Pull ``host``'s cable: its switch port goes down, nothing reaches it or leaves it."""
        _ip("-n", self.switch, "link", "set", host.name, "down")
        self.cut_off.add(host.name)

    def mend(self, host: Host) -> None:
        """Plug it back in."""
        _ip("-n", self.switch, "link", "set", host.name, "up")
        self.cut_off.discard(host.name)

    # -- removal -------------------------------------------------------------------------------

    def close(self) -> None:
        """Kill what still runs in this network's namespaces, then delete its links and
        namespaces by name. Every step is tried; the first failure is raised at the end."""
        errors: list[str] = []
        namespaces, self._namespaces = self._namespaces, []
        for namespace in namespaces:
            _kill_inside(namespace)
        if self._root_link is not None:
            # Deleting one end of a veth pair deletes the other end in the switch.
            if _link_exists(self._root_link):
                errors.extend(_try("link", "del", self._root_link))
            self._root_link = None
        for namespace in reversed(namespaces):  # hosts first, the switch last
            if Path("/run/netns", namespace).exists():
                errors.extend(_try("netns", "del", namespace))
        self.hosts.clear()
        self.cut_off.clear()
        if errors:
            raise NetworkError("; ".join(errors))

    def _subnet(self) -> ipaddress.IPv4Network:
        if self.subnet is None:
            raise NetworkError("the network is not open")
        return self.subnet


def _check_can_build() -> None:
    if shutil.which("ip") is None:
        raise NetworkError("iproute2's `ip` is not installed: hosts are network namespaces")
    if os.geteuid() != 0:
        raise NetworkError(
            f"creating network namespaces needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN); "
            f"this process runs as uid {os.geteuid()}"
        )


def _fresh_prefix() -> str:
    """``fleet-<4 hex>``, unused by any namespace or link (the root link's name, 15
    characters, is the longest one built from it)."""
    for _ in range(100):
        prefix = f"fleet-{secrets.token_hex(2)}"
        taken = any(p.name.startswith(prefix + "-") for p in _netns_dir())
        if not taken and not _link_exists(f"{prefix}-root"):
            return prefix
    raise NetworkError("found no free namespace prefix in 100 tries")


def _netns_dir() -> list[Path]:
    root = Path("/run/netns")
    return list(root.iterdir()) if root.is_dir() else []


def _free_subnet() -> ipaddress.IPv4Network:
    """A /24 of the pool overlapping no address or route of the root namespace."""
    used: list[ipaddress.IPv4Network] = []
    for entry in json.loads(_ip("-j", "-4", "addr", "show") or "[]"):
        for info in entry.get("addr_info", []):
            used.append(ipaddress.IPv4Interface(f"{info['local']}/{info['prefixlen']}").network)
    for route in json.loads(_ip("-j", "-4", "route", "show", "table", "all") or "[]"):
        try:  # "default" overlaps everything and means nothing here: skipped as not a network
            used.append(ipaddress.IPv4Network(route.get("dst", ""), strict=False))
        except ValueError:
            continue
    choices = list(_POOL.subnets(new_prefix=24))
    random.shuffle(choices)
    for subnet in choices:
        if not any(subnet.overlaps(u) for u in used):
            return subnet
    raise NetworkError(f"every /24 of {_POOL} is in use on this machine")


def _ip(*args: str) -> str:
    try:
        done = subprocess.run(
            ["ip", *args], capture_output=True, text=True, timeout=_IP_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NetworkError(f"`ip {' '.join(args)}`: {exc}") from exc
    if done.returncode != 0:
        raise NetworkError(f"`ip {' '.join(args)}` failed: {done.stderr.strip()}")
    return done.stdout


def _try(*args: str) -> list[str]:
    try:
        _ip(*args)
    except NetworkError as exc:
        return [str(exc)]
    return []


def _link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def _kill_inside(namespace: str) -> None:
    """SIGKILL every process still in one of this network's namespaces (each was started
    inside it by this run: nothing else can be there)."""
    if not Path("/run/netns", namespace).exists():
        return
    try:
        pids = _ip("netns", "pids", namespace).split()
    except NetworkError:
        return
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):  # gone already
            os.kill(int(pid), signal.SIGKILL)
