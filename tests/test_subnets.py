"""Subnets, registration and axons on a real Redis, blocks produced on demand (services/chain/local.py).

Refusals at submit are checked for their gRPC code and for leaving every key untouched; calls
that pass submit but fail in their block pay the fee and change nothing else.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from services.chain import client as calls
from services.chain.errors import CHAIN_ERRORS
from services.chain.extrinsics import HOTKEY_CALLS
from services.chain.local import LocalChain
from services.chain.subnets import INITIAL_BURN_RAO, NetworkParams, adjusted_burn
from services.common.error_mapping import status_code_for
from services.common.errors import AgoraError
from services.common.keys import dev_keypair
from tests.conftest import chain_settings

TAO = 10**9
ECON = NetworkParams(min_tempo=1, lock_cost_rao=100 * TAO, max_subnets=3, delegate_take_rate_limit=50)
ALICE, BOB, CHARLIE = dev_keypair("Alice"), dev_keypair("Bob"), dev_keypair("Charlie")
OWNER_HK = dev_keypair("alice-owner-hotkey")


def hotkey(name: str):
    return dev_keypair(f"hotkey-{name}")


@pytest.fixture
async def local(redis_server) -> AsyncIterator[LocalChain]:
    chain = await LocalChain.create(chain_settings(redis_server, economics=ECON))
    yield chain
    await chain.close()


async def new_subnet(local: LocalChain, owner=ALICE, owner_hotkey=OWNER_HK, **hyperparameters: int) -> int:
    """Register a subnet and set hyperparameters in the next block; return its netuid."""
    before = set(await local.ledger.netuids())
    out = await local.run(owner, calls.register_network_call("next-token", "text", owner_hotkey.ss58_address))
    assert out.ok, out.error
    (netuid,) = set(await local.ledger.netuids()) - before
    hashes = [await local.submit(owner, calls.set_hyperparameter_call(netuid, name, value))
              for name, value in hyperparameters.items()]
    await local.produce()
    for h in hashes:
        assert (await local.outcome(h)).ok, (await local.outcome(h)).error
    return netuid


async def expect_refused(local: LocalChain, keypair, call, code: grpc.StatusCode, words: str) -> AgoraError:
    """Submitting `call` is refused with `code` and a message containing `words`; no key changes."""
    before = await local.ledger.state_dump()
    with pytest.raises(AgoraError) as err:
        await local.submit(keypair, call)
    assert status_code_for(err.value) == code, str(err.value)
    assert words.lower() in str(err.value).lower(), str(err.value)
    assert await local.ledger.state_dump() == before
    return err.value


async def expect_failed_in_block(local: LocalChain, keypair, call, error: str) -> None:
    """Queued without the submit checks, the call fails in its block: only nonce and fee change."""
    fee = 0 if call.WhichOneof("call") in HOTKEY_CALLS else local.fee
    who = keypair.ss58_address
    account0, e0 = await local.ledger.account(who), await local.ledger.economy()
    stake0 = await local.ledger.stake_of(who)
    out = await local.run(keypair, call, precheck=False)
    assert out.state == "included" and not out.ok and out.error.startswith(error), out
    account1, e1 = await local.ledger.account(who), await local.ledger.economy()
    assert account1.free == account0.free - fee and account1.nonce == account0.nonce + 1
    assert await local.ledger.stake_of(who) == stake0
    assert (e1.burned - e0.burned, e1.total_stake, e1.locked) == (fee, e0.total_stake, e0.locked)
    assert await local.ledger.check_invariants() == []


def test_every_chain_error_maps_to_a_non_internal_code():
    for name, cls in CHAIN_ERRORS.items():
        assert status_code_for(cls("x")) != grpc.StatusCode.INTERNAL, name


# ---- register_network ----


async def test_register_network_locks_cost_and_assigns_netuid(local):
    free0 = (await local.ledger.account(ALICE.ss58_address)).free
    e0 = await local.ledger.economy()
    netuid = await new_subnet(local)
    assert netuid == 1
    s = await local.ledger.subnet(1)
    assert (s.owner_coldkey, s.owner_hotkey, s.task, s.locked_rao) == (
        ALICE.ss58_address, OWNER_HK.ss58_address, "next-token", 100 * TAO)
    assert s.burn_rao == INITIAL_BURN_RAO and s.n == 0
    assert s.hp.tempo == 360 and s.hp.kappa == 32_767 and s.hp.max_allowed_uids == 256
    assert s.hp.immunity_period == 4096 and s.hp.bonds_moving_average == 900_000
    assert (await local.ledger.account(ALICE.ss58_address)).free == free0 - 100 * TAO - local.fee
    e1 = await local.ledger.economy()
    assert e1.locked == e0.locked + 100 * TAO
    assert await local.ledger.hotkey_owner(OWNER_HK.ss58_address) == ALICE.ss58_address
    assert await new_subnet(local, owner=BOB, owner_hotkey=hotkey("bob-owner")) == 2
    assert await local.ledger.check_invariants() == []


async def test_register_network_refusals(local):
    await new_subnet(local)
    poor = dev_keypair("Poor")
    await local.run(ALICE, calls.transfer_call(poor.ss58_address, 50 * TAO))
    await expect_refused(local, poor, calls.register_network_call("next-token", "x", hotkey("p").ss58_address),
                         grpc.StatusCode.FAILED_PRECONDITION, "lock cost")
    await expect_refused(local, BOB, calls.register_network_call("translation", "x", OWNER_HK.ss58_address),
                         grpc.StatusCode.PERMISSION_DENIED, "belongs to coldkey")
    await expect_refused(local, BOB, calls.register_network_call("dance", "x", hotkey("b").ss58_address),
                         grpc.StatusCode.INVALID_ARGUMENT, "task")
    await expect_refused(local, BOB, calls.register_network_call("embedding", "", hotkey("b").ss58_address),
                         grpc.StatusCode.INVALID_ARGUMENT, "name")
    await new_subnet(local, owner=BOB, owner_hotkey=hotkey("b2"))
    await new_subnet(local, owner=BOB, owner_hotkey=hotkey("b3"))
    await expect_refused(local, BOB, calls.register_network_call("embedding", "x", hotkey("b4").ss58_address),
                         grpc.StatusCode.FAILED_PRECONDITION, "maximum of 3 subnets")


# ---- set_hyperparameter ----


async def test_owner_sets_hyperparameters_within_bounds(local):
    netuid = await new_subnet(local, tempo=10, kappa=40_000, max_allowed_uids=4096, weights_version=7)
    hp = (await local.ledger.subnet(netuid)).hp
    assert (hp.tempo, hp.kappa, hp.max_allowed_uids, hp.weights_version) == (10, 40_000, 4096, 7)


async def test_set_hyperparameter_refusals(local):
    netuid = await new_subnet(local, max_allowed_validators=8, target_regs_per_interval=10)
    for i in range(3):
        await local.submit(BOB, calls.burned_register_call(netuid, hotkey(f"m{i}").ss58_address))
    await local.produce()
    set_hp = calls.set_hyperparameter_call
    await expect_refused(local, BOB, set_hp(netuid, "tempo", 10), grpc.StatusCode.PERMISSION_DENIED, "owned by")
    await expect_refused(local, ALICE, set_hp(9, "tempo", 10), grpc.StatusCode.NOT_FOUND, "no subnet 9")
    await expect_refused(local, ALICE, set_hp(netuid, "bonds_moving_average", 975_001), grpc.StatusCode.OUT_OF_RANGE,
                         "allowed 0..975000")
    await expect_refused(local, ALICE, set_hp(netuid, "max_allowed_uids", 5000), grpc.StatusCode.OUT_OF_RANGE,
                         "allowed 1..4096")
    await expect_refused(local, ALICE, set_hp(netuid, "max_allowed_uids", 2), grpc.StatusCode.OUT_OF_RANGE,
                         "allowed 3..4096")
    await expect_refused(local, ALICE, set_hp(netuid, "max_allowed_validators", 300), grpc.StatusCode.OUT_OF_RANGE,
                         "allowed 1..256")
    await expect_refused(local, ALICE, set_hp(netuid, "min_burn", 200 * TAO), grpc.StatusCode.OUT_OF_RANGE,
                         "allowed 0..100000000000")
    await expect_refused(local, ALICE, set_hp(netuid, "color", 1), grpc.StatusCode.INVALID_ARGUMENT,
                         "no hyperparameter 'color'")
    await expect_refused(local, ALICE, set_hp(0, "tempo", 10), grpc.StatusCode.INVALID_ARGUMENT, "root")
    await expect_failed_in_block(local, BOB, set_hp(netuid, "tempo", 10), "NotSubnetOwner")


async def test_lowering_max_burn_clamps_the_current_burn(local):
    netuid = await new_subnet(local, max_burn=TAO // 2)
    assert (await local.ledger.subnet(netuid)).burn_rao == TAO // 2


# ---- burned_register ----


async def test_burned_register_burns_and_assigns_uids(local):
    netuid = await new_subnet(local, target_regs_per_interval=10)
    burn = (await local.ledger.subnet(netuid)).burn_rao
    free0, e0 = (await local.ledger.account(BOB.ss58_address)).free, await local.ledger.economy()
    for i in range(3):
        await local.submit(BOB, calls.burned_register_call(netuid, hotkey(f"m{i}").ss58_address, max_burn=burn))
    blocks = await local.produce()
    registered = [e for e in blocks[0].events if e.name == "NeuronRegistered"]
    assert [e.attributes["uid"] for e in registered] == ["0", "1", "2"]
    assert all(e.attributes["burn"] == str(burn) and e.HasField("extrinsic_index") for e in registered)
    assert (await local.ledger.account(BOB.ss58_address)).free == free0 - 3 * (burn + local.fee)
    e1 = await local.ledger.economy()
    assert e1.burned - e0.burned == 3 * (burn + local.fee)
    snap = await local.ledger.subnet_snapshot(netuid)
    assert snap.hotkeys == [hotkey(f"m{i}").ss58_address for i in range(3)]
    assert snap.coldkeys == [BOB.ss58_address] * 3
    assert await local.ledger.check_invariants() == []


async def test_burned_register_refusals(local):
    netuid = await new_subnet(local, target_regs_per_interval=1, adjustment_interval=1000)
    reg = calls.burned_register_call
    assert (await local.run(BOB, reg(netuid, hotkey("m0").ss58_address))).ok
    await expect_refused(local, BOB, reg(netuid, hotkey("m0").ss58_address), grpc.StatusCode.ALREADY_EXISTS,
                         "already holds uid 0")
    await expect_refused(local, CHARLIE, reg(netuid, hotkey("m0").ss58_address), grpc.StatusCode.PERMISSION_DENIED,
                         "belongs to coldkey")
    await expect_refused(local, BOB, reg(7, hotkey("m1").ss58_address), grpc.StatusCode.NOT_FOUND, "no subnet 7")
    await expect_refused(local, BOB, reg(0, hotkey("m1").ss58_address), grpc.StatusCode.INVALID_ARGUMENT, "root")
    burn = (await local.ledger.subnet(netuid)).burn_rao
    await expect_refused(local, BOB, reg(netuid, hotkey("m1").ss58_address, max_burn=burn - 1),
                         grpc.StatusCode.FAILED_PRECONDITION, f"the burn is {burn} rao, above your max_burn")
    poor = dev_keypair("Poor")
    await local.run(ALICE, calls.transfer_call(poor.ss58_address, burn))  # the fee is missing
    await expect_refused(local, poor, reg(netuid, hotkey("p").ss58_address), grpc.StatusCode.FAILED_PRECONDITION,
                         "needs")
    # three registrations per interval at target 1: the fourth waits for the next interval
    assert (await local.run(BOB, reg(netuid, hotkey("m1").ss58_address))).ok
    assert (await local.run(BOB, reg(netuid, hotkey("m2").ss58_address))).ok
    err = await expect_refused(local, BOB, reg(netuid, hotkey("m3").ss58_address),
                               grpc.StatusCode.RESOURCE_EXHAUSTED, "3 registrations this interval")
    assert "retry in" in str(err)
    await expect_failed_in_block(local, CHARLIE, reg(netuid, hotkey("m0").ss58_address), "HotkeyOwnedByOther")


async def test_burn_rises_with_demand_and_falls_without(local):
    netuid = await new_subnet(local, target_regs_per_interval=1, adjustment_interval=10, min_burn=TAO // 4,
                              max_burn=3 * TAO)
    s0 = await local.ledger.subnet(netuid)
    start = s0.last_adjustment
    for i in range(3):  # 3 in one interval at target 1: burn x (3 + 1) / 2
        await local.submit(BOB, calls.burned_register_call(netuid, hotkey(f"m{i}").ss58_address))
    await local.produce()
    while await local.head() < start + 10:
        await local.produce()
    s1 = await local.ledger.subnet(netuid)
    assert s1.burn_rao == adjusted_burn(s0.burn_rao, 3, 1, TAO // 4, 3 * TAO) == 2 * s0.burn_rao
    assert (s1.last_adjustment, s1.regs_interval) == (start + 10, 0)
    await local.produce(10)  # an interval without registrations halves it
    assert (await local.ledger.subnet(netuid)).burn_rao == s0.burn_rao
    await local.produce(30)  # and it never goes below min_burn
    assert (await local.ledger.subnet(netuid)).burn_rao == TAO // 4


async def test_full_subnet_replaces_lowest_pruning_score_outside_immunity(local):
    netuid = await new_subnet(local, max_allowed_uids=4, immunity_period=10_000, tempo=2, weights_rate_limit=0,
                              target_regs_per_interval=100)
    validator, miners = hotkey("v"), [hotkey(f"m{i}") for i in (1, 2)]
    for hk in (validator, *miners):
        await local.submit(BOB, calls.burned_register_call(netuid, hk.ss58_address))
    await local.produce()
    assert (await local.run(BOB, calls.add_stake_call(validator.ss58_address, 1000 * TAO))).ok
    # the validator pays miner 2 more than miner 1, so miner 1 gets the lower pruning score
    assert (await local.run(validator, calls.set_weights_call(netuid, [1, 2], [1, 3]))).ok
    await local.produce(4)
    snap = await local.ledger.subnet_snapshot(netuid)
    assert snap.pruning[1] < snap.pruning[2]
    # everyone older than 5 blocks leaves immunity; a fresh registration (score 0) fills uid 3 and is immune
    assert (await local.run(ALICE, calls.set_hyperparameter_call(netuid, "immunity_period", 5))).ok
    await local.produce(5)
    assert (await local.run(CHARLIE, calls.burned_register_call(netuid, hotkey("fresh").ss58_address))).ok
    newcomer = hotkey("newcomer")
    out = await local.run(CHARLIE, calls.burned_register_call(netuid, newcomer.ss58_address))
    assert out.ok
    snap = await local.ledger.subnet_snapshot(netuid)
    assert snap.subnet.n == 4
    assert snap.hotkeys[1] == newcomer.ss58_address          # miner 1: lowest score outside immunity
    assert snap.hotkeys[3] == hotkey("fresh").ss58_address   # score 0 but immune
    assert snap.reg_block[1] == out.block and snap.pruning[1] == 0
    assert miners[0].ss58_address not in snap.hotkeys
    # the replaced uid's old weights no longer count: rows set before its registration are masked
    assert snap.last_update[0] < snap.reg_block[1]
    # when every uid is immune, the lowest score among all goes
    assert (await local.run(ALICE, calls.set_hyperparameter_call(netuid, "immunity_period", 10_000))).ok
    await local.produce(4)  # an epoch: the fresh uids still earn nothing
    snap = await local.ledger.subnet_snapshot(netuid)
    lowest = min(range(4), key=lambda u: (int(snap.pruning[u]), int(snap.reg_block[u]), u))
    assert (await local.run(CHARLIE, calls.burned_register_call(netuid, hotkey("late").ss58_address))).ok
    assert (await local.ledger.subnet_snapshot(netuid)).hotkeys[lowest] == hotkey("late").ss58_address


# ---- serve_axon ----


async def test_serve_axon_publishes_endpoint_without_fee(local):
    netuid = await new_subnet(local, serving_rate_limit=5)
    miner = hotkey("m0")
    assert (await local.run(BOB, calls.burned_register_call(netuid, miner.ss58_address))).ok
    out = await local.run(miner, calls.serve_axon_call(netuid, "10.0.0.7", 8091, "grpc", 3))
    assert out.ok
    assert (await local.ledger.account(miner.ss58_address)).free == 0
    axon = (await local.ledger.subnet_snapshot(netuid, metagraph=True)).axons[0]
    assert (axon.host, axon.port, axon.protocol, axon.version, axon.block) == ("10.0.0.7", 8091, "grpc", 3, out.block)
    err = await expect_refused(local, miner, calls.serve_axon_call(netuid, "10.0.0.8", 8091),
                               grpc.StatusCode.RESOURCE_EXHAUSTED, "retry in")
    assert f"at block {out.block + 5}" in str(err)
    await expect_refused(local, hotkey("stranger"), calls.serve_axon_call(netuid, "h", 1),
                         grpc.StatusCode.FAILED_PRECONDITION, "not registered")
    await expect_refused(local, miner, calls.serve_axon_call(netuid, "h", 0), grpc.StatusCode.INVALID_ARGUMENT, "port")
    await expect_refused(local, miner, calls.serve_axon_call(netuid, "a b", 1), grpc.StatusCode.INVALID_ARGUMENT,
                         "whitespace")
    await local.produce(4)
    assert (await local.run(miner, calls.serve_axon_call(netuid, "10.0.0.8", 8092))).ok
