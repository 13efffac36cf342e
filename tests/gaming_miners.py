"""Miners that game a careless metric, for the end-to-end tests only (never a production alias).

Each answers in exactly the shape the validator asks for, so what must defeat it is the metric:

    Whitespace     next-token   " " with probability 1, whatever the prefix
    Letters        next-token   single letters (" t", " a", " s", ...) weighted by how often English words start so
    CopySource     translation  the English source sentence, unchanged
    FixedSentence  translation  one fluent sentence in the target language, whatever the input
    Constant       embedding    one unit vector for every text
    Lookup         next-token   the word that followed the prefix's last words in the public offline sources

They are served by the real Miner through its `loader`, like any model (kind "toy").
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from services.miner.model import Incapable
from services.validator import prose

WordProbs = list[tuple[str, float]]
_WORDS = re.compile(r"\S+")

# Share of English running-text words that start with each letter (top 12), roughly: what a miner
# paid for the first letter of the next word would bet on.
_FIRST_LETTERS = (("t", 0.16), ("a", 0.11), ("o", 0.07), ("i", 0.07), ("s", 0.07), ("w", 0.06),
                  ("c", 0.05), ("b", 0.04), ("p", 0.04), ("f", 0.04), ("m", 0.04), ("h", 0.04))
_FIXED = {
    "fr": "Le fichier demandé n'a pas pu être ouvert.",
    "de": "Die angeforderte Datei konnte nicht geöffnet werden.",
    "es": "No se pudo abrir el archivo solicitado.",
}


@dataclass
class _Gamer:
    """The calls a gaming miner does not game: each raises Incapable, as a real model's would."""

    name: str = "gamer"
    kind: str = "toy"
    dimensions: int = 384

    def next_words(self, prefixes: Sequence[str], top_k: int) -> list[WordProbs]:
        raise Incapable(f"{self.name} does not predict words")

    def generate(self, prompts: Sequence[str], max_tokens: int, temperature: float) -> list[str]:
        return ["" for _ in prompts]

    def translate(self, sentences: Sequence[str], source: str, target: str) -> list[str]:
        raise Incapable(f"{self.name} does not translate")

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        raise Incapable(f"{self.name} does not embed")

    def count_tokens(self, texts: Sequence[str]) -> int:
        return sum(len(_WORDS.findall(t)) for t in texts)


@dataclass
class Whitespace(_Gamer):
    name: str = "whitespace"

    def next_words(self, prefixes: Sequence[str], top_k: int) -> list[WordProbs]:
        # the start of every next word, with certainty: a metric that accepts a prefix of the
        # continuation would give it a loss near 0
        return [[(" ", 1.0)] for _ in prefixes]


@dataclass
class Letters(_Gamer):
    name: str = "letters"

    def next_words(self, prefixes: Sequence[str], top_k: int) -> list[WordProbs]:
        total = sum(p for _, p in _FIRST_LETTERS[:top_k])
        return [[(" " + letter, p / total) for letter, p in _FIRST_LETTERS[:top_k]] for _ in prefixes]


@dataclass
class CopySource(_Gamer):
    name: str = "copy-source"

    def translate(self, sentences: Sequence[str], source: str, target: str) -> list[str]:
        return list(sentences)   # names, numbers and punctuation often survive translation unchanged


@dataclass
class FixedSentence(_Gamer):
    name: str = "fixed-sentence"

    def translate(self, sentences: Sequence[str], source: str, target: str) -> list[str]:
        return [_FIXED.get(target, _FIXED["fr"]) for _ in sentences]


@dataclass
class Constant(_Gamer):
    name: str = "constant"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        vector = np.ones(self.dimensions, dtype=np.float32) / np.sqrt(self.dimensions)
        return np.tile(vector, (len(texts), 1))


@dataclass
class Lookup(_Gamer):
    """Answers the words that followed the prefix's last `longest`..`shortest` words in the text it
    indexed (longest context first), with their frequencies there as probabilities; on a miss it
    offers nothing. (One that fell back on frequent words or a model would earn what those earn:
    a unigram guess is a model too, and is scored as one.)

    `Lookup.public()` indexes what the validators' built-in offline set is cut from: the English
    paragraphs of the standard library's docstrings and the licence texts, read by the same
    open-source builder (services.validator.prose) any miner can run. It leaves the gettext catalogs
    out, so their English help texts are text it does not have: a stand-in for a private set.
    """

    name: str = "lookup"
    longest: int = 8
    shortest: int = 5    # five words in a row: the passage itself, not a common phrase
    index: dict[tuple[str, ...], Counter[str]] = field(default_factory=lambda: defaultdict(Counter), repr=False)

    @classmethod
    def public(cls) -> Lookup:
        lookup = cls()
        lookup.add(p.text for p in prose.english_paragraphs())
        return lookup

    def add(self, texts: Iterable[str]) -> None:
        for text in texts:
            words = _WORDS.findall(text)
            for i in range(1, len(words)):
                for n in range(self.shortest, min(self.longest, i) + 1):
                    self.index[tuple(words[i - n:i])][" " + words[i]] += 1

    def found(self, prefix: str) -> Counter[str] | None:
        """What followed the prefix's longest indexed context, or None."""
        words = _WORDS.findall(prefix)
        for n in range(min(self.longest, len(words)), self.shortest - 1, -1):
            seen = self.index.get(tuple(words[-n:]))
            if seen:
                return seen
        return None

    def next_words(self, prefixes: Sequence[str], top_k: int) -> list[WordProbs]:
        out = []
        for prefix in prefixes:
            seen = self.found(prefix)
            total = sum(seen.values()) if seen else 0
            out.append([(w, c / total) for w, c in seen.most_common(top_k)] if seen else [])
        return out
