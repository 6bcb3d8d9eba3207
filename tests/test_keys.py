"""Key names of a sharded store (shared.keys): a job's id names its shard, whatever the count."""

from __future__ import annotations

import doctest
import uuid

from redis.crc import key_slot

import shared.keys
from shared.keys import Keys, shard_of, shard_prefix


def test_the_module_examples_hold() -> None:
    assert doctest.testmod(shared.keys).failed == 0


def test_a_placed_id_names_its_shard_and_keeps_its_start() -> None:
    keys = Keys("{fleet}", shards=64)
    for shard in (0, 1, 17, 63, 1000):  # 1000: placed by a store with more shards than this
        raw = uuid.uuid4().hex
        placed = keys.place(raw, shard)
        assert len(placed) == 32 and int(placed, 16) >= 0
        assert placed[:12] == raw[:12] and placed[12] == "8"  # a short id still finds it
        assert shard_of(placed) == shard
        assert keys.of(placed).job(placed) == f"{shard_prefix('{fleet}', shard)}:job:{placed}"


def test_an_unsharded_id_lives_in_shard_zero_under_the_old_names() -> None:
    keys = Keys("{fleet}", shards=64)
    legacy = uuid.uuid4().hex  # a UUID4: written before shards, or with one shard
    assert shard_of(legacy) == 0 and keys.of(legacy) is keys
    assert keys.of(legacy).job(legacy) == f"{{fleet}}:job:{legacy}"
    assert Keys("fleet").place(legacy, 0) == legacy  # one shard: ids as they were
    assert shard_of("not-an-id") == 0 and shard_of("0" * 12 + "8" + "z" * 19) == 0


def test_each_shard_is_a_slot_of_its_own_and_the_shards_spread() -> None:
    tags = [shard_prefix("{fleet}", i) for i in range(64)]
    assert len(set(tags)) == 64
    slots = {key_slot(f"{tag}:job:x".encode()) for tag in tags}
    thirds = {slot * 3 // 16384 for slot in slots}  # three equal masters' slot ranges
    assert len(slots) == 64 and thirds == {0, 1, 2}
    assert shard_prefix("t1", 5) == "t1.5"  # no tag (one server): a prefix of its own


def test_a_key_always_has_the_same_shard() -> None:
    keys = Keys("{fleet}", shards=64)
    assert keys.keyed("order-1", "acme") == keys.keyed("order-1", "acme")
    assert {keys.keyed(f"k{i}") for i in range(2000)} == set(range(64))
    assert Keys("fleet").keyed("anything") == 0
    assert [k.prefix for k in keys.every_shard()][:3] == ["{fleet}", "{fleet.1}", "{fleet.2}"]
