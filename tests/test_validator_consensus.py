"""Yuma consensus between validators that each judge for themselves (slow: real models).

Three validators with equal stake score the same embedding subnet: MiniLM-L6, MiniLM-L6 with 40%
weight noise, and two noise miners. The two honest ones are real Validators (services.validator.main)
on different held-out samples: another data_seed (which half of the offline pairs is theirs) and
another round seed (which items each round asks). They never see the same items, yet weight the
miners alike, so Yuma's consensus clips little of either: both keep their bonds, earn dividends and
a high validator trust. The third runs the same rounds but colludes with one noise miner: it
reports its partner at three times the best miner it scored. Consensus (a stake majority of 2/3
gives the partner nothing) clips that weight away, so the colluder's trust and its dividends per
stake fall far below the honest ones', and the partner earns next to nothing.

The validators run free, as in production: a round (16 queries, 48 passages) at most every second,
weights every tempo (20 blocks of 50 ms), the chain's epochs and bonds EMA at Bittensor's defaults.
The figures are the mean of the last three epochs, read once every validator has set weights for
12 epochs and scored 10 rounds: with fewer rounds two honest averages still differ by their samples'
luck (after 3-4 rounds each, their trust measured 0.81-0.84; after 10, see the test's output).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pytest

from services.chain import client as calls
from services.chain.client import ChainClient
from services.common import keys
from services.miner import toys
from services.validator.datasets import load_task_data
from services.validator.ema import EmaState
from services.validator.items import Task
from services.validator.loop import RoundResult, ValidatorLoop
from services.validator.main import Validator
from services.validator.miners import MinerPool
from tests.test_validator import BOB, PAYEE, TAO, VALIDATOR, Net, make_net, wait_for
from tests.test_validator_ladder import noisy_copy

pytestmark = pytest.mark.slow

HONEST_B = keys.dev_keypair("validator-b-hotkey")
COLLUDER = keys.dev_keypair("colluder-hotkey")
STAKE = 1_000 * TAO          # each validator's; make_net stakes VALIDATOR with this
TEMPO = 20
SETTLE_EPOCHS = 12           # after every validator's first weights: the bonds EMA (alpha 0.1) settles
MIN_ROUNDS = 10              # each validator's moving average has seen this many rounds (of 16 queries)
MEASURED_EPOCHS = 3          # the figures are their mean over the last of these


@dataclass
class ColludingLoop(ValidatorLoop):
    """Scores every round like an honest validator, then lifts its partner to three times the best
    average it measured: its weights favour a miner that does no work."""

    partner: str = ""   # the partner's hotkey

    async def run_round(self) -> RoundResult:
        result = await super().run_round()
        uid = next(u for u, h in self.ema.hotkeys.items() if h == self.partner)
        best = max((v for u, v in self.ema.values.items() if u != uid), default=0.0)
        self.ema = EmaState(self.ema.alpha, {**self.ema.values, uid: 3.0 * best}, self.ema.hotkeys)
        return result


@dataclass(frozen=True, slots=True)
class Standing:
    vtrust: float            # validator trust, 0-1: the share of its weight that consensus kept
    dividends: float         # its share of the validators' dividends, 0-1
    per_stake: float         # dividends over its share of the validators' stake: 1 is a fair share


async def epoch_standings(net: Net, hotkeys: Sequence[str], miners: Sequence[str],
                          ) -> tuple[dict[str, Standing], list[float]]:
    """The validators' standings and the miners' incentive shares at the last epoch."""
    m = await net.client.metagraph(net.netuid)
    by_key = {n.hotkey: n for n in m.neurons}
    stake = np.array([by_key[h].stake for h in hotkeys], dtype=float)
    dividends = np.array([by_key[h].dividends for h in hotkeys], dtype=float) / 65_535
    standings = {h: Standing(by_key[h].validator_trust / 65_535, d, d / (s / stake.sum()))
                 for h, d, s in zip(hotkeys, dividends, stake, strict=True)}
    incentive = np.array([by_key[h].incentive for h in miners], dtype=float)
    return standings, list(incentive / max(incentive.sum(), 1.0))


async def test_honest_validators_on_different_samples_keep_their_bonds_and_a_colluder_loses_dividends(
        redis_server, minilm):
    started = time.perf_counter()
    async for net in make_net(redis_server, {}, "embedding", tempo=TEMPO):
        for hotkey in (HONEST_B, COLLUDER):
            await net.run(BOB, calls.burned_register_call(net.netuid, hotkey.ss58_address))
            await net.run(BOB, calls.add_stake_call(hotkey.ss58_address, STAKE))
            net.callers[hotkey.ss58_address] = TAO
        partner = toys.Noise(seed=1)
        await net.add_miners([minilm, noisy_copy(minilm, 0.4), "noise", partner])
        miners = [k.ss58_address for k in net.keys]
        validators = [VALIDATOR.ss58_address, HONEST_B.ss58_address, COLLUDER.ss58_address]

        common = dict(round_items=16, round_interval_s=1.0, timeout_s=10.0, fee_rao=0, weights_interval_blocks=0)
        honest = [Validator(net.settings(data_seed=1, seed=11, **common), hotkey=VALIDATOR, coldkey=PAYEE),
                  Validator(net.settings(data_seed=2, seed=22, **common), hotkey=HONEST_B, coldkey=PAYEE)]
        colluder_chain = ChainClient(net.chain)
        colluder = ColludingLoop(settings=net.settings(data_seed=3, seed=33, **common), hotkey=COLLUDER,
                                 chain=colluder_chain, data=load_task_data(Task.EMBEDDING, seed=3),
                                 pool=MinerPool(COLLUDER), seed=33, partner=miners[3])
        running: asyncio.Task | None = None
        try:
            for validator in honest:
                await validator.start()
            await colluder.start()
            running = asyncio.create_task(colluder.run())
            held_out = [{i.query for i in v.loop.data.held_out} for v in honest]
            shared = len(held_out[0] & held_out[1]) / min(map(len, held_out))
            assert shared < 0.7, shared   # the two honest validators' samples differ

            loops = [v.loop for v in honest] + [colluder]
            await wait_for(lambda ls=loops: _all_set_weights(ls), timeout=60)
            first = max(loop.last_weights.block for loop in loops)
            history = []
            epoch = (await net.client.subnet(net.netuid)).last_epoch_block
            while len(history) < SETTLE_EPOCHS or min(loop.rounds for loop in loops) < MIN_ROUNDS:
                epoch = await wait_for(lambda n=net, e=epoch: _next_epoch(n, e), timeout=30)
                if epoch > first:
                    history.append(await epoch_standings(net, validators, miners))
        finally:
            if running is not None:
                running.cancel()
                await asyncio.gather(running, return_exceptions=True)
            await colluder.pool.close()
            await colluder_chain.close()
            for validator in honest:
                await validator.stop()

        last = history[-MEASURED_EPOCHS:]
        mean = {h: Standing(*(float(np.mean([getattr(s[h], f) for s, _ in last]))
                              for f in ("vtrust", "dividends", "per_stake"))) for h in validators}
        shares = np.mean([i for _, i in last], axis=0)
        rounds = [loop.rounds for loop in loops]
        print(f"\nconsensus, {len(history)} epochs after all weights, rounds {rounds}, "
              f"{time.perf_counter() - started:.0f}s; honest samples share {shared:.0%} of their held-out queries")
        for name, h in zip(("honest A", "honest B", "colluder"), validators, strict=True):
            trail = " ".join(f"{s[h].per_stake:.2f}" for s, _ in history[::5])
            print(f"  {name:9s} vtrust {mean[h].vtrust:.3f}  dividends {mean[h].dividends:.3f}  "
                  f"per stake {mean[h].per_stake:.3f}   (per stake every 5th epoch: {trail})")
        print("  miners' incentive: " + "  ".join(f"{s.engine.model_name} {x:.4f}"
                                                  for s, x in zip(net.miners, shares, strict=True)))

        a, b, c = (mean[h] for h in validators)
        assert min(a.vtrust, b.vtrust) > 0.8, mean          # consensus kept nearly all of their weight
        assert min(a.per_stake, b.per_stake) > 0.5 * max(a.per_stake, b.per_stake), mean   # both keep bonds
        assert c.vtrust < 0.5 * min(a.vtrust, b.vtrust), mean
        assert c.per_stake < 0.5 * min(a.per_stake, b.per_stake), mean
        assert shares[3] < 0.01 and shares[0] > shares[1] > 10 * shares[2], shares   # the partner earns ~0


async def _all_set_weights(loops: Sequence[ValidatorLoop]) -> bool:
    return all(loop.last_weights is not None for loop in loops)


async def _next_epoch(net: Net, after: int) -> int | None:
    block = (await net.client.subnet(net.netuid)).last_epoch_block
    return block if block > after else None
