"""Issuance, halving, the root split and exactly-once block steps, through the real producer.

The conservation property: over thousands of blocks of random valid and invalid extrinsics of
every kind, issuance moves by exactly the block rewards minus the burns in each block, and equals
free balances + stake + locked + pending emission after every block.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import AsyncIterator

import grpc
import pytest

from services.chain import client as calls
from services.chain.coinbase import plan_coinbase
from services.chain.emission import block_emission, halving_threshold
from services.chain.local import LocalChain
from services.chain.pool import BlockLimits
from services.chain.subnets import ROOT_NETUID, NetworkParams, hyperparameter_bounds
from services.common.errors import AgoraError
from services.common.keys import dev_keypair
from tests.conftest import chain_settings
from tests.test_subnets import ALICE, BOB, CHARLIE, TAO, expect_refused, new_subnet

ECON = NetworkParams(min_tempo=1, lock_cost_rao=100 * TAO, root_max_validators=2, root_weights_rate_limit=5)


@pytest.fixture
async def local(redis_server) -> AsyncIterator[LocalChain]:
    chain = await LocalChain.create(chain_settings(redis_server, economics=ECON))
    yield chain
    await chain.close()


def emitted(block) -> dict[int, int]:
    return {int(e.attributes["netuid"]): int(e.attributes["amount"]) for e in block.events if e.name == "Emission"}


def burned_in(block) -> int:
    """Rao the block's extrinsics burned: fees and registration burns."""
    fees = sum(int(e.attributes["amount"]) for e in block.events if e.name == "FeeBurned")
    burns = sum(int(e.attributes["burn"]) for e in block.events if e.name == "NeuronRegistered")
    return fees + burns


async def test_nothing_is_minted_without_subnets(local):
    e0 = await local.ledger.economy()
    (block,) = await local.produce()
    assert emitted(block) == {} and await local.ledger.economy() == e0


async def test_reward_halves_at_exactly_the_block_issuance_crosses_the_threshold(redis_server):
    threshold = halving_threshold(1)  # 10.5M TAO
    balances = {ALICE.ss58_address: threshold // 2, BOB.ss58_address: threshold - threshold // 2 - 5 * TAO // 2}
    settings = chain_settings(redis_server, genesis_balances=balances, transfer_fee=0, economics=ECON)
    local = await LocalChain.create(settings)
    try:
        assert (await local.ledger.economy()).issuance == threshold - 5 * TAO // 2
        rewards, before = [], []
        await local.submit(ALICE, calls.register_network_call("next-token", "t", dev_keypair("hk").ss58_address))
        for _ in range(6):
            before.append((await local.ledger.economy()).issuance)
            (block,) = await local.produce()
            rewards.append(sum(emitted(block).values()))
        assert rewards == [TAO, TAO, TAO, TAO // 2, TAO // 2, TAO // 2]
        assert before[2] < threshold <= before[3]  # the first block that starts at or past the threshold
        e = await local.ledger.economy()
        assert e.issuance == threshold - 5 * TAO // 2 + 3 * TAO + 3 * (TAO // 2)
        assert await local.ledger.check_invariants() == []
    finally:
        await local.close()


async def test_root_consensus_splits_emission_and_clips_a_minority(local):
    big, small = dev_keypair("root-big"), dev_keypair("root-small")
    one = await new_subnet(local, owner_hotkey=big)
    two = await new_subnet(local, owner=BOB, owner_hotkey=small)
    (block,) = await local.produce()
    assert emitted(block) == {one: TAO // 2, two: TAO // 2}  # no root weights yet: equal split
    await local.submit(ALICE, calls.add_stake_call(big.ss58_address, 300 * TAO))
    await local.submit(BOB, calls.add_stake_call(small.ss58_address, 100 * TAO))
    await local.submit(ALICE, calls.root_register_call(big.ss58_address))
    await local.submit(BOB, calls.root_register_call(small.ss58_address))
    await local.produce()
    await local.produce(5)  # root_weights_rate_limit counts from registration
    await local.submit(big, calls.set_root_weights_call([one, two], [3, 1]))
    await local.submit(small, calls.set_root_weights_call([two], [1]))
    (block,) = await local.produce()
    # consensus: C = (0.75, 0.25); the small member's full weight on subnet two is clipped to 0.25,
    # so shares are 0.75 (0.75, 0.25) + 0.25 (0, 0.25) = (9/16, 4/16), normalised 9/13 : 4/13
    got = emitted(block)
    assert sum(got.values()) == TAO
    assert abs(got[one] - TAO * 9 / 13) <= 1 and abs(got[two] - TAO * 4 / 13) <= 1


async def test_root_register_and_root_weights_rules(local):
    netuid = await new_subnet(local)
    keys = [dev_keypair(f"root-{i}") for i in range(3)]
    for k in keys:
        await local.submit(BOB, calls.burned_register_call(netuid, k.ss58_address))
    await local.produce()
    for k, amount in zip(keys, (100, 200, 50), strict=True):
        await local.submit(BOB, calls.add_stake_call(k.ss58_address, amount * TAO))
    await local.produce()
    await expect_refused(local, ALICE, calls.root_register_call(keys[0].ss58_address),
                         grpc.StatusCode.PERMISSION_DENIED, "belongs to coldkey")
    await expect_refused(local, BOB, calls.root_register_call(dev_keypair("unknown").ss58_address),
                         grpc.StatusCode.NOT_FOUND, "not registered on any subnet")
    assert (await local.run(BOB, calls.root_register_call(keys[0].ss58_address))).ok
    assert (await local.run(BOB, calls.root_register_call(keys[1].ss58_address))).ok
    await expect_refused(local, BOB, calls.root_register_call(keys[1].ss58_address), grpc.StatusCode.ALREADY_EXISTS,
                         "already holds root uid 1")
    # root is full (2 seats): 50 TAO cannot beat the lowest member's 100, 150 can and takes its uid
    await expect_refused(local, BOB, calls.root_register_call(keys[2].ss58_address),
                         grpc.StatusCode.FAILED_PRECONDITION, "must exceed the lowest member's 100000000000 rao")
    assert (await local.run(BOB, calls.add_stake_call(keys[2].ss58_address, 100 * TAO))).ok
    assert (await local.run(BOB, calls.root_register_call(keys[2].ss58_address))).ok
    root = await local.ledger.subnet_snapshot(ROOT_NETUID)
    assert root.hotkeys == [keys[2].ss58_address, keys[1].ss58_address]
    await expect_refused(local, keys[0], calls.set_root_weights_call([netuid], [1]),
                         grpc.StatusCode.FAILED_PRECONDITION, "not a root member")
    await expect_refused(local, keys[1], calls.set_root_weights_call([netuid, 9], [1, 1]),
                         grpc.StatusCode.NOT_FOUND, "no subnet 9")
    await local.produce(5)
    assert (await local.run(keys[1], calls.set_root_weights_call([netuid], [1]))).ok
    await expect_refused(local, keys[1], calls.set_root_weights_call([netuid], [2]),
                         grpc.StatusCode.RESOURCE_EXHAUSTED, "retry in")


# ---- exactly once across a crash ----


async def test_block_steps_survive_a_crash_and_run_once(local):
    netuid = await new_subnet(local, tempo=4)
    # stop right before an epoch block
    while (await local.head() + 1 + netuid + 1) % 5:
        await local.produce()
    number = await local.head() + 1
    e0 = await local.ledger.economy()
    producer = local.producer
    pending = await local.ledger.begin_block(producer.token, BlockLimits(max_extrinsics=100), 0)
    assert pending.number == number
    subnets = await local.ledger.subnet_states()
    root = await local.ledger.subnet_snapshot(ROOT_NETUID)
    plan = plan_coinbase(number, e0.issuance, subnets, root)
    await local.ledger.apply_coinbase(producer.token, plan)  # then the producer dies
    await local.ledger.redis.delete(local.ledger.keys.lease)
    successor = LocalChain(local.ledger, local.chain_id, local.fee)
    (block,) = await successor.produce()
    assert block.header.number == number
    assert [e.name for e in block.events].count("Emission") == 1
    assert [e.name for e in block.events].count("EpochRun") == 1
    e1 = await local.ledger.economy()
    assert e1.minted - e0.minted == plan.reward_rao == block_emission(e0.issuance)
    assert await local.ledger.check_invariants() == []
    # a second crash, after both steps: the successor's successor only seals the block
    while (await local.head() + 1 + netuid + 1) % 5:
        await successor.produce()
    number = await local.head() + 1
    e0 = await local.ledger.economy()
    await local.ledger.begin_block(successor.producer.token, BlockLimits(max_extrinsics=100), 0)
    events = await successor.producer.block_steps(number)
    stake_after_steps = (await local.ledger.economy()).total_stake
    await local.ledger.redis.delete(local.ledger.keys.lease)
    third = LocalChain(local.ledger, local.chain_id, local.fee)
    (block,) = await third.produce()
    assert [[e.name, *sum(sorted(e.attributes.items()), ())] for e in block.events] == [
        [name, *sum(sorted(zip(pairs[::2], pairs[1::2], strict=True)), ())] for name, *pairs in events]
    e1 = await local.ledger.economy()
    assert e1.minted - e0.minted == block_emission(e0.issuance) and e1.total_stake == stake_after_steps
    assert await local.ledger.check_invariants() == []
    await third.close()


# ---- conservation ----


async def test_conservation_over_thousands_of_random_blocks(local):
    rng = random.Random(20240611)
    coldkeys = [ALICE, BOB, CHARLIE, dev_keypair("Dave"), dev_keypair("Eve")]
    poor = dev_keypair("Poor")  # gets funded a few fees at a time
    hotkeys = [dev_keypair(f"conservation-hk-{i}") for i in range(10)]
    names = sorted(hyperparameter_bounds(ECON))
    outcomes: Counter[str] = Counter()
    pending: list[tuple[str, bytes]] = []

    def hk() -> str:
        return rng.choice(hotkeys).ss58_address

    def netuid() -> int:
        return rng.choice([0, 1, 1, 2, 2, 3, 9])

    def random_call():
        """(kind, signer, call): valid often, invalid often (wrong signer, bounds, amounts, state)."""
        kind = rng.choice(["transfer", "register_network", "set_hyperparameter", "burned_register", "serve_axon",
                           "add_stake", "remove_stake", "set_delegate_take", "set_weights", "root_register",
                           "set_root_weights", "poor"])
        ck = rng.choice(coldkeys)
        amount = rng.choice([1, 10**6, 10**9, 50 * TAO, 10**15])
        if kind == "transfer":
            return kind, ck, calls.transfer_call(rng.choice([*coldkeys, poor]).ss58_address, amount)
        if kind == "register_network":
            return kind, ck, calls.register_network_call("next-token", "n", hk())
        if kind == "set_hyperparameter":
            name = rng.choice(names)
            b = hyperparameter_bounds(ECON)[name]
            value = rng.choice([b.low, b.high, b.high + 1, rng.randint(b.low, max(b.low, min(b.high, 20)))])
            if name == "tempo":
                value = rng.choice([2, 3, 5, 7])
            return kind, ck, calls.set_hyperparameter_call(netuid(), name, value)
        if kind == "burned_register":
            return kind, ck, calls.burned_register_call(netuid(), hk(), rng.choice([0, 0, 10**6]))
        if kind == "serve_axon":
            return kind, rng.choice(hotkeys), calls.serve_axon_call(netuid(), "10.0.0.1", rng.randint(1, 9))
        if kind == "add_stake":
            return kind, ck, calls.add_stake_call(hk(), amount)
        if kind == "remove_stake":
            return kind, ck, calls.remove_stake_call(hk(), rng.choice([1, 10**6, 10**9, 50 * TAO]))
        if kind == "set_delegate_take":
            return kind, ck, calls.set_delegate_take_call(hk(), rng.choice([0, 5_000, 11_796, 20_000]))
        if kind == "set_weights":
            uids = rng.sample(range(6), rng.randint(1, 4))
            return kind, rng.choice(hotkeys), calls.set_weights_call(
                netuid(), uids, [rng.randint(0, 65_535) for _ in uids])
        if kind == "root_register":
            return kind, ck, calls.root_register_call(hk())
        if kind == "set_root_weights":
            targets = rng.sample([1, 2, 3, 9], rng.randint(1, 2))
            return kind, rng.choice(hotkeys), calls.set_root_weights_call(
                targets, [rng.randint(1, 9) for _ in targets])
        return kind, None, None

    async def poor_pair() -> list[tuple[str, bytes]]:
        """Two transfers queued without the pool's reservation (admission would refuse the second)
        that cannot both apply: the second fails its call (fee paid) or cannot pay its fee (dropped)."""
        _, held = await local.ledger.pool_holding(poor.ss58_address)
        fee, free = local.fee, (await local.ledger.account(poor.ss58_address)).free - held
        if free < 3 * fee:
            return [("transfer", await local.submit(ALICE, calls.transfer_call(poor.ss58_address, 5 * fee)))]
        drop = rng.random() < 0.5
        first = free - fee if drop else free - 2 * fee
        second = calls.transfer_call(ALICE.ss58_address, 1 if drop else fee)
        return [("transfer", await local.submit(poor, calls.transfer_call(ALICE.ss58_address, first))),
                ("transfer", await local.submit(poor, second, reserve=False))]

    e_prev = await local.ledger.economy()
    for _ in range(2000):
        for _ in range(rng.randint(0, 6)):
            kind, signer, call = random_call()
            if kind == "poor":
                pending += await poor_pair()
                continue
            try:
                xt_hash = await local.submit(signer, call, precheck=rng.random() < 0.7)
                pending.append((kind, xt_hash))
            except AgoraError:
                outcomes["refused"] += 1
        subnets_before = len(await local.ledger.netuids()) > 1
        (block,) = await local.produce()
        e = await local.ledger.economy()
        burned = burned_in(block)
        assert e.burned - e_prev.burned == burned
        reward = sum(emitted(block).values())
        assert reward == (block_emission(e_prev.issuance - burned) if subnets_before or emitted(block) else 0)
        assert e.issuance - e_prev.issuance == reward - burned
        assert e.minted - e_prev.minted == reward
        assert await local.ledger.check_invariants() == [], block.header.number
        e_prev = e
        for kind, xt_hash in pending:
            out = await local.outcome(xt_hash)
            outcomes[f"{kind}:{'ok' if out.ok else out.state if out.state == 'dropped' else 'failed'}"] += 1
        outcomes["epochs"] += sum(1 for ev in block.events if ev.name == "EpochRun")
        pending.clear()
    kinds = {"transfer", "register_network", "set_hyperparameter", "burned_register", "serve_axon", "add_stake",
             "remove_stake", "set_delegate_take", "set_weights", "root_register", "set_root_weights"}
    for kind in kinds:
        assert outcomes[f"{kind}:ok"] > 0, (kind, outcomes)
        assert outcomes[f"{kind}:failed"] > 0, (kind, outcomes)
    assert outcomes["refused"] > 100 and outcomes["epochs"] > 100
    assert outcomes["transfer:dropped"] > 0, outcomes
