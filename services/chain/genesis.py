"""Block 0: the genesis configuration, its hash (the chain id) and writing it once."""

from __future__ import annotations

import json

from agora.chain.v1 import chain_pb2
from services.chain.codec import EMPTY_ROOT, blake2_256, header_hash
from services.chain.ledger import Ledger
from services.chain.settings import ChainSettings
from services.chain.subnets import NetworkParams, root_hyperparameters


def genesis_block(config: dict) -> chain_pb2.Block:
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    block = chain_pb2.Block()
    h = block.header
    h.number = 0
    h.parent_hash = EMPTY_ROOT
    h.extrinsics_root = EMPTY_ROOT
    h.events_root = EMPTY_ROOT
    h.digest = blake2_256(canonical)
    h.hash = header_hash(h)
    return block


async def ensure_genesis(ledger: Ledger, settings: ChainSettings) -> tuple[bytes, dict]:
    """Write genesis if Redis has none; return (genesis hash, settings in force).

    A chain restarted against existing state keeps its genesis, whatever the flags say now, so
    balances and the chain id survive restarts.
    """
    existing = await ledger.genesis()
    if existing is not None:
        return existing
    return await install_genesis(ledger, settings.genesis_config())


async def install_genesis(ledger: Ledger, config: dict) -> tuple[bytes, dict]:
    """Write block 0 of a genesis configuration (ChainSettings.genesis_config, or one read back from
    another replica, as replay does) unless Redis has one; return (genesis hash, settings in force)."""
    block = genesis_block(config)
    root_hp = root_hyperparameters(NetworkParams.from_config(config)).to_hash()
    balances = {address: int(rao) for address, rao in config["balances"].items()}
    await ledger.write_genesis(block.header.hash, block.SerializeToString(), json.dumps(config), balances, root_hp)
    got = await ledger.genesis()
    assert got is not None
    return got
