"""The per-block coinbase, planned as data: the block reward (halving with issuance) split across
non-root subnets by root consensus, and the registration burn adjustments due at this block.

Pure: ledger.py reads the state and applies the plan with one journaled script.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from services.chain.emission import block_emission, split_block_emission
from services.chain.state import SubnetSnapshot, SubnetState
from services.chain.subnets import ROOT_NETUID, adjusted_burn
from services.chain.yuma import compute_root_shares


@dataclass(frozen=True, slots=True)
class SubnetCoinbase:
    netuid: int
    amount_rao: int
    new_burn_rao: int | None           # None: no adjustment due at this block


@dataclass(frozen=True, slots=True)
class CoinbasePlan:
    block: int
    issuance_rao: int                  # the issuance it was computed from (checked by the script)
    reward_rao: int                    # minted: the sum of the subnets' amounts
    subnets: tuple[SubnetCoinbase, ...]
    events: tuple[tuple[str, ...], ...]


def root_shares(root: SubnetSnapshot, netuids: list[int]) -> np.ndarray:
    """Each subnet's share of the reward from the root members' weights and stake; equal shares
    while no staked member has weighted any existing subnet."""
    column = {netuid: k for k, netuid in enumerate(netuids)}
    weights = np.zeros((root.subnet.n, len(netuids)))
    for uid, (targets, values) in root.weights.items():
        for netuid, value in zip(targets.tolist(), values.tolist(), strict=True):
            if uid < root.subnet.n and netuid in column:
                weights[uid, column[netuid]] = value
    shares = compute_root_shares(weights, np.asarray(root.stake_rao, dtype=np.float64), root.subnet.hp.kappa)
    if shares.sum() == 0:
        return np.ones(len(netuids))
    return shares


def plan_coinbase(block: int, issuance_rao: int, subnets: list[SubnetState], root: SubnetSnapshot) -> CoinbasePlan:
    """Mint block_emission(issuance) into the non-root subnets (none: nothing is minted). The
    split's rounding remainder goes to the subnet with the largest share (the lowest netuid on a
    tie), so exactly the reward is minted."""
    children = sorted((s for s in subnets if s.netuid != ROOT_NETUID), key=lambda s: s.netuid)
    netuids = [s.netuid for s in children]
    reward = block_emission(issuance_rao) if children else 0
    amounts: dict[int, int] = {}
    if children:
        shares = root_shares(root, netuids)
        split = split_block_emission(reward, dict(zip(netuids, shares.tolist(), strict=True)))
        amounts = dict(split.per_subnet)
        amounts[netuids[int(np.argmax(shares))]] += split.remainder_rao
    events: list[tuple[str, ...]] = []
    planned = []
    for s in children:
        new_burn = None
        if block - s.last_adjustment >= s.hp.adjustment_interval:
            new_burn = adjusted_burn(s.burn_rao, s.regs_interval, s.hp.target_regs_per_interval,
                                     s.hp.min_burn, s.hp.max_burn)
            events.append(("BurnAdjusted", "netuid", str(s.netuid), "burn", str(new_burn),
                           "registrations", str(s.regs_interval)))
        planned.append(SubnetCoinbase(netuid=s.netuid, amount_rao=amounts[s.netuid], new_burn_rao=new_burn))
        events.append(("Emission", "netuid", str(s.netuid), "amount", str(amounts[s.netuid])))
    assert sum(p.amount_rao for p in planned) == reward
    return CoinbasePlan(block=block, issuance_rao=issuance_rao, reward_rao=reward, subnets=tuple(planned),
                        events=tuple(events))
