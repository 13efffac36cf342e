"""Weight copying, with and without commit-reveal (slow: a real model).

Two honest validators score an embedding subnet whose miners change: two "switchers" serve MiniLM-L6
in alternate tempos and noise in the others, so what a miner is worth now is not what it was a tempo
ago (as when miners improve, or stop serving). A third validator of equal stake never queries a
miner: before each weights it copies the freshest weights on the chain (the stake-weighted mean of
the others' rows).

Without commit-reveal the honest validators' rows of this tempo are public as soon as they land, so
the copier's row is theirs and it earns dividends like them (more, even: the mix of two honest rows
sits nearer the consensus than either row). With commit-reveal a row becomes public
one tempo after its commit, so the copier can only commit last tempo's row, revealed a tempo after
that: its weights always describe the wrong tempo, consensus clips them, and its dividends fall.

Time is the chain's, not the machine's: the chain's blocks are produced by the test (a producer
that makes a block whenever an extrinsic waits, and empty blocks only when the test moves to the
next tempo), and each tempo the validators run their round and weights in turn, however long that
takes. So the figures do not depend on how fast the machine is.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import numpy as np
import pytest

from services.chain import client as calls
from services.chain.client import ChainClient
from services.chain.local import LocalChain
from services.chain.main import ChainNode
from services.chain.subnets import epoch_index
from services.common import keys
from services.miner import toys
from services.miner.model import Encoder
from services.validator.datasets import load_task_data
from services.validator.ema import EmaState
from services.validator.items import Task
from services.validator.loop import RoundResult, ValidatorLoop
from services.validator.miners import MinerPool
from services.validator.store import RedisStore
from tests.conftest import chain_settings
from tests.test_validator import ALICE, BOB, ECON, TAO, VALIDATOR, Net

pytestmark = pytest.mark.slow

HONEST_B = keys.dev_keypair("copier-test/honest-b")
COPIER = keys.dev_keypair("copier-test/copier")
STAKE = 1_000 * TAO
TEMPO = 24                 # blocks per tempo are only produced on demand: room for every extrinsic
TEMPOS = 10                # tempos driven; the figures are the mean of the last MEASURED
MEASURED = 5


@dataclass
class Switcher:
    """MiniLM in the tempos of one parity, noise in the others: its worth changes every tempo."""

    model: Encoder
    parity: int
    phase: list[int]          # shared with the test: the current tempo's epoch-index
    name: str = "switcher"
    kind: str = "encoder"

    def __post_init__(self) -> None:
        self.noise = toys.Noise(seed=self.parity + 5, dimensions=self.model.dimensions)

    @property
    def dimensions(self) -> int:
        return self.model.dimensions

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        good = self.phase[0] % 2 == self.parity
        return (self.model if good else self.noise).embed(texts)

    def count_tokens(self, texts: Sequence[str]) -> int:
        return self.model.count_tokens(texts)


@dataclass
class CopierLoop(ValidatorLoop):
    """Queries nobody: its moving average is the freshest weights other validators put on the chain,
    mixed by their stake; the rest (rate limits, commit-reveal) is the honest validator's code."""

    async def run_round(self) -> RoundResult:
        m = await self.chain.metagraph(self.netuid, weights=True)
        mix: dict[int, float] = {}
        for n in m.neurons:
            if n.hotkey == self.hotkey.ss58_address or not n.HasField("weights"):
                continue
            top = max(n.weights.values)
            for uid, w in zip(n.weights.uids, n.weights.values, strict=True):
                mix[uid] = mix.get(uid, 0.0) + n.stake * w / top
        hotkeys = {n.uid: n.hotkey for n in m.neurons}
        # levels whose weight scores (level ** score_power for embedding) are the mix again
        levels = {u: (mix.get(u, 0.0) / max(mix.values(), default=1.0)) ** (1 / self.settings.score_power)
                  for u in hotkeys}
        self.ema = EmaState(self.ema.alpha, levels, hotkeys)
        await self.refresh()
        self._rounds_since_weights += 1
        self.rounds += 1
        return RoundResult(self.rounds, m.block, 0.0, (), {})


async def pump(local: LocalChain, wanted: list[int]) -> None:
    """A block whenever an extrinsic waits; empty blocks until the head reaches wanted[0]."""
    while True:
        if (await local.ledger.totals())[2] > 0 or await local.head() < wanted[0]:
            await local.produce()
        else:
            await asyncio.sleep(0.005)


async def next_tempo(local: LocalChain, netuid: int, wanted: list[int]) -> int:
    """Move the chain to the first block of the next epoch-index (its epoch block); return that index."""
    head = await local.head()
    index = epoch_index(head, netuid, TEMPO) + 1
    wanted[0] = index * (TEMPO + 1) - netuid - 1
    while await local.head() < wanted[0]:
        await asyncio.sleep(0.005)
    return index


@dataclass(frozen=True, slots=True)
class Figures:
    honest_per_stake: float   # mean of the two honest validators' dividends per stake share
    copier_per_stake: float
    copier_vtrust: float
    honest_vtrust: float


@dataclass
class CrNet:
    net: Net
    local: LocalChain
    wanted: list[int]     # the pump makes empty blocks up to wanted[0]

    @property
    def netuid(self) -> int:
        return self.net.netuid

    async def next_tempo(self) -> int:
        return await next_tempo(self.local, self.netuid, self.wanted)


@contextlib.asynccontextmanager
async def cr_net(redis_server, validators: Sequence[keys.Keypair], *, commit_reveal: bool) -> AsyncIterator[CrNet]:
    """An embedding subnet on a chain whose blocks the test makes, validators registered and staked."""
    settings = chain_settings(redis_server, economics=ECON, produce=False)
    node = ChainNode(settings)
    await node.start()
    local = await LocalChain.create(settings)
    wanted = [0]
    producing = asyncio.create_task(pump(local, wanted))
    client = ChainClient(f"127.0.0.1:{node.server.port}")
    net: Net | None = None
    try:
        owner = keys.dev_keypair("copier-test/owner")
        assert (await client.call(ALICE, calls.register_network_call("embedding", "copy", owner.ss58_address))
                ).status.success
        netuid = max(s.netuid for s in await client.subnets())
        net = Net(node, client, netuid, "embedding", {})
        hp = {"tempo": TEMPO, "weights_rate_limit": 0, "immunity_period": 0, "target_regs_per_interval": 50,
              "commit_reveal_weights_enabled": int(commit_reveal), "commit_reveal_period": 1}
        for name, value in hp.items():
            await net.run(ALICE, calls.set_hyperparameter_call(netuid, name, value))
        for hotkey in validators:
            await net.run(BOB, calls.burned_register_call(netuid, hotkey.ss58_address))
            await net.run(BOB, calls.add_stake_call(hotkey.ss58_address, STAKE))
            net.callers[hotkey.ss58_address] = TAO
        yield CrNet(net, local, wanted)
    finally:
        if net is not None:
            for miner in net.miners:
                await miner.stop()
        producing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await producing
        await client.close()
        await local.close()
        await node.stop()


COMMON = dict(round_items=16, timeout_s=60.0, fee_rao=0, weights_interval_blocks=1, alpha=1.0)


def honest_loop(net: Net, hotkey: keys.Keypair, seed: int, **kwargs: object) -> ValidatorLoop:
    return ValidatorLoop(settings=net.settings(data_seed=seed, seed=seed, **COMMON), hotkey=hotkey,
                         chain=net.client, data=load_task_data(Task.EMBEDDING, seed=seed), pool=MinerPool(hotkey),
                         seed=seed, **kwargs)


async def copier_run(redis_server, minilm: Encoder, *, commit_reveal: bool) -> Figures:
    validators = [VALIDATOR, HONEST_B, COPIER]
    loops: list[ValidatorLoop] = []
    async with cr_net(redis_server, validators, commit_reveal=commit_reveal) as cr:
        net = cr.net
        phase = [0]
        # each switcher its own copy: a fast tokenizer is not safe across two miner threads
        await net.add_miners([Switcher(minilm, 0, phase), Switcher(copy.deepcopy(minilm), 1, phase), "noise"])
        loops = [honest_loop(net, VALIDATOR, 1), honest_loop(net, HONEST_B, 2)]
        loops.append(CopierLoop(settings=net.settings(**COMMON), hotkey=COPIER, chain=net.client,
                                data=loops[0].data, pool=MinerPool(COPIER), seed=3))
        try:
            for loop in loops:
                await loop.start()
            standings = []
            for tempo in range(TEMPOS):
                phase[0] = await cr.next_tempo()
                if tempo >= TEMPOS - MEASURED:   # the epoch just run, on the weights of earlier tempos
                    standings.append(await _standings(net.client, net.netuid, validators))
                for loop in loops:   # the honest ones first: the copier copies what is public by then
                    await loop.run_round()
                    await loop.refresh()
                    result = await loop.maybe_set_weights()
                    if loop is not loops[-1]:   # (the copier has nothing to copy at first)
                        assert result == ("committed" if commit_reveal else "ok"), result
        finally:
            for loop in loops:
                await loop.pool.close()
    mean = np.mean(standings, axis=0)   # [validator][per_stake, vtrust]
    return Figures(float(mean[:2, 0].mean()), float(mean[2, 0]), float(mean[2, 1]), float(mean[:2, 1].mean()))


async def _standings(client: ChainClient, netuid: int, validators: Sequence[keys.Keypair]) -> list[list[float]]:
    m = await client.metagraph(netuid)
    by_key = {n.hotkey: n for n in m.neurons}
    stake = np.array([by_key[v.ss58_address].stake for v in validators], dtype=float)
    dividends = np.array([by_key[v.ss58_address].dividends for v in validators], dtype=float)
    share = dividends / max(dividends.sum(), 1.0)
    return [[s / (st / stake.sum()), by_key[v.ss58_address].validator_trust / 65_535]
            for v, s, st in zip(validators, share, stake, strict=True)]


async def test_commit_reveal_makes_weight_copying_pay_less_than_honest_work(redis_server, minilm):
    off = await copier_run(redis_server, minilm, commit_reveal=False)
    on = await copier_run(redis_server, minilm, commit_reveal=True)
    for name, f in (("off", off), ("on", on)):
        print(f"\ncommit-reveal {name}: dividends per stake share honest {f.honest_per_stake:.3f}, "
              f"copier {f.copier_per_stake:.3f} ({f.copier_per_stake / f.honest_per_stake:.2f}x); "
              f"vtrust honest {f.honest_vtrust:.3f}, copier {f.copier_vtrust:.3f}")
    # without it copying pays: at least 90% of an honest validator's dividends (a mix of two honest
    # rows sits nearer consensus than either, so it may even earn more)
    assert off.copier_per_stake >= 0.9 * off.honest_per_stake, off
    assert on.copier_per_stake < 0.5 * on.honest_per_stake, on
    assert on.copier_vtrust < 0.5 * on.honest_vtrust, on


async def test_a_restarted_validator_still_reveals_what_it_committed(redis_server, minilm):
    async with cr_net(redis_server, [VALIDATOR], commit_reveal=True) as cr:
        await cr.net.add_miners([minilm, "noise"])
        store = RedisStore(redis_server.url, VALIDATOR.ss58_address, cr.netuid)
        first = honest_loop(cr.net, VALIDATOR, 1, store=store)
        await first.start()
        await cr.next_tempo()
        await first.run_round()
        await first.refresh()
        assert await first.maybe_set_weights() == "committed"
        (committed,) = first.pending_commits
        await first.pool.close()   # the validator stops before the reveal window
        second = honest_loop(cr.net, VALIDATOR, 1, store=RedisStore(redis_server.url, VALIDATOR.ss58_address,
                                                                      cr.netuid))
        await second.start()
        assert second.pending_commits == [committed]   # salt and all
        await cr.next_tempo()
        await second.refresh()
        assert await second.maybe_set_weights() == "revealed"
        assert second.pending_commits == [] and await second.store.load_commits() == []
        m = await cr.net.client.metagraph(cr.netuid, weights=True)
        row = m.neurons[0].weights
        assert dict(zip(row.uids, row.values, strict=True)) == dict(zip(committed.uids, committed.weights,
                                                                        strict=True))
        await second.pool.close()
        await store.close()
        await second.store.close()
