"""Every Redis key name of a network's state. Nothing outside the ledger package builds one.

Layout (prefix agora:<network>):
  accounts   free (hash coldkey -> rao), nonce, pool_next
  counters   issuance, burned, minted, total_stake, locked, pending_emission (strings, rao)
             total_issuance == sum(free) + total_stake + locked + pending_emission after every block
  stake      stake:hotkey (hash hotkey -> total rao), stake:nominators:<hotkey> (hash coldkey -> rao),
             stake:coldkey:<coldkey> (hash hotkey -> rao, the mirror), hotkey_owner (hash hotkey -> coldkey),
             delegate_take (hash hotkey -> u16), delegate_take_block (hash hotkey -> block of last change)
  subnets    subnets (hash netuid -> owner coldkey, '' for root), and per netuid under sn:<netuid>:
             info (hash), hp (hash of hyperparameters), hotkeys (hash uid -> hotkey), uids (hash
             hotkey -> uid), axons (hash uid -> JSON), weights / bonds (hash uid -> sparse row: u16 uids
             then u16 values, little endian), reg_block / last_update (string, u64 LE per uid),
             pruning (string, u16 LE per uid), permit (string, one byte per uid), out (hash of packed
             last-epoch vectors: rank, trust, consensus, incentive, dividends, validator_trust as u16,
             emission as u64), commits (hash hotkey -> JSON list of [hash hex, block], its
             unrevealed weight commits, oldest first)
  blocks     head, blocks, blockhash, xtstatus, stream:blocks, pending, pending:xts,
             pending:results (hash: extrinsic index or block step -> result JSON), lease
  pool       pool (zset: arrival number -> fair-queuing tag), pool:xt (hash arrival -> extrinsic bytes),
             pool:next (hash signer -> next nonce), pool:hold (hash extrinsic hash -> 'rao bytes lane'
             until it is applied or dropped), pool:reserved / pool:count / pool:bytes / pool:tag (hash
             signer -> rao, extrinsics, bytes, last tag), pool:lanes (hash free-call lane -> extrinsic
             hash), pool:stats (hash: bytes, seq, vt), free_call_failed (hash 'call:hotkey' -> block)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SubnetKeys:
    info: str
    hp: str
    hotkeys: str
    uids: str
    reg_block: str
    last_update: str
    pruning: str
    permit: str
    weights: str
    bonds: str
    axons: str
    out: str
    commits: str

    def neuron_keys(self) -> list[str]:
        """The 11 keys registration touches, in scripts/_register.lua's subnet_keys order."""
        return [self.info, self.hp, self.hotkeys, self.uids, self.reg_block, self.last_update, self.pruning,
                self.permit, self.weights, self.bonds, self.axons]


class StateKeys:
    def __init__(self, network: str) -> None:
        p = f"agora:{network}"
        self.prefix = p
        self.genesis = f"{p}:genesis"
        self.free = f"{p}:free"
        self.nonces = f"{p}:nonce"
        self.issuance = f"{p}:issuance"
        self.burned = f"{p}:burned"
        self.minted = f"{p}:minted"
        self.total_stake = f"{p}:total_stake"
        self.locked = f"{p}:locked"
        self.pending_emission = f"{p}:pending_emission"
        self.head = f"{p}:head"
        self.blocks = f"{p}:blocks"
        self.block_index = f"{p}:blockhash"
        self.status = f"{p}:xtstatus"
        self.stream = f"{p}:stream:blocks"
        self.pool = f"{p}:pool"
        self.pool_xt = f"{p}:pool:xt"
        self.pool_next = f"{p}:pool:next"
        self.pool_hold = f"{p}:pool:hold"
        self.pool_reserved = f"{p}:pool:reserved"
        self.pool_count = f"{p}:pool:count"
        self.pool_bytes = f"{p}:pool:bytes"
        self.pool_tag = f"{p}:pool:tag"
        self.pool_lanes = f"{p}:pool:lanes"
        self.pool_stats = f"{p}:pool:stats"
        self.free_call_failed = f"{p}:free_call_failed"
        self.pending = f"{p}:pending"
        self.pending_xts = f"{p}:pending:xts"
        self.pending_results = f"{p}:pending:results"
        self.lease = f"{p}:lease"
        self.subnets = f"{p}:subnets"
        self.hotkey_owner = f"{p}:hotkey_owner"
        self.stake_total = f"{p}:stake:hotkey"
        self.delegate_take = f"{p}:delegate_take"
        self.delegate_take_block = f"{p}:delegate_take_block"

    def nominators(self, hotkey: str) -> str:
        """Stake on one hotkey by coldkey (its owner included)."""
        return f"{self.prefix}:stake:nominators:{hotkey}"

    def stakes_of(self, coldkey: str) -> str:
        """One coldkey's stake by hotkey: the mirror of nominators, written by the same scripts."""
        return f"{self.prefix}:stake:coldkey:{coldkey}"

    def subnet(self, netuid: int) -> SubnetKeys:
        s = f"{self.prefix}:sn:{netuid}"
        return SubnetKeys(
            info=f"{s}:info", hp=f"{s}:hp", hotkeys=f"{s}:hotkeys", uids=f"{s}:uids", reg_block=f"{s}:reg_block",
            last_update=f"{s}:last_update", pruning=f"{s}:pruning", permit=f"{s}:permit", weights=f"{s}:weights",
            bonds=f"{s}:bonds", axons=f"{s}:axons", out=f"{s}:out", commits=f"{s}:commits",
        )

    def pool_accounting(self) -> list[str]:
        """What the pool keeps per queued extrinsic and signer, released when it is applied or dropped."""
        return [self.pool_hold, self.pool_reserved, self.pool_count, self.pool_bytes, self.pool_tag,
                self.pool_lanes, self.pool_stats]

    def pool_keys(self) -> list[str]:
        """Every key of the pool: the producer's bookkeeping, not ledger state."""
        return [self.pool, self.pool_xt, self.pool_next, *self.pool_accounting()]

    def call_common(self) -> list[str]:
        """KEYS[1..16] of every call script (see scripts/_call_begin.lua)."""
        return [self.lease, self.pending_results, self.nonces, self.free, self.issuance, self.burned,
                self.pool_next, self.head, *self.pool_accounting(), self.free_call_failed]
