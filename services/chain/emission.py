"""Emission in rao: the halving block reward and the integer splits of it.

Pure integer arithmetic (subtensor coinbase/block_emission.rs, run_coinbase.rs; YUMA-SPEC section
2). Float shares from Yuma are turned into integer weights once, then every split rounds down and
hands its remainder to a named place, so the parts always add up to the total exactly.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from services.common.units import RAO_PER_TAO, TOTAL_SUPPLY_RAO, U16_MAX, Rao

DEFAULT_BLOCK_EMISSION_RAO = Rao(RAO_PER_TAO)
DEFAULT_OWNER_CUT_U16 = 11_796  # 18%
DEFAULT_TAKE_U16 = 11_796  # 18%
DELEGATE = "delegate"
"""Default key under which split_dividend returns the hotkey owner's part."""


def halvings(total_issuance_rao: int) -> int:
    """k = floor(log2(S / (S - issuance))), S = 21e15 rao: the largest k with 2^k (S - I) <= S.

    Integers, not the chain's I96F32 log2, so the k-th halving lands exactly on halving_threshold(k).
    """
    left = TOTAL_SUPPLY_RAO - _check_rao(total_issuance_rao, "total_issuance_rao")
    if left <= 0:
        raise ValueError("issuance at or past the total supply has no halving count")
    k = 0
    while left << (k + 1) <= TOTAL_SUPPLY_RAO:
        k += 1
    return k


def halving_threshold(k: int) -> Rao:
    """Issuance at which the reward halves for the k-th time: the least I with 2^k (S - I) <= S,
    i.e. S - floor(S / 2^k) (10.5M TAO, 15.75M, 18.375M, ...)."""
    if k < 0:
        raise ValueError(f"k={k}: need k >= 0")
    return Rao(TOTAL_SUPPLY_RAO - (TOTAL_SUPPLY_RAO >> k))


def block_emission(total_issuance_rao: int) -> Rao:
    """Rao minted per block: 1e9 // 2^k, zero at or past 21M TAO, never more than what is left."""
    issuance = _check_rao(total_issuance_rao, "total_issuance_rao")
    left = TOTAL_SUPPLY_RAO - issuance
    if left <= 0:
        return Rao(0)
    return Rao(min(DEFAULT_BLOCK_EMISSION_RAO >> halvings(issuance), left))


@dataclass(frozen=True, slots=True)
class BlockSplit:
    per_subnet: dict[int, Rao]
    remainder_rao: Rao
    """Rounding dust (or the whole reward when no subnet has a share); the caller recycles it."""


def split_block_emission(reward_rao: int, subnet_shares: Mapping[int, float | int]) -> BlockSplit:
    """Reward to subnets pro rata to their shares (int or float weights, taken at their exact
    value), each floored; sum(per_subnet) + remainder == reward."""
    reward_rao = _check_rao(reward_rao, "reward_rao")
    netuids = list(subnet_shares)
    parts = _pro_rata(reward_rao, _integer_weights([subnet_shares[u] for u in netuids]))
    paid = sum(parts)
    return BlockSplit(
        per_subnet={u: Rao(x) for u, x in zip(netuids, parts, strict=True)},
        remainder_rao=Rao(reward_rao - paid),
    )


@dataclass(frozen=True, slots=True)
class EpochPayout:
    owner_rao: Rao
    """Subnet owner's cut, taken first."""
    miner_rao: tuple[Rao, ...]
    """Per uid: server emission, share I_j / T of what is left after the owner cut."""
    validator_rao: tuple[Rao, ...]
    """Per uid: validator emission, share D_i / T, before take and nominators (split_dividend)."""
    dust_rao: Rao
    """Rounding remainder (all of it if every share is zero); owner + miners + validators + dust
    == total."""


def split_epoch_emission(
    total_rao: int,
    incentive: Sequence[float] | np.ndarray,
    dividends: Sequence[float] | np.ndarray,
    owner_cut_u16: int = DEFAULT_OWNER_CUT_U16,
) -> EpochPayout:
    """owner = floor(total * cut / 65535); each uid then gets floor(rest * x / T) with
    T = sum(incentive) + sum(dividends), x its incentive or dividend.

    Pass YumaResult.server_emission_share and validator_emission_share to get the chain's fallback
    when no weights count (validators paid by stake); raw incentive and dividends give the same
    split otherwise.
    """
    total_rao = _check_rao(total_rao, "total_rao")
    if not 0 <= owner_cut_u16 <= U16_MAX:
        raise ValueError(f"owner_cut_u16={owner_cut_u16}: need 0..{U16_MAX}")
    inc = np.asarray(incentive, dtype=np.float64)
    div = np.asarray(dividends, dtype=np.float64)
    owner = total_rao * owner_cut_u16 // U16_MAX
    rest = total_rao - owner
    parts = _pro_rata(rest, _integer_weights_array(np.concatenate([inc, div])))
    miners, validators = parts[: inc.size], parts[inc.size :]
    return EpochPayout(
        owner_rao=Rao(owner),
        miner_rao=tuple(Rao(x) for x in miners),
        validator_rao=tuple(Rao(x) for x in validators),
        dust_rao=Rao(rest - sum(parts)),
    )


def split_dividend(
    dividend_rao: int,
    take_u16: int,
    own_stake_rao: int,
    nominator_stakes: Mapping[str, int],
    *,
    delegate: str = DELEGATE,
) -> dict[str, Rao]:
    """A validator's dividend: the delegate (hotkey owner) keeps take = floor(D * take / 65535);
    the rest goes pro rata to stake, own stake included, as the chain's raise of the hotkey's
    stake pool does. Floors everywhere, dust to the delegate; the values add up to D exactly.
    A nominator keyed like the delegate is merged into the delegate's entry.
    """
    dividend_rao = _check_rao(dividend_rao, "dividend_rao")
    own_stake_rao = _check_rao(own_stake_rao, "own_stake_rao")
    if not 0 <= take_u16 <= U16_MAX:
        raise ValueError(f"take_u16={take_u16}: need 0..{U16_MAX}")
    for key, amount in nominator_stakes.items():
        _check_rao(amount, f"stake of {key}")
    take = dividend_rao * take_u16 // U16_MAX
    rest = dividend_rao - take
    total_stake = own_stake_rao + sum(nominator_stakes.values())
    out = {
        key: Rao(rest * amount // total_stake if total_stake else 0)
        for key, amount in nominator_stakes.items()
        if key != delegate
    }
    # Delegate: take, its own pro-rata part and every rao of dust (floors only ever round down).
    out[delegate] = Rao(dividend_rao - sum(out.values()))
    return out


def _integer_weights(shares: Sequence[float | int]) -> list[int]:
    """Exact integers proportional to the shares: a float is a dyadic rational m / 2^p, so all of
    them scale to integers over the largest 2^p with no rounding (0.75 : 0.25 stays 3 : 1)."""
    ratios = []
    for x in shares:
        if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)):
            raise ValueError(f"share {x!r} is not a number")
        if not math.isfinite(x) or x < 0:
            raise ValueError(f"share {x!r}: need finite and non-negative")
        ratios.append(
            int(x).as_integer_ratio() if isinstance(x, (int, np.integer)) else float(x).as_integer_ratio()
        )
    denominator = max((d for _, d in ratios), default=1)
    return [num * (denominator // d) for num, d in ratios]


def _integer_weights_array(shares: np.ndarray) -> list[int]:
    """_integer_weights for a float array, vectorised (a 4096-uid epoch has 8192 shares): each
    x = m * 2^e exactly with an integer 53-bit mantissa m, so m << (e - min e) are exact integers
    proportional to the shares, which is all _pro_rata needs."""
    x = np.asarray(shares, dtype=np.float64)
    bad = ~np.isfinite(x) | (x < 0)
    if bad.any():
        raise ValueError(f"share {x[bad][0]!r}: need finite and non-negative")
    mantissa, exponent = np.frexp(x)  # x = mantissa * 2^exponent, 0.5 <= mantissa < 1, or 0
    ints = (mantissa * 2.0**53).astype(np.int64)  # exact: a double carries 53 mantissa bits
    nonzero = ints != 0
    if not nonzero.any():
        return [0] * x.size
    shift = exponent.astype(np.int64) - int(exponent[nonzero].min())
    return [m << s if m else 0 for m, s in zip(ints.tolist(), shift.tolist(), strict=True)]


def _pro_rata(amount: int, weights: list[int]) -> list[int]:
    """floor(amount * w_i / sum w); all zero when sum w == 0. Sum never exceeds amount."""
    total = sum(weights)
    if total == 0:
        return [0] * len(weights)
    return [amount * w // total for w in weights]


def _check_rao(value: int, what: str) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{what}={value!r}: need a non-negative integer number of rao")
    return int(value)
