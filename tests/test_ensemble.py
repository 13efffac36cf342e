"""The network's answer to a next-word query: the top miners' distributions mixed by their scores.
Pure mixing here; real models and the Query RPC in tests/test_validator_ensemble.py."""

from __future__ import annotations

import pytest

from services.validator.ensemble import mix, mixing_shares


def test_the_mix_is_the_share_weighted_sum_of_the_listed_probabilities():
    a = [[(" the", 0.5), (" a", 0.3)], [(" cat", 0.9)]]
    b = [[(" a", 0.6), (" one", 0.2)], [(" dog", 0.5), (" cat", 0.1)]]
    out = mix([a, b], [0.75, 0.25], top_k=3)
    assert out[0] == [(" a", pytest.approx(0.375)), (" the", pytest.approx(0.375)), (" one", pytest.approx(0.05))]
    assert out[1] == [(" cat", pytest.approx(0.7)), (" dog", pytest.approx(0.125))]
    assert mix([a, b], [0.75, 0.25], top_k=1)[0] == [(" a", pytest.approx(0.375))]   # ties by word


def test_no_miner_buys_mass_and_shares_follow_scores():
    greedy = [[(" x", 5.0), (" y", 5.0)]]      # claims 10 of probability: scaled to 1, as scoring does
    honest = [[(" z", 0.8)]]
    out = dict(mix([greedy, honest], [0.5, 0.5], top_k=5)[0])
    assert out == {" x": pytest.approx(0.25), " y": pytest.approx(0.25), " z": pytest.approx(0.4)}
    assert sum(out.values()) <= 1.0
    assert mixing_shares([3.0, 1.0, 0.0, float("nan")]) == [0.75, 0.25, 0.0, 0.0]
    assert mixing_shares([0.0, 0.0]) == [0.5, 0.5]   # nobody scored yet: equal
    with pytest.raises(ValueError):
        mix([[[(" a", 1.0)]], [[(" a", 1.0)], [(" b", 1.0)]]], [0.5, 0.5], top_k=2)
