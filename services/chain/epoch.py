"""A subnet's epoch: read a snapshot, run Yuma, split the pending emission, pay it with one script.

compute_epoch and plan_payouts are pure; run_epoch does the I/O. Payouts are integer rao from
emission.py, so they add up exactly: the owner's cut (18%) goes to the owner hotkey's stake, each
miner's incentive to its hotkey owner's stake, each validator's dividend to its delegate and
nominators by stake after the take. What rounding leaves over (or everything but the owner's cut,
when no uid can be paid) stays in the subnet's pending emission for its next epoch.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from services.chain.codec import pack_row
from services.chain.emission import EpochPayout, split_dividend, split_epoch_emission
from services.chain.state import OUT_U16_FIELDS, U16, U64, SubnetSnapshot
from services.chain.subnets import DEFAULT_TAKE_U16, OWNER_CUT_U16
from services.chain.yuma import (
    U16_MAX,
    YumaParams,
    YumaResult,
    activity_mask,
    compute_yuma,
    max_upscale_rows_u16,
    next_bond_rows,
    registered_since,
    to_u16,
)

if TYPE_CHECKING:  # the ledger imports this module's plans; epoch.py only calls it
    from services.chain.ledger import ApplyResult, Ledger

Credit = tuple[str, str, int]
"""(hotkey, coldkey, rao) added to that coldkey's stake on that hotkey."""


@dataclass(frozen=True, slots=True)
class EpochOutputs:
    """Yuma's results for storage, and the epoch's emission split per uid (before the take)."""

    netuid: int
    block: int
    pending_rao: int
    result: YumaResult | None          # None for a subnet without uids
    payout: EpochPayout
    out: dict[str, bytes]              # packed vectors for the metagraph
    permit: bytes
    pruning: bytes
    bond_rows: dict[int, bytes]


@dataclass(frozen=True, slots=True)
class EpochPlan:
    netuid: int
    block: int
    pending_rao: int                   # what the subnet had pending: the script checks it is unchanged
    paid_rao: int                      # sum of the credits; pending_rao - paid_rao stays pending
    credits: list[Credit]
    out: dict[str, bytes]
    permit: bytes
    pruning: bytes
    bond_rows: dict[int, bytes]
    events: list[tuple[str, ...]]


def yuma_params(snap: SubnetSnapshot) -> YumaParams:
    hp = snap.subnet.hp
    return YumaParams(kappa=hp.kappa, bonds_moving_average=hp.bonds_moving_average,
                      bonds_penalty=hp.bonds_penalty, yuma3=hp.yuma_version == 3,
                      liquid_alpha=bool(hp.liquid_alpha_enabled), alpha_low=hp.alpha_low,
                      alpha_high=hp.alpha_high, alpha_sigmoid_steepness=hp.alpha_sigmoid_steepness,
                      max_allowed_validators=hp.max_allowed_validators)


def _dense(rows: dict[int, tuple[NDArray[np.uint16], NDArray[np.uint16]]], n: int, dtype: type,
           divisor: int = 1) -> NDArray:
    """Sparse stored rows as an n x n matrix (values / divisor). np.zeros maps untouched pages
    lazily, so at 4096 uids only the few validator rows cost memory or time."""
    matrix = np.zeros((n, n), dtype=dtype)
    for uid, (targets, values) in rows.items():
        keep = targets < n
        if uid < n:
            matrix[uid, targets[keep]] = values[keep] / divisor if divisor != 1 else values[keep]
    return matrix


def compute_epoch(snap: SubnetSnapshot, block: int) -> EpochOutputs:
    """Run Yuma on the snapshot and split the subnet's pending emission per uid."""
    s, n = snap.subnet, snap.subnet.n
    pending = s.pending_rao
    if n == 0:
        payout = split_epoch_emission(pending, [], [], OWNER_CUT_U16)
        return EpochOutputs(netuid=s.netuid, block=block, pending_rao=pending, result=None, payout=payout,
                            out={}, permit=b"", pruning=b"", bond_rows={})
    weights = _dense(snap.weights, n, np.uint16)
    # bonds_from_u16 (u / 65535), row by row: converting the whole n x n matrix would touch every page
    prev_bonds = _dense(snap.bonds, n, np.float64, divisor=U16_MAX) if snap.bonds else None
    # bonds to uids registered since the last epoch start from zero (the block after it, or one tempo ago)
    last_tempo = s.last_epoch + 1 if s.last_epoch else block - s.hp.tempo
    result = compute_yuma(
        weights, np.asarray(snap.stake_rao, dtype=np.float64), prev_bonds, yuma_params(snap),
        active=activity_mask(snap.last_update, block, s.hp.activity_cutoff),
        # no stored permit at all (no epoch yet, or it found no stake): this epoch's own top-k gate it
        validator_permit=snap.permit if snap.permit.any() else None,
        last_update=snap.last_update, block_at_registration=snap.reg_block,
        registered_since_last_epoch=registered_since(snap.reg_block, last_tempo),
    )
    payout = split_epoch_emission(pending, result.server_emission_share, result.validator_emission_share,
                                  OWNER_CUT_U16)
    emission = np.asarray(payout.miner_rao, dtype=np.uint64) + np.asarray(payout.validator_rao, dtype=np.uint64)
    ranks = result.ranks / result.ranks.sum() if result.ranks.sum() > 0 else result.ranks
    vectors = {"rank": ranks, "trust": result.trust, "consensus": result.consensus, "incentive": result.incentive,
               "dividends": result.dividends, "validator_trust": result.validator_trust}
    out = {name: to_u16(vectors[name]).astype(U16).tobytes() for name in OUT_U16_FIELDS}
    out["emission"] = emission.astype(U64).tobytes()
    # pruning score: this epoch's emission, max-upscaled to u16 (the lowest is replaced first)
    pruning = max_upscale_rows_u16(emission.astype(np.float64)).astype(U16).tobytes()
    return EpochOutputs(
        netuid=s.netuid, block=block, pending_rao=pending, result=result, payout=payout, out=out,
        permit=result.validator_permit.astype(np.uint8).tobytes(), pruning=pruning,
        bond_rows=_bond_rows(snap, result),
    )


def _bond_rows(snap: SubnetSnapshot, result: YumaResult) -> dict[int, bytes]:
    """The bond rows to store (yuma.next_bond_rows, the rule the Yuma tests run), packed."""
    rows = next_bond_rows(snap.bonds, result.bonds, result.epoch_permit, result.validator_permit,
                          yuma3=snap.subnet.hp.yuma_version == 3)
    return {uid: pack_row(targets, values) for uid, (targets, values) in rows.items()}


def dividend_hotkeys(snap: SubnetSnapshot, outputs: EpochOutputs) -> list[str]:
    """Hotkeys whose validator dividends must be shared with nominators."""
    return [snap.hotkeys[uid] for uid, rao in enumerate(outputs.payout.validator_rao) if rao > 0]


def plan_payouts(snap: SubnetSnapshot, outputs: EpochOutputs, nominators: dict[str, dict[str, int]]) -> EpochPlan:
    """Credits of every stake the epoch raises. `nominators`: for each dividend hotkey, stake by
    coldkey (its owner's included)."""
    s, payout = snap.subnet, outputs.payout
    credits: dict[tuple[str, str], int] = defaultdict(int)
    if payout.owner_rao:
        credits[(s.owner_hotkey, s.owner_coldkey)] += payout.owner_rao
    for uid, rao in enumerate(payout.miner_rao):
        if rao:
            credits[(snap.hotkeys[uid], snap.coldkeys[uid])] += rao
    for uid, rao in enumerate(payout.validator_rao):
        if not rao:
            continue
        hotkey, owner = snap.hotkeys[uid], snap.coldkeys[uid]
        stakes = nominators.get(hotkey, {})
        take = snap.takes[uid] if snap.takes[uid] is not None else DEFAULT_TAKE_U16
        shares = split_dividend(rao, take, stakes.get(owner, 0),
                                {ck: st for ck, st in stakes.items() if ck != owner}, delegate=owner)
        for coldkey, amount in shares.items():
            if amount:
                credits[(hotkey, coldkey)] += amount
    paid = sum(credits.values())
    miners, validators = sum(payout.miner_rao), sum(payout.validator_rao)
    events = [("EpochRun", "netuid", str(s.netuid), "n", str(s.n), "emission", str(outputs.pending_rao),
               "owner_cut", str(payout.owner_rao), "miners", str(miners), "validators", str(validators),
               "carried", str(outputs.pending_rao - paid))]
    return EpochPlan(
        netuid=s.netuid, block=outputs.block, pending_rao=outputs.pending_rao, paid_rao=paid,
        credits=[(hk, ck, rao) for (hk, ck), rao in credits.items()], out=outputs.out, permit=outputs.permit,
        pruning=outputs.pruning, bond_rows=outputs.bond_rows, events=events,
    )


async def run_epoch(ledger: Ledger, token: str, netuid: int, block: int) -> ApplyResult:
    """The subnet's epoch at `block`: snapshot (one script read), Yuma and splits in Python, the
    nominators of dividend earners (one pipelined read), then one journaled pay_epoch script."""
    snap = await ledger.subnet_snapshot(netuid, weights=True, bonds=True)
    outputs = compute_epoch(snap, block)
    nominators = await ledger.nominators_of(dividend_hotkeys(snap, outputs))
    return await ledger.pay_epoch(token, plan_payouts(snap, outputs, nominators))
