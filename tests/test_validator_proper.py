"""The next-word score is proper on a real model (slow): SmolLM2-135M's own top-20 distributions on
held-out prose score best as they are; the same words renormalised to sum to 1, sharpened or
flattened (renormalised, or keeping the listed mass) all score worse on the same items. Before the
residual mass counted, renormalising paid 1.58x in incentive (issue 16).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from services.validator.challenges import make_challenge
from services.validator.datasets import load_task_data
from services.validator.sampling import round_rng
from services.validator.scoring import score_next_token, word_loss

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ROUNDS, ITEMS, TOP_K = 6, 32, 20


def _power(words: list[tuple[str, float]], exponent: float, mass: float | None) -> list[tuple[str, float]]:
    """p ** exponent over the listed words, scaled to sum to `mass` (None: to what they summed)."""
    total = math.fsum(p for _, p in words)
    powered = [(w, p ** exponent) for w, p in words]
    scale = (total if mass is None else mass) / math.fsum(p for _, p in powered)
    return [(w, p * scale) for w, p in powered]


VARIANTS = {
    "honest": lambda ws: ws,
    "renormalised": lambda ws: _power(ws, 1.0, 1.0),
    "sharpened": lambda ws: _power(ws, 2.0, 1.0),
    "flattened": lambda ws: _power(ws, 0.5, 1.0),
    "sharpened, same mass": lambda ws: _power(ws, 2.0, None),
    "flattened, same mass": lambda ws: _power(ws, 0.5, None),
}


def test_honest_probabilities_earn_most_on_the_same_items(smol):
    data = load_task_data("next-token")
    losses: dict[str, list[float]] = {name: [] for name in VARIANTS}
    scores: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for r in range(ROUNDS):
        challenge = make_challenge(data, round_rng(5, r, data.task), items=ITEMS, top_k=TOP_K)
        honest = smol.next_words([i.prefix for i in challenge.items], TOP_K)
        for name, transform in VARIANTS.items():
            answer = [transform(list(ws)) for ws in honest]
            scores[name].append(challenge.score(answer).score)
            losses[name] += [word_loss(a, i.target, background=challenge.background)
                             for a, i in zip(answer, challenge.items, strict=True)]
    base = np.array(losses["honest"])
    print(f"\nnext-word loss of SmolLM2's answers on {ROUNDS * ITEMS} held-out items (nats; score = mean "
          "round score):")
    for name in VARIANTS:
        diff = np.array(losses[name]) - base
        print(f"  {name:22s} loss {np.mean(losses[name]):6.3f}  score {np.mean(scores[name]):.5f}  "
              f"vs honest {diff.mean():+.3f} ± {diff.std(ddof=1) / math.sqrt(diff.size):.3f}")
        if name != "honest":   # worse by more than two standard errors of the paired difference
            assert diff.mean() > 2 * diff.std(ddof=1) / math.sqrt(diff.size), (name, diff.mean())
            assert np.mean(scores[name]) < np.mean(scores["honest"]), name
    assert score_next_token([[(" the", 1.0)]], [" cat"]).score == 0.0   # certain and wrong: nothing
    assert challenge.score([[] for _ in challenge.items]).score == 0.0   # the background alone: nothing
