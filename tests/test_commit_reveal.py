"""Commit-reveal weights on the chain (Bittensor's defence against weight copying): a validator
commits a hash, reveals the weights in the tempo `commit_reveal_period` tempos later, and nothing
else is accepted: not set_weights, not an early, late, altered or unknown reveal, not an eleventh
unrevealed commit. Blocks are produced by hand (LocalChain), so no test depends on machine speed.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import grpc
import pytest

from services.chain import client as calls
from services.chain.codec import scale_compact, weight_commit_hash
from services.chain.ledger.core import FAILED_FREE_CALL_COOLDOWN_BLOCKS
from services.chain.local import LocalChain
from services.chain.subnets import MAX_UNREVEALED_COMMITS, epoch_index, reveal_window
from services.chain.views import metagraph
from services.common.keys import public_key
from tests.conftest import chain_settings
from tests.test_subnets import ALICE, BOB, ECON, TAO, expect_failed_in_block, expect_refused, hotkey, new_subnet

TEMPO = 4
VALIDATOR, MINER = hotkey("cr-validator"), hotkey("cr-miner")
SALT = [7, 11, 13, 17, 19, 23, 29, 31]


@pytest.fixture
async def local(redis_server) -> AsyncIterator[LocalChain]:
    chain = await LocalChain.create(chain_settings(redis_server, economics=ECON))
    yield chain
    await chain.close()


async def cr_subnet(local: LocalChain, **hyperparameters: int) -> int:
    """A subnet with commit-reveal on, a staked validator (uid 0) and a miner (uid 1)."""
    hp = {"tempo": TEMPO, "weights_rate_limit": 0, "commit_reveal_weights_enabled": 1, **hyperparameters}
    netuid = await new_subnet(local, **hp)
    for hk in (VALIDATOR, MINER):
        assert (await local.run(BOB, calls.burned_register_call(netuid, hk.ss58_address))).ok
    assert (await local.run(BOB, calls.add_stake_call(VALIDATOR.ss58_address, 1000 * TAO))).ok
    return netuid


def commit_of(netuid: int, uids: list[int], weights: list[int], salt: list[int] = SALT, version: int = 0):
    digest = weight_commit_hash(public_key(VALIDATOR.ss58_address), netuid, uids, weights, salt, version)
    return calls.commit_weights_call(netuid, digest), calls.reveal_weights_call(netuid, uids, weights, salt, version)


async def produce_until(local: LocalChain, block: int) -> None:
    """Produce blocks until the next one is `block`."""
    head = await local.head()
    assert head < block, (head, block)
    await local.produce(block - 1 - head)


async def pending(local: LocalChain, netuid: int, uid: int = 0):
    snap = await local.ledger.subnet_snapshot(netuid, metagraph=True)
    return metagraph(snap, await local.head(), include_weights=True, include_bonds=False).neurons[uid]


def test_the_commit_hash_is_bittensors_scale_encoding_under_blake2b():
    # SCALE compact lengths: the spec's examples
    assert [scale_compact(n).hex() for n in (0, 1, 63, 64, 16383, 16384)] == [
        "00", "04", "fc", "0101", "fdff", "02000100"]
    key = bytes(range(32))
    a = weight_commit_hash(key, 1, [0, 1], [65535, 100], [1, 2], 3)
    # what Bittensor's generate_weight_hash hashes, written out byte by byte
    encoded = (key + b"\x01\x00" + b"\x08" + b"\x00\x00\x01\x00" + b"\x08" + b"\xff\xff\x64\x00"
               + b"\x08" + b"\x01\x00\x02\x00" + (3).to_bytes(8, "little"))
    assert a == hashlib.blake2b(encoded, digest_size=32).digest()
    # every input matters, order of the uids included
    assert len({a, weight_commit_hash(key, 2, [0, 1], [65535, 100], [1, 2], 3),
                weight_commit_hash(key, 1, [1, 0], [100, 65535], [1, 2], 3),
                weight_commit_hash(key, 1, [0, 1], [65535, 100], [1, 3], 3),
                weight_commit_hash(key, 1, [0, 1], [65535, 100], [1, 2], 4)}) == 5


def test_the_reveal_window_is_the_epoch_index_period_tempos_on():
    netuid, tempo = 1, 4
    for commit_block in range(0, 40):
        for period in (1, 2, 3):
            first, last = reveal_window(commit_block, netuid, tempo, period)
            assert last - first == tempo
            assert epoch_index(first, netuid, tempo) == epoch_index(commit_block, netuid, tempo) + period
            assert epoch_index(first - 1, netuid, tempo) < epoch_index(first, netuid, tempo)
            assert epoch_index(last + 1, netuid, tempo) > epoch_index(last, netuid, tempo)


async def test_a_commit_is_revealed_in_its_window_and_becomes_the_weights(local):
    netuid = await cr_subnet(local)
    commit, reveal = commit_of(netuid, [1, 0], [65535, 1])
    out = await local.run(VALIDATOR, commit)
    assert out.ok, out.error
    neuron = await pending(local, netuid)
    assert len(neuron.commits) == 1 and neuron.commits[0].commit_block == out.block
    first, last = reveal_window(out.block, netuid, TEMPO, 1)
    assert (neuron.commits[0].first_reveal_block, neuron.commits[0].last_reveal_block) == (first, last)
    assert neuron.last_update == out.block and not neuron.HasField("weights")
    # too early: refused at submit with the window in the message, nothing changes
    await expect_refused(local, VALIDATOR, reveal, grpc.StatusCode.FAILED_PRECONDITION, f"from block {first}")
    await produce_until(local, first)
    # altered weights, salt or version: no commit matches
    for wrong in (calls.reveal_weights_call(netuid, [1, 0], [65535, 2], SALT),
                  calls.reveal_weights_call(netuid, [1, 0], [65535, 1], [*SALT[:-1], 0]),
                  calls.reveal_weights_call(netuid, [1, 0], [65535, 1], SALT, 1),
                  calls.reveal_weights_call(netuid, [0, 1], [1, 65535], SALT)):
        await expect_refused(local, VALIDATOR, wrong, grpc.StatusCode.FAILED_PRECONDITION, "match none")
    out = await local.run(VALIDATOR, reveal)
    assert out.ok and out.block == first, out
    neuron = await pending(local, netuid)
    assert list(neuron.weights.uids) == [0, 1] and list(neuron.weights.values) == [1, 65535]
    assert len(neuron.commits) == 0
    assert neuron.last_update < first   # the weights date from the commit
    # the same reveal again: its commit is spent
    await expect_refused(local, VALIDATOR, reveal, grpc.StatusCode.NOT_FOUND, "no weights commit")
    assert await local.ledger.check_invariants() == []


async def test_set_weights_is_refused_while_commit_reveal_is_on_and_commits_while_it_is_off(local):
    netuid = await cr_subnet(local)
    await expect_refused(local, VALIDATOR, calls.set_weights_call(netuid, [1], [1]),
                         grpc.StatusCode.FAILED_PRECONDITION, "uses commit-reveal")
    await expect_failed_in_block(local, VALIDATOR, calls.set_weights_call(netuid, [1], [1]), "CommitRevealEnabled")
    assert (await local.run(ALICE, calls.set_hyperparameter_call(netuid, "commit_reveal_weights_enabled", 0))).ok
    commit, reveal = commit_of(netuid, [1], [1])
    await expect_refused(local, VALIDATOR, commit, grpc.StatusCode.FAILED_PRECONDITION, "does not use commit-reveal")
    await expect_refused(local, VALIDATOR, reveal, grpc.StatusCode.FAILED_PRECONDITION, "does not use commit-reveal")
    await local.produce(FAILED_FREE_CALL_COOLDOWN_BLOCKS)   # the set_weights that failed in its block cools down
    assert (await local.run(VALIDATOR, calls.set_weights_call(netuid, [1], [1]))).ok


async def test_a_late_reveal_finds_its_commit_expired(local):
    netuid = await cr_subnet(local, commit_reveal_period=2)
    commit, reveal = commit_of(netuid, [1], [65535])
    out = await local.run(VALIDATOR, commit)
    first, last = reveal_window(out.block, netuid, TEMPO, 2)
    assert first - out.block > TEMPO   # two tempos on
    await produce_until(local, last + 1)
    await expect_refused(local, VALIDATOR, reveal, grpc.StatusCode.FAILED_PRECONDITION, "expired")
    assert len((await pending(local, netuid)).commits) == 0   # the metagraph no longer shows it
    out = await local.run(VALIDATOR, reveal, precheck=False)   # queued anyway: it fails in its block
    assert out.state == "included" and out.error.startswith("ExpiredWeightCommit"), out
    assert not (await pending(local, netuid)).HasField("weights")


async def test_commits_are_rate_limited_and_capped_and_a_reveal_spends_the_older_ones(local):
    netuid = await cr_subnet(local, weights_rate_limit=3, commit_reveal_period=3)
    pairs = [commit_of(netuid, [1], [65535], salt=[i + 1]) for i in range(MAX_UNREVEALED_COMMITS + 1)]
    assert (await local.run(VALIDATOR, pairs[0][0])).ok
    await expect_refused(local, VALIDATOR, pairs[1][0], grpc.StatusCode.RESOURCE_EXHAUSTED, "too recently")
    assert (await local.run(ALICE, calls.set_hyperparameter_call(netuid, "weights_rate_limit", 0))).ok
    blocks = []
    for commit, _ in pairs[1:MAX_UNREVEALED_COMMITS]:
        out = await local.run(VALIDATOR, commit)
        assert out.ok, out.error
        blocks.append(out.block)
    assert len((await pending(local, netuid)).commits) == MAX_UNREVEALED_COMMITS
    await expect_refused(local, VALIDATOR, pairs[-1][0], grpc.StatusCode.RESOURCE_EXHAUSTED, "unrevealed commits")
    # revealing the 3rd commit spends the first three; the rest wait for their own windows
    first, _ = reveal_window(blocks[1], netuid, TEMPO, 3)
    await produce_until(local, first)
    out = await local.run(VALIDATOR, pairs[2][1])
    assert out.ok, out.error
    left = (await pending(local, netuid)).commits
    live = [b for b in blocks[2:] if reveal_window(b, netuid, TEMPO, 3)[1] > out.block]
    assert [c.commit_block for c in left] == live
    assert await local.ledger.check_invariants() == []


async def test_reveal_checks_the_weights_as_set_weights_does(local):
    netuid = await cr_subnet(local)
    commit, reveal = commit_of(netuid, [5], [65535])   # uid 5 does not exist
    out = await local.run(VALIDATOR, commit)
    await produce_until(local, reveal_window(out.block, netuid, TEMPO, 1)[0])
    await expect_refused(local, VALIDATOR, reveal, grpc.StatusCode.OUT_OF_RANGE, "does not exist")
    # an unregistered hotkey cannot commit; a bad hash length is refused before any state is read
    stranger = hotkey("cr-stranger")
    await expect_refused(local, stranger, commit, grpc.StatusCode.FAILED_PRECONDITION, "not registered")
    await expect_refused(local, VALIDATOR, calls.commit_weights_call(netuid, b"\x01" * 31),
                         grpc.StatusCode.INVALID_ARGUMENT, "32-byte")
    await expect_refused(local, VALIDATOR, calls.reveal_weights_call(netuid, [1], [1], []),
                         grpc.StatusCode.INVALID_ARGUMENT, "salt")
