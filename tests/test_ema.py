"""The per-uid moving average and the u16 weight row it becomes."""

from __future__ import annotations

import json

import pytest

from services.validator.ema import U16_MAX, EmaState, weights_from_ema


def test_average_moves_by_alpha_toward_each_round() -> None:
    ema = EmaState.new(alpha=0.5)
    hotkeys = {0: "hk-a", 1: "hk-b"}
    ema = ema.update({0: 1.0, 1: 0.0}, hotkeys)
    assert ema.values == {0: 0.5, 1: 0.0}
    ema = ema.update({0: 0.0, 1: 1.0}, hotkeys)
    assert ema.values == pytest.approx({0: 0.25, 1: 0.5})


def test_uid_that_changes_hands_starts_from_zero() -> None:
    ema = EmaState.new(alpha=0.5).update({0: 1.0, 1: 1.0}, {0: "old", 1: "hk-b"})
    ema = ema.update({0: 1.0, 1: 1.0}, {0: "old", 1: "hk-b"})
    assert ema.values[0] == pytest.approx(0.75)
    ema = ema.update({0: 0.2, 1: 1.0}, {0: "new", 1: "hk-b"})
    assert ema.values[0] == pytest.approx(0.1)       # 0.5 * 0.2 + 0.5 * 0, not the old miner's 0.75
    assert ema.values[1] == pytest.approx(0.875)
    assert ema.hotkeys[0] == "new"


def test_uids_that_left_are_dropped_and_unqueried_uids_keep_their_value() -> None:
    ema = EmaState.new(alpha=0.5).update({0: 1.0, 1: 1.0, 2: 1.0}, {0: "a", 1: "b", 2: "c"})
    ema = ema.update({0: 0.0}, {0: "a", 1: "b", 3: "d"})
    assert ema.values == {0: 0.25, 1: 0.5, 3: 0.0}
    assert set(ema.hotkeys) == {0, 1, 3}


def test_bad_scores_count_as_zero() -> None:
    ema = EmaState.new(alpha=1.0).update({0: float("nan"), 1: -3.0, 2: 0.4}, {0: "a", 1: "b", 2: "c"})
    assert ema.values == {0: 0.0, 1: 0.0, 2: 0.4}


def test_state_survives_a_json_round_trip() -> None:
    ema = EmaState.new(alpha=0.1).update({3: 0.7, 9: 0.2}, {3: "5Fhk", 9: "5Ghk"})
    saved = json.dumps(ema.to_dict())
    assert EmaState.from_dict(json.loads(saved)) == ema
    assert json.loads(saved)["uids"]["3"] == {"hotkey": "5Fhk", "value": pytest.approx(0.07)}


@pytest.mark.parametrize("data", [{}, {"alpha": 0.1}, {"alpha": "x", "uids": {}}, {"alpha": 0.1, "uids": {"a": {}}},
                                  {"alpha": 0.0, "uids": {}}, {"alpha": 0.1, "uids": []}])
def test_corrupt_saved_state_is_rejected(data: dict) -> None:
    with pytest.raises(ValueError):
        EmaState.from_dict(data)


@pytest.mark.parametrize("alpha", [0.0, -0.1, 1.5, float("nan")])
def test_alpha_must_be_in_zero_one(alpha: float) -> None:
    with pytest.raises(ValueError, match="alpha"):
        EmaState.new(alpha)


def test_weights_are_max_upscaled_to_u16() -> None:
    uids, weights = weights_from_ema({4: 0.5, 1: 0.25, 7: 0.125, 2: 0.0}, max_weights=10)
    assert uids == [1, 4, 7]
    assert weights == [round(U16_MAX / 2), U16_MAX, round(U16_MAX / 4)]
    assert all(isinstance(w, int) and 0 < w <= U16_MAX for w in weights)


def test_only_the_best_max_weights_uids_are_kept() -> None:
    values = {uid: uid / 10 for uid in range(1, 10)}
    uids, weights = weights_from_ema(values, max_weights=3)
    assert uids == [7, 8, 9] and weights[-1] == U16_MAX


def test_a_tiny_but_earned_weight_never_rounds_to_zero() -> None:
    assert weights_from_ema({0: 1.0, 1: 1e-9}, max_weights=5) == ([0, 1], [U16_MAX, 1])


def test_too_few_earners_are_padded_to_min_weights() -> None:
    ema = EmaState.new(0.5).update({0: 0.0, 1: 0.8, 2: 0.0, 3: 0.0}, {0: "a", 1: "b", 2: "c", 3: "d"})
    assert weights_from_ema(ema, max_weights=8, min_weights=3) == ([0, 1, 2], [1, U16_MAX, 1])


def test_nobody_earned_gives_empty_or_uniform_row() -> None:
    assert weights_from_ema({0: 0.0, 1: 0.0}, max_weights=4) == ([], [])
    assert weights_from_ema({0: 0.0, 1: 0.0}, max_weights=4, min_weights=2) == ([0, 1], [U16_MAX, U16_MAX])


def test_impossible_limits_are_errors() -> None:
    with pytest.raises(ValueError, match="uids known"):
        weights_from_ema({0: 1.0}, max_weights=4, min_weights=2)
    with pytest.raises(ValueError):
        weights_from_ema({0: 1.0}, max_weights=1, min_weights=2)
