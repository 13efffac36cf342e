"""The extrinsic pool's rules: what it admits, in which order blocks take from it, how big a block is.

Admission (scripts/submit.lua, atomic with queueing) holds each signer to what it can pay for and
to its share of the pool:
  - funds: the signer's free balance must cover every fee and amount it already has queued plus
    this one (the pool reserves them until the extrinsic is applied or dropped), so a flood is
    paid for, fee by fee, or refused;
  - per signer: at most `per_signer` extrinsics queued (Substrate's pool and geth's txpool have the
    same limit), and once the pool is half full, a signer holding at least the average share of
    the waiting extrinsics or bytes is refused until a block frees room: a few large floods cannot
    take the pool from everyone else;
  - free calls: a hotkey's fee-free call (serve_axon, set_weights, set_root_weights) has one lane
    per kind and subnet, so it can have one such call queued at a time; one that fails in its
    block closes that kind to its hotkey for FAILED_FREE_CALL_COOLDOWN_BLOCKS.
Ordering: blocks take extrinsics in start-time fair queuing order: a signer's k-th queued
extrinsic is tagged k past the pool's virtual time, so each block serves every waiting signer's
next extrinsic before anyone's second; a flood waits behind itself, not in front of others. Within
one signer the order is its nonce order. Block size: a block takes extrinsics until `max_extrinsics`
or `max_bytes`, counting each extrinsic's bytes plus EVENT_BYTES_PER_EXTRINSIC for the events it
may emit, so a stored block always fits the gRPC message that GetBlock and SubscribeBlocks send.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.chain.extrinsics import HOTKEY_CALLS, MAX_EXTRINSIC_BYTES, CheckedExtrinsic
from services.common.grpc_server import DEFAULT_MAX_MESSAGE_BYTES

FAILED_FREE_CALL_COOLDOWN_BLOCKS = 10
"""Blocks a hotkey waits after one of its fee-free calls failed in its block before that kind is
admitted again: such a failure costs the hotkey nothing else."""

EVENT_BYTES_PER_EXTRINSIC = 640
"""Upper bound on the encoded events one extrinsic adds to its block (a transfer of the largest
amount adds 275; tests/test_chain_adversary.py measures every call kind against this bound)."""

BLOCK_EVENTS_RESERVE_BYTES = 256 * 1024
"""Room kept in a block for its header and the block-level events (coinbase, epochs)."""

GRPC_MESSAGE_BYTES = DEFAULT_MAX_MESSAGE_BYTES
"""What the chain's server sends at most, and a generic gRPC client (grpcurl, a default channel) receives."""


@dataclass(frozen=True, slots=True)
class PoolLimits:
    capacity: int = 100_000          # extrinsics waiting (or in the block being built), all signers
    max_bytes: int = 64 * 1024 * 1024
    per_signer: int = 1024
    replaying: bool = False          # stored blocks: arrival order, no free-call lanes (the block decided)


@dataclass(frozen=True, slots=True)
class BlockLimits:
    max_extrinsics: int = 10_000
    max_bytes: int = GRPC_MESSAGE_BYTES - BLOCK_EVENTS_RESERVE_BYTES


def check_limits(pool: PoolLimits, block: BlockLimits) -> None:
    """Limits an operator may set: one extrinsic of the largest size fits the pool and a block,
    and a block fits the gRPC message a generic client receives."""
    if min(pool.capacity, pool.per_signer, block.max_extrinsics) < 1:
        raise ValueError("pool capacity, per-signer limit and block extrinsics must be at least 1")
    if pool.max_bytes < MAX_EXTRINSIC_BYTES:
        raise ValueError(f"pool bytes {pool.max_bytes} is below one extrinsic's limit of {MAX_EXTRINSIC_BYTES}")
    if block.max_bytes < MAX_EXTRINSIC_BYTES + EVENT_BYTES_PER_EXTRINSIC:
        raise ValueError(f"max block bytes {block.max_bytes} cannot hold one extrinsic of the largest size "
                         f"({MAX_EXTRINSIC_BYTES} bytes plus {EVENT_BYTES_PER_EXTRINSIC} for its events)")
    if block.max_bytes > GRPC_MESSAGE_BYTES - BLOCK_EVENTS_RESERVE_BYTES:
        raise ValueError(f"max block bytes {block.max_bytes} leaves no room under gRPC's {GRPC_MESSAGE_BYTES}-byte "
                         f"message for the block's header and block-level events "
                         f"({BLOCK_EVENTS_RESERVE_BYTES} bytes): at most "
                         f"{GRPC_MESSAGE_BYTES - BLOCK_EVENTS_RESERVE_BYTES}")


REPLAY_POOL = PoolLimits(capacity=1 << 40, max_bytes=1 << 50, per_signer=1 << 40, replaying=True)
REPLAY_BLOCK = BlockLimits(max_extrinsics=1 << 40, max_bytes=1 << 50)
"""For replay: every stored block is queued whole, in its own order, and taken whole."""


def free_call_lane(xt: CheckedExtrinsic) -> str:
    """The pool lane of a fee-free hotkey call ('' for a call that pays its fee): one queued at a time."""
    if xt.call_name not in HOTKEY_CALLS:
        return ""
    netuid = getattr(getattr(xt.call, xt.call_name), "netuid", 0)
    return f"{xt.call_name}:{netuid}:{xt.signer}"
