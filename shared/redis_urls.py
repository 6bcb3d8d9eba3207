"""Store URLs and the Redis client each names: ``redis://`` (one server) or
``redis+cluster://host:port,host:port`` (a Redis Cluster; ``rediss+cluster://`` with TLS).

On a cluster every key of a fleet carries a hash tag (the prefix in braces, ``{fleet}``), so
each atomic script's keys live in one slot, as Redis Cluster requires of a script; the fleet's
jobs are spread over shards, each with a tag of its own (``{fleet.3}``, see
:mod:`shared.keys`), so the masters share them. Supervisors and workers both derive their keys
with :func:`store_prefix`, so they agree.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

__all__ = ["CLUSTER_SCHEMES", "cluster_nodes", "is_cluster_url", "redis_client", "store_prefix"]

CLUSTER_SCHEMES = ("redis+cluster://", "rediss+cluster://")


def is_cluster_url(url: str | None) -> bool:
    return bool(url) and str(url).startswith(CLUSTER_SCHEMES)


def store_prefix(url: str | None, prefix: str) -> str:
    """The key prefix on the store at ``url``: hash-tagged on a cluster (unless it has a tag)."""
    if is_cluster_url(url) and "{" not in prefix:
        return "{" + prefix + "}"
    return prefix


def cluster_nodes(url: str) -> tuple[list[tuple[str, int]], dict[str, Any]]:
    """The seed nodes of a cluster URL and its connection options (user, password, TLS).
    Raises ValueError naming what is wrong."""
    scheme, _, rest = url.partition("://")
    auth, _, hosts = rest.rpartition("@")
    hosts = hosts.split("/", 1)[0].split("?", 1)[0]
    nodes: list[tuple[str, int]] = []
    for part in filter(None, hosts.split(",")):
        parsed = urlsplit("//" + part)
        try:
            port = parsed.port or 6379
        except ValueError as exc:
            raise ValueError(f"bad port in cluster node {part!r} of {url!r}") from exc
        if not parsed.hostname:
            raise ValueError(f"no host in cluster node {part!r} of {url!r}")
        nodes.append((parsed.hostname, port))
    if not nodes:
        raise ValueError(f"no nodes in {url!r}: use redis+cluster://host:port,host:port")
    options: dict[str, Any] = {"ssl": scheme == "rediss+cluster"}
    if auth:
        user, _, password = auth.partition(":")
        options["username"] = unquote(user) or None
        options["password"] = unquote(password) or None
    return nodes, options


def redis_client(url: str, **options: Any) -> Any:
    """An asyncio client for ``url``: ``redis.asyncio.Redis`` or, for a cluster URL,
    ``redis.asyncio.cluster.RedisCluster`` seeded with every node the URL names."""
    if is_cluster_url(url):
        from redis.asyncio.cluster import ClusterNode, RedisCluster

        nodes, auth = cluster_nodes(url)
        options.pop("db", None)
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in nodes], **auth, **options
        )
    import redis.asyncio as aioredis

    return aioredis.Redis.from_url(url, **options)
