"""The ledger over real gRPC and a real Redis: transfers, bad input, conservation."""

from __future__ import annotations

import asyncio
import dataclasses

import grpc
import pytest

from agora.chain.v1 import chain_pb2
from services.chain.client import sign_extrinsic, transfer_call
from services.chain.extrinsics import check_extrinsic
from services.chain.local import LocalChain
from services.common.keys import dev_keypair
from services.common.units import MAX_AMOUNT_RAO
from tests.conftest import chain_settings

ALICE, BOB, CHARLIE = dev_keypair("Alice"), dev_keypair("Bob"), dev_keypair("Charlie")


async def snapshot(client) -> dict:
    """Everything a refused request must leave untouched."""
    info = await client.info()
    accounts = {}
    for kp in (ALICE, BOB, CHARLIE):
        a = await client.account(kp.ss58_address)
        accounts[kp.ss58_address] = (a.free, a.nonce, a.pool_nonce)
    return {"issuance": info.total_issuance, "burned": info.total_burned, "pool": info.pool_size,
            "accounts": accounts}


async def expect_refused(client, xt: chain_pb2.Extrinsic, code: grpc.StatusCode, words: str) -> None:
    before = await snapshot(client)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await client.submit(xt, wait=False)
    assert err.value.code() == code, err.value.details()
    assert words.lower() in err.value.details().lower(), err.value.details()
    assert await snapshot(client) == before


async def test_transfer_moves_exactly_amount_and_burns_fee(client):
    info = await client.info()
    a0, b0 = (await client.account(ALICE.ss58_address)), (await client.account(BOB.ss58_address))
    resp = await client.transfer(ALICE, BOB.ss58_address, 1_234_567)
    st = resp.status
    assert st.state == chain_pb2.ExtrinsicStatus.INCLUDED and st.success and st.fee == info.transfer_fee
    a1, b1 = (await client.account(ALICE.ss58_address)), (await client.account(BOB.ss58_address))
    assert a1.free == a0.free - 1_234_567 - info.transfer_fee
    assert b1.free == b0.free + 1_234_567
    assert a1.nonce == a0.nonce + 1
    after = await client.info()
    assert after.total_issuance == info.total_issuance - info.transfer_fee
    assert after.total_burned == info.total_burned + info.transfer_fee
    block = await client.block(st.block_number)
    assert block.header.number == st.block_number
    assert (await client.block(block_hash=block.header.hash)).header.number == st.block_number
    parent = await client.block(st.block_number - 1)
    assert block.header.parent_hash == parent.header.hash


async def test_bad_signature_is_unauthenticated(client):
    xt = await client.sign(ALICE, transfer_call(BOB.ss58_address, 10))
    forged = chain_pb2.Extrinsic(payload=xt.payload, signature=BOB.sign(xt.payload))
    await expect_refused(client, forged, grpc.StatusCode.UNAUTHENTICATED, "signature does not match")
    short = chain_pb2.Extrinsic(payload=xt.payload, signature=b"\x01" * 10)
    await expect_refused(client, short, grpc.StatusCode.UNAUTHENTICATED, "64 bytes")


async def test_signature_from_another_chain_is_refused(client):
    nonce = (await client.account(ALICE.ss58_address)).pool_nonce
    xt = sign_extrinsic(ALICE, nonce, b"\x07" * 32, transfer_call(BOB.ss58_address, 10))
    await expect_refused(client, xt, grpc.StatusCode.UNAUTHENTICATED, "signed for chain")


async def test_replayed_and_out_of_order_nonces(client):
    xt = await client.sign(ALICE, transfer_call(BOB.ss58_address, 10))
    resp = await client.submit(xt, wait=True)
    assert resp.status.success
    await expect_refused(client, xt, grpc.StatusCode.ALREADY_EXISTS, "already submitted")
    nonce = (await client.account(ALICE.ss58_address)).nonce
    stale = await client.sign(ALICE, transfer_call(BOB.ss58_address, 11), nonce=nonce - 1)
    await expect_refused(client, stale, grpc.StatusCode.UNAUTHENTICATED, "already used")
    ahead = await client.sign(ALICE, transfer_call(BOB.ss58_address, 12), nonce=nonce + 5)
    await expect_refused(client, ahead, grpc.StatusCode.FAILED_PRECONDITION, f"next nonce is {nonce}")


async def test_insufficient_balance_is_refused(client):
    poor = dev_keypair("Poor")  # never funded
    xt = await client.sign(poor, transfer_call(BOB.ss58_address, 1))
    await expect_refused(client, xt, grpc.StatusCode.FAILED_PRECONDITION, "rao free")
    alice = await client.account(ALICE.ss58_address)
    too_much = await client.sign(ALICE, transfer_call(BOB.ss58_address, min(alice.free + 1, MAX_AMOUNT_RAO)))
    await expect_refused(client, too_much, grpc.StatusCode.FAILED_PRECONDITION, "needs")


@pytest.mark.parametrize(
    ("dest", "amount", "words"),
    [
        ("5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQZ", 10, "not a valid SS58"),
        ("", 10, "empty"),
        ("x" * 5000, 10, "not a valid SS58"),
        (BOB.ss58_address, 0, "transfer amount 0"),
        (BOB.ss58_address, MAX_AMOUNT_RAO + 1, "transfer amount"),
        (BOB.ss58_address, 2**64 - 1, "transfer amount"),
        (ALICE.ss58_address, 10, "transfer to self"),
    ],
)
async def test_bad_transfer_fields_are_invalid_argument(client, dest, amount, words):
    xt = await client.sign(ALICE, transfer_call(dest, amount))
    await expect_refused(client, xt, grpc.StatusCode.INVALID_ARGUMENT, words)


async def test_malformed_extrinsics_are_invalid_argument(client):
    sig = b"\x00" * 64
    await expect_refused(client, chain_pb2.Extrinsic(), grpc.StatusCode.INVALID_ARGUMENT, "no payload")
    await expect_refused(client, chain_pb2.Extrinsic(payload=b"\xff\xff\xff", signature=sig),
                         grpc.StatusCode.INVALID_ARGUMENT, "not a valid")
    no_call = chain_pb2.ExtrinsicPayload(signer=ALICE.ss58_address, chain_id=await client.chain_id())
    data = no_call.SerializeToString()
    await expect_refused(client, chain_pb2.Extrinsic(payload=data, signature=ALICE.sign(data)),
                         grpc.StatusCode.INVALID_ARGUMENT, "no call")
    await expect_refused(client, chain_pb2.Extrinsic(payload=b"\x0a" * 70_000, signature=sig),
                         grpc.StatusCode.INVALID_ARGUMENT, "limit")


async def test_oversized_message_is_refused_and_server_stays_up(client):
    huge = chain_pb2.Extrinsic(payload=b"\x00" * (8 * 1024 * 1024), signature=b"")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await client.submit(huge, wait=False)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert (await client.info()).head_number >= 0


async def test_bad_reads(client):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await client.account("not-an-address")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await client.block(10**12)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND and "head is block" in err.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await client.block(block_hash=b"\x01" * 5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await client.block(block_hash=b"\x01" * 32)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    st = await client.status(b"\x02" * 32)
    assert st.state == chain_pb2.ExtrinsicStatus.UNKNOWN


async def test_queued_transfers_cannot_overdraw_together(client):
    """Two transfers that each fit the balance but together overdraw: the pool reserves the first's
    fee and amount, so the second is refused at submit and changes nothing."""
    fee = (await client.info()).transfer_fee
    carol = dev_keypair("Carol")
    await client.transfer(ALICE, carol.ss58_address, 10_000 + 2 * fee)
    first = await client.sign(carol, transfer_call(BOB.ss58_address, 9_000))
    second = await client.sign(carol, transfer_call(BOB.ss58_address, 9_000), nonce=1)
    bob0 = (await client.account(BOB.ss58_address)).free
    await client.submit(first, wait=False)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await client.submit(second, wait=True)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "held by its queued extrinsics" in err.value.details()
    r1 = await client.submit(await client.sign(carol, transfer_call(BOB.ss58_address, 1), nonce=1), wait=True)
    assert r1.status.success
    assert (await client.account(carol.ss58_address)).free == 10_000 + 2 * fee - 9_001 - 2 * fee
    assert (await client.account(BOB.ss58_address)).free == bob0 + 9_001


async def test_a_transfer_that_overdraws_in_its_block_pays_its_fee_and_moves_nothing(redis_server):
    """Defence in depth: a transfer queued without its reservation (forged here; admission never
    does it) is checked again when applied: it fails, burns its fee and moves nothing."""
    local = await LocalChain.create(chain_settings(redis_server))
    try:
        carol = dev_keypair("Carol")
        await local.run(ALICE, transfer_call(carol.ss58_address, 1_000 + local.fee))
        signed = sign_extrinsic(carol, 0, local.chain_id, transfer_call(BOB.ss58_address, 5_000))
        xt = dataclasses.replace(check_extrinsic(signed, local.chain_id, local.fee), upfront=0)
        await local.ledger.submit(xt, local.pool)
        bob0 = (await local.ledger.account(BOB.ss58_address)).free
        await local.produce()
        out = await local.outcome(xt.hash)
        assert out.state == "included" and not out.ok and out.error.startswith("InsufficientFunds"), out
        assert (await local.ledger.account(carol.ss58_address)).free == 1_000
        assert (await local.ledger.account(BOB.ss58_address)).free == bob0
        assert await local.ledger.check_invariants() == []
    finally:
        await local.close()


async def test_concurrent_transfers_conserve_total(chain, client):
    """Many clients hammer transfers around a ring of the same accounts; not one rao appears or vanishes."""
    info0 = await client.info()
    ring = [dev_keypair(n) for n in ("Alice", "Bob", "Charlie", "Dave", "Eve", "Ferdie")]
    addrs = [k.ss58_address for k in ring]
    before = {a: (await client.account(a)).free for a in addrs}
    per_sender = 40

    async def sender(i: int) -> list[chain_pb2.SubmitExtrinsicResponse]:
        kp, dest = ring[i], addrs[(i + 1) % len(ring)]
        start = (await client.account(kp.ss58_address)).pool_nonce
        xts = [await client.sign(kp, transfer_call(dest, 1_000 + j), nonce=start + j) for j in range(per_sender)]
        # one sender's nonces must arrive in order (a gap is refused); the senders race each other
        sent = [await client.submit(xt, wait=False) for xt in xts[:-1]]
        return [*sent, await client.submit(xts[-1], wait=True)]

    results = await asyncio.gather(*(sender(i) for i in range(len(ring))))
    statuses = [await client.status(r.hash) for rs in results for r in rs]
    assert all(s.state == chain_pb2.ExtrinsicStatus.INCLUDED and s.success for s in statuses)
    after = {a: (await client.account(a)).free for a in addrs}
    info1 = await client.info()
    fees = len(statuses) * info0.transfer_fee
    assert sum(after.values()) == sum(before.values()) - fees
    assert info1.total_issuance == info0.total_issuance - fees
    # the ledger's invariant, over every account it holds
    assert info1.total_issuance == sum((await chain.ledger.all_balances()).values())


async def test_submit_batch_reports_each_item(client):
    good = await client.sign(ALICE, transfer_call(BOB.ss58_address, 5))
    bad = chain_pb2.Extrinsic(payload=good.payload, signature=BOB.sign(good.payload))
    resp = await client.stub.SubmitExtrinsics(chain_pb2.SubmitExtrinsicsRequest(extrinsics=[good, bad, good]))
    # the same extrinsic twice while it is queued: acknowledged twice, queued once
    codes = [grpc.StatusCode.OK, grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.OK]
    assert [r.code for r in resp.results] == [c.value[0] for c in codes]
    assert "signature" in resp.results[1].message
    assert resp.results[0].hash == resp.results[2].hash
    status = (await client.submit(good, wait=True)).status   # and once more: it waits for that one
    assert status.success
    await expect_refused(client, good, grpc.StatusCode.ALREADY_EXISTS, "already submitted")


async def test_subscribe_streams_consecutive_blocks(client):
    head = (await client.info()).head_number
    got = []
    async for block in client.blocks(from_number=max(1, head - 2)):
        got.append(block.header.number)
        if len(got) == 6:
            break
    assert got == list(range(max(1, head - 2), max(1, head - 2) + 6))
