"""Restarts, crashes inside a block, and producer fail-over, on real redis-server processes."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from services.chain.client import ChainClient, transfer_call
from services.chain.main import ChainNode
from services.chain.pool import BlockLimits
from services.common.keys import dev_keypair
from services.common.redis_server import RedisServer
from tests.conftest import chain_settings

ALICE, BOB = dev_keypair("Alice"), dev_keypair("Bob")


async def test_chain_and_redis_restart_resume_same_head_and_balances(tmp_path: Path):
    redis = RedisServer(data_dir=tmp_path / "redis", appendonly=True).start()
    settings = chain_settings(redis)
    node = ChainNode(settings)
    await node.start()
    client = ChainClient(f"127.0.0.1:{node.server.port}")
    try:
        for amount in (100, 200, 300):
            assert (await client.transfer(ALICE, BOB.ss58_address, amount)).status.success
        await node.stop()
    finally:
        await client.close()
    # read what was finalized through a fresh connection, then restart Redis from its append-only file
    probe = ChainNode(settings)
    head_before = await probe.ledger.head()
    balances_before = await probe.ledger.all_balances()
    info_before = await probe.ledger.totals()
    await probe.redis.aclose()
    redis.stop()
    redis = RedisServer(data_dir=tmp_path / "redis", appendonly=True, port=redis.port).start()
    node = ChainNode(settings)
    try:
        assert await node.ledger.head() == head_before
        assert await node.ledger.all_balances() == balances_before
        assert (await node.ledger.totals())[:2] == info_before[:2]
        await node.start()
        client = ChainClient(f"127.0.0.1:{node.server.port}")
        assert (await client.transfer(ALICE, BOB.ss58_address, 400)).status.success
        assert (await client.info()).head_number > head_before[0]
        await client.close()
    finally:
        await node.stop()
        redis.stop()


async def test_crash_inside_a_block_applies_each_extrinsic_once(redis_server):
    """Stop the producer after it applied half a block: the next producer finishes that same block
    and applies nothing twice."""
    settings = chain_settings(redis_server, block_time_ms=60_000, lease_ms=300)
    node = ChainNode(settings)
    await node.start()
    client = ChainClient(f"127.0.0.1:{node.server.port}")
    try:
        producer = node.producer
        assert producer is not None
        # hold the producer still: cancel its loop and drive the steps by hand
        node._tasks[-1].cancel()
        assert await node.ledger.hold_lease(producer.token, 60_000)
        start = (await client.account(ALICE.ss58_address)).pool_nonce
        hashes = []
        for j in range(6):
            xt = await client.sign(ALICE, transfer_call(BOB.ss58_address, 10 + j), nonce=start + j)
            hashes.append((await client.submit(xt, wait=False)).hash)
        bob0 = (await client.account(BOB.ss58_address)).free
        pending = await node.ledger.begin_block(producer.token, BlockLimits(max_extrinsics=100),
                                                int(time.time() * 1000))
        from services.chain.extrinsics import decode_queued
        xts = [decode_queued(r) for r in pending.extrinsics]
        await node.ledger.apply_extrinsics(producer.token, [(i, xts[i], producer.fee) for i in range(3)])
        # "crash": the lease lapses; a new producer takes over and resumes the pending block
        await node.redis.delete(node.ledger.keys.lease)
        from services.chain.producer import BlockProducer
        successor = BlockProducer(node.ledger, producer_id="successor", block_time_ms=60_000, lease_ms=5_000,
                                  limits=BlockLimits(max_extrinsics=100), transfer_fee=producer.fee)
        assert await node.ledger.hold_lease(successor.token, 5_000)
        block = await successor.produce_block()
        assert block.header.number == pending.number
        assert len(block.extrinsics) == 6
        assert (await client.account(BOB.ss58_address)).free == bob0 + sum(10 + j for j in range(6))
        assert (await client.account(ALICE.ss58_address)).nonce == start + 6
        statuses = [await client.status(h) for h in hashes]
        assert [s.index for s in statuses] == list(range(6)) and all(s.success for s in statuses)
        # the old producer is fenced out: it no longer holds the lease, so its writes are refused
        from services.chain.ledger import NotLeader
        try:
            await node.ledger.begin_block(producer.token, BlockLimits(max_extrinsics=100), 0)
            raise AssertionError("a producer without the lease wrote a block")
        except NotLeader:
            pass
    finally:
        await client.close()
        await node.stop()


async def test_standby_takes_over_when_the_producer_dies(redis_server):
    settings = chain_settings(redis_server, block_time_ms=100, lease_ms=600)
    active = ChainNode(settings)
    await active.start()
    await asyncio.sleep(0.3)
    standby = ChainNode(chain_settings(redis_server, network=settings.network, block_time_ms=100, lease_ms=600,
                                       producer_id="standby"))
    await standby.start()
    client = ChainClient(f"127.0.0.1:{standby.server.port}")
    try:
        await asyncio.sleep(0.5)
        assert active.producer and active.producer.is_leader
        assert standby.producer and not standby.producer.is_leader
        head_at_death = (await client.info()).head_number
        died = time.monotonic()
        # a crash: the producer stops without handing its lease back
        active._tasks[-1].cancel()
        active.producer = None
        await active.stop()
        while not standby.producer.is_leader:
            assert time.monotonic() - died < 3.0, "standby did not take over"
            await asyncio.sleep(0.05)
        assert time.monotonic() - died < 0.6 + 0.6  # within a lease time (plus one poll)
        resp = await client.transfer(ALICE, BOB.ss58_address, 77)
        assert resp.status.success and resp.status.block_number > head_at_death
        info = await client.info()
        assert info.producer.startswith("standby")
    finally:
        await client.close()
        await standby.stop()
