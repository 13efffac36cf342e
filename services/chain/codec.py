"""Hashes and Merkle roots of the chain's wire objects. Pure: no I/O."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from agora.chain.v1 import chain_pb2

HASH_BYTES = 32
EMPTY_ROOT = bytes(HASH_BYTES)


def blake2_256(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=HASH_BYTES).digest()


def extrinsic_hash(payload: bytes, signature: bytes) -> bytes:
    return blake2_256(payload + signature)


def scale_compact(n: int) -> bytes:
    """SCALE's compact encoding of a non-negative integer below 2**30 (a vector's length prefix)."""
    if n < 1 << 6:
        return bytes([n << 2])
    if n < 1 << 14:
        return ((n << 2) | 1).to_bytes(2, "little")
    if n < 1 << 30:
        return ((n << 2) | 2).to_bytes(4, "little")
    raise ValueError(f"{n} is too long for a weights vector")


def _scale_u16s(values: Sequence[int]) -> bytes:
    return scale_compact(len(values)) + b"".join(int(v).to_bytes(2, "little") for v in values)


def weight_commit_hash(public_key: bytes, netuid: int, uids: Sequence[int], weights: Sequence[int],
                       salt: Sequence[int], version_key: int) -> bytes:
    """What commit_weights commits to, byte for byte Bittensor's generate_weight_hash: blake2b-256 of
    the SCALE encoding of (AccountId32, netuid u16, uids Vec<u16>, weights Vec<u16>, salt Vec<u16>,
    version_key u64). The uids and weights in the order given: the reveal must repeat that order."""
    data = (bytes(public_key) + netuid.to_bytes(2, "little") + _scale_u16s(uids) + _scale_u16s(weights)
            + _scale_u16s(salt) + version_key.to_bytes(8, "little"))
    return blake2_256(data)


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


# Sparse u16 rows (weights, bonds, root weights) as stored: n little-endian u16 targets, then their
# n u16 values. numpy reads and writes them without a Python loop.
ROW_DTYPE = "<u2"


def pack_row(targets: Sequence[int] | np.ndarray, values: Sequence[int] | np.ndarray) -> bytes:
    t = np.asarray(targets, dtype=ROW_DTYPE)
    v = np.asarray(values, dtype=ROW_DTYPE)
    if t.shape != v.shape or t.ndim != 1:
        raise ValueError(f"a row needs as many targets as values, got {t.shape} and {v.shape}")
    return t.tobytes() + v.tobytes()


def unpack_row(raw: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(targets, values) as uint16 arrays."""
    both = np.frombuffer(raw, dtype=ROW_DTYPE)
    half = both.size // 2
    return both[:half], both[half:]
