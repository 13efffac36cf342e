"""One epoch of a full subnet against real Redis: 4096 uids, 64 staked validators each weighting
every uid. Timed: the snapshot read, Yuma and the emission splits, the nominators' read and the
pay_epoch write (everything the producer does for one subnet's epoch).

The state is built through the chain's own extrinsics (registration, stake, weights) on a
LocalChain, then one untimed epoch leaves bonds and permits as a running subnet has them.
"""

from __future__ import annotations

import statistics
import time
import uuid

import numpy as np

from services.chain import client as calls
from services.chain.epoch import compute_epoch, dividend_hotkeys, plan_payouts
from services.chain.local import LocalChain
from services.chain.pool import BlockLimits
from services.chain.settings import ChainSettings, dev_balances
from services.chain.subnets import NetworkParams
from services.common.keys import dev_keypair
from services.common.units import RAO_PER_TAO

UIDS = 4096
VALIDATORS = 64
RUNS = 7


async def _build(local: LocalChain) -> int:
    owner, funder = dev_keypair("Alice"), dev_keypair("Bob")
    await local.run(owner, calls.register_network_call("next-token", "bench", dev_keypair("bench-owner").ss58_address))
    netuid = max(await local.ledger.netuids())
    for name, value in (("max_allowed_uids", UIDS), ("target_regs_per_interval", UIDS), ("weights_rate_limit", 0),
                        ("max_allowed_validators", VALIDATORS)):
        await local.submit(owner, calls.set_hyperparameter_call(netuid, name, value))
    await local.produce()
    hotkeys = [dev_keypair(f"bench-{i}") for i in range(UIDS)]
    nonce = await local.nonce(funder.ss58_address)
    for i, key in enumerate(hotkeys):
        await local.submit(funder, calls.burned_register_call(netuid, key.ss58_address), nonce=nonce + i,
                           precheck=False)
    await local.produce()
    rng = np.random.default_rng(0)
    for i, key in enumerate(hotkeys[:VALIDATORS]):
        amount = int(rng.lognormal(5, 1) * RAO_PER_TAO) + RAO_PER_TAO
        await local.submit(funder, calls.add_stake_call(key.ss58_address, amount), nonce=nonce + UIDS + i)
    await local.produce()
    quality = rng.random(UIDS)
    uids = list(range(UIDS))
    for key in hotkeys[:VALIDATORS]:
        noisy = np.clip(quality + 0.1 * rng.standard_normal(UIDS), 0.0, None)
        weights = (noisy / noisy.max() * 65_535).astype(int).tolist()
        await local.submit(key, calls.set_weights_call(netuid, uids, weights), precheck=False)
    await local.produce(3)
    return netuid


async def _epoch(local: LocalChain, netuid: int) -> float:
    """Milliseconds of one epoch, from the first read to the last write. A block first mints
    emission into the subnet, so every uid with incentive or dividends is paid, as in a real epoch."""
    await local.produce()
    # pay_epoch is journaled in a pending block: open one, and let the next produce() seal it
    pending = await local.ledger.begin_block(local.producer.token, BlockLimits(max_extrinsics=0), 0)
    started = time.perf_counter()
    snap = await local.ledger.subnet_snapshot(netuid, weights=True, bonds=True)
    outputs = compute_epoch(snap, pending.number)
    nominators = await local.ledger.nominators_of(dividend_hotkeys(snap, outputs))
    plan = plan_payouts(snap, outputs, nominators)
    result = await local.ledger.pay_epoch(local.producer.token, plan)
    elapsed = (time.perf_counter() - started) * 1000
    assert result.ok and snap.subnet.n == UIDS and len(snap.weights) == VALIDATORS and len(plan.credits) > UIDS // 2
    return elapsed


async def run(redis_url: str) -> dict[str, float]:
    """Median ms of one 4096-uid epoch with state (read, compute, write), after one warm-up epoch."""
    settings = ChainSettings(redis_url=redis_url, network=f"bench-{uuid.uuid4().hex[:8]}",
                             genesis_balances=dev_balances(), economics=NetworkParams(min_tempo=1))
    local = await LocalChain.create(settings)
    try:
        netuid = await _build(local)
        await _epoch(local, netuid)  # warm-up: leaves bonds and permits as a running subnet has them
        times = [await _epoch(local, netuid) for _ in range(RUNS)]
        await local.produce()
        assert await local.ledger.check_invariants() == []
        return {"yuma.epoch_with_state_ms": statistics.median(times)}
    finally:
        await local.close()
