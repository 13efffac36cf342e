"""Stake, delegation and payouts to nominators, on a real Redis with blocks produced on demand."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from services.chain import client as calls
from services.chain.local import LocalChain
from services.chain.subnets import MAX_TAKE_U16, OWNER_CUT_U16, NetworkParams, is_epoch_block
from services.common.keys import dev_keypair
from tests.conftest import chain_settings
from tests.test_subnets import ALICE, BOB, CHARLIE, OWNER_HK, TAO, expect_failed_in_block, expect_refused, new_subnet

DAVE = dev_keypair("Dave")
VALIDATOR, MINER = dev_keypair("hotkey-validator"), dev_keypair("hotkey-miner")


@pytest.fixture
async def local(redis_server) -> AsyncIterator[LocalChain]:
    economics = NetworkParams(min_tempo=1, lock_cost_rao=100 * TAO, delegate_take_rate_limit=20)
    chain = await LocalChain.create(chain_settings(redis_server, economics=economics))
    yield chain
    await chain.close()


async def stake(local: LocalChain, coldkey, hotkey) -> int:
    return (await local.ledger.nominators_of([hotkey.ss58_address]))[hotkey.ss58_address].get(coldkey.ss58_address, 0)


async def registered_validator(local: LocalChain, **hyperparameters: int) -> int:
    netuid = await new_subnet(local, weights_rate_limit=0, target_regs_per_interval=10, **hyperparameters)
    await local.submit(BOB, calls.burned_register_call(netuid, VALIDATOR.ss58_address))
    await local.submit(DAVE, calls.burned_register_call(netuid, MINER.ss58_address))
    await local.produce()
    return netuid


async def test_add_and_remove_stake_conserve_every_rao(local):
    await registered_validator(local)
    free0 = (await local.ledger.account(BOB.ss58_address)).free
    e0 = await local.ledger.economy()
    assert (await local.run(BOB, calls.add_stake_call(VALIDATOR.ss58_address, 300 * TAO))).ok
    assert (await local.run(BOB, calls.remove_stake_call(VALIDATOR.ss58_address, 120 * TAO))).ok
    assert (await local.ledger.account(BOB.ss58_address)).free == free0 - 180 * TAO - 2 * local.fee
    assert await stake(local, BOB, VALIDATOR) == 180 * TAO
    rows = await local.ledger.stake_of(BOB.ss58_address)
    assert [(r.hotkey, r.amount_rao, r.hotkey_owner) for r in rows] == [
        (VALIDATOR.ss58_address, 180 * TAO, BOB.ss58_address)]
    e1 = await local.ledger.economy()
    assert e1.total_stake == e0.total_stake + 180 * TAO
    assert await local.ledger.check_invariants() == []
    # removing all of it leaves no empty entries behind
    assert (await local.run(BOB, calls.remove_stake_call(VALIDATOR.ss58_address, 180 * TAO))).ok
    assert await local.ledger.stake_of(BOB.ss58_address) == []
    assert await local.ledger.check_invariants() == []


async def test_stake_refusals(local):
    await registered_validator(local)
    add, remove = calls.add_stake_call, calls.remove_stake_call
    await expect_refused(local, BOB, add(dev_keypair("nobody").ss58_address, TAO), grpc.StatusCode.NOT_FOUND,
                         "not registered on any subnet")
    await expect_refused(local, CHARLIE, add(VALIDATOR.ss58_address, TAO), grpc.StatusCode.PERMISSION_DENIED,
                         "not a delegate")
    await expect_refused(local, BOB, remove(VALIDATOR.ss58_address, 1), grpc.StatusCode.FAILED_PRECONDITION,
                         "has 0 rao staked")
    free = (await local.ledger.account(BOB.ss58_address)).free
    await expect_refused(local, BOB, add(VALIDATOR.ss58_address, free), grpc.StatusCode.FAILED_PRECONDITION, "needs")
    await expect_refused(local, BOB, add(VALIDATOR.ss58_address, 0), grpc.StatusCode.INVALID_ARGUMENT, "stake amount")
    await expect_failed_in_block(local, CHARLIE, add(VALIDATOR.ss58_address, TAO), "NotADelegate")
    await expect_failed_in_block(local, BOB, remove(VALIDATOR.ss58_address, 1), "InsufficientStake")


async def test_delegate_take_bounds_and_rate_limit(local):
    await registered_validator(local)
    take = calls.set_delegate_take_call
    await expect_refused(local, BOB, take(VALIDATOR.ss58_address, MAX_TAKE_U16 + 1), grpc.StatusCode.OUT_OF_RANGE,
                         "allowed 0..11796")
    await expect_refused(local, CHARLIE, take(VALIDATOR.ss58_address, 100), grpc.StatusCode.PERMISSION_DENIED,
                         "belongs to coldkey")
    assert (await local.run(BOB, take(VALIDATOR.ss58_address, 5_000))).ok
    assert (await local.run(BOB, take(VALIDATOR.ss58_address, 4_000))).ok  # lowering is never limited
    err = await expect_refused(local, BOB, take(VALIDATOR.ss58_address, 6_000), grpc.StatusCode.RESOURCE_EXHAUSTED,
                               "may rise again in")
    assert "blocks" in str(err)
    await local.produce(20)
    assert (await local.run(BOB, take(VALIDATOR.ss58_address, 6_000))).ok
    (delegate,) = await local.ledger.delegates()
    assert (delegate.hotkey, delegate.owner, delegate.take) == (VALIDATOR.ss58_address, BOB.ss58_address, 6_000)
    # a delegate accepts nominators
    assert (await local.run(CHARLIE, calls.add_stake_call(VALIDATOR.ss58_address, 5 * TAO))).ok
    (delegate,) = await local.ledger.delegates()
    assert delegate.nominators == 1 and delegate.total_stake_rao == 5 * TAO and delegate.netuids == [1]


async def test_nominator_gets_its_share_after_the_take_and_owner_cut_lands_on_owner(local):
    netuid = await registered_validator(local, tempo=6)
    take = 5_898  # 9%
    await local.submit(BOB, calls.set_delegate_take_call(VALIDATOR.ss58_address, take))
    await local.submit(BOB, calls.add_stake_call(VALIDATOR.ss58_address, 300 * TAO))
    await local.produce()
    assert (await local.run(CHARLIE, calls.add_stake_call(VALIDATOR.ss58_address, 100 * TAO))).ok
    assert (await local.run(VALIDATOR, calls.set_weights_call(netuid, [1], [65_535]))).ok
    # stop right before the next epoch block and read every stake the epoch will raise
    while not is_epoch_block(await local.head() + 1, netuid, 6):
        await local.produce()
    bob0, charlie0 = await stake(local, BOB, VALIDATOR), await stake(local, CHARLIE, VALIDATOR)
    dave0, owner0 = await stake(local, DAVE, MINER), await stake(local, ALICE, OWNER_HK)
    free0 = {k.ss58_address: (await local.ledger.account(k.ss58_address)).free for k in (ALICE, BOB, CHARLIE, DAVE)}
    (block,) = await local.produce()
    (run,) = [e.attributes for e in block.events if e.name == "EpochRun"]
    snap = await local.ledger.subnet_snapshot(netuid, metagraph=True)
    emission = int(run["emission"])
    validator_rao, miner_rao = (int(x) for x in snap.out["emission"])
    assert int(run["owner_cut"]) == emission * OWNER_CUT_U16 // 65_535
    assert miner_rao > 0 and validator_rao > 0
    # the delegate keeps floor(D * take / 65535); the rest is shared by stake, floors to the delegate
    rest = validator_rao - validator_rao * take // 65_535
    charlie_share = rest * charlie0 // (bob0 + charlie0)
    assert await stake(local, CHARLIE, VALIDATOR) == charlie0 + charlie_share
    assert await stake(local, BOB, VALIDATOR) == bob0 + validator_rao - charlie_share
    assert await stake(local, DAVE, MINER) == dave0 + miner_rao
    assert await stake(local, ALICE, OWNER_HK) == owner0 + int(run["owner_cut"])
    # emission is stake, never free balance
    assert {a: (await local.ledger.account(a)).free for a in free0} == free0
    assert int(run["carried"]) == emission - int(run["owner_cut"]) - validator_rao - miner_rao
    assert await local.ledger.check_invariants() == []
