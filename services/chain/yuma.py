"""Yuma consensus: weights and stake in, consensus, incentive, dividends and bonds out.

A pure float64 port of subtensor's `epoch_mechanism` (epoch/run_epoch.rs, epoch/math.rs) on the
square chain layout: n uids, each both a row (stake, weights) and a column (receives weight).
Step numbers refer to /work/shared/YUMA-SPEC.md section 1. Every "normalise" leaves an all-zero
vector, row or column unchanged, and true zeros stay exactly zero (max-upscaling would turn noise
into a full bond). Persisted values are u16; the helpers at the end convert the way the chain does.
"""

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from services.common.units import U16_MAX

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class YumaParams:
    """Subnet hyperparameters in the chain's integer units, defaults as Bittensor's runtime."""

    kappa: int = 32_767
    """u16; a weight is supported when stake >= kappa / 65535 backs at least that much."""
    bonds_moving_average: int = 900_000
    """Millionths; bond EMA rate alpha = 1 - bonds_moving_average / 1e6 (0.1 by default)."""
    bonds_penalty: int = 65_535
    """u16; 65535 builds bonds on clipped weights only, 0 on the raw weights."""
    yuma3: bool = False
    liquid_alpha: bool = False
    """Yuma 3 only: per-bond EMA rate from a sigmoid between alpha_low and alpha_high."""
    alpha_low: int = 45_875
    alpha_high: int = 58_982
    alpha_sigmoid_steepness: int = 1000
    max_allowed_validators: int = 64
    stake_threshold: int = 0
    """Raw stake below this (in the stake's own units) counts as zero; the owner uid is exempt."""

    @property
    def kappa_ratio(self) -> float:
        return self.kappa / U16_MAX

    @property
    def bonds_alpha(self) -> float:
        return 1.0 - self.bonds_moving_average / 1_000_000

    @property
    def bonds_penalty_ratio(self) -> float:
        return self.bonds_penalty / U16_MAX


@dataclass(frozen=True, slots=True)
class YumaResult:
    """One epoch's outputs; vectors have length n, matrices are n x n."""

    stake: FloatArray
    """s: thresholded stake, normalised to sum 1."""
    active_stake: FloatArray
    """a: s of active, permitted uids, normalised."""
    consensus: FloatArray
    validator_trust: FloatArray
    ranks: FloatArray
    """R_j = sum_i a_i Wc_ij before normalising (the metagraph's Rank was normalised, = incentive)."""
    trust: FloatArray
    """R_j / P_j: the share of uid j's raw support that survived clipping (older chain's Trust)."""
    incentive: FloatArray
    dividends: FloatArray
    bonds: FloatArray
    """B' as dividends used it: Yuma 2 column-normalised, Yuma 3 fractions in [0, 1]. Rows of
    uids without an epoch permit are zero; stored by next_bond_rows."""
    validator_permit: BoolArray
    """New permits, to be stored and to gate the next epoch."""
    epoch_permit: BoolArray
    """Permits that gated this epoch (previous epoch's, owner forced)."""
    server_emission_share: FloatArray
    validator_emission_share: FloatArray


def compute_yuma(
    weights: FloatArray,
    stake: FloatArray,
    prev_bonds: FloatArray | None = None,
    p: YumaParams = YumaParams(),  # frozen, so sharing the default is safe
    *,
    active: BoolArray | None = None,
    validator_permit: BoolArray | None = None,
    owner_uid: int | None = None,
    outdated: BoolArray | None = None,
    last_update: NDArray[np.int64] | None = None,
    block_at_registration: NDArray[np.int64] | None = None,
    registered_since_last_epoch: BoolArray | None = None,
) -> YumaResult:
    """Run one epoch.

    weights: n x n, row i as set by uid i, any non-negative scale (stored u16 is fine).
    stake: n raw stakes (alpha + tao_weight * root). prev_bonds: n x n as bonds_from_u16 gives.
    active: False for uids idle past the activity cutoff (default all active).
    validator_permit: permits stored by the previous epoch; None means "as this epoch computes".
    outdated: n x n, True where W_ij predates uid j's registration; or give last_update and
    block_at_registration and it is derived (last_update_i <= block_at_registration_j).
    registered_since_last_epoch: columns whose old bonds are dropped before the EMA.

    Only rows holding an epoch permit are computed: the chain drops weights of the others, and its
    storage rule keeps their bond rows empty, so bonds of non-permitted rows are ignored.
    """
    stake = np.asarray(stake, dtype=np.float64)
    weights = np.asarray(weights)
    n = stake.shape[0]
    if weights.shape != (n, n):
        raise ValueError(f"weights shape {weights.shape}, need ({n}, {n})")
    owner = np.zeros(n, dtype=bool)
    if owner_uid is not None:
        owner[owner_uid] = True

    # 2. s = S / sum S after zeroing stake below the threshold: tiny stakes must not buy permits.
    raw = np.where((np.floor(stake) < p.stake_threshold) & ~owner, 0.0, stake)
    s = _normalize(raw)

    # 3. New permits: top-k non-zero stake; the permits stored last epoch gate this one, so a
    # stake jump only counts from the next epoch.
    new_permit = is_topk_nonzero(s, p.max_allowed_validators) | owner
    gate = (new_permit.copy() if validator_permit is None else np.asarray(validator_permit, bool)) | owner

    # 4. a = s masked to active permitted uids, renormalised: only they vote this epoch.
    is_active = np.ones(n, dtype=bool) if active is None else np.asarray(active, dtype=bool)
    a = _normalize(np.where(is_active & gate, s, 0.0))

    # Work on the k permitted rows only; every other row is masked to zero by step 5 anyway.
    rows = np.flatnonzero(gate)
    a_k = a[rows]
    w = np.asarray(weights[rows], dtype=np.float64)  # fancy indexing already copied
    if np.any(w < 0):
        raise ValueError("weights must be non-negative")

    # 5. Drop self-weights (except the owner's) and weights older than the column's registration.
    drop_self = ~owner[rows]
    w[np.flatnonzero(drop_self), rows[drop_self]] = 0.0
    if outdated is not None:
        w[np.asarray(outdated, dtype=bool)[rows]] = 0.0
    elif last_update is not None and block_at_registration is not None:
        lu = np.asarray(last_update)[rows]
        w[lu[:, None] <= np.asarray(block_at_registration)[None, :]] = 0.0
    elif last_update is not None or block_at_registration is not None:
        raise ValueError("give both last_update and block_at_registration, or outdated")
    w = _normalize_rows(w)

    # 6. C_j: the highest weight that stake >= kappa supports (stake-weighted median).
    consensus = stake_weighted_median(w, a_k, p.kappa_ratio)

    # 7. Wc = min(W, C): weight above what the kappa-majority gives earns nothing.
    clipped = np.minimum(w, consensus[None, :])
    validator_trust = _scatter(n, rows, clipped.sum(axis=1))

    # 8. R_j = sum_i a_i Wc_ij; I = R / sum R. Trust R/P shows how much of P_j = sum_i a_i W_ij
    # survived the clip.
    rank_raw = a_k @ clipped
    support = a_k @ w
    trust = np.divide(rank_raw, support, out=np.zeros(n), where=support > 0)
    incentive = _normalize(rank_raw)

    # 9. Wb = W + beta (Wc - W): the bonds penalty decides how much out-of-consensus weight bonds.
    beta = p.bonds_penalty_ratio
    w_bonds = clipped if beta == 1.0 else w + beta * (clipped - w)

    # 10. Bonds and dividends.
    b = np.zeros_like(w) if prev_bonds is None else np.asarray(np.asarray(prev_bonds)[rows], dtype=np.float64)
    if registered_since_last_epoch is not None:
        b[:, np.asarray(registered_since_last_epoch, dtype=bool)] = 0.0  # a new uid inherits no bonds
    if p.yuma3:
        new_bonds, div_k = _yuma3_bonds(w_bonds, b, consensus, incentive, a_k, p)
    else:
        new_bonds, div_k = _yuma2_bonds(w_bonds, b, incentive, a_k, p.bonds_alpha)
    dividends = _normalize(_scatter(n, rows, div_k))
    bonds = np.zeros((n, n))
    bonds[rows] = new_bonds

    # 11. Shares of the epoch's emission E: miners I_j / T, validators D_i / T, T = sum I + sum D
    # (normally 2). With no usable weights, T == 0 exactly and validators share by stake.
    total = incentive.sum() + dividends.sum()
    if total == 0.0:
        server_share = np.zeros(n)
        validator_share = a.copy() if a.sum() > 0 else s.copy()
    else:
        server_share = incentive / total
        validator_share = dividends / total

    return YumaResult(
        stake=s,
        active_stake=a,
        consensus=consensus,
        validator_trust=validator_trust,
        ranks=rank_raw,
        trust=trust,
        incentive=incentive,
        dividends=dividends,
        bonds=bonds,
        validator_permit=new_permit,
        epoch_permit=gate,
        server_emission_share=server_share,
        validator_emission_share=validator_share,
    )


def _yuma2_bonds(
    w_bonds: FloatArray, b: FloatArray, incentive: FloatArray, a_k: FloatArray, alpha: float
) -> tuple[FloatArray, FloatArray]:
    """Legacy bonds: B' = colnorm(alpha colnorm(Wb a) + (1 - alpha) colnorm(B)); D = B' I.

    Bonds grow in proportion to stake times supported weight, so a validator's claim on a miner
    is its stake share among those who backed it, smoothed over epochs.
    """
    delta = _normalize_cols(w_bonds * a_k[:, None])
    ema = _normalize_cols(alpha * delta + (1.0 - alpha) * _normalize_cols(b))
    return ema, ema @ incentive


def _yuma3_bonds(
    w_bonds: FloatArray,
    b: FloatArray,
    consensus: FloatArray,
    incentive: FloatArray,
    a_k: FloatArray,
    p: YumaParams,
) -> tuple[FloatArray, FloatArray]:
    """Yuma 3: bonds are an EMA of the weights themselves (no stake factor), in [0, 1].

    D_i = a_i sum_j (B'_ij / sum_k B'_kj) I_j: stake enters once, at payout, so an early mover's
    bond to a rising miner is worth as much per unit stake as a large validator's.
    """
    if p.liquid_alpha and np.any(consensus != 0):
        alpha = _liquid_alpha(w_bonds, b, consensus, p)
        ema = np.minimum(1.0, (1.0 - alpha) * b + np.maximum(0.0, alpha * w_bonds))
    else:
        alpha_f = p.bonds_alpha
        ema = alpha_f * w_bonds + (1.0 - alpha_f) * b
    return ema, a_k * (_normalize_cols(ema) @ incentive)


def _liquid_alpha(w: FloatArray, b: FloatArray, consensus: FloatArray, p: YumaParams) -> FloatArray:
    """Per-bond EMA rate: fast when a validator buys above consensus or sells, slow otherwise.

    d = clamp(W - C, 0, 1) if W >= B else clamp(B - W, 0, 1);
    alpha = clamp(low + (high - low) / (1 + exp(-(steepness / 100) (d - 0.5))), low, high),
    exponent clamped to [-20, 20] as the chain's exp_safe does.
    """
    low, high = p.alpha_low / U16_MAX, p.alpha_high / U16_MAX
    buy = np.clip(w - consensus[None, :], 0.0, 1.0)
    sell = np.clip(b - w, 0.0, 1.0)
    d = np.where(w >= b, buy, sell)
    x = np.clip(-(p.alpha_sigmoid_steepness / 100.0) * (d - 0.5), -20.0, 20.0)
    sigmoid = 1.0 / (1.0 + np.exp(x))
    return np.clip(low + sigmoid * (high - low), low, high)


def stake_weighted_median(scores: FloatArray, stake: FloatArray, kappa: float) -> FloatArray:
    """Per column j, over rows with positive stake (renormalised): the smallest score v with
    sum_i stake_i [score_ij <= v] > sum(stake) - kappa, i.e. the largest score that stake >= kappa
    backs. A column split exactly 50/50 thus takes the higher score (kappa is just under 0.5).
    Columns are all zero when no row has stake. Matches math.rs weighted_median_col_sparse.
    """
    n = scores.shape[1]
    pos = stake > 0
    if not pos.any():
        return np.zeros(n)
    st = stake[pos] / stake[pos].sum()
    sc = np.ascontiguousarray(scores[pos].T)  # n x m: sort each column's m scores in a row
    order = np.argsort(sc, axis=1)  # order within ties cannot change the value found
    sorted_scores = np.take_along_axis(sc, order, axis=1)
    cum = np.cumsum(st[order], axis=1)
    # Compare with each column's own total so the kappa = 0 edge (take the max) is float-exact.
    above = cum > (cum[:, -1:] - kappa)
    idx = np.where(above.any(axis=1), above.argmax(axis=1), sc.shape[1] - 1)
    return sorted_scores[np.arange(n), idx]


def is_topk_nonzero(values: FloatArray, k: int) -> BoolArray:
    """True for non-zero values among the top k. Ties: a stable ascending sort drops the first
    n - k, so among equal values the lower index loses (math.rs is_topk_nonzero)."""
    values = np.asarray(values, dtype=np.float64)
    result = values != 0
    n = values.shape[0]
    if n > k:
        result[np.argsort(values, kind="stable")[: n - k]] = False
    return result


def compute_root_shares(weights: FloatArray, stake: FloatArray, kappa: int = 32_767) -> FloatArray:
    """Root consensus: members (rows) weight subnets (columns); each subnet's share of the block
    reward. The same defence as an epoch: rows normalised, C_k = stake-weighted median of column k
    with kappa, Wc = min(W, C), shares = normalise(s @ Wc), so a stake minority cannot lift a
    subnet above what the kappa-majority gives it. All zero when no staked member set weights.
    (Pre-dynamic-TAO Bittensor used a sigmoid of each subnet's stake support instead.)"""
    w = _normalize_rows(np.asarray(weights, dtype=np.float64))
    s = _normalize(np.asarray(stake, dtype=np.float64))
    consensus = stake_weighted_median(w, s, kappa / U16_MAX)
    return _normalize(s @ np.minimum(w, consensus[None, :]))


def activity_mask(last_update: NDArray[np.int64], current_block: int, cutoff_blocks: int) -> BoolArray:
    """Active unless last_update + cutoff < current_block (step 1)."""
    return ~(np.asarray(last_update) + cutoff_blocks < current_block)


def registered_since(block_at_registration: NDArray[np.int64], last_tempo_block: int) -> BoolArray:
    """Columns whose bonds reset: last_tempo <= block_at_registration (last_tempo is the block after
    the previous epoch, or current_block - tempo when there was none)."""
    return last_tempo_block <= np.asarray(block_at_registration)


# u16 storage, as the chain persists weights, bonds and outputs.


def to_u16(x: FloatArray | float) -> NDArray[np.uint16]:
    """floor(x * 65535) clipped to [0, 65535] (fixed_proportion_to_u16)."""
    return np.clip(np.floor(np.asarray(x, dtype=np.float64) * U16_MAX), 0, U16_MAX).astype(np.uint16)


def max_upscale_rows_u16(weights: FloatArray) -> NDArray[np.uint16]:
    """Weights as set_weights stores them: each row scaled so its max is 65535, rounded half up
    (vec_max_upscale_to_u16). All-zero rows stay zero."""
    w = np.asarray(weights, dtype=np.float64)
    top = np.max(w, axis=-1, keepdims=True, initial=0.0)
    scaled = np.divide(w * U16_MAX, top, out=np.zeros_like(w), where=top > 0)
    return np.clip(np.floor(scaled + 0.5), 0, U16_MAX).astype(np.uint16)


def col_max_upscale(x: FloatArray) -> FloatArray:
    """Each column divided by its max, so the largest bond on a miner is 1; zero columns stay zero."""
    x = np.asarray(x, dtype=np.float64)
    top = np.max(x, axis=0, keepdims=True, initial=0.0)
    return np.divide(x, top, out=np.zeros_like(x), where=top > 0)


def bonds_to_u16(bonds: FloatArray, yuma3: bool) -> NDArray[np.uint16]:
    """Yuma 2 stores B' column max-upscaled (its scale is re-normalised away on load); Yuma 3 stores
    the fractions themselves, which carry meaning across epochs."""
    return to_u16(bonds if yuma3 else col_max_upscale(bonds))


def bonds_from_u16(stored: NDArray[np.uint16]) -> FloatArray:
    """Stored u16 bonds as fractions u / 65535, the prev_bonds compute_yuma expects (both variants)."""
    return np.asarray(stored, dtype=np.float64) / U16_MAX


BondRows = dict[int, tuple[NDArray[np.integer], NDArray[np.uint16]]]
"""Stored bonds, sparse as the chain keeps them: uid -> (target uids, u16 values), non-zero only."""


def next_bond_rows(stored: BondRows, bonds: FloatArray, epoch_permit: BoolArray, new_permit: BoolArray,
                   yuma3: bool) -> BondRows:
    """The chain's storage rule for an epoch's bonds: a uid with a new permit stores its new row
    (bonds_to_u16 of the variant), one that lost its permit is emptied, any other keeps its stored
    row. Only permitted rows are converted, so a 4096-uid subnet costs its few validator rows."""
    epoch_permit, new_permit = np.asarray(epoch_permit, dtype=bool), np.asarray(new_permit, dtype=bool)
    n = new_permit.shape[0]
    rows: BondRows = {uid: row for uid, row in stored.items()
                      if uid < n and not epoch_permit[uid] and not new_permit[uid]}
    # converted over every row that voted (Yuma 2's column max spans them), stored where the permit stays
    gate = np.flatnonzero(epoch_permit)
    for uid, row in zip(gate.tolist(), bonds_to_u16(np.asarray(bonds)[gate], yuma3), strict=True):
        keep = np.flatnonzero(row)
        if new_permit[uid] and keep.size:
            rows[uid] = (keep, row[keep])
    return rows


def dense_bonds(rows: BondRows, n: int) -> NDArray[np.uint16]:
    """Sparse stored rows as an n x n u16 matrix (targets past n dropped)."""
    out = np.zeros((n, n), dtype=np.uint16)
    for uid, (targets, values) in rows.items():
        keep = np.asarray(targets) < n
        if uid < n:
            out[uid, np.asarray(targets)[keep]] = np.asarray(values)[keep]
    return out


def _normalize(x: FloatArray) -> FloatArray:
    total = x.sum()
    return x / total if total != 0 else x.copy()


# Inputs are non-negative, so a zero sum means an all-zero row or column: dividing it by 1 keeps it.
def _normalize_rows(x: FloatArray) -> FloatArray:
    total = x.sum(axis=1, keepdims=True)
    return x / np.where(total == 0, 1.0, total)


def _normalize_cols(x: FloatArray) -> FloatArray:
    total = x.sum(axis=0, keepdims=True)
    return x / np.where(total == 0, 1.0, total)


def _scatter(n: int, rows: NDArray[np.intp], values: FloatArray) -> FloatArray:
    out = np.zeros(n)
    out[rows] = values
    return out
