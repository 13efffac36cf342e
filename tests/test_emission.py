"""Block reward halvings and integer splits (YUMA-SPEC section 2): exact, in rao."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.chain.emission import (
    DEFAULT_BLOCK_EMISSION_RAO,
    DELEGATE,
    block_emission,
    halving_threshold,
    halvings,
    split_block_emission,
    split_dividend,
    split_epoch_emission,
)
from services.chain.yuma import YumaParams, compute_yuma
from services.common.units import RAO_PER_TAO, TOTAL_SUPPLY_RAO

TAO = RAO_PER_TAO


def test_first_halving_happens_at_exactly_10_5m_tao():
    assert block_emission(0) == 1_000_000_000
    assert block_emission(10_500_000 * TAO - 1) == 1_000_000_000
    assert block_emission(10_500_000 * TAO) == 500_000_000


def test_halving_thresholds_follow_21m_times_one_minus_two_to_minus_k():
    assert halving_threshold(0) == 0
    assert halving_threshold(1) == 10_500_000 * TAO
    assert halving_threshold(2) == 15_750_000 * TAO
    assert halving_threshold(3) == 18_375_000 * TAO
    for k in range(1, 40):
        t = halving_threshold(k)
        assert halvings(t - 1) == k - 1 and halvings(t) == k
        assert block_emission(t - 1) == min(DEFAULT_BLOCK_EMISSION_RAO >> (k - 1), TOTAL_SUPPLY_RAO - t + 1)
        assert block_emission(t) == min(DEFAULT_BLOCK_EMISSION_RAO >> k, TOTAL_SUPPLY_RAO - t)


def test_emission_stops_at_21m_and_never_mints_past_it():
    """The reward halves to 0 rao after 30 halvings, with about 0.02 TAO still unminted, so the
    cap at 21e15 - issuance is only a guard; at or past the supply nothing is minted."""
    last = halving_threshold(30)
    assert block_emission(last - 1) == 1 and block_emission(last) == 0
    assert TOTAL_SUPPLY_RAO - last == TOTAL_SUPPLY_RAO >> 30 == 19_557_774
    assert block_emission(TOTAL_SUPPLY_RAO - 3) == 0
    assert block_emission(TOTAL_SUPPLY_RAO) == 0
    assert block_emission(TOTAL_SUPPLY_RAO + 1) == 0


@settings(max_examples=500)
@given(st.integers(0, TOTAL_SUPPLY_RAO + 10))
def test_emission_is_the_chain_formula_and_stays_within_supply(issuance):
    """k = floor(log2(1 / (1 - I / 21e15))) exactly, emission 1e9 // 2^k, issuance + emission
    never above 21e15."""
    e = block_emission(issuance)
    assert issuance + e <= max(issuance, TOTAL_SUPPLY_RAO)
    if issuance < TOTAL_SUPPLY_RAO:
        k = halvings(issuance)
        left = TOTAL_SUPPLY_RAO - issuance
        assert left << k <= TOTAL_SUPPLY_RAO < left << (k + 1)
        assert e == min(DEFAULT_BLOCK_EMISSION_RAO >> k, left)


@pytest.mark.parametrize("tao", [0, 1, 7_200, 5_000_000, 12_000_000, 17_000_000, 20_000_000])
def test_emission_agrees_with_the_float_formula_away_from_thresholds(tao):
    """The chain's get_block_emission_for_issuance, in floats, where rounding cannot matter."""
    issuance = tao * TAO
    k = math.floor(math.log2(1 / (1 - issuance / TOTAL_SUPPLY_RAO)))
    assert block_emission(issuance) == int(1e9 / 2**k)


def test_block_split_adds_up_with_the_remainder_named():
    split = split_block_emission(1_000_000_000, {1: 1, 2: 1, 3: 1})
    assert split.per_subnet == {1: 333_333_333, 2: 333_333_333, 3: 333_333_333}
    assert split.remainder_rao == 1
    nothing = split_block_emission(1_000, {1: 0.0, 2: 0})
    assert nothing.per_subnet == {1: 0, 2: 0} and nothing.remainder_rao == 1_000
    assert split_block_emission(1_000, {}).remainder_rao == 1_000


@settings(max_examples=300)
@given(
    st.integers(0, 10**12),
    st.dictionaries(st.integers(0, 1024), st.floats(0, 1e6, allow_nan=False), max_size=64),
)
def test_block_split_parts_sum_to_the_reward(reward, shares):
    split = split_block_emission(reward, shares)
    assert sum(split.per_subnet.values()) + split.remainder_rao == reward
    assert all(v >= 0 for v in split.per_subnet.values()) and split.remainder_rao >= 0
    total = sum(shares.values())
    for netuid, share in shares.items():
        if total > 0:  # each subnet within a rao or two of its exact share
            assert abs(split.per_subnet[netuid] - reward * share / total) <= 2 + reward * 1e-12


def test_epoch_split_owner_cut_then_incentive_and_dividends():
    payout = split_epoch_emission(1_000_000_000, [0.0, 0.5, 0.5], [1.0, 0.0, 0.0])
    assert payout.owner_rao == 1_000_000_000 * 11_796 // 65_535 == 179_995_422
    rest = 1_000_000_000 - payout.owner_rao
    assert payout.miner_rao == (0, rest // 4, rest // 4)
    assert payout.validator_rao == (rest // 2, 0, 0)
    assert payout.owner_rao + sum(payout.miner_rao) + sum(payout.validator_rao) + payout.dust_rao == 10**9


def test_epoch_split_uses_yumas_fallback_when_no_weights_count():
    """With no weights T == 0: validators share by stake, as the chain's epoch does."""
    r = compute_yuma(np.zeros((3, 3)), np.array([3.0, 1.0, 0.0]), None, YumaParams())
    payout = split_epoch_emission(1_000, r.server_emission_share, r.validator_emission_share, owner_cut_u16=0)
    assert payout.validator_rao == (750, 250, 0) and payout.miner_rao == (0, 0, 0)


@settings(max_examples=300)
@given(
    st.integers(0, TOTAL_SUPPLY_RAO),
    st.lists(st.floats(0, 1, allow_nan=False), min_size=1, max_size=40),
    st.lists(st.floats(0, 1, allow_nan=False), min_size=1, max_size=40),
    st.integers(0, 65_535),
)
def test_epoch_split_parts_add_up_exactly(total, incentive, dividends, cut):
    payout = split_epoch_emission(total, incentive, dividends, owner_cut_u16=cut)
    parts = [payout.owner_rao, *payout.miner_rao, *payout.validator_rao, payout.dust_rao]
    assert sum(parts) == total and min(parts) >= 0
    assert len(payout.miner_rao) == len(incentive) and len(payout.validator_rao) == len(dividends)
    if sum(incentive) + sum(dividends) > 0:
        assert payout.dust_rao <= len(incentive) + len(dividends) + 1


def test_dividend_split_gives_take_then_pro_rata():
    """18% take; the remaining 82% pro rata to own stake 1 and nominators 1 and 2."""
    out = split_dividend(1_000_000, 11_796, 1_000, {"alice": 1_000, "bob": 2_000})
    take = 1_000_000 * 11_796 // 65_535
    rest = 1_000_000 - take
    assert out["alice"] == rest // 4 and out["bob"] == rest // 2
    assert out[DELEGATE] == 1_000_000 - out["alice"] - out["bob"]
    assert sum(out.values()) == 1_000_000


def test_dividend_split_without_stake_goes_to_the_delegate():
    assert split_dividend(500, 0, 0, {}) == {DELEGATE: 500}
    assert split_dividend(500, 0, 0, {"x": 0}, delegate="owner") == {"x": 0, "owner": 500}


def test_dividend_split_merges_a_nominator_keyed_like_the_delegate():
    out = split_dividend(1_000, 0, 100, {"owner": 100, "n": 200}, delegate="owner")
    assert out == {"owner": 500, "n": 500}


@settings(max_examples=300)
@given(
    st.integers(0, 10**15),
    st.integers(0, 65_535),
    st.integers(0, 10**15),
    st.dictionaries(st.text(min_size=1, max_size=4), st.integers(0, 10**15), max_size=20),
)
def test_dividend_split_adds_up_and_delegate_gets_at_least_its_take(dividend, take, own, nominators):
    out = split_dividend(dividend, take, own, nominators, delegate="\0delegate")
    assert sum(out.values()) == dividend and min(out.values()) >= 0
    assert out["\0delegate"] >= dividend * take // 65_535


@pytest.mark.parametrize(
    ("call", "args"),
    [
        (block_emission, (-1,)),
        (halving_threshold, (-1,)),
        (split_block_emission, (-5, {1: 1})),
        (split_block_emission, (5, {1: -1.0})),
        (split_epoch_emission, (10, [1.0], [0.0], 70_000)),
        (split_dividend, (10, 65_536, 0, {})),
        (split_dividend, (10, 0, 0, {"a": -1})),
    ],
)
def test_bad_inputs_are_rejected(call, args):
    with pytest.raises(ValueError):
        call(*args)
