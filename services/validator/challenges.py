"""One round's challenge: the items every miner of the subnet is sent (the same for all), the miner
call that asks them, and how an answer is scored (scoring.py). One class per task.

    challenge = make_challenge(task_data, round_rng(seed, n, task), items=16, top_k=20)
    answer = await challenge.ask(client, timeout)      # raises what the call raised
    result = challenge.score(answer)                   # RoundScore; a malformed answer scores 0
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from services.miner.client import MinerClient
from services.validator.background import UNIFORM, Background
from services.validator.datasets import TaskData
from services.validator.items import Task
from services.validator.sampling import (
    NextWordItem,
    RetrievalRound,
    TranslationItem,
    sample_next_token,
    sample_retrieval,
    sample_translation,
)
from services.validator.scoring import (
    RoundScore,
    echo_bleu,
    score_next_token,
    score_retrieval,
    score_translation,
)

MAX_REQUEST_ITEMS = 64   # what a miner takes in one request (MinerSettings.max_request_items)


class Challenge(Protocol):
    task: Task

    @property
    def size(self) -> int: ...

    async def ask(self, client: MinerClient, timeout: float) -> object: ...

    def score(self, answer: object) -> RoundScore: ...


@dataclass(frozen=True, slots=True)
class NextWordChallenge:
    items: tuple[NextWordItem, ...]
    top_k: int
    background: Background = UNIFORM   # spreads each answer's unlisted mass (scoring.true_word_probability)
    task: Task = Task.NEXT_TOKEN

    @property
    def size(self) -> int:
        return len(self.items)

    async def ask(self, client: MinerClient, timeout: float) -> object:
        from agora.miner.v1 import miner_pb2

        request = miner_pb2.NextWordRequest(prefixes=[i.prefix for i in self.items], top_k=self.top_k)
        response = await client.call("NextWord", request, timeout=timeout)
        return [[(c.word, c.probability) for c in p.candidates] for p in response.predictions]

    def score(self, answer: object) -> RoundScore:
        return score_next_token(answer, [i.target for i in self.items], max_candidates=self.top_k,
                                background=self.background)


@dataclass(frozen=True, slots=True)
class TranslationChallenge:
    items: tuple[TranslationItem, ...]
    baseline: float   # BLEU of echoing the sources: the round's zero, computed once for all miners
    task: Task = Task.TRANSLATION

    @property
    def size(self) -> int:
        return len(self.items)

    async def ask(self, client: MinerClient, timeout: float) -> object:
        from agora.miner.v1 import miner_pb2

        request = miner_pb2.TranslateRequest(sentences=[i.source for i in self.items], source_language="en",
                                             target_language=self.items[0].lang)
        response = await client.call("Translate", request, timeout=timeout)
        return list(response.translations)

    def score(self, answer: object) -> RoundScore:
        return score_translation(answer, self.items, baseline=self.baseline)


@dataclass(frozen=True, slots=True)
class RetrievalChallenge:
    round: RetrievalRound
    task: Task = Task.EMBEDDING

    @property
    def size(self) -> int:
        return len(self.round.queries)

    async def ask(self, client: MinerClient, timeout: float) -> object:
        from agora.miner.v1 import miner_pb2

        texts = [*self.round.queries, *self.round.passages]   # one request: both sides from one model state
        response = await client.call("Embed", miner_pb2.EmbedRequest(texts=texts), timeout=timeout)
        return [list(e.values) for e in response.embeddings]

    def score(self, answer: object) -> RoundScore:
        n = len(self.round.queries)
        if not isinstance(answer, Sequence) or len(answer) != n + len(self.round.passages):
            return RoundScore(0.0, 0.0, n)
        try:
            vectors = np.asarray(answer, dtype=np.float64)
        except (TypeError, ValueError):
            return RoundScore(0.0, 0.0, n)   # ragged rows
        return score_retrieval(self.round, vectors[:n], vectors[n:])


def make_challenge(data: TaskData, rng: np.random.Generator, *, items: int, top_k: int = 20) -> Challenge:
    """A fresh challenge from the held-out split. Embedding rounds pool 3 passages per query (as
    many as fit one request with the queries)."""
    if data.task is Task.NEXT_TOKEN:
        return NextWordChallenge(tuple(sample_next_token(data.held_out, rng, items)), top_k, data.background)
    if data.task is Task.TRANSLATION:
        chosen = tuple(sample_translation(data.held_out, rng, items))
        return TranslationChallenge(chosen, echo_bleu(chosen))
    queries = max(2, min(items, MAX_REQUEST_ITEMS // 4))
    pool = min(3 * queries, MAX_REQUEST_ITEMS - queries)
    return RetrievalChallenge(sample_retrieval(data.held_out, rng, queries, pool))
