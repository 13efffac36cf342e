"""A digest of a network's state: what two replicas that applied the same blocks must agree on.

It covers every key under the network's prefix except the block producer's own bookkeeping (the
pool of waiting extrinsics, the block being built, the lease, the block stream and the stored
blocks themselves), whose contents depend on timing rather than on which blocks were applied.
Used by the reliability tests (replay on a fresh Redis; rejected input changes nothing).
"""

from __future__ import annotations

import hashlib

import redis.asyncio as aioredis

from services.chain.ledger.keys import StateKeys


def production_keys(keys: StateKeys) -> set[str]:
    """Keys left out of the digest: transient or timing-dependent, not ledger state."""
    return {keys.lease, keys.pool, keys.pool_next, keys.pending, keys.pending_xts, keys.pending_results,
            keys.stream, keys.blocks, keys.block_index, keys.status, keys.head}


async def state_keys(redis: aioredis.Redis, keys: StateKeys) -> list[str]:
    skip = production_keys(keys)
    found = [k.decode() if isinstance(k, bytes) else k async for k in redis.scan_iter(match=f"{keys.prefix}:*",
                                                                                        count=1000)]
    return sorted(k for k in found if k not in skip)


async def _canonical(redis: aioredis.Redis, key: str) -> bytes:
    kind = await redis.type(key)
    kind = kind.decode() if isinstance(kind, bytes) else kind
    if kind == "string":
        body = [await redis.get(key) or b""]
    elif kind == "hash":
        body = [x for kv in sorted((await redis.hgetall(key)).items()) for x in kv]
    elif kind == "set":
        body = sorted(await redis.smembers(key))
    elif kind == "zset":
        body = [x for m, s in await redis.zrange(key, 0, -1, withscores=True) for x in (m, repr(s).encode())]
    elif kind == "list":
        body = list(await redis.lrange(key, 0, -1))
    elif kind == "none":   # deleted between scan and read
        return b""
    else:
        raise ValueError(f"{key}: unexpected Redis type {kind}")
    out = bytearray()
    for part in [key.encode(), kind.encode(), *(b if isinstance(b, bytes) else str(b).encode() for b in body)]:
        out += len(part).to_bytes(4, "little") + part
    return bytes(out)


async def state_digest(redis: aioredis.Redis, keys: StateKeys) -> str:
    """blake2b-256 hex over every state key, its type and its contents, in key order.
    Not atomic with block production: take it while no block is being written (stopped or
    paused producer), or compare two digests taken at the same head."""
    h = hashlib.blake2b(digest_size=32)
    for key in await state_keys(redis, keys):
        h.update(await _canonical(redis, key))
    return h.hexdigest()
