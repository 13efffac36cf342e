"""Weights and epochs end to end: set_weights rules, Yuma's defence against a colluding minority,
and a subnet's metagraph over real gRPC showing incentive follow the weights."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import numpy as np
import pytest

from agora.chain.v1 import chain_pb2
from services.chain import client as calls
from services.chain.client import ChainClient
from services.chain.epoch import yuma_params
from services.chain.local import LocalChain
from services.chain.main import ChainNode
from services.chain.subnets import NetworkParams
from services.chain.yuma import BondRows, bonds_from_u16, compute_yuma, dense_bonds, next_bond_rows
from services.common.keys import dev_keypair
from tests.conftest import chain_settings
from tests.test_subnets import ALICE, BOB, TAO, expect_failed_in_block, expect_refused, new_subnet

ECON = NetworkParams(min_tempo=1, lock_cost_rao=100 * TAO)
U16 = 65_535


@pytest.fixture
async def local(redis_server) -> AsyncIterator[LocalChain]:
    chain = await LocalChain.create(chain_settings(redis_server, economics=ECON))
    yield chain
    await chain.close()


def hk(tag: str, i: int):
    return dev_keypair(f"hotkey-{tag}-{i}")


async def populate(local: LocalChain, netuid: int, tag: str, stakes: list[int], miners: int) -> tuple[list, list]:
    """Register validators (staked by BOB) then miners; return (validator keys, miner keys)."""
    validators = [hk(f"{tag}v", i) for i in range(len(stakes))]
    workers = [hk(f"{tag}m", i) for i in range(miners)]
    for key in (*validators, *workers):
        await local.submit(BOB, calls.burned_register_call(netuid, key.ss58_address))
    await local.produce()
    for key, amount in zip(validators, stakes, strict=True):
        await local.submit(BOB, calls.add_stake_call(key.ss58_address, amount))
    await local.produce()
    return validators, workers


# ---- set_weights ----


async def test_set_weights_rules(local):
    netuid = await new_subnet(local, weights_rate_limit=3, min_allowed_weights=2, max_weights_limit=40_000,
                              weights_version=5, target_regs_per_interval=10, max_allowed_validators=1, tempo=100)
    (v0, v1), miners = await populate(local, netuid, "w", [200 * TAO, 100 * TAO], 3)
    sw = calls.set_weights_call
    await local.produce(3)  # registration starts the rate limit
    await expect_refused(local, v0, sw(netuid, [2, 3], [1, 1], version_key=4), grpc.StatusCode.FAILED_PRECONDITION,
                         "below the subnet's weights_version 5")
    await expect_refused(local, v0, sw(netuid, [2], [1], version_key=5), grpc.StatusCode.OUT_OF_RANGE,
                         "needs at least 2")
    await expect_refused(local, v0, sw(netuid, [2, 9], [1, 1], version_key=5), grpc.StatusCode.OUT_OF_RANGE,
                         "uid 9 does not exist")
    await expect_refused(local, v0, sw(netuid, [2, 3], [1, 9], version_key=5), grpc.StatusCode.OUT_OF_RANGE,
                         "above max_weights_limit 40000")
    await expect_refused(local, v0, sw(netuid, [2, 2], [1, 1], version_key=5), grpc.StatusCode.INVALID_ARGUMENT,
                         "repeat")
    await expect_refused(local, v0, sw(netuid, [2, 3], [1], version_key=5), grpc.StatusCode.INVALID_ARGUMENT,
                         "one weight per uid")
    await expect_refused(local, v0, sw(netuid, [2, 3], [0, 0], version_key=5), grpc.StatusCode.INVALID_ARGUMENT,
                         "all weights are zero")
    await expect_refused(local, v0, sw(0, [2, 3], [1, 1]), grpc.StatusCode.INVALID_ARGUMENT, "root")
    await expect_refused(local, dev_keypair("stranger"), sw(netuid, [2, 3], [1, 1], version_key=5),
                         grpc.StatusCode.FAILED_PRECONDITION, "not registered")
    await expect_refused(local, miners[0], sw(netuid, [3, 4], [1, 1], version_key=5),
                         grpc.StatusCode.PERMISSION_DENIED, "has no stake")
    out = await local.run(v0, sw(netuid, [2, 3, 4], [10, 20, 30], version_key=5))
    assert out.ok, out.error
    # stored as Bittensor does: sorted by uid, max-upscaled to 65535
    targets, values = (await local.ledger.subnet_snapshot(netuid)).weights[0]
    assert targets.tolist() == [2, 3, 4] and values.tolist() == [21_845, 43_690, 65_535]
    err = await expect_refused(local, v0, sw(netuid, [2, 3], [1, 1], version_key=5),
                               grpc.StatusCode.RESOURCE_EXHAUSTED, "retry in")
    assert f"at block {out.block + 3}" in str(err)
    # after an epoch only the top max_allowed_validators (1) by stake hold permits
    assert (await local.run(ALICE, calls.set_hyperparameter_call(netuid, "tempo", 4))).ok
    while (await local.ledger.subnet(netuid)).last_epoch == 0:
        await local.produce()
    await expect_refused(local, v1, sw(netuid, [2, 3], [1, 1], version_key=5), grpc.StatusCode.PERMISSION_DENIED,
                         "holds no validator permit")
    assert (await local.run(v1, sw(netuid, [1], [1], version_key=5))).ok  # its own uid alone is always allowed
    await expect_failed_in_block(local, v1, sw(netuid, [2, 3], [1, 1], version_key=5), "NoValidatorPermit")


# ---- Yuma's defence ----


async def test_minority_colluder_cannot_lift_its_miner_and_loses_dividends(local):
    """Two identical subnets: on A the minority validator votes like the others, on B it puts all
    its weight on miner 4, which the honest majority rates lowest."""
    honest = [4, 3, 2, 1, 1]
    stakes = [100 * TAO, 100 * TAO, 100 * TAO, 60 * TAO]      # the fourth holds 60 / 360 of the stake
    snaps = {}
    for tag, colluding in (("a", False), ("b", True)):
        netuid = await new_subnet(local, tempo=3, weights_rate_limit=0, target_regs_per_interval=10)
        validators, _ = await populate(local, netuid, tag, stakes, 5)
        miner_uids = list(range(4, 9))
        for i, v in enumerate(validators):
            weights = [0, 0, 0, 0, 1] if colluding and i == 3 else honest
            await local.submit(v, calls.set_weights_call(netuid, miner_uids, weights))
        await local.produce()
        for _ in range(3):  # three epochs
            epoch = (await local.ledger.subnet(netuid)).last_epoch
            while (await local.ledger.subnet(netuid)).last_epoch == epoch:
                await local.produce()
        snaps[tag] = (await local.ledger.subnet_snapshot(netuid, metagraph=True)).out
    a, b = snaps["a"], snaps["b"]
    colluded_miner, colluder = 8, 3
    honest_share = honest[-1] / sum(honest)
    # consensus (and so the clipped support) of the colluded miner stays what the honest majority gives it
    assert abs(int(b["consensus"][colluded_miner]) - int(a["consensus"][colluded_miner])) <= 1
    assert int(b["consensus"][colluded_miner]) <= honest_share * U16 + 2
    # most of the support it received was clipped away: trust = clipped / raw support
    assert int(a["trust"][colluded_miner]) >= U16 - 2 and int(b["trust"][colluded_miner]) < 0.45 * U16
    # the colluder's own weights were mostly clipped and its dividends fall
    assert int(b["validator_trust"][colluder]) < 0.1 * U16 < 0.9 * U16 < int(a["validator_trust"][colluder])
    assert int(b["dividends"][colluder]) < 0.25 * int(a["dividends"][colluder])
    honest_per_stake = int(b["dividends"][0]) / 100
    assert int(b["dividends"][colluder]) / 60 < 0.2 * honest_per_stake
    # and the other validators' dividends rise by what it lost
    assert int(b["dividends"][0]) > int(a["dividends"][0])


# ---- the Yuma variant is a hyperparameter ----


async def test_the_same_weights_give_yuma_3_bonds_on_a_subnet_set_to_3(local):
    """Three subnets, the same validator weights: Yuma 2 (default) stores column max-upscaled
    bonds, yuma_version 3 an EMA of the weights (rate 1 - bonds_moving_average), and Yuma 3 with
    liquid alpha a per-bond rate from its sigmoid. The chain's stored rows equal what the pure
    Yuma and its storage rule give for the same inputs, epoch after epoch."""
    variants = {"y2": {}, "y3": {"yuma_version": 3}, "liquid": {"yuma_version": 3, "liquid_alpha_enabled": 1}}
    stored: dict[str, list[list[int]]] = {}
    for tag, hyperparameters in variants.items():
        netuid = await new_subnet(local, tempo=3, weights_rate_limit=0, target_regs_per_interval=10,
                                  **hyperparameters)
        hp = (await local.ledger.subnet(netuid)).hp
        assert hp.yuma_version == hyperparameters.get("yuma_version", 2)
        (validator,), _ = await populate(local, netuid, tag, [100 * TAO], 2)
        assert (await local.run(validator, calls.set_weights_call(netuid, [1, 2], [3, 1]))).ok
        params = yuma_params(await local.ledger.subnet_snapshot(netuid))
        expected: BondRows = {}
        rows = []
        for _ in range(2):  # two epochs: the second shows the EMA carrying the first
            epoch = (await local.ledger.subnet(netuid)).last_epoch
            while (await local.ledger.subnet(netuid)).last_epoch == epoch:
                await local.produce()
            w = np.array([[0, 3, 1], [0, 0, 0], [0, 0, 0]], dtype=float)
            r = compute_yuma(w, np.array([1.0, 0, 0]), bonds_from_u16(dense_bonds(expected, 3)), params)
            expected = next_bond_rows(expected, r.bonds, r.epoch_permit, r.validator_permit, params.yuma3)
            targets, values = (await local.ledger.subnet_snapshot(netuid)).bonds[0]
            assert targets.tolist() == [1, 2]
            assert values.tolist() == expected[0][1].tolist(), (tag, values, expected[0][1])
            rows.append(values.tolist())
        stored[tag] = rows
    assert stored["y2"] == [[U16, U16], [U16, U16]]               # column max-upscaled: one validator holds all
    (b1, b2) = stored["y3"]
    assert abs(b1[0] - 0.1 * 0.75 * U16) <= 1 and abs(b2[0] - (0.1 + 0.09) * 0.75 * U16) <= 2
    assert stored["liquid"][0][0] > 5 * stored["y3"][0][0]      # liquid alpha's rate here is ~0.7, not 0.1


# ---- the metagraph over gRPC ----


@pytest.fixture
async def grpc_chain(redis_server) -> AsyncIterator[tuple[ChainNode, ChainClient, LocalChain]]:
    """A real chain node serving gRPC without its timer: the test produces each block."""
    settings = chain_settings(redis_server, economics=ECON, produce=False)
    node = ChainNode(settings)
    await node.start()
    client = ChainClient(f"127.0.0.1:{node.server.port}")
    local = LocalChain(node.ledger, await client.chain_id(), settings.transfer_fee)
    yield node, client, local
    await local.close()
    await client.close()
    await node.stop()


async def submit_all(client: ChainClient, local: LocalChain, signed: list[tuple]) -> None:
    """Submit each (keypair, call) over gRPC, then produce one block and require every one succeeded."""
    hashes = [(await client.call(kp, call, wait=False)).hash for kp, call in signed]
    await local.produce()
    for h in hashes:
        status = await client.status(h)
        assert status.state == chain_pb2.ExtrinsicStatus.INCLUDED and status.success, status.error


async def test_metagraph_over_grpc_shows_incentive_following_weights(grpc_chain):
    node, client, local = grpc_chain
    owner_hotkey = dev_keypair("owner-hk")
    register = calls.register_network_call("translation", "mt", owner_hotkey.ss58_address)
    await submit_all(client, local, [(ALICE, register)])
    (netuid,) = [s.netuid for s in await client.subnets() if s.netuid]
    settings = {"tempo": 4, "weights_rate_limit": 0, "target_regs_per_interval": 10, "kappa": 32_767}
    await submit_all(client, local, [(ALICE, calls.set_hyperparameter_call(netuid, k, v)) for k, v in settings.items()])
    validators = [hk("gv", i) for i in range(3)]
    miners = [hk("gm", i) for i in range(4)]
    await submit_all(client, local, [(BOB, calls.burned_register_call(netuid, k.ss58_address))
                                     for k in (*validators, *miners)])
    await submit_all(client, local, [(BOB, calls.add_stake_call(v.ss58_address, s * TAO))
                                     for v, s in zip(validators, (300, 200, 100), strict=True)])
    await submit_all(client, local, [(m, calls.serve_axon_call(netuid, "127.0.0.1", 9000 + i))
                                     for i, m in enumerate(miners)])
    quality = [1, 2, 3, 4]  # every validator ranks the miners alike, with noise
    noise = np.random.default_rng(7)
    for _ in range(3):
        rows = [(v, calls.set_weights_call(netuid, [3, 4, 5, 6], [int(q * 1000 + noise.integers(0, 200))
                                                                   for q in quality]))
                for v in validators]
        await submit_all(client, local, rows)
        await local.produce(4)
    info = await client.subnet(netuid)
    assert info.task == chain_pb2.TRANSLATION and info.metric == "bleu" and info.n == 7
    assert info.last_epoch_block > 0 and info.next_epoch_block > info.last_epoch_block
    assert {h.name: h.value for h in info.hyperparameters}["tempo"] == 4
    m = await client.metagraph(netuid, weights=True, bonds=True)
    assert [n.uid for n in m.neurons] == list(range(7))
    assert [n.hotkey for n in m.neurons] == [k.ss58_address for k in (*validators, *miners)]
    assert all(n.coldkey == BOB.ss58_address for n in m.neurons)
    incentive = [m.neurons[u].incentive for u in (3, 4, 5, 6)]
    assert incentive == sorted(incentive) and incentive[0] < incentive[-1]
    assert abs(sum(incentive) - U16) <= 4
    shares = np.array(incentive) / sum(incentive)
    assert np.allclose(shares, np.array(quality) / sum(quality), atol=0.05)
    # permits go to the top 64 uids with stake: here everyone, miners' incentive being staked too
    assert all(n.validator_permit for n in m.neurons)
    assert [n.stake for n in m.neurons[:3]] > [0, 0, 0] and m.neurons[0].stake > m.neurons[2].stake
    assert all(n.dividends > 0 and n.bonds.uids for n in m.neurons[:3])
    assert all(n.emission > 0 for n in m.neurons)
    assert [n.axon.port for n in m.neurons[3:]] == [9000, 9001, 9002, 9003]
    assert list(m.neurons[0].weights.uids) == [3, 4, 5, 6] and max(m.neurons[0].weights.values) == U16
    assert all(n.active for n in m.neurons)
    bare = await client.metagraph(netuid)
    assert not bare.neurons[0].HasField("weights") and not bare.neurons[0].HasField("bonds")
    stake = await client.stake(BOB.ss58_address)
    assert stake.total_stake == sum(e.amount for e in stake.stakes) > 600 * TAO  # dividends were staked
    await submit_all(client, local, [(BOB, calls.set_delegate_take_call(validators[0].ss58_address, 1_000))])
    (delegate,) = await client.delegates()
    assert (delegate.hotkey, delegate.owner, delegate.take, list(delegate.netuids)) == (
        validators[0].ss58_address, BOB.ss58_address, 1_000, [netuid])
    assert [s.netuid for s in await client.subnets()] == [0, netuid]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await client.subnet(42)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await client.metagraph(77)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await client.stake("nope")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    chain_info = await client.info()
    assert chain_info.total_issuance == (sum((await node.ledger.all_balances()).values()) + chain_info.total_stake
                                         + chain_info.total_locked + chain_info.pending_emission)
    assert chain_info.block_reward == TAO
