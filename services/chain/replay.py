"""Replay: re-execute a network's stored blocks on a fresh state through the real block producer.

The fresh network gets the source's genesis (same configuration, same chain id), then each stored
block's extrinsics are queued in their order and the producer builds the block with its recorded
timestamp: the same scripts, coinbase and epochs as in production. Every replayed block must equal
the stored one, header hash and body (the header commits to the extrinsics, the events and the
timestamp), so a chain whose state was corrupted, or whose stored blocks were altered or do not
follow from one another, is caught at the first block that differs. The state digests of both
networks then agree (ledger/digest.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from agora.chain.v1 import chain_pb2
from services.chain.extrinsics import decode_queued
from services.chain.genesis import install_genesis
from services.chain.ledger import Ledger
from services.chain.pool import REPLAY_BLOCK, REPLAY_POOL
from services.chain.producer import BlockProducer
from services.chain.subnets import NetworkParams

REPLAY_LEASE_MS = 3_600_000


class ReplayDiverged(Exception):
    """Re-executing a stored block gave a different block: the chain's state does not follow
    from its blocks (or the blocks were tampered with)."""


@dataclass(frozen=True, slots=True)
class ReplayedBlock:
    number: int
    hash: bytes
    extrinsics: int


async def replay_blocks(source: Ledger, target: Ledger, *, upto: int | None = None) -> AsyncIterator[ReplayedBlock]:
    """Replay source's blocks 1..upto (default: its head) onto target, which must have no state
    yet; yield each block once target has sealed it, so callers can compare state block by block.
    Raises ReplayDiverged at the first block whose replay differs from the stored one."""
    got = await source.genesis()
    if got is None:
        raise ValueError(f"network {source.network!r} has no genesis to replay")
    chain_id, config = got
    if await target.genesis() is not None:
        raise ValueError(f"network {target.network!r} already has state: replay needs a fresh one")
    target_id, _ = await install_genesis(target, config)
    if target_id != chain_id:  # the genesis block is rebuilt from the configuration alone
        raise ReplayDiverged(f"genesis: {target_id.hex()} != {chain_id.hex()}")
    target.params = NetworkParams.from_config(config)
    head = (await source.head())[0] if upto is None else upto
    producer = BlockProducer(target, producer_id="replay", block_time_ms=1, lease_ms=REPLAY_LEASE_MS,
                             limits=REPLAY_BLOCK, transfer_fee=int(config["transfer_fee"]))
    try:
        for number in range(1, head + 1):
            raw = await source.block_bytes(number)
            if raw is None:
                raise ValueError(f"network {source.network!r} has no block {number}")
            stored = chain_pb2.Block.FromString(raw)
            # through the pool as any extrinsic goes; the call checks at submit are skipped, since
            # the block's own outcome (success or a failed call paying its fee) is what is replayed,
            # and the pool keeps arrival order and takes the block whole: the block fixed both
            for xt in stored.extrinsics:
                await target.submit(decode_queued(xt.SerializeToString()), REPLAY_POOL, precheck=False)
            if not await target.hold_lease(producer.token, REPLAY_LEASE_MS):
                raise RuntimeError(f"another producer holds the lease of network {target.network!r}")
            block = await producer.produce_block(now_ms=stored.header.timestamp_ms)
            # the whole block, not only its hash: a stored body that no longer matches its own
            # header (events edited after the fact) is caught too
            if block != stored:
                what = "header hash" if block.header.hash != stored.header.hash else "body"
                raise ReplayDiverged(
                    f"block {number}: the replayed {what} differs: replayed {block.header.hash.hex()[:16]}... "
                    f"({len(block.extrinsics)} extrinsics, {len(block.events)} events), stored "
                    f"{stored.header.hash.hex()[:16]}... ({len(stored.extrinsics)} extrinsics, "
                    f"{len(stored.events)} events)"
                )
            yield ReplayedBlock(number=number, hash=block.header.hash, extrinsics=len(block.extrinsics))
    finally:
        await producer.release()


async def replay(source: Ledger, target: Ledger, *, upto: int | None = None) -> ReplayedBlock | None:
    """Replay every block (see replay_blocks); return the last one, None if there were none."""
    last = None
    async for last in replay_blocks(source, target, upto=upto):  # noqa: B007 (the last one is the result)
        pass
    return last
