"""The validator's own unigram model of whole words: how it spreads the probability a miner left
for "any other word" over the words it did not list (services/validator/scoring.py).

    b(word) = (count(word) + 1) / (words + distinct words + 1)

counted over the validator's own texts, add-one smoothed so that a word it never saw still gets
some mass. Words are compared without their leading whitespace, as a miner lists " Paris" and the
text holds "Paris" after a newline as often as after a space.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

_WORD = re.compile(r"\S+")


@dataclass(frozen=True, slots=True)
class Background:
    counts: Mapping[str, int]
    total: int          # words counted

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> Background:
        counts = Counter(m.group() for text in texts for m in _WORD.finditer(text))
        return cls(dict(counts), sum(counts.values()))

    @classmethod
    def uniform(cls, words: int = 10_000) -> Background:
        """No knowledge of words: each one 1/words (for scoring without a validator's texts)."""
        return cls({}, words - 1)

    def prob(self, word: str) -> float:
        return (self.counts.get(word.strip(), 0) + 1) / (self.total + len(self.counts) + 1)


UNIFORM = Background.uniform()   # scoring without a validator's texts: every unlisted word alike
