"""The validator on a real chain with in-process toy miners: rounds, the EMA, weights and incentive,
paid queries with failover, the Scores RPC, the CLI and metrics. Real models: test_validator_ladder.py.

The top of the ladder here is an oracle that looks the held-out answers up (the data is built in
the test, so it can): what matters is that the validator ranks it over echo over noise, not how a
real model does.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc import aio

from agora.chain.v1 import chain_pb2
from agora.validator.v1 import validator_pb2, validator_pb2_grpc
from services.chain import client as calls
from services.chain.client import ChainClient
from services.chain.main import ChainNode
from services.chain.subnets import NetworkParams
from services.common import keys
from services.miner import toys
from services.miner.main import Miner, MinerSettings
from services.validator.datasets import TaskData, load_task_data
from services.validator.ema import EmaState, cap_max_share, max_share_u16
from services.validator.items import Task
from services.validator.loop import ValidatorLoop
from services.validator.main import Validator
from services.validator.miners import MinerPool
from services.validator.payments import Cashier, PaymentReplayed, check_payment
from services.validator.scoring import score_of_level
from services.validator.settings import VALIDATOR_PROTOCOL, ValidatorSettings
from services.validator.store import RedisStore
from tests.conftest import chain_settings

TAO = 10**9
ECON = NetworkParams(min_tempo=1, lock_cost_rao=100 * TAO)
ALICE, BOB, CHARLIE = keys.dev_keypair("Alice"), keys.dev_keypair("Bob"), keys.dev_keypair("Charlie")
VALIDATOR = keys.dev_keypair("validator-hotkey")
PAYEE = keys.dev_keypair("validator-coldkey").ss58_address   # only its address: coldkeys stay offline
FEE = 1_000_000


# ---- data the test writes, and an oracle that knows it ----

ANIMALS = ["fox", "heron", "badger", "otter", "lynx", "crane", "beaver", "marten", "stork", "hare"]
PLACES = ["river", "meadow", "forest", "valley", "marsh", "ridge", "harbour", "orchard"]
FR = {"fox": "renard", "heron": "héron", "badger": "blaireau", "otter": "loutre", "lynx": "lynx",
      "crane": "grue", "beaver": "castor", "marten": "martre", "stork": "cigogne", "hare": "lièvre"}


def paragraph(i: int) -> str:
    a, b, p = ANIMALS[i % 10], ANIMALS[(i * 3 + 1) % 10], PLACES[i % 8]
    return (f"On day {i} the {a} walked slowly along the {p} looking for food, while the {b} watched "
            f"from a distance and wondered whether winter number {i + 7} would be kind to them both.")


def write_data(folder: Path) -> dict[Task, TaskData]:
    folder.mkdir(parents=True, exist_ok=True)
    rows = {
        Task.NEXT_TOKEN: [{"text": paragraph(i)} for i in range(40)],
        Task.TRANSLATION: [{"source": f"The {a} sleeps near the {p} number {i}.",
                            "reference": f"Le {FR[a]} dort près du lieu numéro {i}.", "lang": "fr"}
                           for i, (a, p) in enumerate((a, p) for a in ANIMALS for p in PLACES[:4])],
        Task.EMBEDDING: [{"query": f"Where does the {a} of story {i} live?",
                          "passage": f"Story {i}: the {a} lives by the {PLACES[i % 8]} with its family.",
                          "doc": f"story-{i}"} for i, a in enumerate(ANIMALS * 4)],
    }
    out = {}
    for task, items in rows.items():
        path = folder / f"{task}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in items))
        out[task] = load_task_data(task, f"jsonl:{path}")
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[Task, TaskData]:
    return write_data(tmp_path_factory.mktemp("validator-data"))


@dataclass
class Oracle:
    """Answers every held-out item right: looks the continuation, the reference, the document up."""

    data: dict[Task, TaskData]
    name: str = "oracle"
    kind: str = "toy"
    dimensions: int = 16
    seen: list[list[str]] = field(default_factory=list)   # each NextWord batch's prefixes

    def next_words(self, prefixes: Sequence[str], top_k: int) -> list[list[tuple[str, float]]]:
        self.seen.append(list(prefixes))
        texts = [i.text for i in self.data[Task.NEXT_TOKEN].held_out]
        out = []
        for prefix in prefixes:
            rest = next((t[len(prefix):] for t in texts if t.startswith(prefix)), "")
            word = re.match(r"\s+\S+", rest)
            out.append([(word.group() if word else " the", 0.9), (" zzz", 0.05)][:top_k])
        return out

    def generate(self, prompts: Sequence[str], max_tokens: int, temperature: float) -> list[str]:
        return [" the oracle knows" for _ in prompts]

    def translate(self, sentences: Sequence[str], source: str, target: str) -> list[str]:
        pairs = {i.source: i.reference for i in self.data[Task.TRANSLATION].held_out}
        return [pairs.get(s, s) for s in sentences]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        doc = {}
        for item in self.data[Task.EMBEDDING].held_out:
            doc[item.query] = doc[item.passage] = item.doc
        out = []
        for text in texts:
            seed = int.from_bytes(doc.get(text, text).encode()[-8:].rjust(8, b"\0"), "big")
            v = np.random.default_rng(seed).standard_normal(self.dimensions)
            out.append(v / np.linalg.norm(v))
        return np.asarray(out, dtype=np.float32)

    def count_tokens(self, texts: Sequence[str]) -> int:
        return sum(len(t.split()) for t in texts)


# ---- a network: a producing chain, a subnet, a staked validator, miners on demand ----

@dataclass
class Net:
    node: ChainNode
    client: ChainClient
    netuid: int
    task: str
    data: dict[Task, TaskData]
    miners: list[Miner] = field(default_factory=list)
    keys: list = field(default_factory=list)
    # validator hotkey -> stake: who the miners answer (more validators may be added before add_miners)
    callers: dict[str, int] = field(default_factory=lambda: {VALIDATOR.ss58_address: TAO})

    @property
    def chain(self) -> str:
        return f"127.0.0.1:{self.node.server.port}"

    async def run(self, signer, call) -> chain_pb2.SubmitExtrinsicResponse:
        response = await self.client.call(signer, call, wait=True)
        assert response.status.success, response.status.error
        return response

    async def add_miners(self, models: Sequence[object], *, delay_s: float = 0.0) -> list[Miner]:
        """Register, start and serve one miner per model (a toy name or a model object)."""
        started = []
        for model in models:
            key = keys.dev_keypair(f"miner-{self.netuid}-{len(self.keys)}")
            self.keys.append(key)
            loader = (lambda m=model: m) if not isinstance(model, str) else (lambda m=model: toys.make(m))
            miner = Miner(MinerSettings(netuid=self.netuid, task=self.task, model=getattr(model, "name", model),
                                        host="127.0.0.1", port=0, metrics_port=None, warm_up=False),
                          hotkey=key, stake_of=self.callers.get,
                          loader=_slow(loader, delay_s) if delay_s else loader)
            self.miners.append(miner)
            await miner.start()
            await miner.ready()
            started.append(miner)
            await self.client.call(BOB, calls.burned_register_call(self.netuid, key.ss58_address), wait=False)
        await self.client.call(BOB, calls.transfer_call(ALICE.ss58_address, 1), wait=True)   # a block after them
        for key, miner in zip(self.keys[-len(models):], started, strict=True):
            await self.run(key, calls.serve_axon_call(self.netuid, "127.0.0.1", miner.port))
        return started

    async def uid(self, hotkey: str) -> int:
        return next(n.uid for n in (await self.client.metagraph(self.netuid)).neurons if n.hotkey == hotkey)

    def settings(self, **overrides: object) -> ValidatorSettings:
        base: dict = dict(netuid=self.netuid, chain=self.chain, port=0, metrics_port=None, round_interval_s=0.2,
                          timeout_s=2.0, attempt_timeout_s=1.0, query_timeout_s=5.0, fee_rao=FEE, seed=7,
                          round_items=8)
        base.update(overrides)
        return ValidatorSettings(**base)

    def loop(self, **overrides: object) -> ValidatorLoop:
        return ValidatorLoop(settings=self.settings(**overrides), hotkey=VALIDATOR, chain=self.client,
                             data=self.data[Task(self.task)], pool=MinerPool(VALIDATOR), seed=7)


def _slow(loader, delay_s: float):
    def load():
        model = loader()

        class Slow:
            def __getattr__(self, name):
                return getattr(model, name)

            def next_words(self, prefixes, top_k):
                time.sleep(delay_s)
                return model.next_words(prefixes, top_k)

            def generate(self, prompts, max_tokens, temperature):
                time.sleep(delay_s)
                return model.generate(prompts, max_tokens, temperature)

        return Slow()
    return load


async def make_net(redis_server, data, task: str = "next-token", **hyperparameters: int) -> AsyncIterator[Net]:
    node = ChainNode(chain_settings(redis_server, economics=ECON, block_time_ms=50))
    await node.start()
    client = ChainClient(f"127.0.0.1:{node.server.port}")
    owner_hotkey = keys.dev_keypair("owner-hotkey")
    response = await client.call(ALICE, calls.register_network_call(task, "test", owner_hotkey.ss58_address))
    assert response.status.success, response.status.error
    netuid = max(s.netuid for s in await client.subnets())
    net = Net(node, client, netuid, task, data)
    settings = {"tempo": 10, "weights_rate_limit": 0, "target_regs_per_interval": 50, "immunity_period": 0,
                **hyperparameters}
    for name, value in settings.items():
        await client.call(ALICE, calls.set_hyperparameter_call(netuid, name, value), wait=False)
    await net.run(BOB, calls.burned_register_call(netuid, VALIDATOR.ss58_address))
    await net.run(BOB, calls.add_stake_call(VALIDATOR.ss58_address, 1_000 * TAO))
    try:
        yield net
    finally:
        for miner in net.miners:
            await miner.stop()
        await client.close()
        await node.stop()


@pytest.fixture
async def net(redis_server, data) -> AsyncIterator[Net]:
    async for n in make_net(redis_server, data):
        yield n


async def balance(net: Net, address: str) -> int:
    return (await net.client.account(address)).free


# ---- pure parts ----

def test_cap_max_share_keeps_order_and_meets_the_limit():
    rng = np.random.default_rng(0)
    for _ in range(2_000):
        n = int(rng.integers(2, 40))
        weights = [int(w) for w in rng.integers(1, 65_536, n)]
        limit = int(rng.integers(65_535 // n + 1, 65_536))
        capped = cap_max_share(weights, limit)
        assert (max_share_u16(capped) <= limit and max(capped) == 65_535) or capped == weights
        order = np.argsort(weights, kind="stable")
        assert all(capped[order[i]] <= capped[order[i + 1]] for i in range(n - 1))
    assert cap_max_share([65_535, 10, 10, 10], 40_000) == [65_535, 13_946, 13_946, 13_946]
    assert cap_max_share([5, 1], 65_535) == [5, 1]


def test_settings_from_env_and_flags():
    env = {"AGORA_VALIDATOR_HOST": "0.0.0.0", "AGORA_VALIDATOR_PORT": "9000", "AGORA_METRICS_PORT": "9999",
           "AGORA_CHAIN": "chain:1", "AGORA_DATA": "jsonl:/x.jsonl", "AGORA_REDIS_URL": "redis://:pw@r:1/0"}
    s = ValidatorSettings.from_env(env, port=8123, netuid=3)
    assert (s.host, s.port, s.metrics_port, s.chain, s.data, s.netuid) == ("0.0.0.0", 8123, 9999, "chain:1",
                                                                          "jsonl:/x.jsonl", 3)
    assert s.advertised_host == "127.0.0.1" and "pw" not in repr(s)
    with pytest.raises(Exception, match="AGORA_VALIDATOR_PORT"):
        ValidatorSettings.from_env({"AGORA_VALIDATOR_PORT": "x"})


def test_check_payment_refuses_before_any_chain_call():
    chain_id = bytes(32)
    good = calls.sign_extrinsic(CHARLIE, 0, chain_id, calls.transfer_call(PAYEE, FEE))
    paid = check_payment(good, payee=PAYEE, fee_rao=FEE, chain_id=chain_id, payer=CHARLIE.ss58_address)
    assert (paid.amount_rao, paid.signer, paid.dest) == (FEE, CHARLIE.ss58_address, PAYEE)
    cases = [
        (None, grpc.StatusCode.PERMISSION_DENIED),
        (calls.sign_extrinsic(CHARLIE, 0, chain_id, calls.transfer_call(PAYEE, FEE - 1)),
         grpc.StatusCode.FAILED_PRECONDITION),
        (calls.sign_extrinsic(CHARLIE, 0, chain_id, calls.transfer_call(BOB.ss58_address, FEE)),
         grpc.StatusCode.FAILED_PRECONDITION),
        (calls.sign_extrinsic(CHARLIE, 0, chain_id, calls.add_stake_call(PAYEE, FEE)),
         grpc.StatusCode.INVALID_ARGUMENT),
        (calls.sign_extrinsic(BOB, 0, chain_id, calls.transfer_call(PAYEE, FEE)), grpc.StatusCode.PERMISSION_DENIED),
        (calls.sign_extrinsic(CHARLIE, 0, b"x" * 32, calls.transfer_call(PAYEE, FEE)), grpc.StatusCode.UNAUTHENTICATED),
        (chain_pb2.Extrinsic(payload=good.payload, signature=bytes(64)), grpc.StatusCode.UNAUTHENTICATED),
    ]
    from services.common.error_mapping import status_code_for

    for xt, code in cases:
        with pytest.raises(Exception) as err:
            check_payment(xt, payee=PAYEE, fee_rao=FEE, chain_id=chain_id, payer=CHARLIE.ss58_address)
        assert status_code_for(err.value) is code, err.value


def test_every_validator_error_maps_to_a_non_internal_code():
    from services.common.error_mapping import status_code_for
    from services.common.errors import AgoraError
    from services.validator import payments, queries, router

    found = [obj for module in (payments, queries, router) for obj in vars(module).values()
             if isinstance(obj, type) and issubclass(obj, AgoraError) and obj.__module__ == module.__name__]
    assert len(found) >= 10
    for cls in found:
        assert status_code_for(cls("x")) is not grpc.StatusCode.INTERNAL, cls


# ---- rounds ----

async def test_a_round_asks_every_miner_the_same_items_and_noise_scores_near_zero(net: Net, data):
    loop = net.loop()
    await loop.start()
    empty = await loop.run_round()          # no miner yet: a round of zeros, not a crash
    assert empty.outcomes == () and empty.shares == {}
    oracle_a, oracle_b = Oracle(data), Oracle(data)
    await net.add_miners([oracle_a, oracle_b, "echo", "noise"])
    # an axon nobody listens on: a miner that went away
    ghost = keys.dev_keypair(f"ghost-{net.netuid}")
    await net.run(BOB, calls.burned_register_call(net.netuid, ghost.ss58_address))
    await net.run(ghost, calls.serve_axon_call(net.netuid, "127.0.0.1", 1))
    result = await loop.run_round()
    by_hotkey = {o.hotkey: o for o in result.outcomes}
    a, b, echo, noise = (by_hotkey[k.ss58_address] for k in net.keys)
    assert oracle_a.seen == oracle_b.seen and len(oracle_a.seen[0]) == 8     # the same 8 prefixes
    assert a.score.metric < 0.2 and a.score.score > 0 and abs(a.score.score - b.score.score) < 1e-9
    assert noise.result == "answered" and noise.score.score < 0.01
    assert echo.score.score < 0.1 * a.score.score
    assert by_hotkey[ghost.ss58_address].result == "failed" and by_hotkey[ghost.ss58_address].score.score == 0
    assert sum(result.shares.values()) == pytest.approx(1.0)
    # the EMA moved by alpha towards each round's level, nats of loss below an empty answer's (absolute, not
    # the round's share: a round only noise answered must not hand noise a full share); weights take
    # the score of that average squared (score_power 2); the validator is not scored
    assert loop.ema.values[a.uid] == pytest.approx(0.1 * (a.score.zero - a.score.metric))
    assert loop.weight_score(a.uid) == pytest.approx(score_of_level("next-token", loop.ema.values[a.uid]) ** 2)
    assert loop.weight_score(noise.uid) < 1e-3 * loop.weight_score(a.uid)
    assert await net.uid(VALIDATOR.ss58_address) not in loop.ema.values
    await loop.pool.close()


async def test_translation_and_embedding_rounds_rank_oracle_over_echo_and_noise(redis_server, data):
    for task in ("translation", "embedding"):
        async for net in make_net(redis_server, data, task):
            loop = net.loop()
            await loop.start()
            await net.add_miners([Oracle(data), "echo", "noise"])
            result = await loop.run_round()
            score = {o.hotkey: o.score for o in result.outcomes}
            oracle, echo, noise = (score[k.ss58_address] for k in net.keys)
            assert oracle.score > 0.9, (task, oracle)
            assert echo.score < 0.05 and noise.score < 0.1, (task, echo, noise)
            await loop.pool.close()


async def test_an_ensemble_next_word_query_mixes_the_scored_miners_and_names_them(redis_server, data):
    async for net in make_net(redis_server, data):
        await net.add_miners([Oracle(data), Oracle(data), "noise"])
        validator = Validator(net.settings(fee_rao=0), hotkey=VALIDATOR, coldkey=PAYEE, data=data[Task.NEXT_TOKEN])
        await validator.start()
        try:
            await wait_for(lambda v=validator: _rounds(v, 1))
            async with aio.insecure_channel(f"127.0.0.1:{validator.port}") as channel:
                stub = validator_pb2_grpc.ValidatorStub(channel)
                prefixes = [paragraph(3)[:40], paragraph(5)[:60]]
                reply = await stub.Query(validator_pb2.QueryRequest(
                    ensemble=3, next_word=validator_pb2.NextWordInput(prefixes=prefixes, top_k=5)))
                oracles = {k.ss58_address for k in net.keys[:2]}
                # the noise miner scores 0: it adds nothing and is not named
                assert {c.hotkey for c in reply.contributors} == oracles
                assert sum(c.share for c in reply.contributors) == pytest.approx(1.0)
                assert len(reply.next_words.distributions) == 2
                assert all(0 < len(d.words) <= 5 for d in reply.next_words.distributions)
                for request, code in (
                        (validator_pb2.QueryRequest(ensemble=2, generate=validator_pb2.GenerateInput(prompt="x")),
                         grpc.StatusCode.INVALID_ARGUMENT),
                        (validator_pb2.QueryRequest(next_word=validator_pb2.NextWordInput(prefixes=["a"], top_k=65)),
                         grpc.StatusCode.OUT_OF_RANGE),
                        (validator_pb2.QueryRequest(ensemble=17, next_word=validator_pb2.NextWordInput(prefixes=["a"])),
                         grpc.StatusCode.OUT_OF_RANGE)):
                    with pytest.raises(aio.AioRpcError) as err:
                        await stub.Query(request)
                    assert err.value.code() is code, err.value.details()
        finally:
            await validator.stop()


async def test_translate_and_embed_queries_are_answered_by_the_best_miner(redis_server, data):
    queries = {
        "translation": validator_pb2.QueryRequest(translate=validator_pb2.TranslateInput(
            sentences=["The fox sleeps near the river number 0.", "Hello there."], target_language="fr")),
        "embedding": validator_pb2.QueryRequest(embed=validator_pb2.EmbedInput(texts=["a", "b", "c"])),
    }
    for task, request in queries.items():
        async for net in make_net(redis_server, data, task):
            await net.add_miners(["noise", Oracle(data)])
            validator = Validator(net.settings(fee_rao=0), hotkey=VALIDATOR, coldkey=PAYEE, data=data[Task(task)])
            await validator.start()
            try:
                await wait_for(lambda v=validator: _rounds(v, 2))
                async with aio.insecure_channel(f"127.0.0.1:{validator.port}") as channel:
                    stub = validator_pb2_grpc.ValidatorStub(channel)
                    reply = await stub.Query(request)
                    assert reply.hotkey == net.keys[1].ss58_address   # the oracle, ranked first
                    assert [(c.uid, c.share) for c in reply.contributors] == [(reply.uid, 1.0)]
                    if task == "translation":
                        assert list(reply.translations.translations) == ["Le renard dort près du lieu numéro 0.",
                                                                         "Hello there."]
                    else:
                        vectors = np.array([list(e.values) for e in reply.embeddings.embeddings])
                        assert vectors.shape == (3, 16) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
                    with pytest.raises(aio.AioRpcError) as err:   # the other task's input
                        await stub.Query(queries["embedding" if task == "translation" else "translation"])
                    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            finally:
                await validator.stop()


async def test_ema_resets_when_a_uid_changes_hands(redis_server, data):
    async for net in make_net(redis_server, data, max_allowed_validators=3, max_allowed_uids=3):
        loop = net.loop(weights_interval_blocks=1)
        await loop.start()
        await net.add_miners([Oracle(data), "noise"])
        await loop.run_round()
        noise_uid = await net.uid(net.keys[1].ss58_address)
        assert loop.records[noise_uid].answered == 1
        # weights, then an epoch: the noise miner earns nothing and has the lowest pruning score
        assert await wait_for(loop.maybe_set_weights) == "ok"
        block = loop.last_weights.block
        await wait_for(lambda n=net, b=block: _epoch_after(n, b))
        newcomer = keys.dev_keypair(f"newcomer-{net.netuid}")
        await net.run(BOB, calls.burned_register_call(net.netuid, newcomer.ss58_address))
        assert await net.uid(newcomer.ss58_address) == noise_uid     # the subnet was full: it took noise's uid
        await loop.run_round()
        assert loop.records[noise_uid].hotkey == newcomer.ss58_address
        assert loop.records[noise_uid].answered == 0     # its predecessor's record is gone
        assert loop.ema.hotkeys[noise_uid] == newcomer.ss58_address and loop.ema.values[noise_uid] == 0.0
        await loop.pool.close()


async def _epoch_after(net: Net, block: int) -> bool:
    return (await net.client.subnet(net.netuid)).last_epoch_block > block


async def test_weights_respect_the_subnets_limits_and_version(redis_server, data):
    async for net in make_net(redis_server, data, min_allowed_weights=4, max_weights_limit=30_000):
        loop = net.loop(weights_interval_blocks=1)
        await loop.start()
        await net.add_miners([Oracle(data), "echo", "noise"])
        await loop.run_round()
        assert await wait_for(loop.maybe_set_weights) == "ok"
        m = await net.client.metagraph(net.netuid, weights=True)
        row = next(n for n in m.neurons if n.hotkey == VALIDATOR.ss58_address).weights
        assert len(row.uids) >= 4                                   # filled up to min_allowed_weights
        assert max(row.values) * 65_535 // sum(row.values) <= 30_000   # no weight above the limit's share
        oracle = await net.uid(net.keys[0].ss58_address)
        assert max(zip(row.values, row.uids, strict=True))[1] == oracle
        # the owner requires a newer validator: it stops setting weights and says why
        newer = loop.settings.version_key + 1
        await net.run(ALICE, calls.set_hyperparameter_call(net.netuid, "weights_version", newer))
        await loop.run_round()
        assert await wait_for(loop.maybe_set_weights) == "outdated"
        await loop.pool.close()


async def test_the_moving_average_survives_a_restart_in_redis(redis_server):
    store = RedisStore(redis_server.url, VALIDATOR.ss58_address, 99)
    state = EmaState.new(0.1).update({1: 0.5, 2: 0.5}, {1: "a", 2: "b"})
    await store.save(state)
    again = RedisStore(redis_server.url, VALIDATOR.ss58_address, 99)
    assert (await again.load()) == state
    await again.redis.set(again.key, "not json{")
    with pytest.raises(ValueError):
        json.loads(await again.redis.get(again.key))
    await store.close()
    await again.close()


# ---- the whole validator: weights, queries, failover, Scores, CLI, metrics ----

@pytest.fixture
async def running(net: Net, data) -> AsyncIterator[tuple[Net, Validator]]:
    await net.add_miners([Oracle(data), "echo", "noise"])
    validator = Validator(net.settings(metrics_port=0), hotkey=VALIDATOR, coldkey=PAYEE, data=data[Task.NEXT_TOKEN])
    await validator.start()
    try:
        yield net, validator
    finally:
        await validator.stop()


async def wait_for(predicate, timeout: float = 20.0, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout}s")
        await asyncio.sleep(step)


async def test_weights_land_on_the_chain_and_incentive_follows(running):
    net, validator = running
    uids = [await net.uid(k.ss58_address) for k in net.keys]

    async def incentive_after_weights():
        if validator.loop.last_weights is None:
            return None
        m = await net.client.metagraph(net.netuid, weights=True)
        if m.last_epoch_block <= validator.loop.last_weights.block:
            return None
        return m

    m = await wait_for(incentive_after_weights)
    me = next(n for n in m.neurons if n.hotkey == VALIDATOR.ss58_address)
    assert me.axon.protocol == VALIDATOR_PROTOCOL and me.axon.port == validator.port
    row = dict(zip(me.weights.uids, me.weights.values, strict=True))
    oracle, echo, noise = (m.neurons[u].incentive for u in uids)
    assert row[uids[0]] == 65_535 and oracle > 0.9 * 65_535
    assert noise < 0.01 * 65_535 and echo < 0.1 * 65_535
    assert validator.loop.last_weights.weights[uids[0]] == 65_535


async def test_paid_query_returns_the_top_miners_answer_and_bad_payments_cost_nothing(running):
    net, validator = running
    await wait_for(lambda: _rounds(validator, 2))
    top = await net.uid(net.keys[0].ss58_address)
    async with aio.insecure_channel(f"127.0.0.1:{validator.port}") as channel:
        stub = validator_pb2_grpc.ValidatorStub(channel)
        info = await stub.Info(validator_pb2.InfoRequest())
        assert (info.fee_rao, info.coldkey, info.netuid, info.miners) == (FEE, PAYEE, net.netuid, 3)
        assert info.task == chain_pb2.NEXT_TOKEN and list(info.methods) == ["generate", "next_word"]

        async def query(payment=None, payer=CHARLIE.ss58_address, **inputs):
            inputs = inputs or {"generate": validator_pb2.GenerateInput(prompt="Once upon a time")}
            return await stub.Query(validator_pb2.QueryRequest(netuid=net.netuid, payment=payment, payer=payer,
                                                               **inputs))

        async def pay(amount=FEE, dest=PAYEE, signer=CHARLIE):
            return await net.client.sign(signer, calls.transfer_call(dest, amount))

        before = await balance(net, CHARLIE.ss58_address), await balance(net, PAYEE)
        payment = await pay()
        reply = await query(payment)
        assert (reply.uid, reply.hotkey, reply.text) == (top, net.keys[0].ss58_address, " the oracle knows")
        assert reply.fee_rao == FEE and reply.payment_block > 0 and reply.attempts == 1
        after = await balance(net, CHARLIE.ss58_address), await balance(net, PAYEE)
        chain_fee = (await net.client.info()).transfer_fee
        assert after == (before[0] - FEE - chain_fee, before[1] + FEE)

        refusals = [
            (dict(), grpc.StatusCode.PERMISSION_DENIED, "costs"),
            (dict(payment=await pay(FEE - 1)), grpc.StatusCode.FAILED_PRECONDITION, "below the fee"),
            (dict(payment=await pay(dest=BOB.ss58_address)), grpc.StatusCode.FAILED_PRECONDITION, "goes to"),
            (dict(payment=await pay(), payer=BOB.ss58_address), grpc.StatusCode.PERMISSION_DENIED, "not by the payer"),
            (dict(payment=payment), grpc.StatusCode.ALREADY_EXISTS, "already used"),
            (dict(payment=await pay(), translate=validator_pb2.TranslateInput(sentences=["Hi"], target_language="fr")),
             grpc.StatusCode.INVALID_ARGUMENT, "next-token"),
            (dict(payment=await pay(amount=10**24 // 10**9)), grpc.StatusCode.FAILED_PRECONDITION, "needs"),
        ]
        for kwargs, code, words in refusals:
            with pytest.raises(aio.AioRpcError) as err:
                await query(**kwargs)
            assert err.value.code() is code and words in err.value.details(), (kwargs.keys(), err.value.details())
        assert (await balance(net, CHARLIE.ss58_address), await balance(net, PAYEE)) == after

        # a fresh validator process has no memory of it: the chain refuses the reused nonce
        fresh = Cashier(net.client, payee=PAYEE, fee_rao=FEE, chain_id=await net.client.chain_id())
        with pytest.raises(PaymentReplayed):
            await fresh.settle(fresh.check(payment, CHARLIE.ss58_address))
        assert (await balance(net, CHARLIE.ss58_address), await balance(net, PAYEE)) == after


async def _rounds(validator: Validator, n: int) -> bool:
    return validator.loop.rounds >= n


async def test_a_miner_that_disconnects_is_routed_around(net: Net, data):
    await net.add_miners([Oracle(data), "echo"])
    validator = Validator(net.settings(fee_rao=0), hotkey=VALIDATOR, coldkey=PAYEE, data=data[Task.NEXT_TOKEN])
    await validator.start()
    try:
        await wait_for(lambda: _rounds(validator, 2))
        top, second = [await net.uid(k.ss58_address) for k in net.keys]
        async with aio.insecure_channel(f"127.0.0.1:{validator.port}") as channel:
            stub = validator_pb2_grpc.ValidatorStub(channel)
            request = validator_pb2.QueryRequest(netuid=net.netuid, generate=validator_pb2.GenerateInput(prompt="Hi"))
            assert (await stub.Query(request)).uid == top
            await net.miners[0].stop()
            reply = await stub.Query(request)
            assert (reply.uid, reply.attempts, reply.text) == (second, 2, " Hi")
            reply = await stub.Query(request)        # the failed miner is now tried last
            assert (reply.uid, reply.attempts) == (second, 1)
            rounds, ema_before = validator.loop.rounds, validator.loop.ema.values[top]
            await wait_for(lambda: _rounds(validator, rounds + 2))
            scores = await stub.Scores(validator_pb2.ScoresRequest())
            row = {r.uid: r for r in scores.miners}
            assert row[top].failed >= 1 and row[top].last_score == 0.0
            assert row[top].ema < ema_before                              # decaying
            # the last one goes too: queries fail cleanly, rounds go on as rounds of zeros
            await net.miners[1].stop()
            with pytest.raises(aio.AioRpcError) as err:
                await stub.Query(request)
            # refused before any attempt once a round has seen it fail too, else after the attempt
            assert err.value.code() is grpc.StatusCode.UNAVAILABLE
            assert re.search("no miner (answered|serves)", err.value.details()), err.value.details()
            rounds = validator.loop.rounds
            await wait_for(lambda: _rounds(validator, rounds + 1))
            assert all(o.result != "answered" for o in validator.loop.last_round.outcomes)
    finally:
        await validator.stop()


async def test_a_query_no_miner_can_answer_is_refused_before_the_payment(net: Net, data):
    validator = Validator(net.settings(), hotkey=VALIDATOR, coldkey=PAYEE, data=data[Task.NEXT_TOKEN])
    await validator.start()
    try:
        async with aio.insecure_channel(f"127.0.0.1:{validator.port}") as channel:
            stub = validator_pb2_grpc.ValidatorStub(channel)

            async def query(payment):
                return await stub.Query(validator_pb2.QueryRequest(
                    netuid=net.netuid, payment=payment, payer=CHARLIE.ss58_address,
                    generate=validator_pb2.GenerateInput(prompt="Once upon a time")))

            async def balances():
                return await balance(net, CHARLIE.ss58_address), await balance(net, PAYEE)

            # no miner on the subnet: refused, and the signed payment never reaches the chain
            payment = await net.client.sign(CHARLIE, calls.transfer_call(PAYEE, FEE))
            before = await balances()
            with pytest.raises(aio.AioRpcError) as err:
                await query(payment)
            assert err.value.code() is grpc.StatusCode.UNAVAILABLE and "no miner serves" in err.value.details()
            assert await balances() == before

            # a miner comes and answers a round: the very same payment (its nonce unused) now buys an answer
            await net.add_miners(["echo"])
            uid = await net.uid(net.keys[0].ss58_address)
            await wait_for(lambda: _last_result(validator, uid, "answered"))
            reply = await query(payment)
            assert (reply.uid, reply.text, reply.fee_rao) == (uid, " Once upon a time", FEE)
            chain_fee = (await net.client.info()).transfer_fee
            after = await balances()
            assert after == (before[0] - FEE - chain_fee, before[1] + FEE)

            # it goes away: once a round has seen it fail, the next query is refused before its payment
            await net.miners[0].stop()
            await wait_for(lambda: _last_result(validator, uid, "failed"))
            with pytest.raises(aio.AioRpcError) as err:
                await query(await net.client.sign(CHARLIE, calls.transfer_call(PAYEE, FEE)))
            assert err.value.code() is grpc.StatusCode.UNAVAILABLE
            assert "failed the validator's last round" in err.value.details(), err.value.details()
            assert await balances() == after
    finally:
        await validator.stop()


async def _last_result(validator: Validator, uid: int, result: str) -> bool:
    record = validator.loop.records.get(uid)
    return record is not None and record.last_result == result


async def test_scores_rpc_cli_and_metrics(running):
    net, validator = running
    await wait_for(lambda: _rounds(validator, 2))
    target = f"127.0.0.1:{validator.port}"
    out = await _run_cli(["validator", "scores", "--netuid", str(net.netuid),
                                                  "--validator", target, "--json"])
    scores = json.loads(out)
    assert scores["rounds"] >= 2 and len(scores["miners"]) == 3
    assert scores["miners"][0]["hotkey"] == net.keys[0].ss58_address     # best first
    assert all(row["answered"] >= 2 for row in scores["miners"])
    human = await _run_cli(["validator", "scores", "--netuid", str(net.netuid),
                                                    "--validator", target])
    assert "EMA" in human and net.keys[0].ss58_address[:8] in human

    # a user: discovers the validator from the metagraph, pays with a dev key, gets the top miner's answer
    await wait_for(lambda: _validator_axon_served(net))
    before = await balance(net, CHARLIE.ss58_address)
    out = await _run_cli(["--chain", net.chain, "query", "--netuid", str(net.netuid),
                                                  "Once upon a time", "--dev", "Charlie", "--json"])
    reply = json.loads(out)
    assert reply["text"] == " the oracle knows" and reply["hotkey"] == net.keys[0].ss58_address
    assert reply["fee_rao"] == FEE and await balance(net, CHARLIE.ss58_address) < before - FEE

    url = f"http://127.0.0.1:{validator.server.metrics_port}/metrics"
    text = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
    n = net.netuid
    for needle in (
        f'agora_validator_round_duration_seconds_count{{netuid="{n}"}}',
        f'agora_validator_miner_results_total{{netuid="{n}",result="answered"}}',
        f'agora_validator_score{{netuid="{n}",uid="',
        f'agora_validator_queries_total{{netuid="{n}",result="ok"}}',
        f'agora_validator_query_seconds_bucket{{le="0.005",netuid="{n}"}}',
        f'agora_validator_fees_earned_rao_total{{netuid="{n}"}} ',
    ):
        assert needle in text, needle
    await wait_for(lambda: _weights_set(validator))
    text = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
    assert f'agora_validator_weights_set_total{{netuid="{n}",result="ok"}}' in text
    assert f'agora_validator_last_weights_timestamp_seconds{{netuid="{n}"}}' in text


async def _validator_axon_served(net: Net) -> bool:
    m = await net.client.metagraph(net.netuid)
    return any(n.axon.protocol == VALIDATOR_PROTOCOL for n in m.neurons)


async def _weights_set(validator: Validator) -> bool:
    return validator.loop.last_weights is not None


async def _run_cli(argv: list[str]) -> str:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli.main", *argv,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return out.decode()
