"""gRPC glue: agora.chain.v1.Chain on top of the ledger. Handlers raise AgoraErrors; the shared
server maps them to status codes."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import grpc

from agora.chain.v1 import chain_pb2, chain_pb2_grpc
from services.chain import metrics, views
from services.chain.emission import block_emission
from services.chain.extrinsics import check_extrinsic
from services.chain.ledger import Ledger
from services.chain.pool import PoolLimits
from services.chain.subnets import MAX_NETUID
from services.common import keys
from services.common.error_mapping import status_code_for
from services.common.errors import REDIS_UNREACHABLE, AgoraError, InvalidRequest, NotFound

MAX_BATCH = 10_000
# With no timeout_ms, a waiter waits this many blocks, not a wall-clock time: a chain slowed by a
# busy machine still gets its 10 blocks to include the extrinsic. The caller's own deadline (less
# a margin to send the answer) or MAX_DEFAULT_WAIT_S bounds it when blocks stop coming.
DEFAULT_WAIT_BLOCKS = 10
MAX_DEFAULT_WAIT_S = 120.0
DEADLINE_MARGIN_S = 0.25


class BlockFollower:
    """Follows the block stream on one connection and wakes every local waiter per new block, so
    a thousand clients waiting for inclusion cost one blocking Redis read, not a thousand."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.head = -1
        self._changed = asyncio.Condition()
        self.stopping = False

    async def run(self) -> None:
        self.head, _ = await self.ledger.head()
        while not self.stopping:  # see BlockProducer.run for why a flag as well as cancellation
            try:
                await self.ledger.wait_for_block_after(self.head, timeout_ms=1000)
                head, _ = await self.ledger.head()
            except REDIS_UNREACHABLE:  # Redis restarting: keep following, or waiters wait out their timeout
                await asyncio.sleep(0.5)
                continue
            if head != self.head:
                self.head = head
                metrics.block_height.set(head)
                async with self._changed:
                    self._changed.notify_all()

    async def wait_past(self, number: int, timeout: float) -> bool:
        """Wait until the head passes `number`; False on timeout."""
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(lambda: self.head > number)
            return True
        except TimeoutError:
            return False


def status_message(xt_hash: bytes, raw: str | None) -> chain_pb2.ExtrinsicStatus:
    S = chain_pb2.ExtrinsicStatus
    if raw is None:
        return S(state=S.UNKNOWN, hash=xt_hash)
    if raw == "q":
        return S(state=S.QUEUED, hash=xt_hash)
    d = json.loads(raw)
    if d["s"] == "dropped":
        return S(state=S.DROPPED, hash=xt_hash, error=d["error"])
    return S(state=S.INCLUDED, hash=xt_hash, block_number=d["block"], index=d["index"], success=d["ok"],
             error=d["error"], fee=d["fee"])


class ChainService(chain_pb2_grpc.ChainServicer):
    def __init__(self, ledger: Ledger, follower: BlockFollower, *, chain_id: bytes, config: dict,
                 block_time_ms: int, pool: PoolLimits) -> None:
        self.ledger = ledger
        self.follower = follower
        self.chain_id = chain_id
        self.config = config
        self.fee = int(config["transfer_fee"])
        self.block_time_ms = block_time_ms
        self.pool = pool

    async def SubmitExtrinsic(self, request: chain_pb2.SubmitExtrinsicRequest, context: grpc.aio.ServicerContext
                              ) -> chain_pb2.SubmitExtrinsicResponse:
        try:
            xt = check_extrinsic(request.extrinsic, self.chain_id, self.fee, self.ledger.params)
            await self.ledger.submit(xt, self.pool)
        except AgoraError:
            metrics.submitted.labels("refused").inc()
            raise
        metrics.submitted.labels("queued").inc()
        response = chain_pb2.SubmitExtrinsicResponse(hash=xt.hash)
        if request.wait_for_inclusion:
            if request.timeout_ms:
                timeout, last_block = request.timeout_ms / 1000, None
            else:
                remaining = context.time_remaining()
                timeout = min(MAX_DEFAULT_WAIT_S, MAX_DEFAULT_WAIT_S if remaining is None
                              else max(0.0, remaining - DEADLINE_MARGIN_S))
                last_block = self.follower.head + DEFAULT_WAIT_BLOCKS
            response.status.CopyFrom(await self._wait_for_inclusion(xt.hash, timeout, last_block))
        return response

    async def _wait_for_inclusion(self, xt_hash: bytes, timeout: float,
                                  last_block: int | None) -> chain_pb2.ExtrinsicStatus:
        """Wait until the extrinsic leaves the pool, `timeout` seconds pass, or (if given) the head
        reaches `last_block`; the status at that moment (QUEUED if still waiting)."""
        deadline = time.monotonic() + timeout
        while True:
            head = self.follower.head
            try:
                status = status_message(xt_hash, await self.ledger.extrinsic_status(xt_hash))
            except REDIS_UNREACHABLE:
                # the extrinsic is queued already: a Redis restart must not end the wait (the
                # caller would resubmit and be refused as a duplicate); an outage past it does
                if time.monotonic() >= deadline:
                    raise
                await asyncio.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
                continue
            left = deadline - time.monotonic()
            blocks_done = last_block is not None and head >= last_block
            if status.state != chain_pb2.ExtrinsicStatus.QUEUED or left <= 0 or blocks_done:
                return status
            await self.follower.wait_past(head, left)

    async def SubmitExtrinsics(self, request: chain_pb2.SubmitExtrinsicsRequest,
                               context: grpc.aio.ServicerContext) -> chain_pb2.SubmitExtrinsicsResponse:
        if len(request.extrinsics) > MAX_BATCH:
            raise InvalidRequest(f"{len(request.extrinsics)} extrinsics in one call; the limit is {MAX_BATCH}")
        response = chain_pb2.SubmitExtrinsicsResponse()
        for item in request.extrinsics:
            result = response.results.add()
            try:
                xt = check_extrinsic(item, self.chain_id, self.fee, self.ledger.params)
                result.hash = xt.hash
                await self.ledger.submit(xt, self.pool)
                metrics.submitted.labels("queued").inc()
            except AgoraError as exc:
                metrics.submitted.labels("refused").inc()
                result.code = status_code_for(exc).value[0]
                result.message = str(exc)
        return response

    async def GetAccount(self, request: chain_pb2.GetAccountRequest, context: grpc.aio.ServicerContext
                         ) -> chain_pb2.Account:
        a = await self.ledger.account(keys.check_address(request.address))
        return chain_pb2.Account(address=a.address, free=a.free, nonce=a.nonce, pool_nonce=a.pool_nonce)

    async def GetChainInfo(self, request: chain_pb2.GetChainInfoRequest, context: grpc.aio.ServicerContext
                           ) -> chain_pb2.ChainInfo:
        number, head_hash = await self.ledger.head()
        issuance, burned, pool = await self.ledger.totals()
        e = await self.ledger.economy()
        has_subnets = len(await self.ledger.netuids()) > 1  # root alone mints nothing
        metrics.pool_size.set(pool)
        metrics.total_issuance.set(issuance)
        return chain_pb2.ChainInfo(
            genesis_hash=self.chain_id, head_number=number, head_hash=head_hash,
            block_time_ms=self.block_time_ms, total_issuance=issuance, total_burned=burned,
            transfer_fee=self.fee, pool_size=pool, network=self.config["network"],
            producer=await self.ledger.lease_holder(), ss58_format=keys.SS58_FORMAT,
            total_stake=e.total_stake, total_locked=e.locked, pending_emission=e.pending_emission,
            total_minted=e.minted, block_reward=block_emission(issuance) if has_subnets else 0,
        )

    async def GetBlock(self, request: chain_pb2.GetBlockRequest, context: grpc.aio.ServicerContext
                       ) -> chain_pb2.Block:
        which = request.WhichOneof("at")
        if which == "hash":
            if len(request.hash) != 32:
                raise InvalidRequest(f"a block hash is 32 bytes, got {len(request.hash)}")
            number = await self.ledger.block_number_of(request.hash)
            if number is None:
                raise NotFound(f"no block with hash {request.hash.hex()}")
        elif which == "number":
            number = request.number
        else:
            number, _ = await self.ledger.head()
        raw = await self.ledger.block_bytes(number)
        if raw is None:
            head, _ = await self.ledger.head()
            raise NotFound(f"no block {number}: the head is block {head}")
        return chain_pb2.Block.FromString(raw)

    async def SubscribeBlocks(self, request: chain_pb2.SubscribeBlocksRequest,
                              context: grpc.aio.ServicerContext) -> AsyncIterator[chain_pb2.Block]:
        head, _ = await self.ledger.head()
        cursor = request.from_number or head + 1
        while True:
            raw = await self.ledger.block_bytes(cursor)
            if raw is None:  # not produced yet: blocks are never deleted
                await self.follower.wait_past(cursor - 1, timeout=30)
                continue
            yield chain_pb2.Block.FromString(raw)
            cursor += 1

    async def GetExtrinsicStatus(self, request: chain_pb2.GetExtrinsicStatusRequest,
                                 context: grpc.aio.ServicerContext) -> chain_pb2.ExtrinsicStatus:
        if len(request.hash) != 32:
            raise InvalidRequest(f"an extrinsic hash is 32 bytes, got {len(request.hash)}")
        return status_message(request.hash, await self.ledger.extrinsic_status(request.hash))

    # ---- subnets, stake, metagraph ----

    async def ListSubnets(self, request: chain_pb2.ListSubnetsRequest, context: grpc.aio.ServicerContext
                          ) -> chain_pb2.ListSubnetsResponse:
        head, _ = await self.ledger.head()
        states = await self.ledger.subnet_states()
        return chain_pb2.ListSubnetsResponse(
            subnets=[views.subnet_info(s, self.ledger.params, head) for s in states])

    async def GetSubnet(self, request: chain_pb2.GetSubnetRequest, context: grpc.aio.ServicerContext
                        ) -> chain_pb2.SubnetInfo:
        _check_netuid(request.netuid)
        head, _ = await self.ledger.head()
        return views.subnet_info(await self.ledger.subnet(request.netuid), self.ledger.params, head)

    async def GetMetagraph(self, request: chain_pb2.GetMetagraphRequest, context: grpc.aio.ServicerContext
                           ) -> chain_pb2.Metagraph:
        _check_netuid(request.netuid)
        head, _ = await self.ledger.head()
        snap = await self.ledger.subnet_snapshot(request.netuid, weights=request.include_weights,
                                                 bonds=request.include_bonds, metagraph=True)
        return views.metagraph(snap, head, include_weights=request.include_weights,
                               include_bonds=request.include_bonds)

    async def GetStake(self, request: chain_pb2.GetStakeRequest, context: grpc.aio.ServicerContext
                       ) -> chain_pb2.StakeInfo:
        coldkey = keys.check_address(request.coldkey, what="coldkey")
        account = await self.ledger.account(coldkey)
        return views.stake_info(coldkey, account.free, await self.ledger.stake_of(coldkey))

    async def ListDelegates(self, request: chain_pb2.ListDelegatesRequest, context: grpc.aio.ServicerContext
                            ) -> chain_pb2.ListDelegatesResponse:
        return chain_pb2.ListDelegatesResponse(
            delegates=[views.delegate_info(d) for d in await self.ledger.delegates()])


def _check_netuid(netuid: int) -> None:
    if netuid > MAX_NETUID:
        raise InvalidRequest(f"netuid {netuid} is out of range: 0..{MAX_NETUID}")
