"""Ledger invariants under random traffic, as a hypothesis state machine on a real Redis.

Each run is a fresh network on its own key prefix. Rules submit random extrinsics of every kind
(tests/chain_traffic.py: valid ones, invalid fields, wrong signers, amounts past balances, calls
that fail in their block, tampered signatures, chain ids and nonces, resubmitted extrinsics) and
produce blocks through the real producer across many epochs. After every block the audit checks
issuance == free + stake + locked + pending emission (and genesis + minted - burned), every balance
and nonce against what the block's events say, no negative balance, and that no extrinsic was
applied by half. A refused submission must leave every key as it was. When the run ends its
blocks are replayed on a fresh prefix (services/chain/replay.py): each replayed block hashes as
stored and reaches the state digest recorded after that block; two small tests show the replay
check fails on state no block explains and on an altered stored block.

AGORA_SOAK=1 (make soak) runs many more and longer examples.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Coroutine
from typing import Any, ClassVar, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule, run_state_machine_as_test

from agora.chain.v1 import chain_pb2
from services.chain.codec import extrinsic_hash
from services.chain.ledger import Ledger
from services.chain.ledger.digest import state_digest
from services.chain.replay import ReplayDiverged, replay, replay_blocks
from services.common.errors import AgoraError
from tests.chain_traffic import (
    ACCOUNTS,
    KINDS,
    audit_block,
    drop_network,
    full_digest,
    new_network,
    propose,
    read_view,
    snapshot,
    submit_attempt,
    submit_signed,
)

T = TypeVar("T")
SOAK = os.environ.get("AGORA_SOAK", "") not in ("", "0")
EXAMPLES = int(os.environ.get("AGORA_SOAK_EXAMPLES", "100" if SOAK else "15"))
STEPS = 100 if SOAK else 50
ADDRESSES = [k.ss58_address for k in ACCOUNTS]


class LedgerMachine(RuleBasedStateMachine):
    redis_url: ClassVar[str] = ""
    tally: ClassVar[Counter[str]] = Counter()
    """Outcomes over every run: the test checks the traffic reached every kind and both outcomes."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.local = self.run(new_network(self.redis_url))
        self.ledger = self.local.ledger
        self.before = self.run(snapshot(self.ledger, ADDRESSES))
        self.digests: dict[int, str] = {}
        self.queued: list[tuple[str, bytes]] = []
        self.accepted: list[chain_pb2.Extrinsic] = []
        # set when a rule returns: teardown replays only runs whose every step passed
        self.clean = True

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    @rule(data=st.data(), count=st.integers(1, 6))
    def submit(self, data: st.DataObject, count: int) -> None:
        self.clean = False
        # a Random whose every draw hypothesis records: choices are uniform (data.draw's own choices
        # lean to the first option), and a failing run still shrinks and replays
        pick = data.draw(st.randoms(use_true_random=False))
        view = self.run(read_view(self.ledger))
        for _ in range(count):
            attempt = propose(pick, view)
            before = self.run(full_digest(self.ledger))
            xt, got = self.run(submit_attempt(self.local, attempt))
            if isinstance(got, AgoraError):
                self.tally[f"{attempt.kind.split(':')[0]}:refused"] += 1
                assert self.run(full_digest(self.ledger)) == before, f"refused {attempt} ({got!r}) changed the state"
            else:
                assert not attempt.tamper, f"tampered extrinsic {attempt.tamper} was accepted"
                self.queued.append((attempt.kind, got))
                self.accepted.append(xt)
        self.clean = True

    @precondition(lambda self: self.accepted)
    @rule(data=st.data())
    def resubmit(self, data: st.DataObject) -> None:
        """An extrinsic already accepted is never queued again: while it waits, sending it again is
        acknowledged again (a client that lost the reply may resend) and changes nothing; once
        included or dropped it is refused."""
        self.clean = False
        xt = data.draw(st.sampled_from(self.accepted))
        before = self.run(full_digest(self.ledger))
        waiting = self.run(self.ledger.extrinsic_status(extrinsic_hash(xt.payload, xt.signature))) == "q"
        got = self.run(submit_signed(self.local, xt, precheck=False))
        if waiting:
            assert got == extrinsic_hash(xt.payload, xt.signature), f"a queued extrinsic sent again: {got!r}"
        else:
            assert isinstance(got, AgoraError), "a resubmitted extrinsic was accepted twice"
        assert self.run(full_digest(self.ledger)) == before
        self.tally[f"resubmitted:{'acknowledged' if waiting else 'refused'}"] += 1
        self.clean = True

    @rule(blocks=st.integers(1, 4))
    def produce(self, blocks: int) -> None:
        self.clean = False
        for _ in range(blocks):
            self.run(self._block())
        self.clean = True

    async def _block(self) -> None:
        (block,) = await self.local.produce()
        self.before, problems = await audit_block(self.ledger, self.before, block)
        assert not problems, "\n".join(problems)
        for kind, xt_hash in self.queued:
            out = await self.local.outcome(xt_hash)
            assert out.state != "queued", f"{kind} {xt_hash.hex()} was left in the pool"
            self.tally[f"{kind}:{'ok' if out.ok else out.state if out.state == 'dropped' else 'failed'}"] += 1
        self.queued.clear()
        self.tally["blocks"] += 1
        self.tally["epochs"] += sum(1 for e in block.events if e.name == "EpochRun")
        self.digests[block.header.number] = await state_digest(self.ledger.redis, self.ledger.keys)

    def teardown(self) -> None:
        try:
            if self.clean:
                self.run(self._check_replay())
        finally:
            self.run(self.local.close())
            self.run(drop_network(self.ledger))
            self.loop.close()

    async def _check_replay(self) -> None:
        target = Ledger(self.ledger.redis, f"{self.ledger.network}-replay")
        try:
            async for replayed in replay_blocks(self.ledger, target):
                want = self.digests.get(replayed.number)
                if want is not None:
                    got = await state_digest(target.redis, target.keys)
                    assert got == want, f"replayed state differs after block {replayed.number}"
            assert await state_digest(target.redis, target.keys) == await state_digest(self.ledger.redis,
                                                                                       self.ledger.keys)
            self.tally["replays"] += 1
        finally:
            await drop_network(target)


def test_random_extrinsics_keep_every_ledger_invariant_and_replay_to_the_same_digest(redis_server):
    LedgerMachine.redis_url = redis_server.url
    LedgerMachine.tally.clear()
    run_state_machine_as_test(LedgerMachine, settings=settings(
        max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    ))
    tally = LedgerMachine.tally
    # the traffic did what it claims: every kind was tried, most both succeeded and were refused
    # or failed, blocks ran epochs, and runs were replayed
    for kind in KINDS:
        assert sum(v for k, v in tally.items() if k.startswith(f"{kind}:")) > 0, (kind, tally)
    ok_kinds = [k for k in KINDS if tally[f"{k}:ok"]]
    assert len(ok_kinds) >= len(KINDS) - 3, tally
    assert tally["tampered:refused"] > 0 and tally["transfer:refused"] > 0, tally
    assert tally["epochs"] > 0 and tally["replays"] > 0, tally


# ---- the replay check itself can fail ----


async def _chain_with_history(redis_url: str):
    local = await new_network(redis_url)
    alice, bob = ACCOUNTS[0], ACCOUNTS[1]
    for amount in (5, 6, 7):
        await local.submit(alice, chain_pb2.Call(transfer=chain_pb2.Transfer(dest=bob.ss58_address, amount=amount)))
        await local.produce(2)
    return local


async def test_replay_finds_state_that_does_not_follow_from_the_blocks(redis_server):
    local = await _chain_with_history(redis_server.url)
    target = Ledger(local.ledger.redis, f"{local.ledger.network}-replay")
    try:
        # a write no block explains, as a half-applied extrinsic would leave
        await local.ledger.redis.hincrby(local.ledger.keys.free, ACCOUNTS[1].ss58_address, 1)
        assert await replay(local.ledger, target) is not None
        assert await state_digest(target.redis, target.keys) != await state_digest(local.ledger.redis,
                                                                                   local.ledger.keys)
    finally:
        await local.close()
        await drop_network(local.ledger)
        await drop_network(target)


async def test_replay_refuses_a_stored_block_that_was_altered(redis_server):
    local = await _chain_with_history(redis_server.url)
    target = Ledger(local.ledger.redis, f"{local.ledger.network}-replay")
    try:
        blocks = [chain_pb2.Block.FromString(await local.ledger.block_bytes(n) or b"")
                  for n in range(1, await local.head() + 1)]
        block = next(b for b in blocks if any(e.name == "Transfer" for e in b.events))
        number = block.header.number
        transfer = next(e for e in block.events if e.name == "Transfer")
        transfer.attributes["amount"] = "999"
        await local.ledger.redis.hset(local.ledger.keys.blocks, str(number), block.SerializeToString())
        with pytest.raises(ReplayDiverged, match=f"block {number}"):
            await replay(local.ledger, target)
    finally:
        await local.close()
        await drop_network(local.ledger)
        await drop_network(target)
