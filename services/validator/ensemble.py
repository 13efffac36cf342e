"""The network's answer to a next-word query: the top miners' next-word distributions, mixed.

    p(word) = sum over miners k of share_k * p_k(word)

share_k is miner k's weight score (its standing with this validator) over the sum of the mixed
miners'; a word a miner did not list gets 0 from it. Each miner's list is scaled down to sum to 1 if
it sums past 1, as scoring does (services/validator/scoring.py), so no miner can buy extra mass.
Pure: the router asks the miners, this mixes what came back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

WordProbs = list[tuple[str, float]]


def mixing_shares(scores: Sequence[float]) -> list[float]:
    """Shares proportional to the scores; equal when none is positive (nobody scored yet)."""
    clean = [s if math.isfinite(s) and s > 0 else 0.0 for s in scores]
    total = math.fsum(clean)
    if total <= 0:
        return [1.0 / len(clean)] * len(clean) if clean else []
    return [s / total for s in clean]


def mix(answers: Sequence[Sequence[WordProbs]], shares: Sequence[float], top_k: int) -> list[WordProbs]:
    """Per prefix, the `top_k` likeliest words of the mixture (ties by word), most likely first.
    `answers[k][i]` is miner k's candidates for prefix i; `shares` sums to 1."""
    if len(answers) != len(shares) or not answers:
        raise ValueError(f"{len(answers)} answers for {len(shares)} shares")
    prefixes = len(answers[0])
    if any(len(a) != prefixes for a in answers):
        raise ValueError("every miner must answer every prefix")
    out: list[WordProbs] = []
    for i in range(prefixes):
        mass: dict[str, float] = {}
        for answer, share in zip(answers, shares, strict=True):
            listed = answer[i]
            total = math.fsum(p for _, p in listed)
            scale = share / total if total > 1.0 else share
            for word, p in listed:
                mass[word] = mass.get(word, 0.0) + scale * p
        ranked = sorted(mass.items(), key=lambda wp: (-wp[1], wp[0]))[:top_k]
        out.append([(w, min(1.0, p)) for w, p in ranked])
    return out
