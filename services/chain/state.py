"""Typed records of the chain's subnet state, decoded from Redis at the ledger's edge."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from services.chain.codec import unpack_row
from services.chain.subnets import Hyperparameters, next_epoch_block

U64 = "<u8"
U16 = "<u2"
OUT_U16_FIELDS = ("rank", "trust", "consensus", "incentive", "dividends", "validator_trust")
"""Last-epoch vectors stored as packed u16 (x / 65535); 'emission' is packed u64 rao."""


def _text(raw: Mapping[bytes | str, bytes | str]) -> dict[str, str]:
    return {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in raw.items()}


@dataclass(frozen=True, slots=True)
class SubnetState:
    netuid: int
    name: str
    task: str                 # "next-token", "translation", "embedding"; "" for root
    owner_coldkey: str        # "" for root
    owner_hotkey: str
    registered_block: int
    locked_rao: int
    n: int                    # registered uids
    burn_rao: int             # what burned_register costs now
    regs_interval: int        # registrations since the last burn adjustment
    last_adjustment: int      # block of the last burn adjustment
    pending_rao: int          # emission minted into the subnet, paid at its next epoch
    last_emission_rao: int    # what the subnet received in the last block
    last_epoch: int           # block of its last epoch; 0: none yet
    hp: Hyperparameters

    @classmethod
    def from_hashes(cls, info: Mapping, hp: Mapping) -> SubnetState:
        i = _text(info)

        def num(name: str) -> int:
            return int(i.get(name) or 0)

        return cls(
            netuid=num("netuid"), name=i.get("name", ""), task=i.get("task", ""), owner_coldkey=i.get("owner", ""),
            owner_hotkey=i.get("owner_hotkey", ""), registered_block=num("registered_block"),
            locked_rao=num("locked"), n=num("n"), burn_rao=num("burn"), regs_interval=num("regs_interval"),
            last_adjustment=num("last_adjustment"), pending_rao=num("pending"),
            last_emission_rao=num("last_emission"), last_epoch=num("last_epoch"),
            hp=Hyperparameters.from_hash(_text(hp)),
        )

    def next_epoch_after(self, block: int) -> int:
        return 0 if self.netuid == 0 else next_epoch_block(block, self.netuid, self.hp.tempo)


@dataclass(frozen=True, slots=True)
class AxonInfo:
    host: str
    port: int
    protocol: str
    version: int
    block: int

    @classmethod
    def from_json(cls, raw: bytes | str) -> AxonInfo:
        d = json.loads(raw)
        return cls(host=d["host"], port=int(d["port"]), protocol=d["protocol"], version=int(d["version"]),
                   block=int(d["block"]))


@dataclass(frozen=True, slots=True)
class Commit:
    hash: bytes
    block: int


def _vector(raw: bytes, dtype: str, n: int) -> NDArray:
    """A packed per-uid vector as n values: short ones (uids added since it was written) pad with 0."""
    values = np.frombuffer(raw, dtype=dtype)[:n]
    if values.size < n:
        values = np.concatenate([values, np.zeros(n - values.size, dtype=dtype)])
    return values


@dataclass(frozen=True, slots=True)
class SubnetSnapshot:
    """One consistent read of a subnet: what its epoch and its metagraph need."""

    subnet: SubnetState
    hotkeys: list[str]
    stake_rao: list[int]               # each uid's hotkey's total stake (global, every subnet)
    coldkeys: list[str]                # each hotkey's owner
    takes: list[int | None]            # delegate take (u16); None: not a delegate
    reg_block: NDArray[np.int64]
    last_update: NDArray[np.int64]
    pruning: NDArray[np.uint16]
    permit: NDArray[np.bool_]          # stored by the last epoch
    weights: dict[int, tuple[NDArray[np.uint16], NDArray[np.uint16]]] = field(default_factory=dict)
    bonds: dict[int, tuple[NDArray[np.uint16], NDArray[np.uint16]]] = field(default_factory=dict)
    axons: dict[int, AxonInfo] = field(default_factory=dict)
    out: dict[str, NDArray] = field(default_factory=dict)
    """Last epoch's vectors by name (OUT_U16_FIELDS as u16, 'emission' as u64 rao); empty before one."""
    commits: dict[str, list[Commit]] = field(default_factory=dict)
    """Hotkey -> its weight commits not yet revealed, oldest first (metagraph reads only)."""

    @classmethod
    def from_reply(cls, reply: list) -> SubnetSnapshot:
        """Decode scripts/read_subnet.lua's reply."""
        (info, hp, hotkeys, stakes, owners, takes, reg, last, pruning, permit, weights, bonds, axons, out,
         commits) = reply
        subnet = SubnetState.from_hashes(_pairs(info), _pairs(hp))
        n = subnet.n
        out_vectors: dict[str, NDArray] = {}
        for name, raw in _pairs(out).items():
            key = name.decode()
            out_vectors[key] = _vector(raw, U64 if key == "emission" else U16, n)
        def column(joined: bytes) -> list[str]:
            return joined.decode().split(" ") if n else []

        return cls(
            subnet=subnet,
            hotkeys=column(hotkeys),
            stake_rao=[int(x) for x in column(stakes)],
            coldkeys=column(owners),
            takes=[int(t) if t else None for t in column(takes)],
            reg_block=_vector(reg, U64, n).astype(np.int64),
            last_update=_vector(last, U64, n).astype(np.int64),
            pruning=_vector(pruning, U16, n),
            permit=_vector(permit, "u1", n).astype(bool),
            weights={int(u): unpack_row(r) for u, r in _pairs(weights).items()},
            bonds={int(u): unpack_row(r) for u, r in _pairs(bonds).items()},
            axons={int(u): AxonInfo.from_json(a) for u, a in _pairs(axons).items()},
            out=out_vectors,
            commits={h.decode(): [Commit(bytes.fromhex(c[0]), int(c[1])) for c in json.loads(raw)]
                     for h, raw in _pairs(commits).items()},
        )


def _pairs(flat: list) -> dict:
    """A flat [k1, v1, k2, v2, ...] reply (HGETALL inside a script) as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))
