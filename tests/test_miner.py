"""The miner without real models: auth, batching, shedding, deadlines, health, the whole-word search
on a tiny model built here, degradation, toys and model sources. Real models: test_miner_models.py."""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import re
import threading
import time
import urllib.request
from collections.abc import AsyncIterator
from types import SimpleNamespace

import grpc
import numpy as np
import pytest
import torch
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agora.miner.v1 import miner_pb2
from services.common import keys
from services.common.errors import NotFound, Overloaded, PermissionDenied, Unauthenticated, Unavailable
from services.miner import auth, packed, sources, toys
from services.miner.batcher import Batcher, DeadlineTooShort, QueueFull
from services.miner.client import MinerClient
from services.miner.main import Miner, MinerSettings
from services.miner.model import degrade
from services.miner.tasks import nextword
from tests.reflection_client import V1, V1ALPHA, ReflectionClient

MINER = keys.dev_keypair("Bob")
VALIDATOR = keys.dev_keypair("Alice")
OUTSIDER = keys.dev_keypair("Eve")
STAKES = {VALIDATOR.ss58_address: 1_000, keys.dev_keypair("Charlie").ss58_address: 5}
NEXT_WORD = auth.method_path("NextWord")
WORD = re.compile(r"^\s+\S+$")


# ---- auth ----

def signed(
    method: str = NEXT_WORD, signer=VALIDATOR, miner: str = MINER.ss58_address, **kw
) -> miner_pb2.NextWordRequest:
    request = miner_pb2.NextWordRequest(prefixes=["The capital of France is"], top_k=5)
    auth.sign_request(signer, method, request, miner, **kw)
    return request


async def check(authenticator: auth.SignatureAuthenticator, request, method: str = NEXT_WORD) -> auth.CallerInfo:
    return await authenticator.check(method, request.auth, auth.body_hash(request))


async def test_signature_authenticator_accepts_a_signed_request_once():
    a = auth.SignatureAuthenticator(MINER.ss58_address, STAKES.get)
    request = signed()
    assert await check(a, request) == auth.CallerInfo(VALIDATOR.ss58_address, 1_000)
    with pytest.raises(auth.ReplayedNonce):
        await check(a, request)


@pytest.mark.parametrize(
    ("tamper", "error"),
    [
        ("flip_signature", Unauthenticated),
        ("other_signer", Unauthenticated),
        ("stale", auth.StaleTimestamp),
        ("future", auth.StaleTimestamp),
        ("wrong_miner", auth.WrongMiner),
        ("body_changed", auth.BodyHashMismatch),
        ("other_method", Unauthenticated),
        ("unknown_hotkey", PermissionDenied),
        ("missing", auth.MissingAuth),
    ],
)
async def test_signature_authenticator_refuses(tamper: str, error: type[Exception]):
    a = auth.SignatureAuthenticator(MINER.ss58_address, STAKES.get)
    now_ms = int(time.time() * 1000)
    request = {
        "stale": lambda: signed(timestamp_ms=now_ms - 31_000),
        "future": lambda: signed(timestamp_ms=now_ms + 6_000),
        "wrong_miner": lambda: signed(miner=OUTSIDER.ss58_address),
        "unknown_hotkey": lambda: signed(signer=OUTSIDER),
        "other_method": lambda: signed(method=auth.method_path("Generate")),
    }.get(tamper, signed)()
    if tamper == "flip_signature":
        request.auth.signature = bytes([request.auth.signature[0] ^ 1]) + request.auth.signature[1:]
    elif tamper == "other_signer":   # Eve signs but claims to be Alice
        request.auth.signature = OUTSIDER.sign(auth.request_payload(NEXT_WORD, request.auth))
    elif tamper == "body_changed":
        request.prefixes[0] = "The capital of Italy is"
    elif tamper == "missing":
        request.ClearField("auth")
    envelope = request.auth if request.HasField("auth") else None
    with pytest.raises(error):
        await a.check(NEXT_WORD, envelope, auth.body_hash(request))


async def test_nonces_are_forgotten_once_their_timestamp_is_stale():
    clock = [1_000.0]
    a = auth.SignatureAuthenticator(MINER.ss58_address, STAKES.get, max_age_ms=1_000, clock=lambda: clock[0])
    for _ in range(3):
        await check(a, signed(timestamp_ms=int(clock[0] * 1000)))
    assert len(a.nonces) == 3
    clock[0] += 2.0
    await check(a, signed(timestamp_ms=int(clock[0] * 1000)))
    assert len(a.nonces) == 1   # the three old ones expired; a replay of them is stale anyway


async def test_async_stake_of_and_allow_all():
    async def stake_of(hotkey: str) -> int | None:
        return STAKES.get(hotkey)

    a = auth.SignatureAuthenticator(MINER.ss58_address, stake_of)
    assert (await check(a, signed())).stake == 1_000
    allow = auth.AllowAll()
    assert await allow.check(NEXT_WORD, None, b"") == auth.CallerInfo("", 0)


def test_response_signature_binds_miner_request_and_body():
    request = signed()
    digest = hashlib.sha256(auth.request_payload(NEXT_WORD, request.auth)).digest()
    response = miner_pb2.NextWordResponse(predictions=[miner_pb2.WordCandidates(
        candidates=[miner_pb2.WordCandidate(word=" Paris", probability=0.5)])])
    auth.sign_response(MINER, NEXT_WORD, response, digest)
    assert auth.verify_response(NEXT_WORD, response, digest, MINER.ss58_address)
    assert not auth.verify_response(NEXT_WORD, response, digest, OUTSIDER.ss58_address)
    assert not auth.verify_response(NEXT_WORD, response, b"\x00" * 32, MINER.ss58_address)
    response.predictions[0].candidates[0].probability = 0.9
    assert not auth.verify_response(NEXT_WORD, response, digest, MINER.ss58_address)


# ---- batcher ----

class Recorder:
    """An execute() that records batches and can be held on a gate."""

    def __init__(self) -> None:
        self.batches: list[list] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def __call__(self, key, rows):
        self.entered.set()
        self.gate.wait(10)
        self.batches.append(list(rows))
        if "boom" in rows:
            raise RuntimeError("model exploded")
        return [f"{key}:{r}" for r in rows]

    async def hold(self, batcher: Batcher) -> asyncio.Task:
        """Occupy the compute thread with one request until `gate` is set."""
        self.gate.clear()
        self.entered.clear()
        task = asyncio.ensure_future(batcher.submit("k", ["blocker"], priority=10**9))
        await asyncio.to_thread(self.entered.wait, 5)
        return task


@pytest.fixture
async def recorder_batcher() -> AsyncIterator[tuple[Recorder, Batcher]]:
    rec = Recorder()
    b = Batcher(rec, max_batch=4, max_wait_ms=20, queue_limit=3)
    b.start()
    yield rec, b
    rec.gate.set()
    await b.stop()


async def test_batcher_groups_concurrent_requests_up_to_max_batch(recorder_batcher):
    rec, b = recorder_batcher
    b.queue_limit = 100
    results = await asyncio.gather(*(b.submit("k", [i]) for i in range(10)))
    assert results == [[f"k:{i}"] for i in range(10)]
    assert [len(x) for x in rec.batches] == [4, 4, 2]
    # a request's rows stay together and keys never mix
    out = await asyncio.gather(b.submit("a", [1, 2, 3]), b.submit("b", [4]), b.submit("a", [5]))
    assert out == [["a:1", "a:2", "a:3"], ["b:4"], ["a:5"]]
    assert sorted(map(sorted, rec.batches[3:])) == [[1, 2, 3, 5], [4]]


async def test_batcher_serves_by_stake_then_arrival(recorder_batcher):
    rec, b = recorder_batcher
    b.max_batch = 1
    blocker = await rec.hold(b)
    tasks = [asyncio.ensure_future(b.submit("k", [name], priority=stake))
             for name, stake in [("low", 1), ("high", 100), ("mid", 50)]]
    await asyncio.sleep(0.05)
    rec.gate.set()
    await asyncio.gather(blocker, *tasks)
    assert [batch[0] for batch in rec.batches] == ["blocker", "high", "mid", "low"]


async def test_batcher_sheds_when_full_but_lets_more_stake_in(recorder_batcher):
    rec, b = recorder_batcher
    blocker = await rec.hold(b)
    low = [asyncio.ensure_future(b.submit("k", [f"low{i}"], priority=1)) for i in range(3)]
    await asyncio.sleep(0)
    with pytest.raises(QueueFull):           # full, and no more stake than those waiting
        await b.submit("k", ["low3"], priority=1)
    high = asyncio.ensure_future(b.submit("k", ["high"], priority=100))
    await asyncio.sleep(0)
    assert b.depth == 3 and b.stats.refused == 2
    rec.gate.set()
    await blocker
    assert await high == ["k:high"]
    outcomes = await asyncio.gather(*low, return_exceptions=True)
    assert sum(isinstance(o, QueueFull) for o in outcomes) == 1   # the last low one made room
    assert isinstance(outcomes[2], Overloaded)


async def test_batcher_bounds_the_rows_waiting_and_big_stake_evicts_as_many_as_it_needs(recorder_batcher):
    rec, b = recorder_batcher
    b.queue_limit, b.queue_rows = 10, 6
    blocker = await rec.hold(b)
    low = [asyncio.ensure_future(b.submit("k", [f"low{i}a", f"low{i}b"], priority=1)) for i in range(3)]
    await asyncio.sleep(0)
    assert b.depth == 3                          # 6 rows waiting: full, though only 3 requests
    with pytest.raises(QueueFull, match="6 rows"):
        await b.submit("k", ["one more"], priority=1)
    high = asyncio.ensure_future(b.submit("k", ["h1", "h2", "h3"], priority=100))
    await asyncio.sleep(0)
    assert b.depth == 2 and b.stats.refused == 3   # two low requests (4 rows) made room for three rows
    rec.gate.set()
    await blocker
    assert await high == ["k:h1", "k:h2", "k:h3"]
    outcomes = await asyncio.gather(*low, return_exceptions=True)
    assert [isinstance(o, QueueFull) for o in outcomes] == [False, True, True]


async def test_batcher_drops_expired_and_cancelled_requests_before_compute(recorder_batcher):
    rec, b = recorder_batcher
    blocker = await rec.hold(b)
    loop = asyncio.get_running_loop()
    expired = asyncio.ensure_future(b.submit("k", ["late"], deadline=loop.time() + 0.05))
    cancelled = asyncio.ensure_future(b.submit("k", ["gone"]))
    kept = asyncio.ensure_future(b.submit("k", ["kept"]))
    await asyncio.sleep(0.01)
    cancelled.cancel()
    await asyncio.sleep(0.1)
    assert b.depth == 2   # the cancelled one left the queue at once
    rec.gate.set()
    await blocker
    assert await kept == ["k:kept"]
    with pytest.raises(DeadlineTooShort):
        await expired
    assert [r for batch in rec.batches for r in batch] == ["blocker", "kept"]


async def test_batcher_reports_model_errors_and_keeps_going(recorder_batcher):
    _, b = recorder_batcher
    with pytest.raises(RuntimeError, match="exploded"):
        await b.submit("k", ["boom"])
    assert await b.submit("k", ["fine"]) == ["k:fine"]
    await b.stop()
    with pytest.raises(Unavailable):
        await b.submit("k", ["after stop"])


# ---- a miner around a toy model, over gRPC ----

def settings(**overrides) -> MinerSettings:
    base: dict = dict(netuid=3, task="next-token", model="echo", host="127.0.0.1", port=0, metrics_port=0,
                      max_batch=4, max_wait_ms=5, queue_limit=8, warm_up=False)
    base.update(overrides)
    return MinerSettings(**base)


class SlowEcho(toys.Echo):
    def next_words(self, prefixes, top_k):
        time.sleep(0.3)
        return super().next_words(prefixes, top_k)


async def health(channel: aio.Channel, service: str) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    return (await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)).status


async def test_health_is_not_serving_while_the_model_loads():
    gate = threading.Event()

    def loader():
        gate.wait(10)
        return toys.Echo()

    miner = Miner(settings(), hotkey=MINER, stake_of=STAKES.get, loader=loader)
    await miner.start()
    try:
        async with aio.insecure_channel(f"127.0.0.1:{miner.port}") as channel:
            assert await health(channel, "agora.miner.v1.Miner") == health_pb2.HealthCheckResponse.NOT_SERVING
            assert await health(channel, "") == health_pb2.HealthCheckResponse.SERVING   # alive
            client = MinerClient("", VALIDATOR, MINER.ss58_address, channel=channel)
            assert not (await client.info()).ready       # Info answers during the load
            with pytest.raises(aio.AioRpcError) as err:
                await client.next_word(["Hello"])
            assert err.value.code() is grpc.StatusCode.UNAVAILABLE
            gate.set()
            await miner.ready()
            assert await health(channel, "agora.miner.v1.Miner") == health_pb2.HealthCheckResponse.SERVING
            assert (await client.info()).ready
            assert await client.next_word(["Hello world"], 2) == [[(" world", 0.5), (" Hello", 0.5)]]
    finally:
        gate.set()
        await miner.stop()


@pytest.fixture
async def echo_miner() -> AsyncIterator[Miner]:
    miner = Miner(settings(), hotkey=MINER, stake_of=STAKES.get, loader=SlowEcho)
    await miner.start()
    await miner.ready()
    yield miner
    await miner.stop()


async def test_unserved_methods_are_unimplemented_and_bad_input_is_refused(echo_miner: Miner):
    async with MinerClient(f"127.0.0.1:{echo_miner.port}", VALIDATOR, MINER.ss58_address) as client:
        info = await client.info()
        assert (info.task, info.netuid, list(info.methods)) == (miner_pb2.NEXT_TOKEN, 3, ["NextWord", "Generate"])
        assert info.hotkey == MINER.ss58_address and info.model == "echo"
        cases = [
            (client.translate(["Hello"], "fr"), grpc.StatusCode.UNIMPLEMENTED),
            (client.embed(["Hello"]), grpc.StatusCode.UNIMPLEMENTED),
            (client.next_word([]), grpc.StatusCode.INVALID_ARGUMENT),
            (client.next_word(["x"], top_k=1000), grpc.StatusCode.OUT_OF_RANGE),
            (client.next_word(["x"] * 65), grpc.StatusCode.OUT_OF_RANGE),
            (client.generate("x", max_tokens=10_000), grpc.StatusCode.OUT_OF_RANGE),
            (client.generate("x", temperature=-1), grpc.StatusCode.INVALID_ARGUMENT),
        ]
        for call, code in cases:
            with pytest.raises(aio.AioRpcError) as err:
                await call
            assert err.value.code() is code, err.value.details()
    assert echo_miner.model_calls == 0


async def test_a_request_larger_than_max_batch_is_answered_in_order(echo_miner: Miner):
    async with MinerClient(f"127.0.0.1:{echo_miner.port}", VALIDATOR, MINER.ss58_address) as client:
        results = await client.next_word([f"word{i}" for i in range(10)], top_k=1)
    assert results == [[(f" word{i}", 1.0)] for i in range(10)]
    assert echo_miner.model_calls == 1   # one request, computed in slices of max_batch


async def test_a_request_whose_deadline_passes_in_the_queue_is_never_computed(echo_miner: Miner):
    async with MinerClient(f"127.0.0.1:{echo_miner.port}", VALIDATOR, MINER.ss58_address) as client:
        first = asyncio.ensure_future(client.next_word(["busy busy"]))
        await asyncio.sleep(0.05)   # the model is now busy for 0.3 s
        with pytest.raises(aio.AioRpcError) as err:
            await client.call("NextWord", miner_pb2.NextWordRequest(prefixes=["too late"]), timeout=0.1)
        assert err.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        await first
        await asyncio.sleep(0.05)
    assert echo_miner.model_calls == 1
    assert echo_miner.batcher.stats.dropped == 1


async def test_metrics_are_exposed(echo_miner: Miner):
    async with MinerClient(f"127.0.0.1:{echo_miner.port}", VALIDATOR, MINER.ss58_address) as client:
        await client.next_word(["one two"])
        stranger = MinerClient("", OUTSIDER, MINER.ss58_address, channel=client.channel)
        with pytest.raises(aio.AioRpcError):
            await stranger.next_word(["one two"])
    url = f"http://127.0.0.1:{echo_miner.server.metrics_port}/metrics"
    text = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
    for needle in (
        'agora_miner_requests_total{method="NextWord",result="OK",task="next-token"}',
        'agora_miner_requests_total{method="NextWord",result="PermissionDenied",task="next-token"}',
        'agora_auth_failures_total{reason="not_permitted"}',
        "agora_miner_request_seconds_bucket",
        "agora_miner_queue_wait_seconds_bucket",
        'agora_miner_batch_size_bucket{le="1.0",method="NextWord",task="next-token"}',
        'agora_miner_queued_requests{task="next-token"}',
        'agora_miner_model_load_seconds{model="echo",task="next-token"}',
        'agora_miner_model_loaded{model="echo",task="next-token"} 1.0',
        'agora_miner_tokens_total{model="echo",task="next-token"}',
        "agora_miner_inference_seconds_bucket",
        'grpc_server_handled_total{grpc_code="PermissionDenied",grpc_method="NextWord"',
    ):
        assert needle in text, needle


# ---- the whole-word search on a tiny model built here ----

CORPUS = [
    "The capital of France is Paris. The capital of Italy is Rome. The capital of Spain is Madrid.",
    "She opened the door and stepped outside.\nHe opened the window and looked at the garden.",
    "Numbers: 1, 2, 3, 42, 1969. Words like don't, it's and well-known are whole words.",
] * 20


@pytest.fixture(scope="module")
def tiny_lm():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    raw.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<eos>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<eos>", pad_token="<eos>")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         eos_token_id=0, pad_token_id=0, bos_token_id=0, tie_word_embeddings=False)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(30)   # peaked distributions, like a trained model's
    return model, tokenizer, nextword.TokenTable.build(tokenizer)


PREFIXES = ["The capital of France is", "She opened the door and", "Numbers: 1, 2,", "Well", ""]


def test_next_words_are_whole_words_with_probabilities_summing_to_at_most_one(tiny_lm):
    model, tokenizer, table = tiny_lm
    results = nextword.next_words(model, tokenizer, table, PREFIXES, top_k=10)
    assert len(results) == len(PREFIXES)
    for words in results:
        assert words, "no candidate"
        probs = [p for _, p in words]
        assert all(WORD.match(w) for w, _ in words), words
        assert len({w for w, _ in words}) == len(words)
        assert probs == sorted(probs, reverse=True) and all(p > 0 for p in probs)
        assert sum(probs) <= 1 + 1e-9


def test_next_words_do_not_depend_on_batching(tiny_lm):
    model, tokenizer, table = tiny_lm
    together = nextword.next_words(model, tokenizer, table, PREFIXES, top_k=5)
    for prefix, batched in zip(PREFIXES, together, strict=True):
        (alone,) = nextword.next_words(model, tokenizer, table, [prefix], top_k=5)
        assert [w for w, _ in alone] == [w for w, _ in batched]
        assert np.allclose([p for _, p in alone], [p for _, p in batched], atol=1e-4)


def test_token_table_classes(tiny_lm):
    _, tokenizer, table = tiny_lm
    def cls(text: str) -> int:
        (tid,) = tokenizer.encode(text, add_special_tokens=False)
        return int(table.classes[tid])
    assert cls(" the") == nextword.SPACE_WORD
    assert cls("\n") == nextword.SPACE
    assert cls("e") == nextword.CONT
    assert int(table.classes[tokenizer.eos_token_id]) == nextword.SPECIAL


def test_the_blocked_top_k_finds_what_topk_finds():
    generator = torch.Generator().manual_seed(3)
    logits = torch.randn(40, 49_152, generator=generator) * 4
    logits[:5, 1_000:1_008] += 30   # the best ones crowded into one block
    probs = logits.softmax(-1)
    for k in (1, 8, 12):
        values, ids = nextword._top(probs, k)
        want = probs.topk(k, dim=-1)
        assert torch.equal(values, want.values) and torch.equal(ids, want.indices)


@pytest.mark.skipif(not packed.available(), reason="this torch has no oneDNN")
def test_packed_linear_layers_answer_alike_and_survive_deepcopy_and_degrade(tiny_lm):
    from transformers import LlamaConfig, LlamaForCausalLM

    model, tokenizer, table = tiny_lm
    fast = copy.deepcopy(model)
    assert packed.pack_linears(fast) == 2 * 7 + 1
    plain_words = nextword.next_words(model, tokenizer, table, PREFIXES, top_k=5)
    packed_words = nextword.next_words(fast, tokenizer, table, PREFIXES, top_k=5)
    for a, b in zip(plain_words, packed_words, strict=True):
        assert [w for w, _ in a] == [w for w, _ in b]
        assert np.allclose([p for _, p in a], [p for _, p in b], atol=1e-5)
    # A tied output layer (SmolLM2's is its embedding) gets the same noise packed or not, and stays tied.
    torch.manual_seed(0)
    tied = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                        num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True)).eval()
    tied_packed = copy.deepcopy(tied)
    packed.pack_linears(tied_packed)
    twin = copy.deepcopy(tied_packed)                       # a packed model deep-copies
    for m in (tied, tied_packed, twin):
        degrade(m, 0.1, seed=5)
    assert packed.is_packed(twin) and twin.lm_head.tied is twin.model.embed_tokens.weight
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.inference_mode():
        want = tied(input_ids=ids).logits
        for m in (tied_packed, twin):
            assert torch.allclose(m(input_ids=ids).logits, want, atol=1e-5)
    packed.unpack_linears(twin)
    assert {k: v.shape for k, v in twin.state_dict().items()} == {k: v.shape for k, v in tied.state_dict().items()}


# ---- degradation, toys, sources ----

def test_degrade_is_seeded_and_scaled_by_each_tensors_std():
    def net() -> torch.nn.Module:
        torch.manual_seed(1)
        return torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Linear(64, 8))

    a, b, c, clean = net(), net(), net(), net()
    degrade(a, 0.1, seed=7)
    degrade(b, 0.1, seed=7)
    degrade(c, 0.1, seed=8)
    wa, wb, wc, w0 = (m[0].weight.detach() for m in (a, b, c, clean))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)
    ratio = float((wa - w0).std() / w0.std())
    assert 0.08 < ratio < 0.12


def test_toys():
    echo, noise = toys.Echo(), toys.Noise(seed=1)
    assert echo.next_words(["to be or not"], 2) == [[(" not", 0.5), (" or", 0.5)]]
    assert echo.translate(["Hello there."], "en", "fr") == ["Hello there."]
    (words,) = noise.next_words(["anything"], 5)
    assert len(words) == 5 and abs(sum(p for _, p in words) - 1) < 1e-9
    for model in (echo, noise):
        v = model.embed(["a", "b c"])
        assert v.shape == (2, toys.EMBED_DIMENSIONS) and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)


def test_resolve_aliases_paths_and_hub_ids(tmp_path, monkeypatch):
    monkeypatch.setenv("AGORA_CACHE_DIR", str(tmp_path / "cache"))
    assert sources.models_dir() == tmp_path / "cache" / "models"
    assert sources.resolve("echo") == sources.ModelSource("echo", "echo", "toy")
    assert sources.resolve("org/some-model") == sources.ModelSource("org/some-model", "org/some-model", "causal")
    folder = tmp_path / "enc"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "bert"}')
    assert sources.resolve(str(folder)).kind == "encoder"
    assert sources.resolve("minilm-l6").kind == "encoder"
    with pytest.raises(NotFound):
        sources.resolve(str(tmp_path / "missing" / "model.gguf"))


def test_conversion_output_is_atomic_and_reused(tmp_path):
    target = tmp_path / "models" / "m"
    with pytest.raises(RuntimeError), sources._staging(target) as tmp:
        (tmp / "half-written").write_text("x")
        raise RuntimeError("killed mid-way")
    assert not target.exists() and list((tmp_path / "models").iterdir()) == []
    with sources._staging(target) as tmp:
        (tmp / "config.json").write_text("{}")
    assert (target / "config.json").exists()
    # a finished folder is returned as is: no GGUF is read (this source does not even exist)
    assert sources.convert_gguf(tmp_path / "nowhere", "x.gguf", target) == target


# ---- reflection and a generic client ----

def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def test_reflection_lists_the_miner_and_a_generic_client_calls_info(echo_miner: Miner):
    for version in (V1, V1ALPHA):
        client = ReflectionClient(f"127.0.0.1:{echo_miner.port}", version)
        try:
            services = await client.list_services()
            assert "agora.miner.v1.Miner" in services and "grpc.health.v1.Health" in services
            methods = await client.describe("agora.miner.v1.Miner")
            assert methods == ["Info", "NextWord", "Generate", "Translate", "Embed"]
            # The generic client knows no project code: it sends the envelope as JSON, as grpcurl -d would.
            envelope = SimpleNamespace(caller_hotkey=VALIDATOR.ss58_address, miner_hotkey=MINER.ss58_address,
                                       nonce=auth.new_nonce(), timestamp_ms=int(time.time() * 1000),
                                       body_hash=hashlib.sha256(b"").digest())   # InfoRequest without auth is empty
            signature = VALIDATOR.sign(auth.request_payload(auth.method_path("Info"), envelope))
            info = await client.call("agora.miner.v1.Miner", "Info", {"auth": {
                "callerHotkey": envelope.caller_hotkey, "minerHotkey": envelope.miner_hotkey,
                "nonce": str(envelope.nonce), "timestampMs": str(envelope.timestamp_ms),
                "bodyHash": _b64(envelope.body_hash), "signature": _b64(signature)}})
            assert info["task"] == "NEXT_TOKEN" and info["hotkey"] == MINER.ss58_address and info["ready"]
            assert info["methods"] == ["NextWord", "Generate"]
            assert info["signature"]["minerHotkey"] == MINER.ss58_address
            with pytest.raises(aio.AioRpcError) as err:   # unsigned
                await client.call("agora.miner.v1.Miner", "Info", {})
            assert err.value.code() is grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(aio.AioRpcError) as err:   # described, but not this miner's task
                await client.call("agora.miner.v1.Miner", "Embed", {"texts": ["x"]})
            assert err.value.code() is grpc.StatusCode.UNIMPLEMENTED
        finally:
            await client.close()
