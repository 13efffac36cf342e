"""Hashes and Merkle roots of the chain's wire objects. Pure: no I/O."""

from __future__ import annotations

import hashlib

from agora.chain.v1 import chain_pb2

HASH_BYTES = 32
EMPTY_ROOT = bytes(HASH_BYTES)


def blake2_256(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=HASH_BYTES).digest()


def extrinsic_hash(payload: bytes, signature: bytes) -> bytes:
    return blake2_256(payload + signature)


def merkle_root(leaves: list[bytes]) -> bytes:
    """Binary Merkle root over already-hashed leaves.

    Leaves and inner nodes are hashed with different prefixes (0x00 / 0x01), and an odd node is
    promoted rather than paired with itself, so no two different lists share a root
    (duplicating the last node is how Bitcoin's CVE-2012-2459 arose).
    """
    if not leaves:
        return EMPTY_ROOT
    level = [blake2_256(b"\x00" + leaf) for leaf in leaves]
    while len(level) > 1:
        paired = [blake2_256(b"\x01" + level[i] + level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def header_hash(header: chain_pb2.BlockHeader) -> bytes:
    """blake2b-256 of the header's deterministic bytes with its own hash field empty."""
    unsigned = chain_pb2.BlockHeader()
    unsigned.CopyFrom(header)
    unsigned.ClearField("hash")
    return blake2_256(unsigned.SerializeToString(deterministic=True))


def event_bytes(event: chain_pb2.Event) -> bytes:
    return event.SerializeToString(deterministic=True)
