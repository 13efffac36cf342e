"""Adversarial toy miners, selectable as models "echo" and "noise": the bottom of the quality ladder.

echo copies its input: the prefix's own words as next words, the prompt as the continuation,
the source sentence as its translation, the text's bytes as its vector. noise answers at random.
A validator must rank both below every real model (ARCHITECTURE.md: echo 7.9, noise 9.2 nats).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from services.common.errors import InvalidRequest

EMBED_DIMENSIONS = 384
_WORDS = re.compile(r"\S+")
# Frequent English words: noise draws from these so its answers look like words.
_VOCAB = tuple(_WORDS.findall(
    "the of and to in is was for that with as on by at from his her it an were are which this be or has had "
    "not but one their they all been its also new more who first two other after time years can into people "
    "would there up when only some most city over made used world such him about many then where during may "
    "these year between both three under state known later part well while found any each out before what"
))


def _words(text: str) -> list[str]:
    return _WORDS.findall(text)


@dataclass
class Echo:
    name: str = "echo"
    kind: str = "toy"
    dimensions: int = EMBED_DIMENSIONS

    def next_words(self, prefixes: Sequence[str], top_k: int) -> list[list[tuple[str, float]]]:
        out = []
        for prefix in prefixes:
            recent = list(dict.fromkeys(reversed(_words(prefix))))[:top_k] or ["the"]
            out.append([(" " + w, 1.0 / len(recent)) for w in recent])
        return out

    def generate(self, prompts: Sequence[str], max_tokens: int, temperature: float) -> list[str]:
        return [" " + " ".join(_words(p)[:max_tokens]) for p in prompts]

    def translate(self, sentences: Sequence[str], source: str, target: str) -> list[str]:
        return list(sentences)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        for i, text in enumerate(texts):
            raw = np.frombuffer(text.encode()[: self.dimensions], dtype=np.uint8).astype(np.float32)
            out[i, : len(raw)] = raw + 1.0
            out[i] /= max(float(np.linalg.norm(out[i])), 1e-12)
        return out

    def count_tokens(self, texts: Sequence[str]) -> int:
        return sum(len(_words(t)) for t in texts)


@dataclass
class Noise:
    seed: int = 0
    name: str = "noise"
    kind: str = "toy"
    dimensions: int = EMBED_DIMENSIONS
    rng: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)

    def next_words(self, prefixes: Sequence[str], top_k: int) -> list[list[tuple[str, float]]]:
        out = []
        for _ in prefixes:
            words = self.rng.choice(len(_VOCAB), size=min(top_k, len(_VOCAB)), replace=False)
            probs = self.rng.dirichlet(np.ones(len(words)))
            ranked = sorted(zip(words.tolist(), probs.tolist(), strict=True), key=lambda wp: -wp[1])
            out.append([(" " + _VOCAB[w], p) for w, p in ranked])
        return out

    def _babble(self, count: int) -> str:
        return " " + " ".join(self.rng.choice(_VOCAB, size=max(count, 1)).tolist())

    def generate(self, prompts: Sequence[str], max_tokens: int, temperature: float) -> list[str]:
        return [self._babble(max_tokens) for _ in prompts]

    def translate(self, sentences: Sequence[str], source: str, target: str) -> list[str]:
        return [self._babble(len(_words(s))).strip() for s in sentences]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        v = self.rng.standard_normal((len(texts), self.dimensions)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    def count_tokens(self, texts: Sequence[str]) -> int:
        return sum(len(_words(t)) for t in texts)


def make(name: str, *, seed: int = 0) -> Echo | Noise:
    if name == "echo":
        return Echo()
    if name == "noise":
        return Noise(seed)
    raise InvalidRequest(f"no toy model {name!r}: there are echo and noise")
