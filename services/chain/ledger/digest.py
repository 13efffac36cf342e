"""A digest of a network's state: what two replicas that applied the same blocks must agree on.

By default it covers every key under the network's prefix except the block producer's own
bookkeeping (the pool of waiting extrinsics, the block being built, the lease, the block stream and
the stored blocks themselves), whose contents depend on timing rather than on which blocks were
applied. Key names are hashed relative to the prefix, so the same state under two network names
(a replay on a fresh prefix) has the same digest. Used by the reliability tests: a replay on a
fresh prefix or Redis must reach the same digest, and rejected input must leave it unchanged.
"""

from __future__ import annotations

import hashlib
from typing import Any

import redis.asyncio as aioredis

from services.chain.ledger.keys import StateKeys


def production_keys(keys: StateKeys) -> set[str]:
    """Keys left out of the default digest: transient or timing-dependent, not ledger state."""
    return {keys.lease, *keys.pool_keys(), keys.pending, keys.pending_xts, keys.pending_results,
            keys.stream, keys.blocks, keys.block_index, keys.status, keys.head}


async def state_keys(redis: aioredis.Redis, keys: StateKeys, *, production: bool = False) -> list[str]:
    skip = set() if production else production_keys(keys)
    found = [k.decode() if isinstance(k, bytes) else k async for k in redis.scan_iter(match=f"{keys.prefix}:*",
                                                                                        count=1000)]
    return sorted(k for k in found if k not in skip)


def _read(pipe: Any, key: str, kind: str) -> None:
    """Queue the read of one key's contents by its type."""
    if kind == "string":
        pipe.get(key)
    elif kind == "hash":
        pipe.hgetall(key)
    elif kind == "set":
        pipe.smembers(key)
    elif kind == "zset":
        pipe.zrange(key, 0, -1, withscores=True)
    elif kind == "list":
        pipe.lrange(key, 0, -1)
    elif kind == "stream":  # only with production=True (the block stream)
        pipe.xrange(key)
    elif kind == "none":    # deleted between scan and read
        pipe.exists(key)
    else:
        raise ValueError(f"{key}: unexpected Redis type {kind}")


def _canonical(key: str, prefix: str, kind: str, value: Any) -> bytes:
    """Length-prefixed parts: the key's name relative to the prefix, its type, its contents in a
    fixed order (hash fields and set members sorted)."""
    if kind == "string":
        body = [value or b""]
    elif kind == "hash":
        body = [x for kv in sorted(value.items()) for x in kv]
    elif kind == "set":
        body = sorted(value)
    elif kind == "zset":
        body = [x for m, s in value for x in (m, repr(s).encode())]
    elif kind == "list":
        body = list(value)
    elif kind == "stream":
        body = [x for entry_id, fields in value for x in (entry_id, *(y for kv in sorted(fields.items()) for y in kv))]
    else:
        return b""
    out = bytearray()
    for part in [key[len(prefix) + 1:].encode(), kind.encode(),
                 *(b if isinstance(b, bytes) else str(b).encode() for b in body)]:
        out += len(part).to_bytes(4, "little") + part
    return bytes(out)


async def key_digests(redis: aioredis.Redis, keys: StateKeys, *, production: bool = False) -> dict[str, str]:
    """Each state key's name relative to the prefix -> blake2b-256 hex of its type and contents: what
    state_digest covers, key by key, so that two states that differ can say where."""
    names = await state_keys(redis, keys, production=production)
    # two round trips whatever the number of keys: the types, then every key's contents
    async with redis.pipeline(transaction=False) as pipe:
        for key in names:
            pipe.type(key)
        kinds = [k.decode() if isinstance(k, bytes) else k for k in await pipe.execute()]
    async with redis.pipeline(transaction=False) as pipe:
        for key, kind in zip(names, kinds, strict=True):
            _read(pipe, key, kind)
        values = await pipe.execute()
    return {key[len(keys.prefix) + 1:]: hashlib.blake2b(_canonical(key, keys.prefix, kind, value),
                                                        digest_size=32).hexdigest()
            for key, kind, value in zip(names, kinds, values, strict=True)}


async def state_digest(redis: aioredis.Redis, keys: StateKeys, *, production: bool = False) -> str:
    """blake2b-256 hex over every state key (name relative to the prefix), its type and its
    contents, in key order; production=True covers the producer's bookkeeping too (the pool, the
    block store, statuses, the lease), to show that a refused submission wrote nothing at all.
    Not atomic with block production: take it while no block is being written (stopped or
    paused producer), or compare two digests taken at the same head."""
    h = hashlib.blake2b(digest_size=32)
    for name, digest in sorted((await key_digests(redis, keys, production=production)).items()):
        h.update(name.encode() + b"\0" + digest.encode())
    return h.hexdigest()
