"""Miners that game a careless metric earn nothing on the chain (slow: real models beside them).

Each test puts gaming miners (tests/gaming_miners.py) on a subnet next to a real model, all served by
the real Miner; the validator's production rounds score them, its weights go to the chain, and the
next epoch's Yuma consensus pays incentive. What counts is each miner's share of the miners' incentive
(= its share of the miner emission):

    next-token   " " with p=1, single letters         < 1%   SmolLM2-135M earns the rest
    translation  the source sentence, a fixed one     < 1%   Gemma-3-270M earns the rest
    embedding    one vector for every text            < 1%   MiniLM-L6 earns the rest
    lookup       the public offline set               top    (it knows every continuation)
                 a private JSONL set it lacks         < 1%   SmolLM2 earns the rest

The scheduling is the test's, as in test_validator_ladder.py: a few rounds back to back, one
set_weights, the next epoch. Scoring-level checks of the same gamers: tests/test_scoring.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from services.validator import catalogs
from services.validator.datasets import TaskData, load_task_data
from services.validator.items import Task
from tests.gaming_miners import Constant, CopySource, FixedSentence, Letters, Lookup, Whitespace
from tests.test_validator import Net, make_net
from tests.test_validator_ladder import Outcome, play

pytestmark = pytest.mark.slow

TOP_K = 10
NOTHING = 0.01   # "earns nothing": under 1% of the miners' emission


async def task_net(redis_server, task: Task, data: TaskData) -> AsyncIterator[Net]:
    async for net in make_net(redis_server, {task: data}, str(task), tempo=20):
        yield net


def assert_real_model_earns_and_gamers_nothing(outcome: Outcome) -> None:
    real, *gamers = outcome.shares
    assert real > 1 - NOTHING * len(gamers), outcome
    assert all(share < NOTHING for share in gamers), outcome
    if sum(outcome.emission_rao) > 0:   # the rao paid follow the shares
        paid = np.array(outcome.emission_rao, dtype=float) / sum(outcome.emission_rao)
        assert all(share < NOTHING for share in paid[1:]), outcome


# ---- careless-metric gamers ----

async def test_whitespace_and_single_letter_miners_earn_nothing_on_next_word(redis_server, smol):
    async for net in task_net(redis_server, Task.NEXT_TOKEN, load_task_data(Task.NEXT_TOKEN)):
        outcome = await play(net, [smol, Whitespace(), Letters()], rounds=2, items=16)
        assert_real_model_earns_and_gamers_nothing(outcome)


async def test_copying_the_source_or_a_fixed_sentence_earns_nothing_on_translation(redis_server, gemma):
    async for net in task_net(redis_server, Task.TRANSLATION, load_task_data(Task.TRANSLATION)):
        outcome = await play(net, [gemma, CopySource(), FixedSentence()], rounds=2, items=6)
        assert_real_model_earns_and_gamers_nothing(outcome)


async def test_one_vector_for_every_text_earns_nothing_on_embedding(redis_server, minilm):
    async for net in task_net(redis_server, Task.EMBEDDING, load_task_data(Task.EMBEDDING)):
        outcome = await play(net, [minilm, Constant(dimensions=minilm.dimensions)], rounds=2, items=16)
        assert_real_model_earns_and_gamers_nothing(outcome)


# ---- a miner that looks the answer up ----

@pytest.fixture(scope="module")
def lookup() -> Lookup:
    return Lookup.public()


def private_prose(lookup: Lookup) -> list[str]:
    """English help texts of this machine's gettext catalogs (the msgids of long messages), less any
    that shares a run of `lookup.shortest` words with what the lookup miner indexed: a few hold the
    GPL's boilerplate, which it has from the licence texts."""
    texts: dict[str, None] = {}
    for lang in ("fr", "de", "es"):
        for path in catalogs.catalog_files(lang):
            for entry in catalogs.read_mo(path):
                if entry.plural:
                    continue
                for block in re.split(r"\n\s*\n", entry.msgid):
                    text = catalogs.normalize_space(block)
                    if catalogs.sentence_like(block, min_words=20, max_words=400) and text[-1] in ".!?":
                        texts[text] = None
    n = lookup.shortest
    unknown = []
    for text in texts:
        words = text.split()
        if not any(tuple(words[i - n:i]) in lookup.index for i in range(n, len(words) + 1)):
            unknown.append(text)
    return unknown


async def test_a_lookup_miner_wins_when_the_validator_uses_the_public_offline_set(redis_server, smol, lookup):
    async for net in task_net(redis_server, Task.NEXT_TOKEN, load_task_data(Task.NEXT_TOKEN)):
        outcome = await play(net, [smol, lookup], rounds=2, items=16)
        assert outcome.metrics[1] < 1.0 < outcome.metrics[0], outcome   # nats: it knows the continuations
        assert outcome.shares[1] == max(outcome.shares) and outcome.shares[1] > 0.9, outcome


async def test_a_lookup_miner_earns_nothing_when_the_validators_set_is_private(redis_server, smol, lookup,
                                                                                 tmp_path: Path):
    texts = private_prose(lookup)
    assert len(texts) >= 100, len(texts)   # enough paragraphs that rounds do not repeat
    path = tmp_path / "private-prose.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    data = load_task_data(Task.NEXT_TOKEN, f"jsonl:{path}")
    assert len(data.held_out) == len(texts)   # an operator's own file is held out whole
    async for net in task_net(redis_server, Task.NEXT_TOKEN, data):
        outcome = await play(net, [smol, lookup], rounds=2, items=16)
        assert_real_model_earns_and_gamers_nothing(outcome)
