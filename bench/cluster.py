"""A real Redis Cluster on loopback, for the tests and the chaos suite: ``redis-server`` in
cluster mode N times, ``redis-cli --cluster create``, then wait until every node says ``ok``.

    with RedisClusterProcs(masters=3, replicas=1) as cluster:
        url = cluster.url              # redis+cluster://127.0.0.1:P1,127.0.0.1:P2,...
        cluster.kill(cluster.master_of_slot(slot))
        cluster.restart(node)

No persistence unless ``appendonly``: what a killed master held is lost unless a replica
took over (that is what the tests show).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import redis

from shared.serving import free_port

__all__ = ["Node", "RedisClusterProcs"]


@dataclass
class Node:
    port: int
    dir: Path
    bus: int = 0
    """The cluster bus port, given to the node (Redis's default, port + 10,000, may be another
    node's port or taken: a quick scale bench failed on that once)."""
    proc: subprocess.Popen[bytes] | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.dir / "redis.log"

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5, socket_connect_timeout=2)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class RedisClusterProcs:
    """``masters`` masters, each with ``replicas`` replicas, on free loopback ports."""

    def __init__(
        self,
        masters: int = 3,
        replicas: int = 0,
        *,
        appendonly: bool = False,
        timeout_ms: int = 2000,
    ) -> None:
        for tool in ("redis-server", "redis-cli"):
            if shutil.which(tool) is None:
                raise RuntimeError(f"{tool} is not on PATH: a Redis Cluster needs it")
        self.root = Path(tempfile.mkdtemp(prefix="fleet-cluster-"))
        self.appendonly = appendonly
        self.timeout_ms = timeout_ms
        count = masters * (1 + replicas)
        ports = _distinct_free_ports(2 * count)
        self.nodes = [
            Node(ports[2 * i], self.root / f"n{i}", bus=ports[2 * i + 1]) for i in range(count)
        ]
        self.masters = masters
        self.replicas = replicas

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(n.addr for n in self.nodes)

    def start(self) -> RedisClusterProcs:
        for node in self.nodes:
            node.dir.mkdir(parents=True, exist_ok=True)
            self._spawn(node)
        for node in self.nodes:
            self._wait_pong(node)
        create = [
            "redis-cli", "--cluster", "create", *(n.addr for n in self.nodes),
            "--cluster-replicas", str(self.replicas), "--cluster-yes",
        ]  # fmt: skip
        done = subprocess.run(create, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {done.stdout}{done.stderr}")
        self.wait_ok()
        self.wait_replicas_synced()
        return self

    def wait_replicas_synced(self, timeout: float = 30) -> None:
        """Until every replica's link to its master is up: a replica that never synced cannot
        take over (Redis refuses: "Disconnected from master for longer than allowed")."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            roles = [n.client().info("replication") for n in self.nodes if n.alive]
            replicas = [r for r in roles if r.get("role") == "slave"]
            if len(replicas) == self.masters * self.replicas and all(
                r.get("master_link_status") == "up" for r in replicas
            ):
                return
            time.sleep(0.1)  # poll interval of a wait on a condition
        raise RuntimeError(f"the replicas did not sync with their masters in {timeout:.0f}s")

    def wait_promoted(self, slot: int, dead: Node, timeout: float = 60) -> Node:
        """Until a live node serves ``slot`` in ``dead``'s stead (a replica took over), as the
        live nodes see it; that node."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                master = self.master_of_slot(slot)
                if master is not dead and master.alive:
                    return master
            except (redis.RedisError, RuntimeError):
                pass
            time.sleep(0.1)  # poll interval of a wait on a condition
        raise RuntimeError(f"no replica took over slot {slot} from {dead.addr} in {timeout:.0f}s")

    def _spawn(self, node: Node) -> None:
        args = [
            "redis-server", "--port", str(node.port), "--bind", "127.0.0.1",
            "--cluster-enabled", "yes", "--cluster-port", str(node.bus),
            "--cluster-config-file", str(node.dir / "nodes.conf"),
            "--cluster-node-timeout", str(self.timeout_ms), "--dir", str(node.dir),
            "--save", "", "--appendonly", "yes" if self.appendonly else "no",
            "--logfile", str(node.log),
        ]  # fmt: skip
        node.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

    def _wait_pong(self, node: Node, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not node.alive:
                raise RuntimeError(f"redis-server on {node.addr} exited: {node.log.read_text()}")
            try:
                if node.client().ping():
                    return
            except redis.RedisError:
                pass
            time.sleep(0.05)  # a poll interval, not synchronisation: the loop waits on PONG
        raise RuntimeError(f"redis-server on {node.addr} did not answer PING in {timeout:.0f}s")

    def wait_ok(self, timeout: float = 30) -> None:
        """Until every live node reports ``cluster_state:ok`` and knows every slot."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            try:
                infos = [n.client().cluster("info") for n in self.nodes if n.alive]
                if all(i.get("cluster_state") == "ok" for i in infos) and all(
                    int(i.get("cluster_slots_ok", 0)) == 16384 for i in infos
                ):
                    return
                last = repr(infos[:1])
            except redis.RedisError as exc:
                last = str(exc)
            time.sleep(0.1)  # poll interval of a wait on a condition
        raise RuntimeError(f"the cluster did not become ok in {timeout:.0f}s: {last}")

    def master_of_slot(self, slot: int) -> Node:
        for node in self.nodes:
            if not node.alive:
                continue
            for start, end, master, *_ in node.client().cluster("slots"):
                if start <= slot <= end:
                    port = int(master[1])
                    return next(n for n in self.nodes if n.port == port)
        raise RuntimeError(f"no live node serves slot {slot}")

    def kill(self, node: Node) -> None:
        """``kill -9``: no shutdown, no save."""
        if node.proc is not None and node.proc.poll() is None:
            node.proc.send_signal(signal.SIGKILL)
            node.proc.wait(10)

    def restart(self, node: Node) -> None:
        """The same node (its nodes.conf, so the cluster takes it back) on the same port."""
        self.kill(node)
        self._spawn(node)
        self._wait_pong(node)

    def stop(self) -> None:
        for node in self.nodes:
            self.kill(node)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> RedisClusterProcs:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _distinct_free_ports(count: int) -> list[int]:
    """``count`` ports free now and all different (the kernel may hand a closed one out
    again)."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports
