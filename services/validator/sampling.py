"""Fresh work for each round, drawn from the held-out items with a generator seeded by
(validator seed, round, task): a round can be replayed for an audit, and no two rounds ask the same.

    rng = round_rng(seed, round_index, Task.NEXT_TOKEN)
    items = sample_next_token(data.held_out, rng, 32)   # prefixes to send, targets to keep
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from services.validator.items import PairItem, ProseItem, RetrievalItem, Task

MIN_PREFIX_WORDS = 5     # a cut needs some context before it
_WORD = re.compile(r"\S+")


@dataclass(frozen=True, slots=True)
class NextWordItem:
    prefix: str   # the paragraph up to the cut, without the whitespace that follows: sent to miners
    target: str   # the next whole word with its leading whitespace, e.g. " Paris": kept by the validator


@dataclass(frozen=True, slots=True)
class TranslationItem:
    source: str      # English: sent to miners
    reference: str   # the human translation: kept by the validator
    lang: str


@dataclass(frozen=True, slots=True)
class RetrievalRound:
    """Queries and a shuffled pool of passages; queries[i] belongs to passages[gold[i]], and every
    other passage is a negative, as many as possible on the same topic as some query."""

    queries: tuple[str, ...]
    passages: tuple[str, ...]
    gold: tuple[int, ...]


def round_rng(seed: int, round_index: int, task: Task | str) -> np.random.Generator:
    """The generator for one validator's round of one task; any ints work as seed and round."""
    entropy = hashlib.sha256(f"{seed}\0{round_index}\0{Task(task)}".encode()).digest()
    return np.random.default_rng(int.from_bytes(entropy, "big"))


def _choose(rng: np.random.Generator, n_items: int, count: int) -> list[int]:
    """`count` distinct indices while there are enough items, then repeats."""
    if n_items == 0:
        raise ValueError("no held-out items to sample from")
    if count <= n_items:
        return [int(i) for i in rng.choice(n_items, size=count, replace=False)]
    return [int(i) for i in rng.choice(n_items, size=count, replace=True)]


def cut_at_word(text: str, rng: np.random.Generator, min_prefix_words: int = MIN_PREFIX_WORDS) -> NextWordItem | None:
    """Cut before a random word that is not in the first `min_prefix_words` and holds a letter or
    digit (a lone dash or bracket is no word to guess); None if the text has no such word."""
    words = list(_WORD.finditer(text))
    cuts = [i for i in range(max(1, min_prefix_words), len(words)) if any(c.isalnum() for c in words[i].group())]
    if not cuts:
        return None
    i = cuts[int(rng.integers(len(cuts)))]
    end = words[i - 1].end()
    return NextWordItem(text[:end], text[end:words[i].end()])


def sample_next_token(items: Sequence[ProseItem], rng: np.random.Generator, count: int, *,
                      min_prefix_words: int = MIN_PREFIX_WORDS) -> list[NextWordItem]:
    """`count` cuts, each in a different paragraph while there are enough paragraphs."""
    out = []
    for index in _choose(rng, len(items), count):
        item = cut_at_word(items[index].text, rng, min_prefix_words)
        if item is not None:
            out.append(item)
    return out


def sample_translation(items: Sequence[PairItem], rng: np.random.Generator, count: int, *,
                       lang: str | None = None) -> list[TranslationItem]:
    """`count` pairs into one target language (`lang`, else one drawn for the round), so a batch is
    one request to the miner and one BLEU corpus."""
    langs = sorted({p.lang for p in items})
    if lang is None:
        if not langs:
            raise ValueError("no held-out items to sample from")
        lang = langs[int(rng.integers(len(langs)))]
    pool = [p for p in items if p.lang == lang]
    if not pool:
        raise ValueError(f"no held-out pairs into {lang!r} (have {langs})")
    return [TranslationItem(pool[i].source, pool[i].reference, lang) for i in _choose(rng, len(pool), count)]


def sample_retrieval(items: Sequence[RetrievalItem], rng: np.random.Generator, queries: int = 16,
                     pool_size: int = 48, *, same_topic_share: float = 0.75) -> RetrievalRound:
    """`queries` queries from different documents and a pool of `pool_size` passages: their own and
    negatives from other documents, `same_topic_share` of them from the queries' topics (the same
    module or licence family) when there are enough, so that a model has to read, not just
    recognise the topic. Each document gives at most one passage, so no negative holds a query."""
    if not 0 < queries <= pool_size:
        raise ValueError(f"need 0 < queries ({queries}) <= pool_size ({pool_size})")
    by_doc: dict[str, list[RetrievalItem]] = defaultdict(list)
    for item in items:
        by_doc[item.doc or item.passage].append(item)
    docs = sorted(by_doc)
    if len(docs) < queries:
        raise ValueError(f"{len(docs)} documents cannot give {queries} queries")
    chosen = [docs[i] for i in _choose(rng, len(docs), queries)]
    picked = [by_doc[d][int(rng.integers(len(by_doc[d])))] for d in chosen]

    used = set(chosen)
    topics = {p.group for p in picked if p.group}
    same = [d for d in docs if d not in used and by_doc[d][0].group in topics]
    n_negatives = min(pool_size, len(docs)) - queries
    n_same = min(len(same), round(same_topic_share * n_negatives))
    negatives = [same[i] for i in _choose(rng, len(same), n_same)] if n_same else []
    used.update(negatives)
    rest = [d for d in docs if d not in used]
    negatives += [rest[i] for i in _choose(rng, len(rest), min(len(rest), n_negatives - len(negatives)))]

    passages = [p.passage for p in picked]
    seen = set(passages)
    for d in negatives:
        passage = by_doc[d][int(rng.integers(len(by_doc[d])))].passage
        if passage not in seen:   # two documents with one text would make the answer ambiguous
            seen.add(passage)
            passages.append(passage)
    order = [int(i) for i in rng.permutation(len(passages))]
    position = {original: new for new, original in enumerate(order)}
    return RetrievalRound(
        queries=tuple(p.query for p in picked),
        passages=tuple(passages[i] for i in order),
        gold=tuple(position[i] for i in range(queries)),
    )
