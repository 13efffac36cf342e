"""Yuma consensus against subtensor's own tests (pallets/subtensor/src/tests/epoch.rs, math.rs at
14bc6f9f) plus invariants.

The chain computes in I32F32 and carries bonds as u16 between epochs; we compute in float64 and
carry bonds through the same u16 storage (ChainSim below), so stored values match to the u16
unit except where fixed-point truncation drifts (YUMA-SPEC section 4); each test says which
tolerance it uses and why.
"""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.chain.yuma import (
    U16_MAX,
    BondRows,
    YumaParams,
    YumaResult,
    activity_mask,
    bonds_from_u16,
    bonds_to_u16,
    col_max_upscale,
    compute_yuma,
    dense_bonds,
    is_topk_nonzero,
    max_upscale_rows_u16,
    next_bond_rows,
    registered_since,
    stake_weighted_median,
    to_u16,
)

M = U16_MAX
EMISSION_RAO = 1_000_000_000


class ChainSim:
    """The storage around an epoch, as subtensor's tests drive it: u16 weights row max-upscaled
    at set_weights, u16 bonds, stored permits (all false before the first epoch), last_update,
    block_at_registration. No LastMechansimStepBlock is set by direct epoch() calls in those
    tests, so the bond-reset block is max(0, block - tempo)."""

    def __init__(self, stake, p: YumaParams, *, tempo: int = 360, owner_uid: int | None = None):
        n = len(stake)
        self.p, self.tempo, self.owner_uid, self.block = p, tempo, owner_uid, 0
        self.stake = np.asarray(stake, dtype=np.float64)
        self.weights = np.zeros((n, n), dtype=np.uint16)
        self.bond_rows: BondRows = {}
        self.permit = np.zeros(n, dtype=bool)
        self.last_update = np.zeros(n, dtype=np.int64)
        self.block_at_registration = np.zeros(n, dtype=np.int64)

    def set_weights(self, uid: int, dests, values) -> None:
        row = np.zeros(len(self.stake))
        row[list(dests)] = values
        self.weights[uid] = max_upscale_rows_u16(row)
        self.last_update[uid] = self.block

    @property
    def bonds(self) -> np.ndarray:
        """The stored u16 bonds as a dense n x n matrix."""
        return dense_bonds(self.bond_rows, len(self.stake))

    def reset_bonds(self, column: int) -> None:
        """do_reset_bonds: every stored bond on uid `column` is zeroed."""
        for uid, (targets, values) in list(self.bond_rows.items()):
            keep = np.asarray(targets) != column
            self.bond_rows[uid] = (np.asarray(targets)[keep], np.asarray(values)[keep])

    def register(self, uid: int, stake: float = 0.0) -> None:
        """replace_neuron + clear_neuron: a new key at uid."""
        self.stake[uid] = stake
        self.weights[uid] = 0
        self.weights[:, uid] = 0
        self.bond_rows.pop(uid, None)
        self.permit[uid] = False
        self.block_at_registration[uid] = self.last_update[uid] = self.block

    def epoch(self) -> YumaResult:
        r = compute_yuma(
            self.weights,
            self.stake,
            bonds_from_u16(self.bonds),
            self.p,
            active=activity_mask(self.last_update, self.block, 5000),
            validator_permit=self.permit,
            owner_uid=self.owner_uid,
            last_update=self.last_update,
            block_at_registration=self.block_at_registration,
            registered_since_last_epoch=registered_since(
                self.block_at_registration, max(0, self.block - self.tempo)
            ),
        )
        # the epoch's own storage rule (services/chain/epoch.py stores what next_bond_rows gives)
        self.bond_rows = next_bond_rows(self.bond_rows, r.bonds, r.epoch_permit, r.validator_permit, self.p.yuma3)
        self.permit = r.validator_permit
        return r


def emission(r: YumaResult) -> np.ndarray:
    """The chain's per-uid Emission for E = 1e9 rao: floor((server + validator share) * E)."""
    return np.floor((r.server_emission_share + r.validator_emission_share) * EMISSION_RAO)


# --- math.rs -------------------------------------------------------------------------------


def _median(stake, score, majority):
    column = np.array(score, dtype=float)[:, None]
    return stake_weighted_median(column, np.array(stake, dtype=float), majority)[0]


@pytest.mark.parametrize(
    ("stake", "score", "expected"),
    [
        ([1.0], [1.0], 1.0),
        ([0.49, 0.51], [0.5, 1.0], 1.0),
        ([0.51, 0.49], [0.5, 1.0], 0.5),
        ([0.49, 0.0, 0.51], [0.5, 0.7, 1.0], 1.0),
        ([0.49, 0.01, 0.5], [0.5, 0.7, 1.0], 0.7),
        ([0.49, 0.51, 0.0], [0.5, 0.7, 1.0], 0.7),
        ([0.0, 0.49, 0.51], [0.5, 0.7, 1.0], 1.0),
        ([0.0, 0.49, 0.0, 0.51], [0.5, 0.5, 1.0, 1.0], 1.0),
        ([0.0, 0.49, 0.0, 0.51, 0.0], [0.5, 0.5, 1.0, 1.0, 0.5], 1.0),
        ([0.2] * 5, [0.8, 0.2, 1.0, 0.6, 0.4], 0.6),
        ([0.1] * 10, [0.8, 0.8, 0.2, 0.2, 1.0, 1.0, 0.6, 0.6, 0.4, 0.4], 0.6),
    ],
)
def test_weighted_median_matches_subtensor_cases(stake, score, expected):
    """math.rs test_math_weighted_median (fixed cases, majority 0.51). Exact: the median is one
    of the input scores, so there is nothing to round."""
    assert _median(stake, score, 0.51) == expected


def test_weighted_median_of_no_stake_is_zero():
    """math.rs test_math_weighted_median (empty) and test_math_weighted_median_col ([0, 0])."""
    assert _median([], [], 0.51) == 0.0
    assert list(stake_weighted_median(np.zeros((2, 2)), np.zeros(2), 0.5)) == [0.0, 0.0]


@pytest.mark.parametrize(
    ("stake", "weights", "majority", "expected"),
    [
        ([0, 0.75, 0.25, 0], [0, 0.1, 0, 0, 0.2, 0.4, 0, 0.3, 0.1, 0, 0.4, 0.5], 0.24, [0, 0.3, 0.4]),
        ([0, 0.75, 0.25, 0], [0, 0.1, 0, 0, 0.2, 0.4, 0, 0.3, 0.1, 0, 0.4, 0.5], 0.26, [0, 0.2, 0.4]),
        ([0, 0.75, 0.25, 0], [0, 0.1, 0, 0, 0.2, 0.4, 0, 0.3, 0.1, 0, 0.4, 0.5], 0.76, [0, 0.2, 0.1]),
        ([0, 0.3, 0.2, 0.5], [0, 0.1, 0, 0, 0.2, 0.4, 0, 0.3, 0.1, 0, 0, 0.5], 0.51, [0, 0, 0.4]),
    ],
)
def test_weighted_median_col_matches_subtensor_cases(stake, weights, majority, expected):
    """math.rs test_math_weighted_median_col and _col_sparse (4 x 3 matrices). Exact."""
    w = np.array(weights, dtype=float).reshape(4, 3)
    assert list(stake_weighted_median(w, np.array(stake, dtype=float), majority)) == expected


def test_exact_50_50_split_takes_the_higher_weight():
    """YUMA-SPEC 4(2): kappa = 32767/65535 is just under 0.5, so half the stake is enough."""
    w = np.array([[0.3], [0.7]])
    assert stake_weighted_median(w, np.array([0.5, 0.5]), 32_767 / M)[0] == 0.7


def _reference_median(stake, score, kappa):
    """The spec's closed form, brute force: smallest attained score whose cumulative stake
    (scores <= it) is strictly above sum - kappa; the max if none is."""
    pos = stake > 0
    if not pos.any():
        return 0.0
    s, x = stake[pos] / stake[pos].sum(), score[pos]
    for v in sorted(set(x)):
        if s[x <= v].sum() > s.sum() - kappa:
            return v
    return max(x)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 5), st.integers(0, 6)),
        min_size=1,
        max_size=12,
    ),
    st.sampled_from([0.0, 0.2499, 0.49, 32_767 / M, 0.51, 0.9999999, 1.0]),
)
def test_weighted_median_matches_closed_form(pairs, kappa):
    """math.rs test_math_weighted_median (random part): random stakes with ties and zero stake,
    many kappas. Stakes are small integers and no kappa is a ratio of them, so no cumulative
    stake sits exactly on the boundary, where float and I32F32 rounding may legitimately differ."""
    stake = np.array([p[0] for p in pairs], dtype=float)
    score = np.array([p[1] for p in pairs], dtype=float) / 6
    got = stake_weighted_median(score[:, None], stake, kappa)[0]
    assert got == _reference_median(stake, score, kappa)


@pytest.mark.parametrize(
    ("vector", "k", "expected"),
    [
        (list(range(10)), 0, [False] * 10),
        (list(range(10)), 5, [False] * 5 + [True] * 5),
        (list(range(10)), 10, [False] + [True] * 9),
        (list(range(10)), 100, [False] + [True] * 9),
        (list(range(9, -1, -1)), 5, [True] * 5 + [False] * 5),
        ([9, 0, 8, 1, 7, 2, 6, 3, 5, 4], 5, [True, False] * 5),
        ([0, 1, 2, 3, 4, 5, 5, 5, 5, 6], 5, [False] * 5 + [True] * 5),
        ([5, 5, 5, 5], 2, [False, False, True, True]),
    ],
)
def test_topk_nonzero_keeps_largest_and_drops_lower_uid_on_ties(vector, k, expected):
    """math.rs test_math_is_topk, with is_topk_nonzero's extra rule that zero never qualifies
    (so the 0 at index 0 loses even when k >= n). Exact."""
    assert is_topk_nonzero(np.array(vector, dtype=float), k).tolist() == expected


# --- epoch.rs: Yuma 2 ----------------------------------------------------------------------


def _distribute(validators_n: int, n: int, interleave: int):
    uids = np.arange(n)
    if interleave == 0:
        return uids[:validators_n], uids[validators_n:]
    mask = uids % (n // validators_n) == 0
    return uids[mask], uids[~mask]


@pytest.mark.parametrize("interleave", [0, 1])
@pytest.mark.parametrize("server_self", [False, True])
def test_512_graph(interleave, server_self):
    """epoch.rs test_512_graph: 64 validators at 21M/64 stake give each of 448 servers
    u16::MAX / 512, three epochs. Exact: D = 1023, C = I = 146, E = 7812500 / 1116071, bonds
    max-upscaled to 65535. (Its random interleave 2 is covered by interleave 0 and 1.)"""
    validators, servers = _distribute(64, 512, interleave)
    stake = np.zeros(512)
    stake[validators] = 328_125_000_000_000
    sim = ChainSim(stake, YumaParams(max_allowed_validators=64), tempo=M - 1)
    sim.epoch()
    sim.block = 1
    for uid in validators:
        sim.set_weights(uid, servers, M // 512)
    if server_self:
        for uid in servers:
            sim.set_weights(uid, [uid], M)
    for _ in range(3):
        r = sim.epoch()
    e = emission(r)
    assert set(to_u16(r.dividends)[validators]) == {1023}
    assert set(to_u16(r.consensus)[validators]) == {0}
    assert set(to_u16(r.incentive)[validators]) == {0}
    assert set(e[validators]) == {7_812_500}
    assert set(to_u16(r.consensus)[servers]) == {146}
    assert set(to_u16(r.incentive)[servers]) == {146}
    assert set(to_u16(r.dividends)[servers]) == {0}
    assert set(e[servers]) == {1_116_071}
    v, s = validators[0], servers[0]
    assert set(sim.bonds[validators, s]) == {M}
    assert sim.bonds[validators, v].sum() == 0
    assert sim.bonds[servers, v].sum() == 0 and sim.bonds[servers, s].sum() == 0


def test_10_graph_self_weights_only_pay_by_stake():
    """epoch.rs test_10_graph: 10 uids with stake 1 and only self-weights. All outputs 0 and
    Emission 99999999 each; we get 100000000 because I32F32 holds 0.1 just below 0.1. Tolerance:
    1 rao."""
    sim = ChainSim(np.ones(10), YumaParams(max_allowed_validators=10), tempo=M - 1)
    sim.epoch()
    sim.block = 1
    for uid in range(10):
        sim.set_weights(uid, [uid], M)
    r = sim.epoch()
    for field in (r.ranks, r.trust, r.consensus, r.incentive, r.dividends):
        assert not field.any()
    assert np.all(np.abs(emission(r) - 99_999_999) <= 1)


def test_bonds():
    """epoch.rs test_bonds: stakes 1..4, four validators grade four servers 0.1..0.4, then one
    by one switch to self-weight or to server 4 only. Bonds stored (u16, col max-upscaled) match
    the chain's assert_eq! values to +-1 u16: the chain's fixed-point EMA truncates a unit now
    and then where float keeps it (12603 -> 12602, 49151 -> 49150; YUMA-SPEC section 4(1))."""
    n = 8
    sim = ChainSim([1, 2, 3, 4, 0, 0, 0, 0], YumaParams(max_allowed_validators=n), tempo=1)
    sim.epoch()
    sim.block = 1
    for uid in range(4):
        sim.set_weights(uid, range(4, 8), [M // 4, M // 2, (M // 4) * 3, M])

    def step(col: int, expected: list[int]) -> None:
        sim.epoch()
        assert np.all(np.abs(sim.bonds[:4, col].astype(int) - expected) <= 1), (sim.bonds[:4, col], expected)
        sim.block += 1

    step(4, [16383, 32767, 49151, 65535])
    for uid, col, expected in [
        (0, 4, [14582, 32767, 49151, 65535]),
        (1, 4, [12603, 28321, 49151, 65535]),
        (2, 7, [12602, 28320, 49150, 65535]),
    ]:
        sim.set_weights(uid, [uid], M)
        step(col, expected)
    sim.set_weights(2, [7], M)
    for expected in ([10951, 24609, 49150, 65535], [9559, 21482, 49150, 65535], [8376, 18824, 49150, 65535]):
        step(7, expected)


def test_active_stake():
    """epoch.rs test_active_stake: two validators grade two servers 0.5/0.5; past the activity
    cutoff only uid 0 renews, later uid 1 too. Exact in u16 (D 32767 -> 36044/29490 ->
    35716/29818, bonds 65535/53619 -> 65535/54712); Emission within 1 rao (chain 274999999 where
    the real value is 275000000)."""
    sim = ChainSim(np.ones(4), YumaParams(max_allowed_validators=4), tempo=1)
    sim.epoch()
    sim.block = 1
    for uid in (0, 1):
        sim.set_weights(uid, [2, 3], [M // 2, M // 2])
    r = sim.epoch()
    assert list(to_u16(r.dividends)[:2]) == [32767, 32767]
    assert np.all(emission(r) == 250_000_000)
    assert (sim.bonds[:2, :2] == 0).all() and (sim.bonds[:2, 2:] == M).all()

    sim.block = 5002
    sim.set_weights(0, [2, 3], [M // 2, M // 2])
    r = sim.epoch()
    assert list(to_u16(r.dividends)[:2]) == [36044, 29490]
    assert np.all(np.abs(emission(r)[:2] - [274_999_999, 224_999_999]) <= 1)
    assert list(sim.bonds[0, 2:]) == [M, M] and list(sim.bonds[1, 2:]) == [53619, 53619]

    sim.set_weights(1, [2, 3], [M // 2, M // 2])
    sim.block = 5003
    r = sim.epoch()
    assert list(to_u16(r.dividends)[:2]) == [35716, 29818]
    assert np.all(np.abs(emission(r)[:2] - [272_501_132, 227_498_866]) <= 1)
    assert list(sim.bonds[0, 2:]) == [M, M] and list(sim.bonds[1, 2:]) == [54712, 54712]


def test_outdated_weights():
    """epoch.rs test_outdated_weights: server uid 3 is replaced; only uid 0 re-sets weights, so
    uid 1's weight on the new uid 3 is dropped as older than its registration. Exact:
    D_0 = 32767, Emission_0 = 250000000, bonds[0][2] = bonds[0][3] = 65535."""
    sim = ChainSim(np.ones(4), YumaParams(max_allowed_validators=4), tempo=0)
    sim.epoch()
    sim.block = 1
    for uid in (0, 1):
        sim.set_weights(uid, [2, 3], [2 * (M // 3), M // 3])
    for uid in (2, 3):
        sim.set_weights(uid, [uid], M)
    r = sim.epoch()
    assert np.allclose(r.incentive[2:], [0.6666632756, 0.3333367242], atol=1e-9)  # the chain's I (=R) log
    sim.register(3)
    sim.block = 2
    sim.set_weights(0, [2, 3], [2 * (M // 3), M // 3])
    r = sim.epoch()
    assert to_u16(r.dividends)[0] == 32767
    assert emission(r)[0] == 250_000_000
    assert sim.bonds[0, 2] == M and sim.bonds[0, 3] == M
    assert r.consensus[3] == 0 and r.incentive[2] == 1.0


def test_zero_weights():
    """epoch.rs test_zero_weights: with no usable weights (none, self only, outdated by a
    re-registration) T == 0 and the staked validator gets all 1e9 rao; once it re-sets weights,
    validator and server get 5e8 each. Exact."""
    sim = ChainSim([1, 0], YumaParams(), tempo=M - 1)
    r = sim.epoch()
    assert list(emission(r)) == [EMISSION_RAO, 0]
    sim.block = 1
    sim.set_weights(1, [1], M)
    r = sim.epoch()
    assert list(emission(r)) == [EMISSION_RAO, 0]
    sim.block = 2
    sim.set_weights(0, [1], M)
    sim.register(1)
    r = sim.epoch()
    assert list(emission(r)) == [EMISSION_RAO, 0]
    sim.block = 3
    sim.set_weights(0, [1], M)
    r = sim.epoch()
    assert list(emission(r)) == [EMISSION_RAO // 2, EMISSION_RAO // 2]


def test_deregistered_miner_bonds():
    """epoch.rs test_deregistered_miner_bonds: after uid 3 is replaced inside the last tempo its
    old bonds are reset, so bonds[0][3] does not grow while bonds[0][2] does not shrink (the
    chain asserts only these inequalities)."""
    sim = ChainSim(np.ones(4), YumaParams(max_allowed_validators=4), tempo=M - 1)
    sim.epoch()
    sim.block = 1
    for uid in (0, 1):
        sim.set_weights(uid, [2, 3], [2 * (M // 3), M // 3])
    sim.block, sim.tempo = 3, 2
    sim.epoch()
    before = sim.bonds[0, 2], sim.bonds[0, 3]
    assert before[0] > 0 and before[1] > 0
    sim.block, sim.tempo = 4, M - 1
    sim.register(3)
    for uid in (0, 1):
        sim.set_weights(uid, [2, 3], [2 * (M // 3), M // 3])
    sim.block, sim.tempo = 5, 2
    sim.epoch()
    assert sim.bonds[0, 2] >= before[0]
    assert sim.bonds[0, 3] <= before[1]


@pytest.mark.parametrize("interleave", [0, 1])
@pytest.mark.parametrize(("network_n", "validators_n"), [(2, 1), (4, 2), (8, 4)])
@pytest.mark.parametrize("assignment", [0, 1])
def test_validator_permits(interleave, network_n, validators_n, assignment):
    """epoch.rs test_validator_permits: permits go to the top-k stake above the stake threshold,
    then move to the servers once they out-stake the validators. Exact (booleans)."""
    validators, servers = _distribute(validators_n, network_n, interleave)
    stake = np.zeros(network_n)
    stake[validators] = validators + network_n if assignment else 1
    stake[servers] = servers if assignment else 0
    p = YumaParams(max_allowed_validators=validators_n, stake_threshold=validators_n)
    sim = ChainSim(stake, p, tempo=M - 1)
    sim.epoch()
    assert list(sim.permit[validators]) == list(stake[validators] >= validators_n)
    assert not sim.permit[servers].any()
    sim.stake[servers] += 2 * network_n
    sim.block = 1
    sim.epoch()
    assert not sim.permit[validators].any()
    assert list(sim.permit[servers]) == list(sim.stake[servers] >= validators_n)


def test_can_set_self_weight_as_subnet_owner():
    """epoch.rs test_can_set_self_weight_as_subnet_owner: the owner uid 0 (the only permit and
    stake) splits weight between itself and uid 1; its self-weight counts, so both get equal,
    non-zero incentive."""
    sim = ChainSim([5e12, 0], YumaParams(), owner_uid=0)
    sim.permit[:] = [True, False]
    sim.weights[0] = [M // 2, M // 2]
    sim.block, sim.last_update[:] = 2, [2, 0]
    r = sim.epoch()
    assert r.incentive[0] > 0 and r.incentive[0] == r.incentive[1]


def test_epoch_outputs_single_staker_registered_no_weights():
    """epoch.rs test_epoch_outputs_single_staker_registered_no_weights: a lone staker with no
    weights still gets (within 1000 rao, as the chain test allows) the whole emission."""
    r = ChainSim([1], YumaParams()).epoch()
    assert abs(emission(r).sum() - EMISSION_RAO) <= 1000


# --- epoch.rs: Yuma 3 ----------------------------------------------------------------------

YUMA3 = YumaParams(
    kappa=M // 2,
    bonds_penalty=0,
    bonds_moving_average=975_000,
    yuma3=True,
    liquid_alpha=True,
    alpha_low=int(0.1 * M),  # set_alpha_values_32(0.1, 0.3) floors to u16
    alpha_high=int(0.3 * M),
    alpha_sigmoid_steepness=1000,
    max_allowed_validators=3,
)
A, Z = [M, 0], [0, M]  # all weight on server 1 (uid 3) / server 2 (uid 4)


def _run_yuma3(stakes, schedule, epochs, p=YUMA3, reset=None):
    """setup_yuma_3_scenario + run_epoch: a first epoch hands out permits, then each epoch
    sets the scheduled weights (explicit zeros included), moves one block and runs."""
    n = len(stakes)
    servers = list(range(3, n))
    sim = ChainSim(stakes, p, tempo=1)
    sim.block = 1
    sim.epoch()
    for e in range(epochs):
        rows = schedule(e)
        if rows is not None:
            for uid, row in enumerate(rows):
                sim.set_weights(uid, servers, row)
        if reset is not None and e == reset[0]:
            sim.reset_bonds(reset[1])
        sim.block += 1
        r = sim.epoch()
        yield e, to_u16(r.dividends) / M, sim.bonds[:3, 3:] / M


def _check_yuma3(stakes, schedule, target_dividends, target_bonds=None, p=YUMA3, reset=None):
    """The chain's run_epoch_and_check_bonds_dividends: dividends (u16 proportion) within 1e-3,
    its epsilon; the float port lands within 1e-4. The chain never compares the listed bonds
    (YUMA-SPEC 5), but where they are current we do, to the same 1e-3."""
    epochs = max(target_dividends) + 1
    for e, dividends, bonds in _run_yuma3(stakes, schedule, epochs, p, reset):
        if e in target_dividends:
            assert np.abs(dividends - target_dividends[e]).max() <= 1e-3, (e, dividends)
        if target_bonds is not None and e in target_bonds:
            assert np.abs(bonds - target_bonds[e]).max() <= 1e-3, (e, bonds)


def test_yuma_3_kappa_moves_first():
    """epoch.rs test_yuma_3_kappa_moves_first (big validator moves first)."""
    schedule = {0: [A] * 3, 1: [Z, A, A], 2: [Z, Z, A], 3: [Z] * 3}.get
    dividends = [
        [0.8, 0.1, 0.1, 0, 0],
        [1, 0, 0, 0, 0],
        [0.9382, 0.0618, 0, 0, 0],
        [0.8819, 0.0773, 0.0407, 0, 0],
        [0.8564, 0.0844, 0.0592, 0, 0],
        [0.8418, 0.0884, 0.0697, 0, 0],
    ]
    bonds = [
        [[0.1013, 0], [0.1013, 0], [0.1013, 0]],
        [[0.0908, 0.1013], [0.3697, 0], [0.3697, 0]],
        [[0.0815, 0.1924], [0.3170, 0.1013], [0.5580, 0]],
        [[0.0731, 0.2742], [0.2765, 0.1924], [0.4306, 0.1013]],
        [[0.0656, 0.3478], [0.2435, 0.2742], [0.3589, 0.1924]],
        [[0.0588, 0.4139], [0.2157, 0.3478], [0.3089, 0.2742]],
    ]
    _check_yuma3([8, 1, 1, 0, 0], schedule, dict(enumerate(dividends)), dict(enumerate(bonds)))


def test_yuma_3_kappa_moves_second():
    """epoch.rs test_yuma_3_kappa_moves_second (a small validator moves first, the big one next)."""
    schedule = {0: [A] * 3, 1: [A, Z, A], 2: [Z, Z, A], 3: [Z] * 3}.get
    dividends = [
        [0.8, 0.1, 0.1, 0, 0],
        [0.8446, 0.0498, 0.1056, 0, 0],
        [0.6868, 0.3132, 0, 0, 0],
        [0.7421, 0.2090, 0.0489, 0, 0],
        [0.7625, 0.1706, 0.0669, 0, 0],
        [0.7730, 0.1508, 0.0762, 0, 0],
    ]
    bonds = [
        [[0.1013, 0], [0.1013, 0], [0.1013, 0]],
        [[0.1924, 0], [0.0908, 0.2987], [0.1924, 0]],
        [[0.1715, 0.1013], [0.0815, 0.3697], [0.4336, 0]],
        [[0.1531, 0.1924], [0.0731, 0.4336], [0.3608, 0.1013]],
        [[0.1369, 0.2742], [0.0656, 0.4910], [0.3103, 0.1924]],
        [[0.1225, 0.3478], [0.0588, 0.5426], [0.2712, 0.2742]],
    ]
    _check_yuma3([8, 1, 1, 0, 0], schedule, dict(enumerate(dividends)), dict(enumerate(bonds)))


def test_yuma_3_kappa_moves_last():
    """epoch.rs test_yuma_3_kappa_moves_last (the big validator moves last)."""
    schedule = {0: [A] * 3, 1: [A, Z, A], 2: [A, Z, Z], 3: [Z] * 3}.get
    dividends = [
        [0.8, 0.1, 0.1, 0, 0],
        [0.8446, 0.0498, 0.1056, 0, 0],
        [0.8966, 0.0333, 0.0701, 0, 0],
        [0.4663, 0.3210, 0.2127, 0, 0],
        [0.5976, 0.2340, 0.1683, 0, 0],
        [0.6592, 0.1932, 0.1475, 0, 0],
    ]
    bonds = [
        [[0.1013, 0], [0.1013, 0], [0.1013, 0]],
        [[0.1924, 0], [0.0908, 0.2987], [0.1924, 0]],
        [[0.2742, 0], [0.0815, 0.5081], [0.1715, 0.2987]],
        [[0.2416, 0.1013], [0.0731, 0.5580], [0.1531, 0.3697]],
        [[0.2141, 0.1924], [0.0656, 0.6028], [0.1369, 0.4336]],
        [[0.1903, 0.2742], [0.0588, 0.6430], [0.1225, 0.4910]],
    ]
    _check_yuma3([8, 1, 1, 0, 0], schedule, dict(enumerate(dividends)), dict(enumerate(bonds)))


def test_yuma_3_one_epoch_switch():
    """epoch.rs test_yuma_3_one_epoch_switch (equal stakes, validator C strays for one epoch)."""
    schedule = lambda e: [A, A, Z] if e == 2 else [A] * 3  # noqa: E731
    dividends = [
        [0.33, 0.33, 0.34, 0, 0],
        [0.33, 0.33, 0.34, 0, 0],
        [0.3782, 0.3782, 0.2436, 0, 0],
        [0.3628, 0.3628, 0.2745, 0, 0],
        [0.3541, 0.3541, 0.2917, 0, 0],
        [0.3487, 0.3487, 0.3026, 0, 0],
    ]
    bonds = [
        [[0.1013, 0], [0.1013, 0], [0.1013, 0]],
        [[0.1924, 0], [0.1924, 0], [0.1924, 0]],
        [[0.2742, 0], [0.2742, 0], [0.1715, 0.2987]],
        [[0.3478, 0], [0.3478, 0], [0.2554, 0.2618]],
        [[0.4139, 0], [0.4139, 0], [0.3309, 0.2312]],
        [[0.4733, 0], [0.4733, 0], [0.3987, 0.2051]],
    ]
    _check_yuma3([33, 33, 34, 0, 0], schedule, dict(enumerate(dividends)), dict(enumerate(bonds)))


def test_yuma_3_liquid_alpha_disabled():
    """epoch.rs test_yuma_3_liquid_alpha_disabled (fixed alpha = 1 - 0.975). Dividends only:
    its listed bonds have three columns and do not describe this 2-server run."""
    schedule = lambda e: [A, A, Z] if e == 2 else [A] * 3  # noqa: E731
    dividends = [
        [0.33, 0.33, 0.34, 0, 0],
        [0.33, 0.33, 0.34, 0, 0],
        [0.3734, 0.3734, 0.2532, 0, 0],
        [0.3611, 0.3611, 0.2779, 0, 0],
        [0.3541, 0.3541, 0.2919, 0, 0],
        [0.3495, 0.3495, 0.3009, 0, 0],
    ]
    p = YumaParams(**{**_fields(YUMA3), "liquid_alpha": False})
    _check_yuma3([33, 33, 34, 0, 0], schedule, dict(enumerate(dividends)), p=p)


def test_yuma_3_stable_miner():
    """epoch.rs test_yuma_3_stable_miner (three servers, the third steadily half-weighted)."""
    h = M // 2
    old, new = [h, 0, h], [0, h, h]
    schedule = {0: [old] * 3, 1: [old, new, old], 2: [new, new, old], 3: [new] * 3}.get
    dividends = [
        [0.8, 0.1, 0.1, 0, 0, 0],
        [0.8226, 0.0745, 0.1028, 0, 0, 0],
        [0.7750, 0.1685, 0.0565, 0, 0, 0],
        [0.7864, 0.1372, 0.0764, 0, 0, 0],
        [0.7912, 0.1241, 0.0847, 0, 0, 0],
        [0.7937, 0.1173, 0.0890, 0, 0, 0],
    ]
    bonds = [
        [[0.0507, 0, 0.0507]] * 3,
        [[0.0962, 0, 0.0962], [0.0455, 0.1, 0.0962], [0.0962, 0, 0.0962]],
        [[0.0863, 0.0507, 0.1371], [0.0408, 0.1405, 0.1371], [0.1770, 0, 0.1371]],
        [[0.0774, 0.0962, 0.1739], [0.0367, 0.1770, 0.1739], [0.1579, 0.0507, 0.1739]],
        [[0.0694, 0.1371, 0.2069], [0.0329, 0.2097, 0.2069], [0.1411, 0.0962, 0.2069]],
        [[0.0623, 0.1739, 0.2366], [0.0296, 0.2391, 0.2366], [0.1263, 0.1371, 0.2366]],
    ]
    _check_yuma3([8, 1, 1, 0, 0, 0], schedule, dict(enumerate(dividends)), dict(enumerate(bonds)))


def test_yuma_3_bonds_reset():
    """epoch.rs test_yuma_3_bonds_reset: 41 epochs, do_reset_bonds on server 1 (uid 3) at
    epoch 20 (emulated by zeroing its stored bond column)."""

    def schedule(e):
        if e == 0:
            return [A] * 3
        if e == 1:
            return [A, Z, Z]
        if e <= 20:
            return [Z] * 3
        return [Z, A, A] if e == 21 else [A] * 3

    dividends = {
        0: [0.8, 0.1, 0.1, 0, 0],
        1: [0.8944, 0.0528, 0.0528, 0, 0],
        2: [0.5230, 0.2385, 0.2385, 0, 0],
        19: [0.7919, 0.1040, 0.1040, 0, 0],
        20: [0.7928, 0.1036, 0.1036, 0, 0],
        21: [0.8467, 0.0766, 0.0766, 0, 0],
        40: [0.7928, 0.1036, 0.1036, 0, 0],
    }
    bonds = {
        0: [[0.1013, 0], [0.1013, 0], [0.1013, 0]],
        1: [[0.1924, 0], [0.0908, 0.2987], [0.0908, 0.2987]],
        2: [[0.1715, 0.1013], [0.0815, 0.3697], [0.0815, 0.3697]],
        19: [[0.0269, 0.8539], [0.0131, 0.8975], [0.0131, 0.8975]],
        20: [[0, 0.8687], [0, 0.9079], [0, 0.9079]],
        21: [[0, 0.8820], [0.2987, 0.6386], [0.2987, 0.6386]],
        40: [[0.8687, 0.0578], [0.9079, 0.0523], [0.9079, 0.0523]],
    }
    _check_yuma3([8, 1, 1, 0, 0], schedule, dividends, bonds, reset=(20, 3))


def test_liquid_alpha_equal_values_against_itself():
    """epoch.rs test_liquid_alpha_equal_values_against_itself: liquid alpha with
    alpha_low == alpha_high == 0.1 gives the same bonds as fixed alpha 1 - 0.9 (1e-3 there;
    only u16/65535 vs 0.1 differ here, so 1e-4)."""
    rng = np.random.default_rng(7)
    w = rng.random((4, 4)) * (rng.random((4, 4)) > 0.3)
    stake = np.array([3.0, 2.0, 1.0, 0.0])
    prev = rng.random((4, 4))
    base = {**_fields(YUMA3), "bonds_moving_average": 900_000, "max_allowed_validators": 4}
    on = compute_yuma(w, stake, prev, YumaParams(**{**base, "alpha_low": M // 10, "alpha_high": M // 10}))
    off = compute_yuma(w, stake, prev, YumaParams(**{**base, "liquid_alpha": False}))
    assert np.abs(on.bonds - off.bonds).max() <= 1e-4


def _fields(p: YumaParams) -> dict:
    return {name: getattr(p, name) for name in p.__slots__}


# --- invariants ----------------------------------------------------------------------------


@st.composite
def subnets(draw):
    n = draw(st.integers(2, 12))

    def matrix(values):
        return np.array(draw(st.lists(values, min_size=n * n, max_size=n * n)), dtype=float).reshape(n, n)

    stake = np.array(draw(st.lists(st.integers(0, 1000), min_size=n, max_size=n)), dtype=float)
    weights = matrix(st.integers(0, M)) * matrix(st.booleans())  # sparse-ish
    prev = matrix(st.integers(0, M)) / M
    yuma3 = draw(st.booleans())
    p = YumaParams(
        yuma3=yuma3,
        liquid_alpha=yuma3 and draw(st.booleans()),
        max_allowed_validators=draw(st.integers(1, n)),
    )
    return weights, stake, prev, p


def _sums_to_one_or_zero(x: np.ndarray) -> bool:
    return x.sum() == 0 or math.isclose(x.sum(), 1.0, rel_tol=1e-12)


@settings(max_examples=200, deadline=None)
@given(subnets())
def test_outputs_are_normalised_and_shares_cover_the_epoch(case):
    """Incentive and dividends each sum to 1 or 0; the emission shares sum to 1 whenever any
    stake exists (the T == 0 fallback included); non-permit rows hold no bonds."""
    weights, stake, prev, p = case
    r = compute_yuma(weights, stake, prev, p)
    assert _sums_to_one_or_zero(r.incentive)
    assert _sums_to_one_or_zero(r.dividends)
    assert (r.incentive >= 0).all() and (r.dividends >= 0).all()
    total = r.server_emission_share.sum() + r.validator_emission_share.sum()
    assert math.isclose(total, 1.0, rel_tol=1e-12) if stake.any() else total == 0
    assert not r.bonds[~r.epoch_permit].any()
    assert (r.consensus <= 1).all() and (r.trust <= 1 + 1e-12).all()


@settings(max_examples=200, deadline=None)
@given(
    st.integers(2, 6),
    st.integers(1, 6),
    st.floats(0.01, 0.49),
    st.integers(0, 2**32 - 1),
    st.booleans(),
)
def test_minority_cannot_raise_a_colluding_miner_above_the_honest_majority(
    honest_n, miners_n, minority_stake, seed, yuma3
):
    """Clipping defence: a validator with < kappa of the stake puts all its weight on a colluding
    miner. The colluder's consensus stays at the majority's weight and its rank (stake-weighted
    clipped support) is no higher than under honest voting; the cheater's dividends fall, since
    bonds only grow on weight that survives clipping. (Its normalised incentive share can still
    rise: the cheater withdrew its support from the other miners.)"""
    rng = np.random.default_rng(seed)
    n = honest_n + 1 + miners_n + 1
    cheater, colluder = honest_n, n - 1
    miners = np.arange(honest_n + 1, n)
    stake = np.zeros(n)
    stake[:honest_n] = rng.random(honest_n) + 0.5
    stake[:honest_n] *= (1 - minority_stake) / stake[:honest_n].sum()
    stake[cheater] = minority_stake
    weights = np.zeros((n, n))
    weights[: honest_n + 1, miners] = rng.random(miners.size) + 0.05  # the majority's grades
    honest = weights.copy()
    weights[cheater] = 0
    weights[cheater, colluder] = 1.0
    p = YumaParams(yuma3=yuma3, max_allowed_validators=n)
    prev_cheat = prev_honest = None
    for _ in range(5):  # a few epochs so bonds reflect the behaviour
        cheat = compute_yuma(weights, stake, prev_cheat, p)
        fair = compute_yuma(honest, stake, prev_honest, p)
        prev_cheat, prev_honest = cheat.bonds, fair.bonds
    majority_weight = honest[0, colluder] / honest[0].sum()
    assert cheat.consensus[colluder] <= majority_weight + 1e-12
    assert cheat.ranks[colluder] <= fair.ranks[colluder] + 1e-12
    assert cheat.dividends[cheater] < fair.dividends[cheater]


# --- storage helpers -----------------------------------------------------------------------


def test_u16_helpers_round_as_the_chain():
    """fixed_proportion_to_u16 floors; set_weights' max-upscale rounds half up; Yuma 2 bonds
    are stored column max-upscaled and zero columns stay zero."""
    assert list(to_u16(np.array([0.0, 1 / 64, 0.5, 1.0, 1.5]))) == [0, 1023, 32767, M, M]
    assert list(max_upscale_rows_u16(np.array([[1.0, 2.0, 0.0], [0.0, 0.0, 0.0]]))[0]) == [32768, M, 0]
    assert not max_upscale_rows_u16(np.zeros((1, 3))).any()
    b = np.array([[0.25, 0.0], [0.75, 0.0]])
    assert (col_max_upscale(b) == [[1 / 3, 0], [1, 0]]).all()
    assert bonds_to_u16(b, yuma3=False).tolist() == [[21845, 0], [M, 0]]
    assert bonds_to_u16(b, yuma3=True).tolist() == [[16383, 0], [49151, 0]]


def test_bond_rows_follow_the_permit_storage_rule():
    """New permit -> new row; permit lost -> row emptied; neither -> row untouched."""
    stored = {uid: (np.array([0, 1]), np.array([7, 7], dtype=np.uint16)) for uid in range(3)}
    new = np.array([[0.5, 1.0, 0.0], [0.5, 0.25, 0.0], [1.0, 1.0, 0.0]])
    rows = next_bond_rows(stored, new, np.array([True, True, False]), np.array([True, False, False]), yuma3=True)
    assert dense_bonds(rows, 3).tolist() == [[32767, M, 0], [0, 0, 0], [7, 7, 0]]
    # Yuma 2 stores its rows column max-upscaled (the whole matrix's column max)
    rows = next_bond_rows({}, new, np.array([True, True, True]), np.array([True, True, False]), yuma3=False)
    assert dense_bonds(rows, 3).tolist() == [[32767, M, 0], [32767, 16383, 0], [0, 0, 0]]


def test_rows_without_stake_do_not_vote_and_zeros_stay_zero():
    """A permitted but inactive validator does not move consensus; an unweighted miner's bond
    column stays exactly zero (max-upscaling would turn noise into a full bond)."""
    w = np.zeros((4, 4))
    w[0, 2] = w[1, 3] = 1.0
    r = compute_yuma(w, np.array([1.0, 1.0, 0, 0]), None, active=np.array([True, False, True, True]))
    assert list(r.incentive) == [0, 0, 1, 0]
    assert r.bonds[:, 0].sum() == 0 and r.bonds[:, 1].sum() == 0
    assert (to_u16(col_max_upscale(r.bonds))[:, 3] == 0).all()
